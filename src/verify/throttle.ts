// Login throttling: at most `maxFailures` wrong passwords per user, and `hostMaxFailures` per
// remote host (over all users), are ever checked within `throttleWindowSec`; reaching either
// budget refuses further attempts for `throttleLockoutSec`. Per host stops one source guessing
// many users; per user stops many sources guessing one.
//
// Reservations, not after-the-fact counting: an attempt takes a slot in each budget *before* its
// password is checked, and the slots in flight count towards the limit. Counting only finished
// failures let every attempt of a parallel burst pass the gate before the first one failed (40
// parallel wrong passwords were all checked; through sshd, 20 connections gave 9 checks against
// max_failures = 5). A wrong password turns its slot into a failure; a right one (or an upstream
// that did not answer, or an error) only gives its own slot back. A right password never clears
// the failures of the window: in a burst that would reset the count for every guess after it.
//
// An attempt that finds a budget full of slots still in flight waits for them to settle rather
// than being refused: those slots become failures (the budget locks, the waiter is refused) or
// are given back (the waiter proceeds), so parallel logins with right passwords, e.g. many users
// behind one NAT address, all get through. The wait is bounded (MAX_WAIT_MS).
//
// Memory is bounded: an attacker cycling through names or addresses evicts the oldest entries
// instead of growing the daemon. An entry with slots in flight or attempts waiting on it is
// never evicted (that would forget the reservations); there are at most as many as connections.
import { isIPv6 } from 'node:net';
import type { PamConfig } from '../config/types.js';

export type Scope = 'user' | 'host';

interface Budget {
  /** wrong passwords checked in the current window */
  failures: number;
  /** reservations taken and not yet settled */
  inFlight: number;
  /** epoch ms of the window's first failure; 0 = no failure in this window */
  windowStart: number;
  /** epoch ms; 0 = not locked */
  lockedUntil: number;
  /** attempts refused during the current lockout */
  refused: number;
  /** refusals not yet reported in a log line */
  unreported: number;
  /** epoch ms of the last reported refusal; 0 = none in this lockout */
  reportedAt: number;
  /** attempts waiting for an in-flight slot of this budget to settle */
  waiters: Array<() => void> | null;
}

/** A budget that has just reached its limit: the caller logs the start of the lockout. */
export interface Lockout { scope: Scope; key: string; failures: number; limit: number; retryAfterSec: number }

/** Why an attempt was refused without being checked. */
export interface Refusal extends Lockout {
  /** locked: the budget is locked out; busy: its slots stayed in flight longer than MAX_WAIT_MS */
  reason: 'locked' | 'busy';
  /**
   * Refusals of this key to report in a log line now (this one and those suppressed since the
   * last line); 0 = a line for this key was written less than REPORT_EVERY_MS ago. A refused
   * attempt costs the attacker nothing, so an unlimited line per refusal would let him flood
   * the log; the first refusal of each lockout is always reported.
   */
  report: number;
}

export interface ThrottleDecision { allowed: boolean; retryAfterSec: number }

/** The outcome of `Throttle.admit`: a reservation to settle, or a refusal. */
export type Admission = { allowed: true; ticket: Ticket } | { allowed: false; refusal: Refusal };

/** One entry of `Throttle.list`, for `latchkeyctl throttle`. */
export interface ThrottleEntry {
  scope: Scope;
  key: string;
  failures: number;
  limit: number;
  inFlight: number;
  /** epoch ms; null when no failure is counted */
  windowStartedAt: number | null;
  /** epoch ms; null when not locked */
  lockedUntil: number | null;
  retryAfterSec: number;
  refused: number;
}

export interface ThrottleSnapshot {
  trackedUsers: number;
  trackedHosts: number;
  lockedUsers: { user: string; retryAfterSec: number }[];
  lockedHosts: { rhost: string; retryAfterSec: number }[];
  failures: number;
  lockouts: number;
  refused: number;
  evictions: number;
  /** reservations currently in flight, users and hosts together */
  inFlight: number;
}

/**
 * User and rhost arrive from the PAM client unchecked (the user is whatever name a remote ssh
 * client sent, up to the 8 KiB frame), and the maps hold up to maxKeys of each: with full-length
 * keys that is gigabytes. No valid name is near this long (32 bytes) nor is a host (NI_MAXHOST
 * 1025 is the C buffer, real ones are far shorter), so longer keys are cut; names sharing a
 * 256-character prefix share a counter, which only makes an attacker lock himself out.
 */
const MAX_KEY_LENGTH = 256;
const keyOf = (k: string): string => (k.length > MAX_KEY_LENGTH ? k.slice(0, MAX_KEY_LENGTH) : k);

