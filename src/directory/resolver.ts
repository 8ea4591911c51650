// The directory's core: the one cache state machine. Every lookup goes rules → cache →
// (single-flight, scheduled) upstream → cache, and this file decides what may be served
// (freshness decisions in cache/policy.ts, the entries built in entries.ts).
//
//   refused by the name/uid rules, or a local account / deny-list name / local uid
//                        → notfound ('rule'), nothing asked upstream (users/local.ts)
//   a persistent local user (src/localusers/, directory/stored.ts) → found ('local'), nothing
//                          asked upstream ([local] precedence = local, the default; with
//                          precedence = upstream only once upstream said "no such user");
//                          a uid in [local] min_uid..max_uid is the store's alone
//   fresh                → answer from cache, no upstream I/O
//   fresh-refresh-ahead  → answer from cache, one background refresh
//   fresh negative entry → notfound from cache
//   missing/expired      → one upstream request per key at a time; found → store; 404 → negative
//   upstream failing     → the cached entry if still within the grace period ('stale'), else
//                          "unavailable" — never "not found", which makes sshd reject a real user
import type { UserCache, NegativeKey } from '../cache/db.js';
import type { UserSource } from '../upstream/types.js';
import type { Config } from '../config/types.js';
import type { CachedUser } from '../types.js';
import type { Lookup } from '../cache/types.js';
import { classify, jitteredMs, negativeHolds, restartSpreadExpiry, servableOnUpstreamError, servableWithoutFetch } from '../cache/policy.js';
import { BACKOFF_BASE_MS, type HoldoffView, type Outcome as PacingOutcome, UpstreamBackoff } from '../upstream/backoff.js';
import { SingleFlight } from '../cache/singleflight.js';
import { RecentFile, WarmStart, type WarmResult } from '../cache/warm.js';
import { ResolverStats } from '../cache/stats.js';
import { nameProblem, localUidAllowed } from '../users/rules.js';
import { LocalAccounts } from '../users/local.js';
import { UpstreamError } from '../errors.js';
import { checkAnswer } from '../upstream/validate.js';
import { UpstreamScheduler, SchedulerBusy, type Lane, type SchedulerLimits } from '../upstream/scheduler.js';
import { ANSWER_DEADLINE_MS } from '../protocol/generated.js';
import { log, logLimited, LogOnce } from '../log.js';
import { StoredView, type StoredUsers } from './stored.js';
import { accountExpiry } from './expiry.js';

/** A name both the store and the upstream have: shown by `latchkeyctl status`, logged once. */
export interface StoredConflict { name: string; with: 'upstream'; winner: 'local' | 'upstream'; detail: string; at: number }

type Outcome = { kind: 'found'; user: CachedUser } | { kind: 'notfound' } | { kind: 'error'; reason: string };

/**
 * What an upstream answer just said about an account that can no longer log in: removed (the
 * directory had it cached and upstream now says "no such user"), disabled, or expired. Told at
 * every answer that says so (listeners must be idempotent): the session registry ends the
 * user's open sessions with it (src/sessions/).
 */
export interface AccountChange { name: string; uid: number; state: 'removed' | 'disabled' | 'expired'; detail: string }

/**
 * Consecutive timeouts, refused connections or 5xx replies before the upstream counts as down.
 * One slow or broken reply (a hostile record, a name the service chokes on) is that name's
 * problem only: entering the hold-off for everyone on a single timeout let one bad name deny
 * every uncached lookup.
 */
export const DOWN_AFTER_FAILURES = 3;

/** Never-seen names a peer uid may send upstream per second (burst twice that); root, who
 *  resolves every name sshd is handed by the network, gets ten times more. */
export const NEW_NAMES_PER_UID_PER_SEC = 20;
const ROOT_FACTOR = 10;
/** never-seen names one uid may have waiting for an upstream slot */
export const NEW_NAMES_PER_UID_QUEUED = 8;

/**
 * After DOWN_AFTER_FAILURES in a row, lookups stop asking the upstream and answer from what is
 * cached (stale or unavailable) at once: otherwise every sequential lookup (`ls -l` over many
 * owners) waits a full request timeout, longer than the NSS shim waits. The hold-offs grow
 * exponentially (upstream/backoff.ts); this is the longest the first one lasts (its base plus
 * jitter stays below it).
 */
export const UNREACHABLE_HOLDOFF_MS = 2 * BACKOFF_BASE_MS;
/** A failed background refresh is not retried for this long, however often the entry is hit. */
export const REFRESH_RETRY_MS = 5_000;


