// The RAM-backed SQLite cache (better-sqlite3). One file on tmpfs: it survives a daemon restart
// and is gone at reboot. Every statement is prepared once here, so the lookup hot path compiles
// no SQL. A file that is corrupt or from another schema is moved aside and recreated.
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, renameSync, rmSync, statSync, chmodSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import type { CachedUser } from '../types.js';
import { log } from '../log.js';
import { CacheError } from '../errors.js';

/** Bump when the tables change; an older file is recreated rather than migrated (it is a cache). */
export const SCHEMA_VERSION = 4;

const SCHEMA = `
CREATE TABLE users (
  name TEXT PRIMARY KEY,
  uid INTEGER NOT NULL UNIQUE,
  upstream_uid INTEGER NOT NULL,
  gecos TEXT NOT NULL,
  password_hash TEXT,
  ssh_keys TEXT NOT NULL,
  fetched_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  account_expires_at INTEGER,
  last_used INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE negatives (
  key TEXT PRIMARY KEY,
  fetched_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
`;

interface UserRow {
  name: string; uid: number; upstream_uid: number; gecos: string; password_hash: string | null;
  ssh_keys: string; fetched_at: number; expires_at: number; account_expires_at: number | null;
}

function fromRow(r: UserRow): CachedUser {
  return decoded(r.name, r.uid, r.upstream_uid, r.gecos, r.password_hash, JSON.parse(r.ssh_keys) as string[],
    r.fetched_at, r.expires_at, r.account_expires_at);
}

/**
 * Every user this class hands out is built here, one literal with one key order, so V8 gives
 * them all one hidden class. A record built elsewhere (the resolver spreads the upstream object
 * and adds fields) got a hidden class of its own per object, ~300 bytes each: 6 MiB at a full
 * memo (measured with a heap snapshot at 100,000 cached users).
 */
function decoded(
  username: string, uid: number, upstreamUid: number, gecos: string, passwordHash: string | null, sshPublicKeys: string[],
  fetchedAt: number, expiresAt: number, accountExpiresAt: number | null,
): CachedUser {
  return { username, uid, upstreamUid, gecos, passwordHash, sshPublicKeys, fetchedAt, expiresAt, accountExpiresAt };
}

/** The memo's own copy of a stored user; `slice` sizes the keys array exactly (a pushed-to one keeps spare slots). */
function memoCopy(u: CachedUser): CachedUser {
  return decoded(u.username, u.uid, u.upstreamUid, u.gecos, u.passwordHash, u.sshPublicKeys.slice(),
    u.fetchedAt, u.expiresAt, u.accountExpiresAt ?? null);
}

export type NegativeKey = `name:${string}` | `uid:${number}`;
export interface NegativeEntry { key: string; kind: 'name' | 'uid'; fetchedAt: number; expiresAt: number }
/**
 * Told of every change this class makes, after it is made: the shared-memory map (src/fastpath)
 * mirrors the cache through it, so a change reaches the map from the one place that writes.
 */
export interface CacheListener {
  /** a user row stored; rows that held its name or uid are gone */
  stored(u: CachedUser): void;
  /** a user row removed (by name) */
  removed(name: string): void;
  /** entries marked expired */
  invalidated(target: { name: string } | { uid: number } | 'all'): void;
  /** everything dropped (or only the negative entries) */
  flushed(negativeOnly: boolean): void;
  /** a negative entry stored; `publish` says whether it may be shown to every local user */
  negativeStored(key: NegativeKey, expiresAt: number, publish: boolean): void;
  /** everything known of this name or uid dropped, row and negative entry (`latchkeyctl flush NAME`) */
  keyFlushed(key: NegativeKey): void;
}

/** fresh: servable; stale: expired but within the grace period; expired: past it. */
export interface CacheCounts { fresh: number; stale: number; expired: number; negative: number; total: number }