/**
 * The budget key of a remote address. One IPv6 client owns a whole /64 (SLAAC, privacy
 * addresses) and can rotate through it, getting a fresh budget per address; so IPv6 addresses
 * count per /64. IPv4 (and IPv4-mapped IPv6) addresses and host names count as given.
 */
export function hostKey(rhost: string): string {
  if (isIPv6(rhost)) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(rhost);
    if (mapped) return mapped[1]!;
    const [head, tail = ''] = rhost.toLowerCase().split('::');
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = rhost.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
    return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
  }
  return keyOf(rhost);
}

/** At most this many locked entries are listed in a snapshot; the counts stay exact. */
const SNAPSHOT_LIST_MAX = 100;

/** At most one refusal line per key this often (the first of a lockout is always written). */
export const REPORT_EVERY_MS = 60_000;

/**
 * Longest an attempt waits for in-flight slots to settle. Slots are held for one upstream lookup
 * and one verification (both bounded). The whole answer must reach the PAM module within its
 * deadline (ANSWER_DEADLINE_MS 4.5 s < CLIENT_TIMEOUT_MS 5 s): this wait (1 s), the wait for a
 * hash slot (HASH_WAIT_MS, 2.5 s) and one hash at the ceilings fit in it; past it the attempt is
 * answered "busy" (try again), never left running for a client that has given up.
 */
export const MAX_WAIT_MS = 1000;

/** A reservation: settle it once, with `fail()` (wrong password) or `release()` (anything else). */
export class Ticket {
  private settled = false;
  constructor(private readonly onFail: () => Lockout[], private readonly onRelease: () => void) {}

  /** The password was wrong: the slot becomes a failure. Returns the lockouts this started. */
  fail(): Lockout[] {
    if (this.settled) return [];
    this.settled = true;
    return this.onFail();
  }

  /** The password was right, or it could not be checked: the slot is given back, nothing counted.
   *  A no-op after `fail()`, so callers release in `finally`. */
  release(): void {
    if (this.settled) return;
    this.settled = true;
    this.onRelease();
  }
}

type Part = [Scope, string, Budget];
type TryResult = Admission | { allowed: 'wait'; scope: Scope; key: string; budget: Budget };

export class Throttle {
  private readonly users = new Map<string, Budget>();
  private readonly hosts = new Map<string, Budget>();
  private failures = 0;
  private lockouts = 0;
  private refused = 0;
  private evictions = 0;

  constructor(
    readonly cfg: () => PamConfig,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 100_000,
    private readonly maxWaitMs = MAX_WAIT_MS,
  ) {}