export class Resolver {
  readonly stats = new ResolverStats();
  readonly local: LocalAccounts;
  /** refusals an unprivileged user can repeat at will: one line per key */
  private readonly once = new LogOnce();
  private readonly flights = new SingleFlight<NegativeKey, Outcome>();
  /** when the upstream may be asked: hold-offs after failures or a Retry-After, the half-open probe */
  readonly backoff: UpstreamBackoff;
  readonly scheduler: UpstreamScheduler;
  /** when (monotonic clock) a background refresh of the key last failed */
  private readonly refreshFailedAt = new Map<NegativeKey, number>();
  /** the monotonic clock of durations (see the constructor) */
  private readonly mono: () => number;
  /** when this daemon started (the resolver is made at start): the restart spread's origin */
  private readonly startedAt: number;
  private readonly downMs: number;
  /** names answered since the last sweep; last_used is written in one batch, off the hot path */
  private readonly used = new Set<string>();
  /** the persistent local users, once the daemon has opened their store */
  private stored: StoredView | null = null;
  /** stored names the upstream also has (checkStoredName, or a lookup with precedence upstream) */
  readonly conflicts = new Map<string, StoredConflict>();
  /** told when an upstream answer says an account can no longer log in (see AccountChange) */
  accountChanged: ((c: AccountChange) => void) | null = null;
  /** [cache] recent_file: the recently used names, kept across reboots for the warm start */
  readonly recent: RecentFile;
  /** the refresh of recently used users after a start (the daemon starts and stops it) */
  readonly warmStart: WarmStart;
  /** names the recent file had and the cache did not (after a reboot): kept in the next list written */
  private carried: string[] = [];

  constructor(
    private readonly cache: UserCache,
    private readonly source: UserSource,
    private readonly cfg: () => Config,
    private readonly now: () => number = Date.now,
    local?: LocalAccounts,
    /** uniform in [0, 1): the jitter of entry lifetimes and hold-offs (tests pass a seeded one) */
    private readonly random: () => number = Math.random,
  ) {
    // Durations (hold-offs, refresh retries) on the monotonic clock; tests that inject `now` drive
    // both with it.
    this.mono = now === Date.now ? () => performance.now() : now;
    this.startedAt = now();
    // how long the daemon before this one had been gone (0 for a new cache file)
    let last = 0;
    try { last = this.cache.lastActivityAt?.() ?? 0; } catch { last = 0; }
    this.downMs = last > 0 ? Math.max(0, this.startedAt - last) : 0;
    this.backoff = new UpstreamBackoff({
      now: this.mono, wall: now, random,
      downAfter: DOWN_AFTER_FAILURES,
      maxMs: () => this.cfg().upstream.backoffMaxMs ?? 30_000,
      // a probe still out after its request deadline has failed, whatever became of its report
      probeLimitMs: () => (this.cfg().upstream.requestTimeoutMs ?? ANSWER_DEADLINE_MS) + 1000,
    });
    this.recent = new RecentFile(() => this.cfg().cache.recentFile);
    this.warmStart = new WarmStart({
      names: (limit) => this.warmNames(limit),
      refresh: (name) => this.warm(name),
      limit: () => this.cfg().cache.warmStart ?? 0,
      rate: () => this.cfg().cache.warmStartRate ?? 20,
      random,
    });
    const limits = (): SchedulerLimits => ({
      maxConcurrent: this.cfg().upstream.maxConcurrent ?? 16,
      newPerUidPerSec: NEW_NAMES_PER_UID_PER_SEC, newPerUidBurst: 2 * NEW_NAMES_PER_UID_PER_SEC,
      newPerUidQueued: NEW_NAMES_PER_UID_QUEUED,
    });
    // root gets its own, larger budget; every other uid the default one
    this.scheduler = new UpstreamScheduler(limits, now, ROOT_FACTOR);
    this.local = local ?? new LocalAccounts(() => {
      const u = this.cfg().users;
      return { passwd: u.localPasswdFile, group: u.localGroupFile, denyNames: u.denyNames };
    }, now);
  }

  /** Serves the persistent local users of `store` from now on (the daemon, once it opened it). */
  useStore(store: StoredUsers): void {
    this.stored = new StoredView(store);
  }

  /** Whether `uid` lies in the local users' own range ([local] min_uid .. max_uid; none when 0). */
  inStoredRange(uid: number): boolean {
    const l = this.cfg().local;
    return l.minUid > 0 && uid >= l.minUid && uid <= l.maxUid;
  }

  /**
   * The stored user of this name if it may be served: its uid still in the range (a reload may
   * have moved it) and none of the host's (the host's accounts win over everything, and a name
   * the host has never reaches here: byName checked it).
   */
  private storedByName(name: string): CachedUser | null {
    const s = this.stored?.get(name) ?? null;
    return s && this.storedServable(s) ? s : null;
  }

  private storedServable(s: CachedUser): boolean {
    if (!this.inStoredRange(s.uid)) {
      this.once.log(`stored-range:${s.username}:${s.uid}`, 'warn', 'local.user_out_of_range', { name: s.username, uid: s.uid, detail: `uid outside [local] min_uid .. max_uid (${this.cfg().local.minUid} .. ${this.cfg().local.maxUid}); not served until the range holds it again` });
      return false;
    }
    const owner = this.local.uidOwner(s.uid);
    if (owner !== null) {
      this.once.log(`stored-uid:${s.username}:${s.uid}`, 'warn', 'local.user_shadowed', { name: s.username, uid: s.uid, local_account: owner, detail: `the host account ${owner} has this uid; the host wins, the stored user is not served (latchkeyctl local remove it, or give the host account another uid)` });
      return false;
    }
    return true;
  }

