// The cleanup of temporary accounts as the daemon runs it: every [cleanup] interval (0 = never)
// and on `latchkeyctl purge --expired [--dry-run]`. It gathers the facts (cache, local users'
// store, open sessions), asks plan.ts what to do, and does it:
// - ends the open sessions of accounts that may no longer log in (SessionRegistry.revoke, the
//   process ended through latchkey-rootd), after asking the account phase's own question once
//   more (directory/account.ts): an expiry extended upstream since the entry was cached keeps
//   the session;
// - removes the expired accounts past the grace from the cache and the store, each removal
//   re-checked in its own statement, so an expiry extended meanwhile keeps the account;
// - logs one cleanup.removed line per account with its home (kept: a home is never deleted,
//   DESIGN.md) and one cleanup.run summary when anything was done.
// Runs never overlap: a purge during a periodic run waits for it.
import { existsSync } from 'node:fs';
import type { Config } from '../config/types.js';
import type { UserCache } from '../cache/db.js';
import type { Resolver } from '../directory/resolver.js';
import { accountState } from '../directory/account.js';
import type { LocalStore } from '../localusers/store.js';
import { homePath } from '../homes/home.js';
import { log } from '../log.js';
import { planCleanup, type EndReason, type ExpiredAccount, type SessionOwner } from './plan.js';

/** What the cleanup needs of the session registry (src/sessions/registry.ts). */
export interface SessionEnder {
  list(): SessionOwner[];
  /** ends every open session of the user (record and process); how many were ended */
  revoke(user: string, reason: EndReason, detail: string, uid?: number): Promise<number>;
}

/** What the cleanup needs of the persistent local users (src/localusers/service.ts). */
export interface StoredUsersView {
  store: LocalStore;
  /** why this host may not change the store (a secondary), or null */
  readOnly(): string | null;
}

/** A removed (or, in a dry run, removable) account and its home, which is never deleted. */
export interface PurgedAccount extends ExpiredAccount {
  home: string;
  homeExists: boolean;
}

export interface CleanupReport {
  dryRun: boolean;
  /** epoch ms the run decided at */
  now: number;
  graceSec: number;
  cache: PurgedAccount[];
  stored: PurgedAccount[];
  /** sessions ended (dry run: that would be ended) */
  sessionsEnded: number;
  /** the accounts those sessions belonged to */
  sessionUsers: string[];
  /** why local users were not removed here (a secondary), or null */
  storedSkipped: string | null;
}

export interface CleanupDeps {
  config: () => Config;
  cache: UserCache;
  resolver: Resolver;
  sessions: SessionEnder;
  /** null: no local users' store is open */
  local: StoredUsersView | null;
  now?: () => number;
}

const iso = (ms: number): string => new Date(ms).toISOString();
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export class Cleanup {
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private scheduledSec = 0;
  /** the run in progress (or the last one): the next waits for it */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly d: CleanupDeps) {
    this.now = d.now ?? Date.now;
  }

  /** One run now, after any run in progress. */
  run(opts: { dryRun: boolean }): Promise<CleanupReport> {
    const next = this.tail.then(() => this.runOnce(opts.dryRun));
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** (Re)starts the periodic run at [cleanup] interval; at start and after every reload. */
  schedule(): void {
    const sec = this.d.config().cleanup.intervalSec;
    if (this.timer !== null && sec === this.scheduledSec) return;
    this.stop();
    this.scheduledSec = sec;
    if (sec === 0) return;
    // An exception in a timer callback would end the daemon: a failed run costs only that run.
    this.timer = setInterval(() => {
      this.run({ dryRun: false }).catch((e: unknown) => log('error', 'cleanup.failed', { error: message(e), detail: 'the next run is at the next [cleanup] interval' }));
    }, sec * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private async runOnce(dryRun: boolean): Promise<CleanupReport> {
    const t0 = performance.now();
    const cfg = this.d.config();
    const now = this.now();
    const graceMs = cfg.cleanup.expiredGraceSec * 1000;
    const cutoff = now - graceMs;
    const local = this.d.local;
    const storedSkipped = local === null ? null : local.readOnly();
    const plan = planCleanup({
      now, graceMs,
      cached: this.d.cache.accountsEndedBy(now),
      stored: local?.store.list() ?? [],
      sessions: this.d.sessions.list(),
      mayRemoveStored: local !== null && storedSkipped === null,
    });

    let sessionsEnded = 0;
    const sessionUsers: string[] = [];
    for (const s of plan.sessions) {
      if (dryRun) {
        sessionsEnded += s.open;
        sessionUsers.push(s.user);
        continue;
      }
      const ended = await this.endSessions(s.user, s.uid, s.reason, s.detail, s.open);
      sessionsEnded += ended;
      if (ended > 0) sessionUsers.push(s.user);
    }

    const withHome = (a: ExpiredAccount): PurgedAccount => {
      const home = homePath(cfg.homes, a.name);
      return { ...a, home, homeExists: existsSync(home) };
    };
    const removed = (source: 'cache' | 'local', a: PurgedAccount): void => {
      log('info', 'cleanup.removed', {
        user: a.name, uid: a.uid, source, expired_at: iso(a.expiredAt), home: a.home, home_exists: a.homeExists,
        ...(a.homeExists ? { detail: 'the home is kept (latchkey never deletes a home): archive or remove it by hand' } : {}),
      });
    };
    const cache = plan.cache.filter((a) => dryRun || this.d.cache.removeIfAccountExpired(a.name, cutoff)).map(withHome);
    const stored = local === null ? [] : plan.stored.filter((a) => dryRun || local.store.removeIfExpired(a.name, cutoff)).map(withHome);
    if (!dryRun) {
      for (const a of cache) removed('cache', a);
      for (const a of stored) removed('local', a);
      if (cache.length + stored.length + sessionsEnded > 0) {
        log('info', 'cleanup.run', {
          cache_users: cache.length, local_users: stored.length, sessions_ended: sessionsEnded,
          homes_kept: [...cache, ...stored].filter((a) => a.homeExists).length,
          expired_grace_s: cfg.cleanup.expiredGraceSec, ms: Math.round((performance.now() - t0) * 100) / 100,
        });
      }
    }
    return { dryRun, now, graceSec: cfg.cleanup.expiredGraceSec, cache, stored, sessionsEnded, sessionUsers, storedSkipped };
  }

  /**
   * Ends one account's sessions unless the account phase now says it may log in (asking may
   * refetch an entry past its TTL: an expiry extended upstream shows here). An upstream that
   * cannot answer leaves the last known state, which said it may not. Returns how many ended.
   */
  private async endSessions(user: string, uid: number, reason: EndReason, detail: string, open: number): Promise<number> {
    try {
      const now = await accountState(this.d.resolver, user, this.now);
      if (now.state === 'active' && now.user.uid === uid) {
        log('info', 'cleanup.sessions_kept', { user, uid, detail: 'the account may log in again (its expiry was extended or it was enabled)' });
        return 0;
      }
      const n = await this.d.sessions.revoke(user, reason, detail, uid);
      // A refetch above may have ended them already (the resolver tells the registry of an
      // expired account): count what is no longer open, not only what this call ended.
      const left = this.d.sessions.list().filter((s) => s.user === user && s.uid === uid).length;
      return Math.max(n, open - left);
    } catch (e) {
      log('error', 'cleanup.end_sessions_failed', { user, uid, reason, error: message(e), detail: 'end them with latchkeyctl sessions kill --user NAME' });
      return 0;
    }
  }
}
