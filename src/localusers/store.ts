// The persistent local users' store (issue 16): its own SQLite file on disk
// (/var/lib/latchkey/local.db), never the RAM cache. These users exist nowhere else, so the file
// carries a schema version (PRAGMA user_version) with a migration for every older version, and
// a file that cannot be used is moved aside, kept and reported at err, never emptied (as
// src/sessions/store.ts does).
//
// Every read comes from an in-memory index rebuilt after every change and at open/reopen: the
// resolver asks the store on every NSS lookup the shared-memory map did not answer, and each
// row in the index has passed rows.ts (a bad row is skipped and logged once, never served).
//
// The journal is a rollback journal, not WAL: the secondary's snapshot swap renames a new file
// over this path, and a WAL file left beside it would belong to the old database.
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import {
  closeSync, constants, copyFileSync, fchmodSync, fstatSync, lstatSync, mkdirSync, mkdtempSync, openSync, rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { log, LogOnce } from '../log.js';
import { migrate, moveAside } from '../storage/versioned.js';
import { defaultConfig } from '../config/load.js';
import { checkSshPublicKey } from '../upstream/sshkeys.js';
import { parseHash } from '../verify/hash.js';
import { LocalStoreError, type LocalUser, type NewLocalUser, type SnapshotCheck, type SnapshotInfo } from './types.js';
import { MAX_KEYS_PER_USER, type RowFields, type RowRules, rangeProblem, rowProblem, rowRules } from './rows.js';

/** The version this code writes. Add a migration below for every bump. */
export const LOCAL_SCHEMA_VERSION = 1;

/**
 * A snapshot larger than this is refused (by rsync on the secondary too): 64 MiB holds some
 * 200,000 users, far more than any host keeps outside its upstream, and bounds what one hostile
 * file can make a secondary read.
 */
export const MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024;

/** Longest value a snapshot row may hold in any column, checked in SQL before a row is read. */
const MAX_SNAPSHOT_VALUE = 256 * 1024;

const USERS_TABLE = `CREATE TABLE users (
  name TEXT PRIMARY KEY,
  uid INTEGER NOT NULL UNIQUE,
  gecos TEXT NOT NULL DEFAULT '',
  shell TEXT,
  password_hash TEXT,
  context TEXT,
  keys TEXT NOT NULL DEFAULT '[]',
  expires_at INTEGER,
  disabled INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL DEFAULT 0
);`;
const META_TABLE = 'CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);';

/** Columns version 1 has beyond the hand-made table version 0 allows (name, uid, ...). */
const V1_COLUMNS: Array<[string, string]> = [
  ['gecos', "TEXT NOT NULL DEFAULT ''"], ['shell', 'TEXT'], ['password_hash', 'TEXT'], ['context', 'TEXT'],
  ['keys', "TEXT NOT NULL DEFAULT '[]'"], ['expires_at', 'INTEGER'], ['disabled', 'INTEGER NOT NULL DEFAULT 0'],
  ['created_at', 'INTEGER NOT NULL DEFAULT 0'], ['updated_at', 'INTEGER NOT NULL DEFAULT 0'],
];

/**
 * MIGRATIONS[v] turns a version-v file into version v+1; each runs in one transaction with its
 * version bump, so a crash leaves either the old or the new version, never half of one.
 */
const MIGRATIONS: Array<(db: Database.Database) => void> = [
  // 0 → 1: an unversioned file with a `users` table of at least (name, uid), as an admin seeds
  // users by hand with sqlite3 (LocalEGA's way of keeping users "outside the temporary cache"):
  // it gets the columns it lacks, a unique uid index and the meta table. Rows keep their values.
  (db) => {
    const have = new Set((db.prepare('PRAGMA table_info(users)').all() as Array<{ name: string }>).map((c) => c.name));
    for (const need of ['name', 'uid']) if (!have.has(need)) throw new Error(`its users table has no ${need} column`);
    for (const [col, decl] of V1_COLUMNS) if (!have.has(col)) db.exec(`ALTER TABLE users ADD COLUMN ${col} ${decl}`);
    db.exec('CREATE UNIQUE INDEX IF NOT EXISTS users_uid ON users (uid); CREATE UNIQUE INDEX IF NOT EXISTS users_name ON users (name);');
    db.exec(META_TABLE);
  },
];

interface DbRow {
  name: unknown; uid: unknown; gecos: unknown; shell: unknown; password_hash: unknown; context: unknown;
  keys: unknown; expires_at: unknown; disabled: unknown; created_at: unknown; updated_at: unknown;
}

const int = (v: unknown): number | null => (typeof v === 'number' && Number.isSafeInteger(v) ? v : typeof v === 'bigint' ? Number(v) : null);

/** The meta facts of an open file; a taken_on that is no host name is dropped (it is shown by
 *  `status`, and a hostile snapshot must not put a terminal escape there). */
function readMeta(db: Database.Database): { takenAt: number | null; takenOn: string | null } {
  const get = (k: string): unknown => db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get(k) ?? null;
  const at = get('taken_at');
  const n = typeof at === 'string' && /^\d{1,16}$/.test(at) ? Number(at) : NaN;
  const on = get('taken_on');
  return {
    takenAt: Number.isSafeInteger(n) ? n : null,
    takenOn: typeof on === 'string' && /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/.test(on) ? on : null,
  };
}

/** A database row as a LocalUser, or why it is not one (SQLite lets any column hold any type). */
function fromDb(r: DbRow, rules: RowRules): { user: LocalUser } | { problem: string } {
  const uid = int(r.uid);
  if (typeof r.name !== 'string') return { problem: 'the name is not text' };
  if (uid === null) return { problem: 'the uid is not an integer' };
  let keys: unknown;
  try { keys = typeof r.keys === 'string' ? JSON.parse(r.keys) : null; } catch { keys = null; }
  if (!Array.isArray(keys) || keys.some((k) => typeof k !== 'string')) return { problem: 'keys is not a JSON list of strings' };
  const nullableText = (v: unknown): string | null | undefined => (v === null ? null : typeof v === 'string' ? v : undefined);
  const shell = nullableText(r.shell);
  const hash = nullableText(r.password_hash);
  const context = nullableText(r.context);
  if (shell === undefined || hash === undefined || context === undefined) return { problem: 'shell, password_hash or context is not text' };
  if (typeof r.gecos !== 'string') return { problem: 'gecos is not text' };
  const expiresAt = r.expires_at === null ? null : int(r.expires_at);
  if (r.expires_at !== null && expiresAt === null) return { problem: 'expires_at is not an integer' };
  const disabled = int(r.disabled);
  if (disabled !== 0 && disabled !== 1) return { problem: 'disabled is not 0 or 1' };
  const createdAt = int(r.created_at);
  const updatedAt = int(r.updated_at);
  if (createdAt === null || updatedAt === null) return { problem: 'created_at or updated_at is not an integer' };
  const user: LocalUser = {
    name: r.name, uid, gecos: r.gecos, shell, passwordHash: hash === '' ? null : hash, context,
    keys: keys as string[], expiresAt, disabled: disabled === 1, createdAt, updatedAt,
  };
  const problem = rowProblem(user, rules);
  return problem ? { problem } : { user };
}

/** Opens an existing or new file at the current version, or says why it cannot. */
function openAtCurrentVersion(path: string, opts: { readonly?: boolean } = {}): Database.Database {
  const db = new Database(path, { readonly: opts.readonly === true, fileMustExist: opts.readonly === true });
  try {
    // Any read makes SQLite look at the header: a file that is not a database throws here.
    const version = db.pragma('user_version', { simple: true }) as number;
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[];
    if (version === 0 && tables.length === 0) {
      if (opts.readonly) throw new Error('it is an empty database, not a latchkey local users file');
      db.exec(USERS_TABLE + META_TABLE);
      db.pragma(`user_version = ${LOCAL_SCHEMA_VERSION}`);
      return db;
    }
    if (!tables.includes('users')) throw new Error(`not a latchkey local users file (tables: ${tables.join(', ') || 'none'})`);
    if (version > LOCAL_SCHEMA_VERSION) {
      throw new Error(`schema version ${version} is newer than this latchkeyd understands (${LOCAL_SCHEMA_VERSION}); a newer latchkeyd wrote it`);
    }
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new Error(`quick_check: ${String(check)}`);
    if (version < LOCAL_SCHEMA_VERSION && opts.readonly) throw new Error(`schema version ${version} needs a migration`);
    migrate(db, path, version, LOCAL_SCHEMA_VERSION, MIGRATIONS, 'local.store_migrated');
    const now = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[];
    if (!now.includes('meta')) throw new Error('not a latchkey local users file (no meta table)');
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Why the file at `path` may not be opened by the daemon: a symlink, not a regular file, or
 *  someone else's (a file another account can replace would let it hand out users). */
function ownershipProblem(path: string): string | null {
  let st;
  try { st = lstatSync(path); } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? null : message(e);
  }
  if (st.isSymbolicLink()) return 'it is a symbolic link; latchkeyd opens only a regular file it owns';
  if (!st.isFile()) return 'it is not a regular file';
  const me = process.getuid?.();
  if (me !== undefined && st.uid !== me) return `it is owned by uid ${st.uid}, not by latchkeyd's uid ${me}`;
  return null;
}

/** Creates the file 0600 (and its directory 0700) before SQLite opens it, so it never exists
 *  with looser permissions; O_EXCL|O_NOFOLLOW: a name planted meanwhile is not followed. */
function createPrivate(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
  closeSync(fd);
}

/** The normal form of a key line, or why it is refused. */
function normalKey(line: string): string {
  const c = checkSshPublicKey(line.trim());
  if (!c.ok) throw new LocalStoreError('invalid', `the key is refused: ${c.reason}`);
  return c.key;
}

/** `type base64` of a line: two lines with it are the same key, whatever their comments. */
const keyId = (line: string): string => line.split(' ').slice(0, 2).join(' ');

/** OpenSSH's SHA256 fingerprint of a key line. */
export function keyFingerprint(line: string): string {
  const blob = line.split(' ')[1] ?? '';
  return `SHA256:${createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '')}`;
}

export interface LocalStoreOptions {
  /** the rules each row must pass to be served (the config's, re-read at every rebuild) */
  rules?: () => RowRules;
  now?: () => number;
}

export class LocalStore {
  private db!: Database.Database;
  private byName = new Map<string, LocalUser>();
  private byUid = new Map<number, LocalUser>();
  private sorted: LocalUser[] = [];
  private readonly skipped = new LogOnce();
  private readonly rules: () => RowRules;
  private readonly now: () => number;
  /** bumps on every committed change and on reopen */
  generation = 0;
  /** called after every committed change and reopen */
  onChange: (() => void) | null = null;

  private constructor(readonly path: string, opts: LocalStoreOptions) {
    const fallback = rowRules(defaultConfig());
    this.rules = opts.rules ?? (() => fallback);
    this.now = opts.now ?? Date.now;
    this.db = this.openFile();
    this.rebuild();
  }

  /**
   * Opens (or creates) the store. A file that is a symlink or someone else's is refused (a
   * LocalStoreError 'io'). A file that is corrupt, not a local users file, or from a newer
   * latchkeyd is moved aside (path.bad-TIME, kept) and reported at err; a new one is made.
   */
  static open(path: string, opts: LocalStoreOptions = {}): LocalStore {
    return new LocalStore(path, opts);
  }

  private openFile(): Database.Database {
    const path = this.path;
    if (path === ':memory:') return openAtCurrentVersion(path);
    const refused = ownershipProblem(path);
    if (refused) {
      log('error', 'local.store_refused', { path, reason: refused, fix: `remove ${path} or make it a regular file owned by latchkeyd's account, mode 0600` });
      throw new LocalStoreError('io', `the local users file ${path} is refused: ${refused}`);
    }
    let created = false;
    try {
      try { createPrivate(path); created = true; } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e; }
      return this.finishOpen(openAtCurrentVersion(path));
    } catch (e) {
      if (created) throw new LocalStoreError('io', `cannot create the local users file ${path}: ${message(e)}; check that its directory is writable by the daemon`);
      const { aside, moved } = moveAside(path, this.now(), (why) =>
        new LocalStoreError('io', `the local users file ${path} cannot be used (${message(e)}) nor moved aside (${why}); move it away by hand and restart latchkeyd`));
      log('error', 'local.store_unusable', {
        path, reason: message(e), moved_to: moved,
        fix: 'latchkeyd starts with no local users: the users in the moved file are not served. '
          + `Look at them with \`sqlite3 ${aside} "SELECT name, uid FROM users"\`, repair or re-add them, then delete the file`,
      });
      try {
        createPrivate(path);
        return this.finishOpen(openAtCurrentVersion(path));
      } catch (e2) {
        throw new LocalStoreError('io', `cannot create the local users file ${path}: ${message(e2)}; check that its directory is writable by the daemon`);
      }
    }
  }

  private finishOpen(db: Database.Database): Database.Database {
    db.pragma('journal_mode = DELETE');
    // A store rewritten by a crash-free daemon is never half-written; FULL keeps a committed
    // `latchkeyctl local add` across a power loss.
    db.pragma('synchronous = FULL');
    // The file is the daemon's alone: whatever mode it had (a restored backup), it is 0600 now.
    const fd = openSync(this.path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try { if ((fstatSync(fd).mode & 0o077) !== 0) fchmodSync(fd, 0o600); } finally { closeSync(fd); }
    return db;
  }

  /** Re-reads every row into the index; rows that fail rows.ts are skipped and logged once. */
  reindex(): void {
    this.rebuild();
    this.changed();
  }

  private rebuild(): void {
    const rules = this.rules();
    const byName = new Map<string, LocalUser>();
    const byUid = new Map<number, LocalUser>();
    const rows = this.db.prepare('SELECT * FROM users ORDER BY uid, name').all() as DbRow[];
    for (const r of rows) {
      const got = fromDb(r, rules);
      let problem = 'problem' in got ? got.problem : null;
      if (!problem && 'user' in got) {
        if (byName.has(got.user.name)) problem = 'another row has the same name';
        else if (byUid.has(got.user.uid)) problem = `another row has the same uid (${byUid.get(got.user.uid)!.name})`;
      }
      if (problem) {
        const label = typeof r.name === 'string' ? r.name.slice(0, 64) : '?';
        this.skipped.log(`${this.path}|${label}|${problem}`, 'error', 'local.row_skipped', {
          path: this.path, user: label, uid: int(r.uid), reason: problem,
          fix: 'the user is not served; correct it with latchkeyctl local (or remove it) on the host that holds the store',
        });
        continue;
      }
      const u = (got as { user: LocalUser }).user;
      byName.set(u.name, u);
      byUid.set(u.uid, u);
    }
    this.byName = byName;
    this.byUid = byUid;
    this.sorted = [...byUid.values()].sort((a, b) => a.uid - b.uid);
  }

  private changed(): void {
    this.generation++;
    this.onChange?.();
  }

  /** Runs a change in one transaction, then rebuilds the index and tells the listener. */
  private commit<T>(fn: () => T): T {
    const out = this.db.transaction(fn)();
    this.rebuild();
    this.changed();
    return out;
  }

  get database(): Database.Database { return this.db; }

  get(name: string): LocalUser | null { return this.byName.get(name) ?? null; }
  getByUid(uid: number): LocalUser | null { return this.byUid.get(uid) ?? null; }
  /** Served users, ascending uid. */
  list(): LocalUser[] { return [...this.sorted]; }
  count(): number { return this.sorted.length; }

  /** How many served users with a password are on each context; a hash without one is "unknown". */
  contextCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const u of this.sorted) {
      if (u.passwordHash === null) continue;
      const k = u.context ?? 'unknown';
      out[k] = (out[k] ?? 0) + 1;
    }
    return out;
  }

  private rowOf(name: string): DbRow {
    const r = this.db.prepare('SELECT * FROM users WHERE name = ?').get(name) as DbRow | undefined;
    if (!r) throw new LocalStoreError('not_found', `no local user ${name}`);
    return r;
  }

  /** The row after a change; a row the index skipped is still answered for (a caller fixing it). */
  private after(name: string): LocalUser {
    const u = this.byName.get(name);
    if (u) return u;
    const got = fromDb(this.rowOf(name), this.rules());
    if ('user' in got) return got.user;
    throw new LocalStoreError('invalid', `local user ${name} is stored but not served: ${got.problem}`);
  }

  /** `avoid`: uids never picked when `u.uid` is null (the host's accounts have them). */
  add(u: NewLocalUser, rules: RowRules, avoid: (uid: number) => boolean = () => false): LocalUser {
    const range = rangeProblem(rules);
    if (range) throw new LocalStoreError('invalid', range);
    const keys = u.keys.map(normalKey);
    if (new Set(keys.map(keyId)).size !== keys.length) throw new LocalStoreError('invalid', 'the same key is given twice');
    this.commit(() => {
      if (this.db.prepare('SELECT 1 FROM users WHERE name = ?').get(u.name)) throw new LocalStoreError('exists', `a local user ${u.name} exists`);
      let uid = u.uid;
      if (uid === null) {
        const taken = this.db.prepare('SELECT uid FROM users WHERE uid BETWEEN ? AND ? ORDER BY uid').pluck().all(rules.minUid, rules.maxUid) as number[];
        // The lowest uid no stored user has and `avoid` (the host's accounts) does not refuse.
        const used = new Set(taken);
        uid = rules.minUid;
        while (uid <= rules.maxUid && (used.has(uid) || avoid(uid))) uid++;
        if (uid > rules.maxUid) throw new LocalStoreError('range_full', `every uid of the local range ${rules.minUid} .. ${rules.maxUid} is taken (by local users or the host's accounts); widen [local] min_uid .. max_uid`);
      } else {
        const holder = this.db.prepare('SELECT name FROM users WHERE uid = ?').pluck().get(uid) as string | undefined;
        if (holder !== undefined) throw new LocalStoreError('uid_taken', `uid ${uid} is the local user ${holder}'s`);
      }
      const at = this.now();
      const row: RowFields = { name: u.name, uid, gecos: u.gecos, shell: u.shell, passwordHash: u.passwordHash, context: u.context, keys, expiresAt: u.expiresAt };
      const problem = rowProblem(row, rules);
      if (problem) throw new LocalStoreError('invalid', problem);
      this.db.prepare(`INSERT INTO users (name, uid, gecos, shell, password_hash, context, keys, expires_at, disabled, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)`).run(u.name, uid, u.gecos, u.shell, u.passwordHash, u.context, JSON.stringify(keys), u.expiresAt, at, at);
    });
    return this.after(u.name);
  }

  private update(name: string, set: string, args: unknown[]): LocalUser {
    this.commit(() => {
      this.rowOf(name);
      this.db.prepare(`UPDATE users SET ${set}, updated_at = ? WHERE name = ?`).run(...args, this.now(), name);
    });
    return this.after(name);
  }

  setPassword(name: string, hash: string | null, context: string | null): LocalUser {
    if (hash !== null && parseHash(hash).kind === 'unknown') throw new LocalStoreError('invalid', 'the password hash is of no format latchkey verifies');
    return this.update(name, 'password_hash = ?, context = ?', [hash, hash === null ? null : context]);
  }

  /**
   * Compare-and-swap of the hash: stores `newHash` only while the hash is still `oldHash`, so an
   * upgrade computed from an old password never overwrites one changed meanwhile.
   */
  setHashIf(name: string, oldHash: string, newHash: string, context: string): boolean {
    if (parseHash(newHash).kind === 'unknown') throw new LocalStoreError('invalid', 'the new hash is of no format latchkey verifies');
    let changed = false;
    this.db.transaction(() => {
      this.rowOf(name);
      changed = this.db.prepare('UPDATE users SET password_hash = ?, context = ?, updated_at = ? WHERE name = ? AND password_hash = ?')
        .run(newHash, context, this.now(), name, oldHash).changes === 1;
    })();
    if (changed) { this.rebuild(); this.changed(); }
    return changed;
  }

  private keysOf(name: string): string[] {
    const r = this.rowOf(name);
    try {
      const k = JSON.parse(String(r.keys)) as unknown;
      if (Array.isArray(k) && k.every((x) => typeof x === 'string')) return k as string[];
    } catch { /* fall through */ }
    throw new LocalStoreError('invalid', `the keys of ${name} are not a JSON list; remove the user and add it again`);
  }

  addKey(name: string, line: string): LocalUser {
    const key = normalKey(line);
    this.commit(() => {
      const keys = this.keysOf(name);
      if (keys.some((k) => keyId(k) === keyId(key))) throw new LocalStoreError('exists', `${name} has this key already (${keyFingerprint(key)})`);
      if (keys.length >= MAX_KEYS_PER_USER) throw new LocalStoreError('invalid', `${name} has ${keys.length} keys; at most ${MAX_KEYS_PER_USER}`);
      this.db.prepare('UPDATE users SET keys = ?, updated_at = ? WHERE name = ?').run(JSON.stringify([...keys, key]), this.now(), name);
    });
    return this.after(name);
  }

  /** Removes one key: by its 1-based position (as `keys list` numbers them), its SHA256
   *  fingerprint, or its line (type and data; the comment is not compared). */
  removeKey(name: string, which: string | number): LocalUser {
    this.commit(() => {
      const keys = this.keysOf(name);
      let i = -1;
      if (typeof which === 'number') i = Number.isInteger(which) && which >= 1 && which <= keys.length ? which - 1 : -1;
      else if (which.startsWith('SHA256:')) i = keys.findIndex((k) => keyFingerprint(k) === which);
      else i = keys.findIndex((k) => keyId(k) === keyId(which.trim().split(/[ \t]+/).join(' ')));
      if (i < 0) throw new LocalStoreError('not_found', `${name} has no such key (${typeof which === 'number' ? `#${which}` : which.slice(0, 80)})`);
      keys.splice(i, 1);
      this.db.prepare('UPDATE users SET keys = ?, updated_at = ? WHERE name = ?').run(JSON.stringify(keys), this.now(), name);
    });
    return this.after(name);
  }

  setDisabled(name: string, disabled: boolean): LocalUser { return this.update(name, 'disabled = ?', [disabled ? 1 : 0]); }

  setExpiry(name: string, at: number | null): LocalUser {
    if (at !== null && (!Number.isSafeInteger(at) || at < 0)) throw new LocalStoreError('invalid', 'the expiry is not a time');
    return this.update(name, 'expires_at = ?', [at]);
  }

  remove(name: string): void {
    this.commit(() => {
      if (this.db.prepare('DELETE FROM users WHERE name = ?').run(name).changes === 0) throw new LocalStoreError('not_found', `no local user ${name}`);
    });
  }

  /**
   * Removes a user whose expiry is at or before `cutoff`, checked in the same transaction: an
   * expiry extended meanwhile (`latchkeyctl local add` again, a snapshot) keeps the user.
   * False when nothing was removed.
   */
  removeIfExpired(name: string, cutoff: number): boolean {
    let gone = false;
    this.db.transaction(() => {
      gone = this.db.prepare('DELETE FROM users WHERE name = ? AND expires_at IS NOT NULL AND expires_at <= ?').run(name, cutoff).changes > 0;
    })();
    if (gone) { this.rebuild(); this.changed(); }
    return gone;
  }

  /** Where this store's content came from: the snapshot facts (null when never from one). */
  meta(): SnapshotInfo {
    return { ...readMeta(this.db), users: this.count() };
  }

  setMeta(info: Pick<SnapshotInfo, 'takenAt' | 'takenOn'>): void {
    this.db.transaction(() => {
      const put = this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
      put.run('taken_at', info.takenAt === null ? null : String(info.takenAt));
      put.run('taken_on', info.takenOn);
    })();
  }

  /** Re-reads the file at the same path: the snapshot swap renamed a new file over it. */
  reopen(): void {
    const old = this.db;
    this.db = this.openFile();
    try { old.close(); } catch { /* the old handle's file is gone: nothing to flush */ }
    this.rebuild();
    this.changed();
  }

  close(): void {
    this.db.close();
  }
}

/** The columns of `users` at LOCAL_SCHEMA_VERSION, as a fresh store makes them. */
const SNAPSHOT_COLUMNS = ['name', 'uid', 'gecos', 'shell', 'password_hash', 'context', 'keys', 'expires_at', 'disabled', 'created_at', 'updated_at'];

/** sqlite_master of a store this code makes: the only schema a snapshot may have, to the byte. */
let canonicalSchema: Map<string, string | null> | null = null;
function canonical(): Map<string, string | null> {
  if (!canonicalSchema) {
    const db = openAtCurrentVersion(':memory:');
    canonicalSchema = new Map((db.prepare('SELECT type, name, sql FROM sqlite_master').all() as Array<{ type: string; name: string; sql: string | null }>)
      .map((o) => [`${o.type} ${o.name}`, o.sql]));
    db.close();
  }
  return canonicalSchema;
}

/**
 * Why a snapshot's schema is not the store's own, or null. Read from sqlite_master and
 * table_xinfo only, which evaluate nothing. The schema must be, to the byte, the one this
 * latchkeyd makes (a primary of the same schema version makes exactly that): a CHECK constraint,
 * a DEFAULT expression, a trigger, a view, an expression index or a generated column is SQL the
 * sender wrote, which SQLite would run while the file is checked or read (a constraint of a
 * few bytes can take seconds per row, a default gigabytes).
 */
function schemaProblem(db: Database.Database): string | null {
  const objects = db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_master').all() as Array<{ type: string; name: string; tbl_name: string; sql: string | null }>;
  const want = canonical();
  for (const o of objects) {
    const key = `${o.type} ${o.name}`;
    if (!want.has(key)) return `the file defines ${o.type} ${JSON.stringify(o.name.slice(0, 64))}, which a latchkey store never has; refused unread`;
    if (want.get(key) !== o.sql) return `the file's ${o.type} ${o.name} is not defined as a latchkey store defines it (a primary of another schema version, or SQL someone added); refused unread`;
  }
  if (objects.length !== want.size) return 'the file lacks part of a latchkey store\'s schema; refused unread';
  return null;
}

/**
 * Checks a snapshot file before it may replace the store: a private copy is opened (so a
 * file changed meanwhile cannot pass one check and serve another content), its schema version
 * (this latchkeyd's only) and schema (byte for byte this latchkeyd's), integrity_check, every
 * row through rows.ts, uid and name uniqueness. Never throws.
 */
export function checkSnapshotFile(path: string, rules: RowRules): SnapshotCheck {
  let dir: string | null = null;
  let db: Database.Database | null = null;
  try {
    const st = lstatSync(path);
    if (st.isSymbolicLink() || !st.isFile()) return { ok: false, error: `${path} is not a regular file` };
    if (st.size > MAX_SNAPSHOT_BYTES) return { ok: false, error: `${path} is ${st.size} bytes, more than ${MAX_SNAPSHOT_BYTES}` };
    if (st.size === 0) return { ok: false, error: `${path} is empty` };
    dir = mkdtempSync(join(tmpdir(), 'latchkey-snapcheck-'));
    const copy = join(dir, 'local.db');
    copyFileSync(path, copy);
    db = new Database(copy, { fileMustExist: true });
    // Before anything evaluates the file's schema (integrity_check computes index expressions,
    // a SELECT computes generated columns): a hostile primary's schema could make a value of
    // gigabytes out of a few bytes. Only the store's own tables, plain columns and the
    // indexes of their keys are allowed; nothing the file defines ever runs.
    db.pragma('trusted_schema = OFF');
    // The version first: the schema to compare with is this version's (an older primary's
    // snapshot is refused, saying so, rather than migrated: migrating runs the file's SQL too).
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > LOCAL_SCHEMA_VERSION) return { ok: false, error: `schema version ${version} is newer than this latchkeyd understands (${LOCAL_SCHEMA_VERSION}); a newer latchkeyd wrote it: upgrade latchkey here first` };
    if (version < LOCAL_SCHEMA_VERSION) return { ok: false, error: `schema version ${version} is older than this latchkeyd's (${LOCAL_SCHEMA_VERSION}); upgrade latchkey on the primary` };
    const schema = schemaProblem(db);
    if (schema) return { ok: false, error: schema };
    // A backstop, should a constraint ever pass the comparison above: never evaluated.
    db.pragma('ignore_check_constraints = ON');
    const integrity = db.pragma('integrity_check', { simple: true });
    if (integrity !== 'ok') return { ok: false, error: `integrity_check: ${String(integrity)}` };
    const range = rangeProblem(rules);
    const big = db.prepare(`SELECT name FROM users WHERE ${SNAPSHOT_COLUMNS.map((c) => `length(${c}) > ${MAX_SNAPSHOT_VALUE}`).join(' OR ')} LIMIT 1`).pluck().get();
    if (big !== undefined) return { ok: false, error: `a row holds a value longer than ${MAX_SNAPSHOT_VALUE} bytes; no local user has one` };
    const count = Number(db.prepare('SELECT count(*) FROM users').pluck().get());
    if (range && count > 0) return { ok: false, error: range };
    const outside = db.prepare('SELECT uid FROM users WHERE uid NOT BETWEEN ? AND ? LIMIT 1').pluck().get(rules.minUid, rules.maxUid);
    if (outside !== undefined) return { ok: false, error: `uid ${String(outside)} is outside [local] min_uid .. max_uid (${rules.minUid} .. ${rules.maxUid}) of this host` };
    const names = new Set<string>();
    const uids = new Set<number>();
    // Row by row: a hostile file is refused at its first bad row, without building them all.
    for (const r of db.prepare('SELECT * FROM users').iterate() as IterableIterator<DbRow>) {
      const got = fromDb(r, rules);
      const label = typeof r.name === 'string' ? JSON.stringify(r.name.slice(0, 64)) : '?';
      if ('problem' in got) return { ok: false, error: `user ${label}: ${got.problem}` };
      if (names.has(got.user.name)) return { ok: false, error: `user ${label} is there twice` };
      if (uids.has(got.user.uid)) return { ok: false, error: `uid ${got.user.uid} is there twice` };
      names.add(got.user.name);
      uids.add(got.user.uid);
    }
    return { ok: true, info: { ...readMeta(db), users: count } };
  } catch (e) {
    return { ok: false, error: message(e) };
  } finally {
    try { db?.close(); } catch { /* already closed */ }
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}