  /** Stored users that may be served, ascending uid (enumeration). */
  private storedUsers(): CachedUser[] {
    if (!this.stored) return [];
    return this.stored.all().filter((u) => this.servedByUid(u));
  }

  /**
   * A stored user answered by uid or enumerated: its name passes the rules, and with precedence
   * = upstream the upstream does not have it too (the name is then the upstream user's: a name
   * has one owner, by name and by uid; a byName that hears "no such user" clears the conflict).
   */
  private servedByUid(u: CachedUser): boolean {
    if (this.local.nameReason(u.username) !== null || nameProblem(u.username, this.cfg().users) !== null) return false;
    if (this.cfg().local.precedence === 'upstream' && this.conflicts.get(u.username)?.winner === 'upstream') return false;
    return this.storedServable(u);
  }

  /**
   * The names and uids the shared-memory map must not answer for (fastpath/publisher.ts): the
   * host's accounts and every stored user, which nss.sock answers.
   */
  mapExclusions(): { names: string[]; uids: number[] } {
    const host = this.local.claimed();
    const stored = this.stored ? this.stored.all() : [];
    return { names: [...host.names, ...stored.map((u) => u.username)], uids: [...host.uids, ...stored.map((u) => u.uid)] };
  }

  /** Changes whenever mapExclusions() would: cheap, for the publisher's 500 ms check. */
  mapExclusionsSignature(): string {
    return `${this.local.signature()}|${this.stored ? this.stored.store.generation : -1}`;
  }

  /** Whether a name or uid key is the store's (the map publishes no negative for it). */
  storedClaims(key: NegativeKey): boolean {
    if (key.startsWith('uid:')) {
      const uid = Number(key.slice(4));
      return this.inStoredRange(uid) || this.stored?.getByUid(uid) != null;
    }
    return this.stored?.has(key.slice(5)) ?? false;
  }

  /**
   * Asks the upstream whether it has a stored user's name too ([local] precedence = local never
   * asks it on a lookup, so a conflict would go unseen): found → a conflict, logged once and in
   * `latchkeyctl status`; "no such user" clears it; an error leaves it as it was.
   */
  async checkStoredName(name: string): Promise<'yes' | 'no' | { unavailable: string }> {
    if (nameProblem(name, this.cfg().users) !== null || this.local.nameReason(name) !== null) return 'no';
    const o = await this.fetch(`name:${name}`, 'known', 0);
    if (o.kind === 'error') return { unavailable: o.reason };
    if (o.kind === 'notfound') { this.conflicts.delete(name); return 'no'; }
    if (this.stored?.has(name)) this.noteConflict(name, this.cfg().local.precedence);
    return 'yes';
  }

  noteConflict(name: string, winner: 'local' | 'upstream'): void {
    const detail = winner === 'local'
      ? 'the upstream has a user of this name too; the stored local user is served ([local] precedence = local), the upstream one never'
      : 'the upstream has a user of this name too; the upstream one is served ([local] precedence = upstream), the stored one only while the upstream says it has none';
    if (!this.conflicts.has(name)) this.conflicts.set(name, { name, with: 'upstream', winner, detail, at: this.now() });
    this.once.log(`stored-conflict:${name}:${winner}`, 'warn', 'local.conflict', { name, winner, detail, fix: 'rename or remove one of the two (latchkeyctl local remove NAME)' });
  }

  /** The name rule (users/rules.ts) and the host's own names, checked before any cache or upstream access. */
  nameAllowed(name: string): boolean {
    return nameProblem(name, this.cfg().users) === null && this.local.nameReason(name) === null;
  }

  /** Local uids we may ever hand out (users/rules.ts): never 0, outside [minUid, maxUid], reserved, or a local account's. */
  uidAllowed(uid: number): boolean {
    return localUidAllowed(uid, this.cfg().users) && !this.local.uidIsLocal(uid);
  }

  /**
   * `peerUid`: who asked (SO_PEERCRED), for the fairness of never-seen names; 0 for root and the
   * daemon itself. The name rule and the host's own names are checked here, once: a name that
   * passes is asked upstream as it is, and a reply must carry exactly it (upstream/validate.ts).
   */
  async byName(name: string, peerUid = 0): Promise<Lookup> {
    if (nameProblem(name, this.cfg().users) !== null) return this.refused();
    const local = this.local.nameReason(name);
    if (local !== null) {
      this.once.log(`name:${name}`, 'info', 'lookup.local_refused', { name, reason: local, detail: local === 'deny list' ? 'in [users] deny_names' : local === 'local group member' ? `a member of a group in ${this.cfg().users.localGroupFile}` : local === 'local group' ? `a group name in ${this.cfg().users.localGroupFile}` : `in ${this.cfg().users.localPasswdFile}` });
      return this.refused();
    }
    return this.withStore(name, () => this.lookup(`name:${name}`, this.usable(this.cache.getByName(name), true), peerUid));
  }