/** Opens the file, or explains why it is unusable (the caller then recreates it). */
function openChecked(path: string): Database.Database {
  const db = new Database(path);
  try {
    const version = db.pragma('user_version', { simple: true }) as number;
    const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type='table'").get() as { n: number }).n;
    if (tables === 0 && version === 0) {
      db.exec(SCHEMA);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    } else if (version !== SCHEMA_VERSION) {
      throw new Error(`schema version ${version}, expected ${SCHEMA_VERSION}`);
    } else {
      const check = db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw new Error(`quick_check: ${String(check)}`);
    }
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

/** Entries kept decoded in memory in front of SQLite: the hot set of a busy inbox. */
export const MEMO_MAX = 20_000;

export class UserCache {
  private readonly s;
  // A read-through memo of decoded rows: a hit then costs a Map lookup instead of a SQLite step
  // plus JSON.parse of the keys. Only this class writes the table, so every write below keeps
  // the memo exact.
  private readonly memoByName = new Map<string, CachedUser>();
  private readonly memoByUid = new Map<number, CachedUser>();

  private constructor(readonly db: Database.Database, readonly path: string) {
    if (path !== ':memory:') {
      db.pragma('journal_mode = WAL');
    }
    // RAM-backed by design: durability across power loss is not a goal, speed is.
    db.pragma('synchronous = OFF');
    // The file already lives in RAM (tmpfs): a large page cache would only hold it twice.
    db.pragma('cache_size = -2000');
    db.pragma('temp_store = MEMORY');
    this.s = {
      byName: db.prepare<[string], UserRow>('SELECT * FROM users WHERE name = ?'),
      byUid: db.prepare<[number], UserRow>('SELECT * FROM users WHERE uid = ?'),
      deleteConflicts: db.prepare<[string, number]>('DELETE FROM users WHERE name = ? OR uid = ?'),
      insert: db.prepare('INSERT INTO users (name, uid, upstream_uid, gecos, password_hash, ssh_keys, fetched_at, expires_at, account_expires_at, last_used) VALUES (@name, @uid, @upstream_uid, @gecos, @password_hash, @ssh_keys, @fetched_at, @expires_at, @account_expires_at, @fetched_at)'),
      touch: db.prepare<[number, string]>('UPDATE users SET last_used = ? WHERE name = ?'),
      getNeg: db.prepare<[string], { expires_at: number }>('SELECT expires_at FROM negatives WHERE key = ?'),
      putNeg: db.prepare<[string, number, number]>('INSERT OR REPLACE INTO negatives (key, fetched_at, expires_at) VALUES (?, ?, ?)'),
      delNeg: db.prepare<[string]>('DELETE FROM negatives WHERE key = ?'),
      listFrom: db.prepare<[number, number], UserRow>('SELECT * FROM users WHERE uid >= ? ORDER BY uid LIMIT ?'),
      all: db.prepare<[], UserRow>('SELECT * FROM users ORDER BY uid'),
      names: db.prepare<[], { name: string }>('SELECT name FROM users ORDER BY uid').pluck(),
      negatives: db.prepare<[], { key: string; fetched_at: number; expires_at: number }>('SELECT * FROM negatives ORDER BY key'),
      invalidateName: db.prepare<[number, string, number]>('UPDATE users SET expires_at = ? WHERE name = ? AND expires_at > ?'),
      invalidateUid: db.prepare<[number, number, number]>('UPDATE users SET expires_at = ? WHERE uid = ? AND expires_at > ?'),
      invalidateAll: db.prepare<[number, number]>('UPDATE users SET expires_at = ? WHERE expires_at > ?'),
      remove: db.prepare<[string]>('DELETE FROM users WHERE name = ?'),
      removeExpired: db.prepare<[number]>('DELETE FROM users WHERE expires_at <= ?'),
      accountsEnded: db.prepare<[number], { name: string; uid: number; account_expires_at: number }>('SELECT name, uid, account_expires_at FROM users WHERE account_expires_at IS NOT NULL AND account_expires_at <= ? ORDER BY uid'),
      removeAccountExpired: db.prepare<[string, number]>('DELETE FROM users WHERE name = ? AND account_expires_at > 0 AND account_expires_at <= ?'),
      flushUsers: db.prepare('DELETE FROM users'),
      flushNeg: db.prepare('DELETE FROM negatives'),
      countFresh: db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM users WHERE expires_at > ?'),
      countAll: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM users'),
      countNeg: db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM negatives WHERE expires_at > ?'),
      purgeNeg: db.prepare<[number]>('DELETE FROM negatives WHERE expires_at <= ?'),
    };
    this.putTx = db.transaction(this.putTx);
    this.touchTx = db.transaction(this.touchTx);
  }

  /** Opens (or creates) the cache file. Never throws for a bad file: it is moved aside. */
  static open(path: string): UserCache {
    if (path === ':memory:') return new UserCache(openChecked(path), path);
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    let db: Database.Database;
    try {
      db = openChecked(path);
    } catch (e) {
      // One copy kept for a post-mortem, replaced each time: it holds password hashes, and a
      // file that keeps going bad must not fill the tmpfs with them.
      const aside = `${path}.bad`;
      log('warn', 'cache.recreated', { path, reason: e instanceof Error ? e.message : String(e), moved_to: aside });
      for (const suffix of ['', '-wal', '-shm']) {
        rmSync(aside + suffix, { force: true });
        if (!existsSync(path + suffix)) continue;
        try { renameSync(path + suffix, aside + suffix); } catch { unlinkSync(path + suffix); }
      }
      try {
        db = openChecked(path);
      } catch (e2) {
        throw new CacheError(`cannot create the cache file ${path}: ${e2 instanceof Error ? e2.message : String(e2)}; check that its directory is writable by the daemon (tmpfs /run/latchkey)`);
      }
    }
    chmodSync(path, 0o600);
    return new UserCache(db, path);
  }

  /** Bumped on every change of the user rows: encoded replies built from them are stale after it. */
  generation = 0;

  /** Set by the daemon (src/fastpath): told of every change below. */
  listener: CacheListener | null = null;

  getByName(name: string): CachedUser | null {
    const m = this.memoByName.get(name);
    if (m) return m;
    const r = this.s.byName.get(name);
    return r ? this.remember(fromRow(r)) : null;
  }

  getByUid(uid: number): CachedUser | null {
    const m = this.memoByUid.get(uid);
    if (m) return m;
    const r = this.s.byUid.get(uid);
    return r ? this.remember(fromRow(r)) : null;
  }

  private remember(u: CachedUser): CachedUser {
    // Start over when full rather than evicting the oldest: V8 Maps keep deleted slots until a
    // rehash, so `values().next()` after many head deletions scans them all (~13 µs at 20k
    // entries, measured). A clear is O(1) amortised; the hot set refills at ~5 µs per entry.
    if (this.memoByName.size >= MEMO_MAX) this.forgetAll();
    this.memoByName.set(u.username, u);
    this.memoByUid.set(u.uid, u);
    return u;
  }

  private forget(u: CachedUser | undefined): void {
    if (!u) return;
    this.memoByName.delete(u.username);
    this.memoByUid.delete(u.uid);
  }

  private forgetAll(): void {
    this.memoByName.clear();
    this.memoByUid.clear();
  }

  /**
   * Stores a user, first removing any row holding its name or uid (a rename upstream). Returns
   * the object later reads hand out (the memo's copy): answering with it lets the reply frame
   * built for this answer serve the next hits too (answers/nss.ts keys frames by object).
   */
  put(u: CachedUser): CachedUser {
    this.generation++;
    this.putTx(u);
    this.forget(this.memoByName.get(u.username));
    this.forget(this.memoByUid.get(u.uid));
    const kept = this.remember(memoCopy(u));
    this.listener?.stored(kept);
    return kept;
  }
  private putTx = (u: CachedUser): void => {
    this.s.deleteConflicts.run(u.username, u.uid);
    this.s.insert.run({
      name: u.username, uid: u.uid, upstream_uid: u.upstreamUid, gecos: u.gecos,
      password_hash: u.passwordHash, ssh_keys: JSON.stringify(u.sshPublicKeys),
      fetched_at: u.fetchedAt, expires_at: u.expiresAt, account_expires_at: u.accountExpiresAt ?? null,
    });
    this.s.delNeg.run(`name:${u.username}`);
    this.s.delNeg.run(`uid:${u.uid}`);
  };

  touch(name: string, now: number): void { this.s.touch.run(now, name); }
  /** last_used for a batch of names in one transaction: a touch per hit would be a WAL write (~10 µs) per lookup. */
  touchAll(names: string[], now: number): void { this.touchTx(names, now); }
  private touchTx = (names: string[], now: number): void => { for (const name of names) this.s.touch.run(now, name); };

  getNegative(key: NegativeKey): number | null { return this.s.getNeg.get(key)?.expires_at ?? null; }
  /** `publish`: false for a name only root asked for (sshd hands us whatever a client typed, passwords included). */
  putNegative(key: NegativeKey, fetchedAt: number, expiresAt: number, publish = true): void {
    this.s.putNeg.run(key, fetchedAt, expiresAt);
    this.listener?.negativeStored(key, expiresAt, publish);
  }
  deleteNegative(key: NegativeKey): void { this.s.delNeg.run(key); }
  purgeNegatives(now: number): number { return this.s.purgeNeg.run(now).changes; }

  negatives(): NegativeEntry[] {
    return this.s.negatives.all().map((r) => ({
      key: r.key, kind: r.key.startsWith('uid:') ? 'uid' : 'name', fetchedAt: r.fetched_at, expiresAt: r.expires_at,
    }));
  }

  /** Users with uid >= startUid, ascending: the enumeration pages. */
  listFrom(startUid: number, limit: number): CachedUser[] { return this.s.listFrom.all(startUid, limit).map(fromRow); }
  all(): CachedUser[] { return this.s.all.all().map(fromRow); }
  names(): string[] { return this.s.names.all() as unknown as string[]; }

  /** Marks entries expired: the next lookup refetches, and the stale grace still applies. */
  invalidate(target: { name: string } | { uid: number } | 'all', now = Date.now()): number {
    this.generation++;
    this.forgetAll();
    const n = target === 'all' ? this.s.invalidateAll.run(now, now).changes
      : 'name' in target ? this.s.invalidateName.run(now, target.name, now).changes
        : this.s.invalidateUid.run(now, target.uid, now).changes;
    this.listener?.invalidated(target);
    return n;
  }

  remove(name: string): boolean {
    this.generation++;
    this.forget(this.memoByName.get(name));
    const gone = this.s.remove.run(name).changes > 0;
    this.listener?.removed(name);
    return gone;
  }

  /**
   * Users whose account (not entry) ended at or before `at`: expired upstream, or disabled
   * (accountExpiresAt 0). The cleanup of temporary accounts (src/cleanup/) reads them.
   */
  accountsEndedBy(at: number): Array<{ name: string; uid: number; accountExpiresAt: number }> {
    return this.s.accountsEnded.all(at).map((r) => ({ name: r.name, uid: r.uid, accountExpiresAt: r.account_expires_at }));
  }

  /**
   * Removes a user whose account expired at or before `cutoff`, checked in the same statement:
   * a refetch meanwhile that brought a later expiry (extended upstream) keeps the entry.
   */
  removeIfAccountExpired(name: string, cutoff: number): boolean {
    if (this.s.removeAccountExpired.run(name, cutoff).changes === 0) return false;
    this.generation++;
    this.forget(this.memoByName.get(name));
    this.listener?.removed(name);
    return true;
  }

  /** Drops every user whose entry expired at or before `cutoff`: one statement, whatever the size. */
  removeExpiredBefore(cutoff: number): number {
    const n = this.s.removeExpired.run(cutoff).changes;
    if (n > 0) { this.forgetAll(); this.generation++; }
    return n;
  }

  /**
   * Drops one user's entries: its row (found by name or uid) and the negative entries of the
   * name and uid asked and of the row's own, so the next lookup of either asks the upstream.
   * Returns how many entries went.
   */
  flushUser(target: { name: string } | { uid: number }): number {
    const row = 'name' in target ? this.getByName(target.name) : this.getByUid(target.uid);
    const keys = new Set<NegativeKey>(['name' in target ? `name:${target.name}` : `uid:${target.uid}`]);
    let n = 0;
    if (row) {
      keys.add(`name:${row.username}`).add(`uid:${row.uid}`);
      n += this.s.remove.run(row.username).changes;
      this.forget(row);
      this.generation++;
    }
    for (const k of keys) n += this.s.delNeg.run(k).changes;
    for (const k of keys) this.listener?.keyFlushed(k);
    return n;
  }

  flush(opts: { negativeOnly?: boolean } = {}): number {
    let n = this.s.flushNeg.run().changes;
    if (!opts.negativeOnly) { n += this.s.flushUsers.run().changes; this.forgetAll(); this.generation++; }
    this.listener?.flushed(opts.negativeOnly === true);
    return n;
  }

  counts(now: number, staleGraceSec = 0): CacheCounts {
    const total = this.s.countAll.get()!.n;
    const fresh = this.s.countFresh.get(now)!.n;
    const servable = this.s.countFresh.get(now - staleGraceSec * 1000)!.n;
    return { fresh, stale: servable - fresh, expired: total - servable, negative: this.s.countNeg.get(now)!.n, total };
  }

  /** Bytes on disk, WAL included. */
  fileSize(): number {
    let size = 0;
    for (const suffix of ['', '-wal']) {
      try { size += statSync(this.path + suffix).size; } catch { /* no WAL yet */ }
    }
    return size;
  }

  close(): void {
    try { this.db.pragma('wal_checkpoint(TRUNCATE)'); } catch { /* closing anyway */ }
    this.db.close();
  }
}
