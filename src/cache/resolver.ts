// The one cache state machine: every lookup goes cache → (single-flight) upstream → cache, and
// every rule about what may be served lives here (freshness in policy.ts).
//
//   fresh            → answer from cache, no upstream I/O
//   refresh-ahead    → answer from cache, one background refresh
//   missing/expired  → one upstream request per key at a time; found → store; 404 → negative
//   upstream failing → the stale entry within the grace period, else "unavailable" —
//                      never "not found", which would make sshd reject a real user
import { join } from 'node:path';
import type { UserCache, NegativeKey } from './db.js';
import type { UserSource } from '../upstream/types.js';
import type { Config } from '../config/types.js';
import type { CachedUser, GroupEntry, PasswdEntry } from '../types.js';
import type { Lookup } from './types.js';
import { classify, negativeHolds } from './policy.js';
import { SingleFlight } from './singleflight.js';
import { ResolverStats } from './stats.js';
import { RESERVED_IDS } from '../config/load.js';
import { log } from '../log.js';

type Outcome = { kind: 'found'; user: CachedUser } | { kind: 'notfound' } | { kind: 'error'; reason: string };

const FORBIDDEN = /[:/\n\r\0]/;

export class Resolver {
  readonly stats = new ResolverStats();
  private readonly flights = new SingleFlight<string, Outcome>();

  constructor(
    private readonly cache: UserCache,
    private readonly source: UserSource,
    private readonly cfg: () => Config,
    private readonly now: () => number = Date.now,
  ) {}

  /** The name rule, checked before any cache or upstream access. */
  nameAllowed(name: string): boolean {
    return name.length > 0 && Buffer.byteLength(name) <= 32 && !FORBIDDEN.test(name) && this.cfg().users.nameRegex.test(name);
  }

  /** Local uids we may ever hand out: never 0, never below min_uid, never a reserved id. */
  uidAllowed(uid: number): boolean {
    const u = this.cfg().users;
    return Number.isInteger(uid) && uid > 0 && uid >= u.minUid && uid <= u.maxUid && uid - u.uidShift >= 0
      && !(RESERVED_IDS as readonly number[]).includes(uid);
  }

  async byName(name: string): Promise<Lookup> {
    if (!this.nameAllowed(name)) { this.stats.lookups.rule++; return { status: 'notfound', source: 'rule' }; }
    return this.lookup(`name:${name}`, this.cache.getByName(name));
  }

  async byUid(uid: number): Promise<Lookup> {
    if (!this.uidAllowed(uid)) { this.stats.lookups.rule++; return { status: 'notfound', source: 'rule' }; }
    return this.lookup(`uid:${uid}`, this.cache.getByUid(uid));
  }

  /** Fetches from upstream now, whatever the cache holds (PAM account phase, `lookup --refresh`). */
  async refreshByName(name: string): Promise<Lookup> {
    if (!this.nameAllowed(name)) { this.stats.lookups.rule++; return { status: 'notfound', source: 'rule' }; }
    const key: NegativeKey = `name:${name}`;
    return this.answer(await this.fetch(key), this.cache.getByName(name));
  }

  private async lookup(key: NegativeKey, cached: CachedUser | null): Promise<Lookup> {
    const now = this.now();
    if (cached) {
      const state = classify(cached.expiresAt, now, this.cfg().cache);
      if (state === 'fresh' || state === 'refresh-ahead') {
        this.stats.lookups.hit++;
        if (state === 'refresh-ahead') this.refreshInBackground(key);
        return { status: 'found', user: cached, source: 'cache' };
      }
    } else if (negativeHolds(this.cache.getNegative(key), now)) {
      this.stats.lookups.negative++;
      return { status: 'notfound', source: 'cache' };
    }
    this.stats.lookups.miss++;
    return this.answer(await this.fetch(key), cached);
  }