  /**
   * A name lookup with the store around it: precedence = local answers a stored name from the
   * store and never runs `upstream`; precedence = upstream runs it first and falls back to the
   * stored user only where the upstream says it has none (an unavailable upstream stays
   * unavailable: it might have the name), noting a name both have.
   */
  private async withStore(name: string, upstream: () => Promise<Lookup>): Promise<Lookup> {
    const stored = this.storedByName(name);
    if (stored && this.cfg().local.precedence === 'local') return this.servedFromStore(stored);
    const l = await upstream();
    if (!stored) return l;
    if (l.status === 'notfound') {
      this.conflicts.delete(name);
      return this.servedFromStore(stored);
    }
    if (l.status === 'found') this.noteConflict(name, 'upstream');
    return l;
  }

  private servedFromStore(u: CachedUser): Lookup {
    this.stats.lookups.local++;
    return { status: 'found', user: u, source: 'local' };
  }

  /** `uid` is the local uid; upstream is asked for uid - uidShift. */
  async byUid(uid: number, peerUid = 0): Promise<Lookup> {
    if (this.inStoredRange(uid)) {
      // The store's range is disjoint from the upstream's (config/load.ts): never asked upstream.
      if (this.local.uidIsLocal(uid)) return this.refused();
      const s = this.stored?.getByUid(uid) ?? null;
      if (s && this.servedByUid(s)) {
        return this.servedFromStore(s);
      }
      this.stats.lookups.local_notfound++;
      return { status: 'notfound', source: 'local' };
    }
    if (!localUidAllowed(uid, this.cfg().users)) return this.refused();
    const l = await this.byUpstreamUid(uid, peerUid);
    // The upstream user of a name the store answers for (precedence local) is not served by uid
    // either: a name has one owner, and `ls -l` must not show a stored user's name on files of
    // another uid.
    if (l.status === 'found' && this.shadowed(l.user)) {
      this.noteConflict(l.user.username, 'local');
      return { status: 'notfound', source: 'local' };
    }
    return l;
  }

  private async byUpstreamUid(uid: number, peerUid: number): Promise<Lookup> {
    if (this.local.uidIsLocal(uid)) {
      this.once.log(`uid:${uid}`, 'info', 'lookup.local_refused', { uid, reason: 'local account', detail: `uid in ${this.cfg().users.localPasswdFile}` });
      return this.refused();
    }
    return this.lookup(`uid:${uid}`, this.usable(this.cache.getByUid(uid)), peerUid);
  }


  /**
   * Asks upstream, whatever the cache holds (`latchkeyctl lookup --refresh`). A request already in
   * flight for the name is joined rather than a second one started, so the answer may come from a
   * request sent shortly before this call (at most the answer deadline earlier).
   */
  async refreshByName(name: string): Promise<Lookup> {
    if (!this.nameAllowed(name)) return this.refused();
    const key: NegativeKey = `name:${name}`;
    return this.withStore(name, async () => {
      const cached = this.usable(this.cache.getByName(name), true);
      // An explicit refresh asks even while the upstream is backed off (an admin checking
      // whether it is back), but not while the service itself asked to wait (Retry-After).
      if (this.backoff.retryAfterHeld()) return this.heldOff(cached);
      return this.answer(await this.fetch(key, cached ? 'known' : 'new', 0), cached);
    });
  }

  /**
   * Who the warm start refreshes: the cache's most recently used names (a restart: the file
   * survived), then those of the recent file the cache no longer has (a reboot), at most `limit`.
   */
  private warmNames(limit: number): string[] {
    const out = this.cache.recentNames(limit).filter((n) => this.nameAllowed(n));
    if (out.length >= limit) return out;
    const have = new Set(out);
    for (const n of this.recent.read(limit, (x) => this.nameAllowed(x))) {
      if (out.length >= limit) break;
      if (!have.has(n)) { have.add(n); out.push(n); this.carried.push(n); }
    }
    return out;
  }

  /**
   * One warm-start refresh: asks upstream (known lane, as root) only for a name the cache cannot
   * serve at all (no row: a reboot emptied the cache, or a row past its grace), not when the
   * name is the store's or the rules refuse it; nothing while the upstream is held off ('held':
   * the caller tries again later). A row still servable (fresh, or stale within its grace,
   * which an outage falls back to) is left to the lookups that want it: refetching those on
   * every host of a fleet restarted at once tripled the upstream's peak (`make fleet`), for
   * nothing an outage would need.
   */
  async warm(name: string): Promise<WarmResult> {
    if (!this.nameAllowed(name) || this.storedByName(name)) return 'skipped';
    const cached = this.usable(this.cache.getByName(name), true);
    if (cached && classify(cached.expiresAt, this.now(), this.cfg().cache, cached.fetchedAt) !== 'dead') return 'cached';
    const gate = this.backoff.gate();
    if (gate === 'held') return 'held';
    const o = await this.fetch(`name:${name}`, 'known', 0, gate === 'probe');
    // A name the upstream no longer has leaves the list for good.
    if (o.kind === 'notfound') this.carried = this.carried.filter((n) => n !== name);
    return o.kind === 'error' ? 'failed' : 'refreshed';
  }

