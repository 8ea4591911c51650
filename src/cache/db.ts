// The RAM-backed SQLite cache (better-sqlite3). One file on tmpfs: it survives a daemon restart
// and is gone at reboot. Every statement is prepared once here, so the lookup hot path compiles
// no SQL. A file that is corrupt or from another schema is moved aside and recreated.
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, renameSync, rmSync, statSync, chmodSync, unlinkSync, openSync, readSync, closeSync } from 'node:fs';
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

function prepareAll(db: Database.Database) {
  return {
    byName: db.prepare<[string], UserRow>('SELECT * FROM users WHERE name = ?'),
    byUid: db.prepare<[number], UserRow>('SELECT * FROM users WHERE uid = ?'),
    deleteConflicts: db.prepare<[string, number]>('DELETE FROM users WHERE name = ? OR uid = ?'),
    insert: db.prepare('INSERT INTO users (name, uid, upstream_uid, gecos, password_hash, ssh_keys, fetched_at, expires_at, account_expires_at, last_used) VALUES (@name, @uid, @upstream_uid, @gecos, @password_hash, @ssh_keys, @fetched_at, @expires_at, @account_expires_at, @fetched_at)'),
    touch: db.prepare<[number, string]>('UPDATE users SET last_used = ? WHERE name = ?'),
    getNeg: db.prepare<[string], { fetched_at: number; expires_at: number }>('SELECT fetched_at, expires_at FROM negatives WHERE key = ?'),
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
}
type Statements = ReturnType<typeof prepareAll>;

export class UserCache {
  private s!: Statements;
  private handle!: Database.Database;
  /** The open connection (tests read it; a recreated file gets a new one). */
  get db(): Database.Database { return this.handle; }
  // A read-through memo of decoded rows: a hit then costs a Map lookup instead of a SQLite step
  // plus JSON.parse of the keys. Only this class writes the table, so every write below keeps
  // the memo exact.
  private readonly memoByName = new Map<string, CachedUser>();
  private readonly memoByUid = new Map<number, CachedUser>();
  // Users fetched while the file could not be written (its tmpfs full, an I/O error): answered
  // from here, ahead of the file, and written out at the first write that succeeds. Without
  // them every user not yet cached was "unavailable" once the tmpfs filled (~116 users per MB).
  private readonly unsavedByName = new Map<string, CachedUser>();
  private readonly unsavedByUid = new Map<number, CachedUser>();
  private writeError: CacheWriteError | null = null;
  // Users removed (gone upstream) while the file refused the DELETE: never answered again, and
  // deleted from the file at the first write that succeeds. Without them a user removed upstream
  // was served from the file (fresh, then stale within grace) for as long as it stayed full.
  private readonly removedNames = new Set<string>();
  private recreated: CacheRecreated | null = null;
  /** the file this connection has open (device, inode): another one at the path means it was replaced */
  private identity: { dev: number; ino: number } | null = null;
  /** rows past this much of their expiry are never served again: dropped first when the file is full */
  staleGraceMs: () => number = () => Number.POSITIVE_INFINITY;

  private constructor(db: Database.Database, readonly path: string) {
    this.attach(db);
  }

  private attach(db: Database.Database): void {
    if (this.path !== ':memory:') {
      db.pragma('journal_mode = WAL');
    }
    // RAM-backed by design: durability across power loss is not a goal, speed is.
    db.pragma('synchronous = OFF');
    // The file already lives in RAM (tmpfs): a large page cache would only hold it twice.
    db.pragma('cache_size = -2000');
    db.pragma('temp_store = MEMORY');
    this.handle = db;
    this.s = prepareAll(db);
    this.putTx = db.transaction(this.putRow);
    this.touchTx = db.transaction(this.touchRows);
    this.restoreTx = db.transaction(this.restoreRows);
    this.identity = this.fileIdentity();
  }

  /** Opens (or creates) the cache file. Never throws for a bad file: it is moved aside. */
  static open(path: string): UserCache {
    if (path === ':memory:') return new UserCache(openChecked(path), path);
    return new UserCache(openFile(path), path);
  }

  /** Bumped on every change of the user rows: encoded replies built from them are stale after it. */
  generation = 0;

  /** Set by the daemon (src/fastpath): told of every change below. */
  listener: CacheListener | null = null;

  getByName(name: string): CachedUser | null {
    const m = this.memoByName.get(name) ?? this.unsavedByName.get(name);
    if (m) return m;
    const r = this.read(() => this.s.byName.get(name));
    return r && !this.hidden(r) ? this.remember(fromRow(r)) : null;
  }

  getByUid(uid: number): CachedUser | null {
    const m = this.memoByUid.get(uid) ?? this.unsavedByUid.get(uid);
    if (m) return m;
    const r = this.read(() => this.s.byUid.get(uid));
    return r && !this.hidden(r) ? this.remember(fromRow(r)) : null;
  }

  /**
   * A file row the memory knows to be out of date while the file refuses writes: its user was
   * removed, or a user held in memory only now has its name or its uid (a rename, a uid given to
   * someone else). Served, it would resolve an old name to a uid that belongs to another user.
   */
  private hidden(r: UserRow): boolean {
    if (this.removedNames.has(r.name)) return true;
    const byName = this.unsavedByName.get(r.name);
    if (byName && byName.uid !== r.uid) return true;
    const byUid = this.unsavedByUid.get(r.uid);
    return byUid !== undefined && byUid.username !== r.name;
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

  /** Keeps a user the file could not take in memory (answered ahead of the file, written later). */
  private unsavedHold(u: CachedUser): void {
    this.unsavedByName.set(u.username, u);
    this.unsavedByUid.set(u.uid, u);
  }

  /** A held user with new times (invalidate, a clock step): a new object, as the memo's are never changed. */
  private unsavedRetime(u: CachedUser, fetchedAt: number, expiresAt: number): void {
    this.unsavedDrop(u);
    this.unsavedHold(decoded(u.username, u.uid, u.upstreamUid, u.gecos, u.passwordHash, u.sshPublicKeys, fetchedAt, expiresAt, u.accountExpiresAt ?? null));
  }

  private unsavedDrop(u: CachedUser | undefined): void {
    if (!u) return;
    if (this.unsavedByName.get(u.username) === u) this.unsavedByName.delete(u.username);
    if (this.unsavedByUid.get(u.uid) === u) this.unsavedByUid.delete(u.uid);
  }

  /**
   * Stores a user, first removing any row holding its name or uid (a rename upstream). Returns
   * the object later reads hand out (the memo's copy): answering with it lets the reply frame
   * built for this answer serve the next hits too (answers/nss.ts keys frames by object).
   * A file that cannot take the row (full, I/O error) costs the row its persistence, never the
   * answer: it is kept in memory and written once a write succeeds again.
   */
  put(u: CachedUser): CachedUser {
    this.generation++;
    const written = this.write(() => this.putTx(u));
    this.removedNames.delete(u.username);
    this.forget(this.memoByName.get(u.username));
    this.forget(this.memoByUid.get(u.uid));
    this.unsavedDrop(this.unsavedByName.get(u.username));
    this.unsavedDrop(this.unsavedByUid.get(u.uid));
    const kept = this.remember(memoCopy(u));
    if (!written && this.unsavedByName.size < MEMO_MAX) this.unsavedHold(kept);
    this.listener?.stored(kept);
    return kept;
  }
  /** putRow in one transaction (attach() makes it for each connection) */
  private putTx!: (u: CachedUser) => void;
  private putRow = (u: CachedUser): void => {
    this.s.deleteConflicts.run(u.username, u.uid);
    this.s.insert.run({
      name: u.username, uid: u.uid, upstream_uid: u.upstreamUid, gecos: u.gecos,
      password_hash: u.passwordHash, ssh_keys: JSON.stringify(u.sshPublicKeys),
      fetched_at: u.fetchedAt, expires_at: u.expiresAt, account_expires_at: u.accountExpiresAt ?? null,
    });
    this.s.delNeg.run(`name:${u.username}`);
    this.s.delNeg.run(`uid:${u.uid}`);
  };

  /** last_used is a hint (warm start order, `latchkeyctl users`): a file that cannot take it loses it. */
  touch(name: string, now: number): void { this.write(() => this.s.touch.run(now, name)); }
  /** last_used for a batch of names in one transaction: a touch per hit would be a WAL write (~10 µs) per lookup. */
  touchAll(names: string[], now: number): void { this.write(() => this.touchTx(names, now)); }
  private touchTx!: (names: string[], now: number) => void;
  private touchRows = (names: string[], now: number): void => { for (const name of names) this.s.touch.run(now, name); };

  getNegative(key: NegativeKey): number | null { return this.getNegativeEntry(key)?.expiresAt ?? null; }
  /** The negative entry with its fetch time: the resolver applies the backwards-clock rule to it. */
  getNegativeEntry(key: NegativeKey): { fetchedAt: number; expiresAt: number } | null {
    const r = this.read(() => this.s.getNeg.get(key));
    return r ? { fetchedAt: r.fetched_at, expiresAt: r.expires_at } : null;
  }
  /**
   * `publish`: false for a name only root asked for (sshd hands us whatever a client typed,
   * passwords included). Not written (file full): the next lookup asks the upstream again.
   */
  putNegative(key: NegativeKey, fetchedAt: number, expiresAt: number, publish = true): void {
    if (this.write(() => this.s.putNeg.run(key, fetchedAt, expiresAt))) this.listener?.negativeStored(key, expiresAt, publish);
  }
  deleteNegative(key: NegativeKey): void { this.s.delNeg.run(key); }
  purgeNegatives(now: number): number { return this.s.purgeNeg.run(now).changes; }

  negatives(): NegativeEntry[] {
    return this.s.negatives.all().map((r) => ({
      key: r.key, kind: r.key.startsWith('uid:') ? 'uid' : 'name', fetchedAt: r.fetched_at, expiresAt: r.expires_at,
    }));
  }

  /** The rows with the users held in memory only laid over them (they are newer). */
  private withUnsaved(rows: CachedUser[], from = 0, limit = Number.POSITIVE_INFINITY): CachedUser[] {
    if (this.removedNames.size > 0) rows = rows.filter((r) => !this.removedNames.has(r.username));
    if (this.unsavedByName.size === 0) return rows;
    const extra = [...this.unsavedByName.values()].filter((u) => u.uid >= from);
    const out = rows.filter((r) => !this.unsavedByName.has(r.username) && !this.unsavedByUid.has(r.uid)).concat(extra);
    out.sort((a, b) => a.uid - b.uid);
    return out.slice(0, limit);
  }

  /** Users with uid >= startUid, ascending: the enumeration pages. */
  listFrom(startUid: number, limit: number): CachedUser[] { return this.withUnsaved(this.s.listFrom.all(startUid, limit).map(fromRow), startUid, limit); }
  all(): CachedUser[] { return this.withUnsaved(this.s.all.all().map(fromRow)); }
  names(): string[] {
    const names = this.s.names.all() as unknown as string[];
    return this.unsavedByName.size === 0 ? names : this.all().map((u) => u.username);
  }

  /**
   * The `limit` most recently used names, most recent first (the warm start after a restart, and
   * the recent_file the sweep writes); last_used is written per sweep, so names used within one
   * sweep go by their fetch, latest first. Prepared per call: it runs at start and every 30 s,
   * never on a lookup.
   */
  recentNames(limit: number): string[] {
    return this.handle.prepare<[number], string>('SELECT name FROM users ORDER BY last_used DESC, fetched_at DESC, name LIMIT ?').pluck().all(limit);
  }

  /**
   * The last time the file records activity (a fetch, a use, a miss): about when the daemon that
   * wrote it stopped. The restart spread (cache/policy.ts) measures the downtime with it.
   */
  lastActivityAt(): number {
    const r = this.handle.prepare('SELECT max(coalesce((SELECT max(fetched_at) FROM users), 0), coalesce((SELECT max(last_used) FROM users), 0), coalesce((SELECT max(fetched_at) FROM negatives), 0)) AS t').get() as { t: number | null };
    return r.t ?? 0;
  }

  /** Marks entries expired: the next lookup refetches, and the stale grace still applies. */
  invalidate(target: { name: string } | { uid: number } | 'all', now = Date.now()): number {
    this.generation++;
    this.forgetAll();
    let n = target === 'all' ? this.s.invalidateAll.run(now, now).changes
      : 'name' in target ? this.s.invalidateName.run(now, target.name, now).changes
        : this.s.invalidateUid.run(now, target.uid, now).changes;
    for (const u of [...this.unsavedByName.values()]) {
      const hit = target === 'all' || ('name' in target ? u.username === target.name : u.uid === target.uid);
      if (!hit || u.expiresAt <= now) continue;
      this.unsavedRetime(u, u.fetchedAt, now);
      n++;
    }
    this.listener?.invalidated(target);
    return n;
  }

  /**
   * The wall clock stepped back by -`deltaMs` (daemon/clock.ts): every entry's fetch, expiry and
   * last use move with it, so each keeps its real remaining lifetime and grace instead of looking
   * younger by the size of the step (a stale entry would otherwise be served past its grace
   * during an outage). An upstream's account expiry is a date, not moved. A write that fails
   * (a full file) leaves the rows as they are; cache/policy.ts then still calls an entry fetched
   * "in the future" not fresh. Prepared per call: it runs once per clock step. Returns the users
   * moved.
   */
  shiftTimes(deltaMs: number): number {
    if (!Number.isFinite(deltaMs) || deltaMs === 0) return 0;
    const d = Math.round(deltaMs);
    this.generation++;
    this.forgetAll();
    let n = 0;
    this.write(() => {
      n = this.handle.prepare<[number, number, number]>('UPDATE users SET fetched_at = fetched_at + ?, expires_at = expires_at + ?, last_used = CASE WHEN last_used > 0 THEN last_used + ? ELSE 0 END').run(d, d, d).changes;
      this.handle.prepare<[number, number]>('UPDATE negatives SET fetched_at = fetched_at + ?, expires_at = expires_at + ?').run(d, d);
    });
    for (const u of [...this.unsavedByName.values()]) this.unsavedRetime(u, u.fetchedAt + d, u.expiresAt + d);
    return n;
  }

  remove(name: string): boolean {
    this.generation++;
    this.forget(this.memoByName.get(name));
    const held = this.unsavedByName.get(name);
    this.unsavedDrop(held);
    let deleted = 0;
    if (!this.write(() => { deleted = this.s.remove.run(name).changes; })) this.removedNames.add(name);
    const gone = deleted > 0 || held !== undefined || this.removedNames.has(name);
    this.listener?.removed(name);
    return gone;
  }

  /**
   * Users whose account (not entry) ended at or before `at`: expired upstream, or disabled
   * (accountExpiresAt 0). The cleanup of temporary accounts (src/cleanup/) reads them.
   */
  accountsEndedBy(at: number): Array<{ name: string; uid: number; accountExpiresAt: number }> {
    const rows = this.s.accountsEnded.all(at).map((r) => ({ name: r.name, uid: r.uid, accountExpiresAt: r.account_expires_at }));
    for (const u of this.unsavedByName.values()) {
      if (u.accountExpiresAt != null && u.accountExpiresAt <= at && !rows.some((r) => r.name === u.username)) rows.push({ name: u.username, uid: u.uid, accountExpiresAt: u.accountExpiresAt });
    }
    return rows;
  }

  /**
   * Removes a user whose account expired at or before `cutoff`, checked in the same statement:
   * a refetch meanwhile that brought a later expiry (extended upstream) keeps the entry.
   */
  removeIfAccountExpired(name: string, cutoff: number): boolean {
    const held = this.unsavedByName.get(name);
    const heldEnded = held !== undefined && held.accountExpiresAt != null && held.accountExpiresAt > 0 && held.accountExpiresAt <= cutoff;
    if (this.s.removeAccountExpired.run(name, cutoff).changes === 0 && !heldEnded) return false;
    if (heldEnded) this.unsavedDrop(held);
    this.generation++;
    this.forget(this.memoByName.get(name));
    this.listener?.removed(name);
    return true;
  }

  /** Drops every user whose entry expired at or before `cutoff`: one statement, whatever the size. */
  removeExpiredBefore(cutoff: number): number {
    let n = this.s.removeExpired.run(cutoff).changes;
    for (const u of [...this.unsavedByName.values()]) if (u.expiresAt <= cutoff) { this.unsavedDrop(u); n++; }
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
      if (this.unsavedByName.get(row.username) === row) { this.unsavedDrop(row); n++; }
      this.forget(row);
      this.generation++;
    }
    for (const k of keys) n += this.s.delNeg.run(k).changes;
    for (const k of keys) this.listener?.keyFlushed(k);
    return n;
  }

  flush(opts: { negativeOnly?: boolean } = {}): number {
    let n = this.s.flushNeg.run().changes;
    if (!opts.negativeOnly) {
      n += this.s.flushUsers.run().changes + this.unsavedByName.size;
      this.unsavedByName.clear();
      this.unsavedByUid.clear();
      this.forgetAll();
      this.generation++;
    }
    this.listener?.flushed(opts.negativeOnly === true);
    return n;
  }

  counts(now: number, staleGraceSec = 0): CacheCounts {
    // A corrupt file found here is recreated (read()); `status` must not fail on it.
    return this.read(() => this.countRows(now, staleGraceSec)) ?? { fresh: 0, stale: 0, expired: 0, negative: 0, total: 0 };
  }

  private countRows(now: number, staleGraceSec: number): CacheCounts {
    let total = this.s.countAll.get()!.n;
    let fresh = this.s.countFresh.get(now)!.n;
    let servable = this.s.countFresh.get(now - staleGraceSec * 1000)!.n;
    for (const u of this.unsavedByName.values()) {
      if (this.s.byName.get(u.username)) continue; // an older row of it is counted already
      total++;
      if (u.expiresAt > now) fresh++;
      if (u.expiresAt > now - staleGraceSec * 1000) servable++;
    }
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

  // ---- a file that cannot be written, or that changed under us ----

  /** What `latchkeyctl status` shows of the file: the write error in force, the last recreation. */
  fileStatus(): { write_error: CacheWriteError | null; recreated: CacheRecreated | null; unsaved: number } {
    return { write_error: this.writeError, recreated: this.recreated, unsaved: this.unsavedByName.size };
  }

  /**
   * The sweep's check (and every write's): the file deleted, replaced by
   * another one, or its header overwritten → a new file with everything this connection still
   * reads (the old inode stays readable while it is open) and the memo; users held in memory
   * only are written again when the file takes writes.
   */
  checkFile(now = Date.now()): void {
    if (this.path === ':memory:') return;
    const problem = this.fileProblem();
    if (problem !== null) this.recover(problem, now);
    else if (this.unsavedByName.size > 0 || this.writeError !== null) this.write(() => this.flushUnsaved());
  }

  private fileIdentity(): { dev: number; ino: number } | null {
    if (this.path === ':memory:') return null;
    try { const st = statSync(this.path); return { dev: st.dev, ino: st.ino }; } catch { return null; }
  }

  private fileProblem(): string | null {
    let st;
    try { st = statSync(this.path); } catch { return 'the cache file was deleted while the daemon ran'; }
    if (this.identity && (st.dev !== this.identity.dev || st.ino !== this.identity.ino)) return 'the cache file was replaced by another file while the daemon ran';
    if (st.size >= SQLITE_MAGIC.length) {
      const head = Buffer.alloc(SQLITE_MAGIC.length);
      let fd = -1;
      try {
        fd = openSync(this.path, 'r');
        readSync(fd, head, 0, head.length, 0);
      } catch { return null; } finally { if (fd >= 0) closeSync(fd); }
      if (!head.equals(SQLITE_MAGIC)) return 'the cache file was overwritten (not an SQLite header) while the daemon ran';
    }
    return null;
  }

  /**
   * A read that finds the file corrupt recreates it and reads again; a second failure reads as
   * "not cached" (the upstream is asked), never as an exception out of a lookup.
   */
  private read<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (e) {
      if (!isCorrupt(e)) throw e;
      this.recover(`SQLite says the cache file is corrupt: ${errorText(e)}`, Date.now());
      try { return fn(); } catch { return undefined; }
    }
  }

  /**
   * Runs a write. A corrupt file is recreated and the write tried again; a full one (or an I/O
   * error) first makes room (rows past their grace, expired negatives) and tries once more.
   * Returns false when the write could not be made: the caller keeps what it wrote in memory.
   * Every change of state is logged once, not per lookup.
   */
  private write(fn: () => void): boolean {
    const now = Date.now();
    // A stat and a 16-byte read (~5 µs) before each write: writes follow an upstream fetch or
    // the sweep, never a cache hit, and a write into a deleted file would be lost.
    if (this.path !== ':memory:') {
      const problem = this.fileProblem();
      if (problem !== null) this.recover(problem, now);
    }
    try {
      fn();
    } catch (e) {
      if (isCorrupt(e)) {
        this.recover(`SQLite says the cache file is corrupt: ${errorText(e)}`, now);
      } else if (isWriteFailure(e)) {
        this.makeRoom(now);
      } else {
        throw e;
      }
      try {
        fn();
      } catch (e2) {
        if (!isCorrupt(e2) && !isWriteFailure(e2)) throw e2;
        this.writeFailed(e2, now);
        return false;
      }
    }
    if (this.writeError !== null) this.writeRecovered(now);
    return true;
  }

  /**
   * The error clears only once the users held in memory are written too: near the limit a
   * small write (last_used) fits where a user's row does not, and the state (and the log)
   * must not flip at every lookup.
   */
  private writeRecovered(now: number): void {
    try {
      this.flushUnsaved();
    } catch (e) {
      if (isWriteFailure(e) || isCorrupt(e)) return;
      throw e;
    }
    const was = this.writeError!;
    this.writeError = null;
    log('info', 'cache.write_recovered', { path: this.path, code: was.code, since: was.since, failed_for_ms: now - was.since });
  }

  private makeRoom(now: number): void {
    const grace = this.staleGraceMs();
    try { this.s.purgeNeg.run(now); } catch { /* the file is full: tried, the write retries anyway */ }
    if (Number.isFinite(grace)) {
      try { if (this.s.removeExpired.run(now - grace).changes > 0) { this.forgetAll(); this.generation++; } } catch { /* as above */ }
    }
    try { this.handle.pragma('wal_checkpoint(TRUNCATE)'); } catch { /* as above */ }
  }

  private writeFailed(e: unknown, now: number): void {
    const code = sqliteCode(e);
    const full = code === 'SQLITE_FULL';
    const detail = errorText(e);
    if (this.writeError === null || this.writeError.code !== code) {
      const fix = full
        ? `the filesystem of ${this.path} is full: give it more room (the tmpfs size of /run) or lower [cache] ttl / stale_grace`
        : `check the filesystem of ${this.path} (dmesg); the daemon keeps answering from memory`;
      this.writeError = { code, since: now, detail, fix };
      log('error', 'cache.write_failed', { path: this.path, code, detail, fix, serving: 'users fetched meanwhile are answered from memory and written once the file takes writes again' });
    }
  }

  /** Writes the users held in memory only; each one written leaves the memory-only set. */
  private flushUnsaved = (): void => {
    for (const name of [...this.removedNames]) {
      this.s.remove.run(name);
      this.removedNames.delete(name);
    }
    for (const u of [...this.unsavedByName.values()]) {
      this.putTx(u);
      this.unsavedDrop(u);
    }
  };

  /** A new file at the path, with every user this connection (or the memo) still has. */
  private recover(reason: string, now: number): void {
    const users = new Map<string, CachedUser>();
    let negatives: Array<{ key: string; fetched_at: number; expires_at: number }> = [];
    try {
      for (const u of this.s.all.all().map(fromRow)) if (!this.removedNames.has(u.username)) users.set(u.username, u);
      negatives = this.s.negatives.all();
    } catch { /* unreadable: the memo below is what is left */ }
    for (const u of this.memoByName.values()) users.set(u.username, u);
    for (const u of this.unsavedByName.values()) users.set(u.username, u);
    // Closed before the new file is made: closing a WAL connection removes `path-wal` by name.
    try { this.handle.close(); } catch { /* it is being replaced */ }
    const movedTo = moveFilesAside(this.path);
    try {
      this.attach(openFile(this.path));
    } catch (e) {
      // No new file (the directory is full or unwritable): serve from an in-memory database,
      // which the next check (a write, the sweep) moves to a file again once one can be made.
      this.attach(openChecked(':memory:'));
      this.writeFailed(e, now);
    }
    let restored = 0;
    try {
      this.restoreTx([...users.values()], negatives.filter((n) => n.expires_at > now));
      restored = users.size;
      this.removedNames.clear();
      this.unsavedByName.clear();
      this.unsavedByUid.clear();
    } catch (e) {
      if (!isWriteFailure(e)) throw e;
      for (const u of users.values()) this.unsavedHold(u);
      this.writeFailed(e, now);
    }
    this.forgetAll();
    this.generation++;
    this.recreated = { at: now, reason, restored_users: restored };
    log('warn', 'cache.recreated', { path: this.path, reason, moved_to: movedTo, restored_users: restored, held_in_memory: this.unsavedByName.size });
  }
  private restoreTx!: (users: CachedUser[], negatives: Array<{ key: string; fetched_at: number; expires_at: number }>) => void;
  private restoreRows = (users: CachedUser[], negatives: Array<{ key: string; fetched_at: number; expires_at: number }>): void => {
    for (const u of users) this.putRow(u);
    for (const n of negatives) this.s.putNeg.run(n.key, n.fetched_at, n.expires_at);
  };

  close(): void {
    try { this.handle.pragma('wal_checkpoint(TRUNCATE)'); } catch { /* closing anyway */ }
    this.handle.close();
  }
}

/** The first 16 bytes of every SQLite 3 file. */
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

export interface CacheWriteError { code: string; since: number; detail: string; fix: string }
export interface CacheRecreated { at: number; reason: string; restored_users: number }

function sqliteCode(e: unknown): string {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : 'error';
}
function errorText(e: unknown): string { return e instanceof Error ? e.message : String(e); }
function isCorrupt(e: unknown): boolean {
  const c = sqliteCode(e);
  return c.startsWith('SQLITE_CORRUPT') || c === 'SQLITE_NOTADB';
}
/** The file refused a write: full, read-only, an I/O error. */
function isWriteFailure(e: unknown): boolean {
  const c = sqliteCode(e);
  return c === 'SQLITE_FULL' || c.startsWith('SQLITE_IOERR') || c.startsWith('SQLITE_READONLY') || c === 'SQLITE_CANTOPEN';
}

/**
 * One copy kept for a post-mortem, replaced each time: it holds password hashes, and a file
 * that keeps going bad must not fill the tmpfs with them. Returns where it went ('' if nothing).
 */
function moveFilesAside(path: string): string {
  const aside = `${path}.bad`;
  let moved = '';
  for (const suffix of ['', '-wal', '-shm']) {
    rmSync(aside + suffix, { force: true });
    if (!existsSync(path + suffix)) continue;
    try { renameSync(path + suffix, aside + suffix); if (suffix === '') moved = aside; } catch { unlinkSync(path + suffix); }
  }
  return moved;
}

/** Opens the file at `path`; one that cannot be used is moved aside and a new one made. */
function openFile(path: string): Database.Database {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  let db: Database.Database;
  try {
    db = openChecked(path);
  } catch (e) {
    const aside = moveFilesAside(path);
    log('warn', 'cache.recreated', { path, reason: e instanceof Error ? e.message : String(e), moved_to: aside });
    try {
      db = openChecked(path);
    } catch (e2) {
      throw new CacheError(`cannot create the cache file ${path}: ${e2 instanceof Error ? e2.message : String(e2)}; check that its directory is writable by the daemon (tmpfs /run/latchkey)`);
    }
  }
  chmodSync(path, 0o600);
  return db;
}