  /** Maps an upstream outcome to an answer, falling back to a stale entry within the grace period. */
  private answer(o: Outcome, stale: CachedUser | null): Lookup {
    if (o.kind === 'found') return { status: 'found', user: o.user, source: 'upstream' };
    if (o.kind === 'notfound') { this.stats.lookups.notfound++; return { status: 'notfound', source: 'upstream' }; }
    if (stale && classify(stale.expiresAt, this.now(), this.cfg().cache) === 'stale-servable') {
      this.stats.lookups.stale++;
      return { status: 'found', user: stale, source: 'stale' };
    }
    this.stats.lookups.unavail++;
    return { status: 'unavail', reason: o.reason };
  }

  private refreshInBackground(key: NegativeKey): void {
    this.stats.upstream.background_refresh++;
    void this.fetch(key);
  }

  /** One upstream request per key at a time; never throws. */
  private fetch(key: NegativeKey): Promise<Outcome> {
    return this.flights.do(key, () => this.fetchAndStore(key));
  }

  private async fetchAndStore(key: NegativeKey): Promise<Outcome> {
    const cfg = this.cfg();
    const started = this.now();
    const t0 = process.hrtime.bigint();
    const byUid = key.startsWith('uid:');
    const value = key.slice(key.indexOf(':') + 1);
    let outcome: Outcome;
    try {
      const r = byUid
        ? await this.source.fetchByUid(Number(value) - cfg.users.uidShift)
        : await this.source.fetchByName(value);
      const now = this.now();
      if (r.kind === 'found') {
        const user: CachedUser = {
          ...r.user, uid: r.user.upstreamUid + cfg.users.uidShift,
          fetchedAt: now, expiresAt: now + cfg.cache.ttlSec * 1000,
        };
        if (!this.uidAllowed(user.uid) || !this.nameAllowed(user.username)) {
          throw new Error(`upstream user ${user.username} uid ${user.uid} breaks the uid/name rules`);
        }
        this.cache.put(user);
        this.stats.upstream.found++;
        outcome = { kind: 'found', user };
      } else {
        this.cache.putNegative(key, now, now + cfg.cache.negativeTtlSec * 1000);
        // A user removed upstream must stop resolving: drop the positive entry too.
        const gone = byUid ? this.cache.getByUid(Number(value)) : this.cache.getByName(value);
        if (gone) this.cache.remove(gone.username);
        this.stats.upstream.notfound++;
        outcome = { kind: 'notfound' };
      }
    } catch (e) {
      this.stats.upstream.error++;
      outcome = { kind: 'error', reason: e instanceof Error ? e.message : String(e) };
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    this.stats.upstreamLatency.record(ms);
    log(outcome.kind === 'error' ? 'warn' : 'info', 'resolver.fetch', {
      key, outcome: outcome.kind, ms: +ms.toFixed(2), since_start_ms: this.now() - started,
      ...(outcome.kind === 'error' ? { error: outcome.reason } : {}),
    });
    return outcome;
  }

  /** Cached users for enumeration: fresh or still within the stale grace period. */
  list(startUid: number, limit: number): CachedUser[] {
    const now = this.now();
    const cfg = this.cfg().cache;
    return this.cache.listFrom(startUid, limit).filter((u) => classify(u.expiresAt, now, cfg) !== 'dead');
  }

  /** Drops entries that can never be served again (expired past the grace period). */
  sweep(): number {
    const now = this.now();
    const cfg = this.cfg().cache;
    let n = this.cache.purgeNegatives(now);
    for (const u of this.cache.all()) {
      if (classify(u.expiresAt, now, cfg) === 'dead' && this.cache.remove(u.username)) n++;
    }
    return n;
  }

  /** Public passwd fields. Home and shell come from config, never from upstream. */
  toPasswd(u: CachedUser): PasswdEntry {
    const c = this.cfg();
    return { name: u.username, uid: u.uid, gid: c.users.gid, gecos: u.gecos, dir: join(c.homes.base, u.username), shell: c.users.shell };
  }

  /** The one group: every cached user is a member. */
  group(): GroupEntry {
    const u = this.cfg().users;
    return { name: u.groupName, gid: u.gid, members: this.cache.names() };
  }
}