  private refused(): Lookup {
    this.stats.lookups.rule++;
    return { status: 'notfound', source: 'rule' };
  }

  /** Whether the cache holds a row for this name, servable or not (the account check's "known before"). */
  isCached(name: string): boolean {
    return this.cache.getByName(name) !== null;
  }

  /** Whether a cached user still passes the rules (the shared-memory map publishes only those). */
  serves(u: CachedUser): boolean {
    return this.usable(u) !== null;
  }

  /** A cached entry counts only if it still passes the rules: the config may have been reloaded. */
  private usable(u: CachedUser | null, nameChecked = false): CachedUser | null {
    // A row found by name carries that name, which byName/refreshByName checked already: the
    // hot path (a cache hit) runs the name rule and the local-name check once, not twice.
    if (!u || !this.uidAllowed(u.uid) || !(nameChecked || this.nameAllowed(u.username))) return null;
    // A cached upstream user whose name the store serves first is shadowed: not enumerated, not
    // in the map (a name has one owner).
    return this.shadowed(u) ? null : u;
  }

  /** An upstream user whose name a stored user has, with precedence local: never served. */
  private shadowed(u: CachedUser): boolean {
    return !u.local && this.stored !== null && this.cfg().local.precedence === 'local' && this.storedByName(u.username) !== null;
  }

  private async lookup(key: NegativeKey, cached: CachedUser | null, peerUid: number): Promise<Lookup> {
    const now = this.now();
    if (cached) {
      const cfg = this.cfg().cache;
      // Right after a start, what expired while the daemon was down is refetched spread over a
      // window, not all at once (cache/policy.ts restartSpreadExpiry).
      const expiresAt = now < this.startedAt + cfg.ttlSec * 1000 ? restartSpreadExpiry(cached, this.startedAt, cfg, this.downMs) : cached.expiresAt;
      let state = classify(expiresAt, now, cfg, cached.fetchedAt);
      // A put-off entry is refetched at its spread instant, not ahead of it (a refresh_ahead
      // longer than the window would bring them all back at once).
      if (state === 'refresh-ahead' && expiresAt !== cached.expiresAt) state = 'fresh';
      if (servableWithoutFetch(state)) {
        this.stats.lookups.hit++;
        this.noteUse(cached.username);
        if (state === 'refresh-ahead') this.refreshInBackground(key);
        return { status: 'found', user: cached, source: 'cache' };
      }
    } else if (negativeHeld(this.cache.getNegativeEntry(key), now)) {
      this.stats.lookups.negative++;
      return { status: 'notfound', source: 'cache' };
    }
    const gate = this.backoff.gate();
    if (gate === 'held') return this.heldOff(cached);
    // Only a user we have is known. An expired negative entry is not: any local user can plant
    // them at the never-seen rate and, re-asking them between expiry and the sweep, would reach
    // the upstream through the unbudgeted known lane at any rate (red team 19).
    const lane: Lane = cached ? 'known' : 'new';
    return this.answer(await this.fetch(key, lane, peerUid, gate === 'probe'), cached);
  }

  /** Nothing is sent while the upstream is held off: the cache answers (stale within grace) or "unavailable". */
  private heldOff(cached: CachedUser | null): Lookup {
    this.stats.upstream.held_off++;
    return this.answer({ kind: 'error', reason: this.backoff.heldDetail() }, cached);
  }

  /** The hold-off in force (or its half-open end), null when the upstream is asked freely: for `status`. */
  holdoff(): HoldoffView | null {
    return this.backoff.view();
  }

  /** Maps an upstream outcome to an answer, falling back to the cached entry when upstream failed. */
  private answer(o: Outcome, cached: CachedUser | null): Lookup {
    if (o.kind === 'found') {
      this.stats.lookups.miss++;
      this.noteUse(o.user.username);
      return { status: 'found', user: o.user, source: 'upstream' };
    }
    if (o.kind === 'notfound') {
      this.stats.lookups.miss++;
      this.stats.lookups.notfound++;
      return { status: 'notfound', source: 'upstream' };
    }
    if (cached) {
      const state = classify(cached.expiresAt, this.now(), this.cfg().cache, cached.fetchedAt);
      if (servableOnUpstreamError(state)) {
        // Only refreshByName gets here with a still-fresh entry: that one is a plain cache answer.
        const fresh = servableWithoutFetch(state);
        this.stats.lookups[fresh ? 'hit' : 'stale']++;
        this.noteUse(cached.username);
        return { status: 'found', user: cached, source: fresh ? 'cache' : 'stale' };
      }
    }
    this.stats.lookups.unavail++;
    return { status: 'unavail', reason: o.reason };
  }

