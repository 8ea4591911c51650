// Login throttling: after `maxFailures` failed logins within `throttleWindowSec`, counted per
// user and per remote host separately, further attempts are refused for `throttleLockoutSec`.
// Per host stops one source guessing many users; per user stops many sources guessing one.
// Memory is bounded: an attacker cycling through names or addresses evicts the oldest entries
// instead of growing the daemon.
import type { PamConfig } from '../config/types.js';

interface Counter {
  failures: number;
  windowStart: number;
  /** epoch ms; 0 = not locked */
  lockedUntil: number;
}

export interface ThrottleDecision { allowed: boolean; retryAfterSec: number }

export interface ThrottleSnapshot {
  trackedUsers: number;
  trackedHosts: number;
  lockedUsers: { user: string; retryAfterSec: number }[];
  lockedHosts: { rhost: string; retryAfterSec: number }[];
  failures: number;
  lockouts: number;
  refused: number;
  evictions: number;
}

/**
 * Review fix: user and rhost arrive from the PAM client unchecked (the user is whatever name a
 * remote ssh client sent, up to the 8 KiB frame), and the maps hold up to maxKeys of each: with
 * full-length keys that is gigabytes. No valid name is near this long (32 bytes) nor is a host
 * (NI_MAXHOST 1025 is the C buffer, real ones are far shorter), so longer keys are cut; names
 * sharing a 256-character prefix share a counter, which only makes an attacker lock himself out.
 */
const MAX_KEY_LENGTH = 256;
const keyOf = (k: string): string => (k.length > MAX_KEY_LENGTH ? k.slice(0, MAX_KEY_LENGTH) : k);

/** At most this many locked entries are listed in a snapshot; the counts stay exact. */
const SNAPSHOT_LIST_MAX = 100;

export class Throttle {
  private readonly users = new Map<string, Counter>();
  private readonly hosts = new Map<string, Counter>();
  private failures = 0;
  private lockouts = 0;
  private refused = 0;
  private evictions = 0;

  constructor(
    private readonly cfg: () => PamConfig,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 100_000,
  ) {}

  check(user: string, rhost: string): ThrottleDecision {
    user = keyOf(user); rhost = keyOf(rhost);
    const t = this.now();
    const wait = Math.max(this.lockedFor(this.users, user, t), rhost ? this.lockedFor(this.hosts, rhost, t) : 0);
    if (wait > 0) {
      this.refused++;
      return { allowed: false, retryAfterSec: Math.ceil(wait / 1000) };
    }
    return { allowed: true, retryAfterSec: 0 };
  }

  /** The lockout state of a user without counting a refusal (`latchkeyctl auth-test`). */
  peek(user: string): ThrottleDecision {
    user = keyOf(user);
    const wait = this.lockedFor(this.users, user, this.now());
    return { allowed: wait === 0, retryAfterSec: Math.ceil(wait / 1000) };
  }

  recordFailure(user: string, rhost: string): void {
    user = keyOf(user); rhost = keyOf(rhost);
    this.failures++;
    const t = this.now();
    this.bump(this.users, user, t);
    // No remote host (a local su, a console login) is not one shared source.
    if (rhost) this.bump(this.hosts, rhost, t);
  }

  /** A right password clears the user's count; the host's stays, or a host could reset its own
   *  counter by logging into one account it owns between guesses at others. */
  recordSuccess(user: string): void {
    this.users.delete(keyOf(user));
  }

  snapshot(): ThrottleSnapshot {
    const t = this.now();
    return {
      trackedUsers: this.users.size,
      trackedHosts: this.hosts.size,
      lockedUsers: locked(this.users, t).map(([user, retryAfterSec]) => ({ user, retryAfterSec })),
      lockedHosts: locked(this.hosts, t).map(([rhost, retryAfterSec]) => ({ rhost, retryAfterSec })),
      failures: this.failures,
      lockouts: this.lockouts,
      refused: this.refused,
      evictions: this.evictions,
    };
  }

  /** milliseconds `key` is still locked out, 0 when free */
  private lockedFor(map: Map<string, Counter>, key: string, t: number): number {
    const c = map.get(key);
    if (!c) return 0;
    if (c.lockedUntil > t) return c.lockedUntil - t;
    if (c.lockedUntil !== 0 || t - c.windowStart >= this.cfg().throttleWindowSec * 1000) map.delete(key);
    return 0;
  }

  private bump(map: Map<string, Counter>, key: string, t: number): void {
    const { maxFailures, throttleWindowSec, throttleLockoutSec } = this.cfg();
    if (maxFailures <= 0) return; // throttling disabled
    let c = map.get(key);
    if (c && c.lockedUntil > t) return; // already locked; failures while locked do not extend it
    if (!c || c.lockedUntil !== 0 || t - c.windowStart >= throttleWindowSec * 1000) {
      c = { failures: 0, windowStart: t, lockedUntil: 0 };
    }
    c.failures++;
    if (c.failures >= maxFailures) {
      c.lockedUntil = t + throttleLockoutSec * 1000;
      this.lockouts++;
    }
    // Re-insert so Map order is least recently failed first: eviction drops the stalest.
    map.delete(key);
    map.set(key, c);
    while (map.size > this.maxKeys) {
      map.delete(map.keys().next().value as string);
      this.evictions++;
    }
  }
}

function locked(map: Map<string, Counter>, t: number): [string, number][] {
  const out: [string, number][] = [];
  for (const [k, c] of map) {
    if (c.lockedUntil > t) out.push([k, Math.ceil((c.lockedUntil - t) / 1000)]);
    if (out.length >= SNAPSHOT_LIST_MAX) break;
  }
  return out;
}