  /**
   * Reserves a failure slot for `user` and, when there is one, `rhost`, before the password is
   * checked. Waits (up to maxWaitMs) while a budget has room only once slots in flight settle.
   */
  async admit(user: string, rhost: string): Promise<Admission> {
    user = keyOf(user); rhost = hostKey(rhost);
    const deadline = Date.now() + this.maxWaitMs;
    for (;;) {
      const r = this.tryAdmit(user, rhost);
      if (r.allowed !== 'wait') return r;
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.waitOn(r.budget, left))) {
        return { allowed: false, refusal: this.refuse(r.scope, r.key, r.budget, 'busy', this.now()) };
      }
    }
  }

  /** The lockout state of a user without counting a refusal (`latchkeyctl auth-test`). */
  peek(user: string): ThrottleDecision {
    const b = this.users.get(keyOf(user));
    const t = this.now();
    const wait = b && b.lockedUntil > t ? b.lockedUntil - t : 0;
    return { allowed: wait === 0, retryAfterSec: Math.ceil(wait / 1000) };
  }

  /** One user's budget now, without counting anything (`latchkeyctl why`); zeros when none is held. */
  userState(user: string): { failures: number; limit: number; inFlight: number; lockedUntil: number | null; retryAfterSec: number } {
    const b = this.users.get(keyOf(user));
    const t = this.now();
    if (b) this.expire(b, t);
    const locked = b !== undefined && b.lockedUntil > t;
    return {
      failures: b?.failures ?? 0, limit: this.cfg().maxFailures, inFlight: b?.inFlight ?? 0,
      lockedUntil: locked ? b.lockedUntil : null, retryAfterSec: locked ? Math.ceil((b.lockedUntil - t) / 1000) : 0,
    };
  }

  /**
   * Clears failures and lockouts (reservations in flight stay counted: their attempts are still
   * being checked). Returns how many counters of each kind held failures or a lockout.
   */
  reset(target: { user: string } | { host: string } | { all: true }): { users: number; hosts: number } {
    const t = this.now();
    const clear = (map: Map<string, Budget>, key: string): number => {
      const b = map.get(key);
      if (!b) return 0;
      this.expire(b, t);
      const had = b.failures > 0 || b.lockedUntil > 0 ? 1 : 0;
      Object.assign(b, { failures: 0, windowStart: 0, lockedUntil: 0, refused: 0, unreported: 0, reportedAt: 0 });
      this.wake(b);
      this.dropIfIdle(map, key, b);
      return had;
    };
    if ('user' in target) return { users: clear(this.users, keyOf(target.user)), hosts: 0 };
    if ('host' in target) return { users: 0, hosts: clear(this.hosts, hostKey(target.host)) };
    let users = 0;
    let hosts = 0;
    for (const k of [...this.users.keys()]) users += clear(this.users, k);
    for (const k of [...this.hosts.keys()]) hosts += clear(this.hosts, k);
    return { users, hosts };
  }

  /** Counters with failures, slots in flight or a lockout: locked first, then most failures. */
  list(max: number): { entries: ThrottleEntry[]; total: number } {
    const t = this.now();
    const c = this.cfg();
    const out: ThrottleEntry[] = [];
    const collect = (scope: Scope, map: Map<string, Budget>, limit: number): void => {
      for (const [key, b] of map) {
        this.expire(b, t);
        if (b.failures === 0 && b.inFlight === 0 && b.lockedUntil === 0) {
          this.dropIfIdle(map, key, b); // its window or lockout ended: nothing left to remember
          continue;
        }
        const locked = b.lockedUntil > t;
        out.push({
          scope, key, failures: b.failures, limit, inFlight: b.inFlight,
          windowStartedAt: b.failures > 0 ? b.windowStart : null,
          lockedUntil: locked ? b.lockedUntil : null,
          retryAfterSec: locked ? Math.ceil((b.lockedUntil - t) / 1000) : 0,
          refused: b.refused,
        });
      }
    };
    collect('user', this.users, c.maxFailures);
    collect('host', this.hosts, this.hostLimit(c));
    out.sort((a, b) => (b.lockedUntil ?? 0) - (a.lockedUntil ?? 0) || b.failures - a.failures
      || (a.scope === b.scope ? 0 : a.scope === 'user' ? -1 : 1) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { entries: out.slice(0, Math.max(0, max)), total: out.length };
  }

  snapshot(): ThrottleSnapshot {
    const t = this.now();
    let inFlight = 0;
    for (const b of this.users.values()) inFlight += b.inFlight;
    for (const b of this.hosts.values()) inFlight += b.inFlight;
    return {
      trackedUsers: this.users.size,
      trackedHosts: this.hosts.size,
      lockedUsers: locked(this.users, t).map(([user, retryAfterSec]) => ({ user, retryAfterSec })),
      lockedHosts: locked(this.hosts, t).map(([rhost, retryAfterSec]) => ({ rhost, retryAfterSec })),
      failures: this.failures,
      lockouts: this.lockouts,
      refused: this.refused,
      evictions: this.evictions,
      inFlight,
    };
  }

  private hostLimit(c: PamConfig): number {
    return c.hostMaxFailures > 0 ? c.hostMaxFailures : c.maxFailures;
  }

  /**
   * The synchronous decision: refused (a budget is locked), wait (a budget's room is all in
   * flight), or admitted with the slots taken. Nothing awaits between the check and the
   * reservation, so no two attempts can both see the last free slot.
   */
  private tryAdmit(user: string, rhost: string): TryResult {
    const c = this.cfg();
    const t = this.now();
    const wanted: Array<[Scope, string, Map<string, Budget>, number]> = [['user', user, this.users, c.maxFailures]];
    // No remote host (a local su, a console login) is not one shared source.
    if (rhost) wanted.push(['host', rhost, this.hosts, this.hostLimit(c)]);
    // Locks first: a locked budget refuses even when another one would only make us wait.
    for (const [scope, key, map, limit] of wanted) {
      const b = map.get(key);
      if (!b) continue;
      this.expire(b, t);
      // A limit lowered by a reload below the failures already counted locks now.
      if (b.lockedUntil === 0 && b.failures >= limit) this.lock(b, t);
      if (b.lockedUntil > t) return { allowed: false, refusal: this.refuse(scope, key, b, 'locked', t) };
    }
    for (const [scope, key, map, limit] of wanted) {
      const b = map.get(key);
      if (b && b.failures + b.inFlight >= limit) return { allowed: 'wait', scope, key, budget: b };
    }
    const parts: Part[] = wanted.map(([scope, key, map]) => {
      const b = map.get(key) ?? newBudget();
      b.inFlight++;
      this.touch(map, key, b);
      return [scope, key, b];
    });
    return { allowed: true, ticket: new Ticket(() => this.settleFailure(parts), () => this.settleRelease(parts)) };
  }

  private settleFailure(parts: Part[]): Lockout[] {
    const c = this.cfg();
    const t = this.now();
    const started: Lockout[] = [];
    this.failures++;
    for (const [scope, key, b] of parts) {
      b.inFlight--;
      this.expire(b, t);
      // Failures while locked (reset by an admin while this one was in flight does not count
      // here) do not extend the lockout.
      if (b.lockedUntil <= t) {
        if (b.failures === 0) b.windowStart = t;
        b.failures++;
        const limit = scope === 'user' ? c.maxFailures : this.hostLimit(c);
        if (b.failures >= limit) {
          const failures = b.failures;
          if (this.lock(b, t)) started.push({ scope, key, failures, limit, retryAfterSec: Math.ceil((b.lockedUntil - t) / 1000) });
        }
      }
      const map = scope === 'user' ? this.users : this.hosts;
      this.wake(b);
      // Re-insert so Map order is least recently failed first: eviction drops the stalest.
      if (map.get(key) === b) this.touch(map, key, b);
      this.dropIfIdle(map, key, b);
    }
    return started;
  }

  private settleRelease(parts: Part[]): void {
    for (const [scope, key, b] of parts) {
      b.inFlight--;
      this.wake(b);
      this.dropIfIdle(scope === 'user' ? this.users : this.hosts, key, b);
    }
  }

  /** Starts a lockout; false when throttle_lockout is 0 (no lockout: the count just restarts). */
  private lock(b: Budget, t: number): boolean {
    const ms = this.cfg().throttleLockoutSec * 1000;
    if (ms <= 0) {
      b.failures = 0;
      b.windowStart = 0;
      return false;
    }
    b.lockedUntil = t + ms;
    b.refused = 0; b.unreported = 0; b.reportedAt = 0;
    this.lockouts++;
    return true;
  }

  private refuse(scope: Scope, key: string, b: Budget, reason: Refusal['reason'], t: number): Refusal {
    this.refused++;
    b.refused++;
    b.unreported++;
    let report = 0;
    if (b.reportedAt === 0 || t - b.reportedAt >= REPORT_EVERY_MS) {
      report = b.unreported;
      b.unreported = 0;
      b.reportedAt = t;
    }
    const c = this.cfg();
    return {
      scope, key, reason, report, failures: b.failures,
      limit: scope === 'user' ? c.maxFailures : this.hostLimit(c),
      retryAfterSec: reason === 'locked' ? Math.ceil((b.lockedUntil - t) / 1000) : 1,
    };
  }

  /** Applies the passage of time: an ended lockout or an ended window forgets its failures. */
  private expire(b: Budget, t: number): void {
    if (b.lockedUntil !== 0) {
      if (b.lockedUntil > t) return;
      Object.assign(b, { failures: 0, windowStart: 0, lockedUntil: 0, refused: 0, unreported: 0, reportedAt: 0 });
      return;
    }
    if (b.failures > 0 && t - b.windowStart >= this.cfg().throttleWindowSec * 1000) {
      b.failures = 0;
      b.windowStart = 0;
    }
  }

  private waitOn(b: Budget, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const waiter = (): void => { clearTimeout(timer); resolve(true); };
      const timer = setTimeout(() => {
        if (b.waiters) {
          const i = b.waiters.indexOf(waiter);
          if (i >= 0) b.waiters.splice(i, 1);
          if (b.waiters.length === 0) b.waiters = null;
        }
        resolve(false);
      }, ms);
      (b.waiters ??= []).push(waiter);
    });
  }

  /** Every waiter re-checks; those that still find no room wait again. */
  private wake(b: Budget): void {
    const w = b.waiters;
    if (!w) return;
    b.waiters = null;
    for (const f of w) f();
  }

  /** An entry that remembers nothing is dropped: a right password leaves no trace behind. */
  private dropIfIdle(map: Map<string, Budget>, key: string, b: Budget): void {
    if (b.failures === 0 && b.inFlight === 0 && b.lockedUntil === 0 && b.waiters === null && map.get(key) === b) map.delete(key);
  }

  private touch(map: Map<string, Budget>, key: string, b: Budget): void {
    map.delete(key);
    map.set(key, b);
    if (map.size <= this.maxKeys) return;
    for (const [k, old] of map) {
      if (map.size <= this.maxKeys) break;
      if (old.inFlight > 0 || old.waiters !== null) continue;
      map.delete(k);
      this.evictions++;
    }
  }
}

function newBudget(): Budget {
  return { failures: 0, inFlight: 0, windowStart: 0, lockedUntil: 0, refused: 0, unreported: 0, reportedAt: 0, waiters: null };
}

function locked(map: Map<string, Budget>, t: number): [string, number][] {
  const out: [string, number][] = [];
  for (const [k, c] of map) {
    if (c.lockedUntil > t) out.push([k, Math.ceil((c.lockedUntil - t) / 1000)]);
    if (out.length >= SNAPSHOT_LIST_MAX) break;
  }
  return out;
}