  /** Fire and forget: failures are logged by fetchAndStore and only delay the next try. */
  private refreshInBackground(key: NegativeKey): void {
    const failed = this.refreshFailedAt.get(key);
    if (failed !== undefined && this.mono() - failed < REFRESH_RETRY_MS) return;
    if (this.flights.has(key)) return;
    // Held off: the entry is still fresh, nothing to do. Half-open: this refresh may be the probe.
    const gate = this.backoff.gate();
    if (gate === 'held') return;
    this.stats.upstream.background_refresh++;
    void this.fetch(key, 'known', 0, gate === 'probe').then((o) => {
      if (o.kind === 'error') this.refreshFailedAt.set(key, this.mono());
      else this.refreshFailedAt.delete(key);
    });
  }

  /**
   * One upstream request per key at a time, scheduled by lane and peer uid; never rejects. The
   * caller gets an answer within the answer deadline (ANSWER_DEADLINE_MS, or request_timeout if
   * shorter) even when the request takes longer: it then sees "unavailable" while the request
   * goes on and its result is cached for the next lookup. Waiting for a slot or the deadline is
   * never counted against the upstream.
   */
  private async fetch(key: NegativeKey, lane: Lane, peerUid: number, probe = false): Promise<Outcome> {
    try {
      this.scheduler.admit(lane, peerUid);
    } catch (e) {
      if (e instanceof SchedulerBusy) return this.busy(key, peerUid, e, probe);
      throw e;
    }
    const deadline = Math.min(ANSWER_DEADLINE_MS, this.cfg().upstream.requestTimeoutMs ?? ANSWER_DEADLINE_MS);
    // A name negative is shown in the shared-memory map only when a user other than root asked
    // (fastpath/publisher.ts says why); for a joined flight, whoever started it decides.
    const publish = key.startsWith('uid:') || peerUid !== 0;
    const flight = this.flights.do(key, () => this.scheduler.run(lane, peerUid, deadline, () => this.fetchAndStore(key, publish))
      .catch((e: unknown) => {
        if (e instanceof SchedulerBusy) return this.busy(key, peerUid, e, probe);
        throw e;
      }));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<Outcome>((resolve) => {
      timer = setTimeout(() => {
        this.stats.upstream.late++;
        resolve({ kind: 'error', reason: `the user service has not answered within ${deadline} ms; the request goes on` });
      }, deadline);
    });
    try {
      return await Promise.race([flight, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private busy(key: NegativeKey, peerUid: number, e: SchedulerBusy, probe = false): Outcome {
    // A probe that never got a slot said nothing about the upstream: the next caller probes.
    if (probe) this.backoff.probeAbandoned();
    this.stats.upstream.busy++;
    logLimited(`upstream.busy:${peerUid}:${e.reason}`, 'warn', 'upstream.busy', { key, peer_uid: peerUid, reason: e.reason, detail: e.message });
    return { kind: 'error', reason: `busy: ${e.message}` };
  }

  private async fetchAndStore(key: NegativeKey, publish: boolean): Promise<Outcome> {
    const cfg = this.cfg();
    const t0 = performance.now();
    const byUid = key.startsWith('uid:');
    const value = key.slice(key.indexOf(':') + 1);
    let outcome: Outcome;
    let errorKind: string | undefined;
    try {
      const upstreamUid = Number(value) - cfg.users.uidShift;
      const r = byUid ? await this.source.fetchByUid(upstreamUid) : await this.source.fetchByName(value);
      const now = this.now();
      if (r.kind === 'found') {
        // "The reply is for what was asked, within the name and uid rules" has one owner,
        // upstream/validate.ts: the REST client ran it on the reply (validated); any other
        // source's record goes through the same function here.
        if (!r.validated) checkAnswer(r.user, byUid ? { upstreamUid } : { name: value }, cfg.users);
        const user: CachedUser = {
          ...r.user, uid: r.user.upstreamUid + cfg.users.uidShift,
          fetchedAt: now, expiresAt: now + jitteredMs(cfg.cache.ttlSec, cfg.cache.jitter, this.random),
        };
        this.checkNotLocal(user, byUid);
        if (!byUid) await this.checkUidOwner(user);
        else {
          // The by-uid endpoint is the authority on a uid: a different cached name for it is
          // replaced (a rename upstream), and said so.
          const prev = this.cache.getByUid(user.uid);
          if (prev && prev.username !== user.username) {
            log('warn', 'user.uid_reassigned', { uid: user.uid, from: prev.username, to: user.username, detail: 'the by-uid endpoint names another user for this uid (a rename upstream); the old name no longer resolves' });
          }
        }
        // Answer with the cache's own copy: the reply frame built for this answer then serves
        // the next hits too (answers/nss.ts keeps frames by object). The row it displaces by uid
        // (a rename, or the uid given to someone else upstream) is an account that lost its uid.
        const displaced = this.cache.getByUid(user.uid);
        const kept = this.cache.put(user);
        if (displaced && displaced.username !== kept.username) {
          this.tellAccountChanged({ name: displaced.username, uid: displaced.uid, state: 'removed', detail: `upstream now gives uid ${kept.uid} to ${kept.username}` });
        }
        this.stats.upstream.found++;
        outcome = { kind: 'found', user: kept };
        const exp = accountExpiry(kept, now);
        if (exp.expired) {
          this.tellAccountChanged({ name: kept.username, uid: kept.uid, state: exp.disabled ? 'disabled' : 'expired', detail: exp.disabled ? 'account disabled upstream' : `account expired upstream at ${new Date(exp.at).toISOString()}` });
        }
      } else {
        this.cache.putNegative(key, now, now + jitteredMs(cfg.cache.negativeTtlSec, cfg.cache.jitter, this.random), publish);
        // A user removed upstream must stop resolving: drop the positive entry for this key too.
        const gone = byUid ? this.cache.getByUid(Number(value)) : this.cache.getByName(value);
        if (gone) {
          this.cache.remove(gone.username);
          this.tellAccountChanged({ name: gone.username, uid: gone.uid, state: 'removed', detail: 'account no longer exists upstream' });
        }
        this.stats.upstream.notfound++;
        outcome = { kind: 'notfound' };
      }
      this.pace({ kind: 'success' });
    } catch (e) {
      this.stats.upstream.error++;
      errorKind = e instanceof UpstreamError ? e.kind : 'internal';
      const reason = e instanceof Error ? e.message : String(e);
      if (e instanceof UpstreamError && (e.http.status === 429 || e.http.status === 503)) this.stats.upstream.rate_limited++;
      this.pace(pacingOutcome(e, reason));
      outcome = { kind: 'error', reason };
    }
    const ms = performance.now() - t0;
    this.stats.upstreamLatency.record(ms);
    // "no such user" at debug: never-seen names are what any local user can send by the thousand
    // (rate-limited per uid, still up to 20 a second); a found user or an error is worth a line.
    log(outcome.kind === 'error' ? 'warn' : outcome.kind === 'found' ? 'info' : 'debug', 'resolver.fetch', {
      key, outcome: outcome.kind, ms: Math.round(ms * 100) / 100,
      ...(outcome.kind === 'found' ? { uid: outcome.user.uid } : {}),
      ...(outcome.kind === 'error' ? { error_kind: errorKind, error: outcome.reason } : {}),
    });
    return outcome;
  }

  /** A name answered: its last_used is written at the next sweep, in one batch. */
  private noteUse(name: string): void {
    this.used.add(name);
  }

  /** Tells the backoff how a request went; a hold-off it starts is logged once. */
  private pace(o: PacingOutcome): void {
    const h = this.backoff.report(o);
    if (h === null) return;
    log('warn', 'upstream.holdoff', {
      reason: h.reason, until: new Date(h.until).toISOString(), holdoff_ms: h.until - this.now(), failures: h.failures,
      detail: 'nothing is sent upstream until then: lookups answer from the cache (stale within stale_grace) or "unavailable"; then one request probes',
    });
  }

  /** A listener's failure is its own: logged, never the lookup's. */
  private tellAccountChanged(c: AccountChange): void {
    try {
      this.accountChanged?.(c);
    } catch (e) {
      log('error', 'resolver.account_change_failed', { name: c.name, state: c.state, error: e instanceof Error ? e.message : String(e) });
    }
  }

  /**
   * A fetched record must not be one of the host's own accounts. What was asked passed these
   * checks before the request (byName: the name, byUid: the uid); what the reply adds is checked
   * here: the uid of a record fetched by name, the name of a record fetched by uid.
   */
  private checkNotLocal(u: CachedUser, byUid: boolean): void {
    const local = byUid ? this.local.nameReason(u.username) : null;
    if (local !== null) {
      this.once.log(`collide-name:${u.username}`, 'warn', 'upstream.collision', { name: u.username, uid: u.uid, with: local, fix: 'the upstream record uses a name the host keeps for itself; it is never served' });
      throw new Error(`upstream user name ${u.username} is a ${local === 'deny list' ? 'denied name ([users] deny_names)' : local}; refused`);
    }
    const owner = byUid ? null : this.local.uidOwner(u.uid);
    if (owner !== null) {
      this.once.log(`collide-uid:${u.uid}`, 'warn', 'upstream.collision', { name: u.username, uid: u.uid, with: 'local account uid', local_account: owner, fix: 'check ega_uid_shift / min_uid: shifted upstream uids must not reach local uids' });
      throw new Error(`upstream user ${u.username} maps to local uid ${u.uid}, which the local account ${owner} has; refused`);
    }
  }

  /**
   * A record fetched by name whose uid a different cached name holds: either the holder was
   * renamed upstream, or two upstream names share one uid (they would evict each other on every
   * lookup and own each other's files). The by-uid endpoint is the authority on who owns a uid:
   * it is asked once, and the record is kept only when it names this user.
   */
  private async checkUidOwner(u: CachedUser): Promise<void> {
    const holder = this.cache.getByUid(u.uid);
    if (!holder || holder.username === u.username) return;
    const owner = await this.source.fetchByUid(u.upstreamUid);
    const ownerName = owner.kind === 'found' ? owner.user.username : null;
    if (ownerName === u.username) {
      log('warn', 'user.uid_reassigned', { uid: u.uid, from: holder.username, to: u.username, detail: 'the by-uid endpoint names the new user (a rename upstream); the old name no longer resolves' });
      return;
    }
    this.once.log(`collide-pair:${holder.username}:${u.username}`, 'warn', 'upstream.uid_collision', {
      uid: u.uid, cached: holder.username, refused: u.username, uid_owner_upstream: ownerName,
      fix: 'two upstream users share one uid; fix the user service, then `latchkeyctl invalidate` both names',
    });
    throw new Error(`upstream gives uid ${u.upstreamUid} to both ${holder.username} (cached) and ${u.username}; ${u.username} refused`);
  }

  /**
   * Cached users for enumeration, ascending uid from startUid: fresh or still within the stale
   * grace (what a lookup could serve). Dead entries are skipped without shortening the page, so a
   * caller that stops at a short page does not stop early.
   */
  list(startUid: number, limit: number): CachedUser[] {
    const cached = this.listCached(startUid, limit);
    const stored = this.storedUsers().filter((u) => u.uid >= startUid);
    if (stored.length === 0) return cached;
    // Merged by uid: a page ends at its last uid and the next starts after it, whichever source
    // each entry came from. A stored name the upstream also has appears once (precedence).
    const merged = this.cfg().local.precedence === 'local'
      ? [...stored, ...cached] // usable() already left out the cached names the store serves
      : [...stored.filter((u) => !cached.some((c) => c.username === u.username)), ...cached];
    merged.sort((a, b) => a.uid - b.uid);
    return merged.slice(0, limit);
  }

  private listCached(startUid: number, limit: number): CachedUser[] {
    const now = this.now();
    const cfg = this.cfg().cache;
    const out: CachedUser[] = [];
    let from = startUid;
    while (out.length < limit) {
      const batch = this.cache.listFrom(from, limit);
      for (const u of batch) {
        if (classify(u.expiresAt, now, cfg, u.fetchedAt) !== 'dead' && this.usable(u)) out.push(u);
        if (out.length === limit) break;
      }
      if (batch.length < limit) break;
      from = batch[batch.length - 1]!.uid + 1;
    }
    return out;
  }

  /**
   * Periodic housekeeping (the daemon calls it every 30 s): drops entries that can never be
   * served again (expired past the grace period, negatives past their TTL) and writes last_used.
   */
  sweep(): number {
    const now = this.now();
    const cfg = this.cfg().cache;
    this.saveRecent();
    const mono = this.mono();
    for (const [key, at] of this.refreshFailedAt) if (mono - at >= REFRESH_RETRY_MS) this.refreshFailedAt.delete(key);
    // 'dead' in policy terms: expired at least staleGraceSec ago, never servable again.
    return this.cache.purgeNegatives(now) + this.cache.removeExpiredBefore(now - cfg.staleGraceSec * 1000);
  }

  /**
   * Writes last_used of the names answered since the last call, and the recent file from it: by
   * the sweep, and once more at a clean stop (a reboot stops the daemon first), so the list a
   * warm start goes by is never more than the last sweep behind.
   */
  saveRecent(): void {
    const cfg = this.cfg().cache;
    if (this.used.size > 0) {
      const names = [...this.used];
      this.used.clear();
      this.cache.touchAll(names, this.now());
    }
    // The list a warm start after a reboot goes by: as long as the warm start would take. The
    // cache of a rebooted host is still filling (or the upstream is down and it stays empty):
    // the names carried over from the file stay behind the cache's own until used names push
    // them out, so the list never shrinks to what the cache holds so far.
    const keep = cfg.warmStart ?? 0;
    if (keep > 0) {
      const fromCache = this.cache.recentNames(keep);
      const have = new Set(fromCache);
      const kept = this.carried.filter((n) => !have.has(n)).slice(0, keep - fromCache.length);
      this.carried = kept;
      this.recent.write([...fromCache, ...kept]);
    }
  }
}

/** Whether a negative entry still answers "no such user" (cache/policy.ts negativeHolds). */
function negativeHeld(n: { fetchedAt: number; expiresAt: number } | null, now: number): boolean {
  return n !== null && negativeHolds(n.expiresAt, now, n.fetchedAt);
}

/**
 * What a failed request says about pacing: timeouts, refused connections and 5xx replies (an
 * overloaded service answering 500/502/504 must be backed off too) are failures, a 429 or 503
 * with Retry-After is the service's own hold-off, a 429 without it a failure; any other answer
 * (a 401, a hostile record, a full cache disk) shows the service is there.
 */
function pacingOutcome(e: unknown, detail: string): PacingOutcome {
  if (!(e instanceof UpstreamError)) return { kind: 'answered' };
  if (e.kind === 'timeout' || e.kind === 'connect') return { kind: 'failure', detail };
  if (e.kind !== 'http') return { kind: 'answered' };
  const status = e.http.status ?? 0;
  if ((status === 429 || status === 503) && e.http.retryAfterMs !== undefined) {
    return { kind: 'retry_after', status, ms: e.http.retryAfterMs, detail };
  }
  if (status === 429 || status >= 500) return { kind: 'failure', detail };
  return { kind: 'answered' };
}
