// The sessions' own SQLite file. Unlike the cache (disposable: a bad cache file is recreated
// and refilled from upstream), these records exist nowhere else: a session limit, `latchkeyctl
// sessions` and `kill-session` depend on them. So the file carries a schema version
// (PRAGMA user_version) with a migration for every older version, and a file that cannot be
// used is moved aside, kept and reported at err, never emptied.
import Database from 'better-sqlite3';
import { chmodSync, closeSync, constants, existsSync, mkdirSync, openSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { log } from '../log.js';
import { migrate, moveAside } from '../storage/versioned.js';
import { LatchkeyError } from '../errors.js';

/** The version this code writes. Add a migration below for every bump. */
export const SESSIONS_SCHEMA_VERSION = 2;

const TABLE = `CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  user TEXT NOT NULL,
  uid INTEGER NOT NULL,
  service TEXT NOT NULL,
  rhost TEXT NOT NULL,
  tty TEXT NOT NULL,
  pid INTEGER NOT NULL,
  pid_start TEXT,
  started_at INTEGER NOT NULL,
  ended_at INTEGER,
  end_reason TEXT,
  renewed_at INTEGER,
  end_detail TEXT
);`;
const INDEXES = `CREATE INDEX IF NOT EXISTS sessions_open_user ON sessions (user) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS sessions_open_pid ON sessions (pid) WHERE ended_at IS NULL;`;

/**
 * MIGRATIONS[v] turns a version-v file into version v+1; each runs in one transaction with its
 * version bump, so a crash leaves either the old or the new version, never half of one.
 */
const MIGRATIONS: Array<(db: Database.Database) => void> = [
  // 0 → 1: the unversioned `sessions` table latchkeyd kept inside the cache file (same columns);
  // a copy of such a file, or one an older daemon wrote, gets the indexes and a version.
  (db) => db.exec(INDEXES),
  // 1 → 2: renewed_at (max_session_age counts from the last renewal, session_renewal) and
  // end_detail (why a session was revoked: the upstream's word on the account, the admin's kill).
  (db) => db.exec('ALTER TABLE sessions ADD COLUMN renewed_at INTEGER; ALTER TABLE sessions ADD COLUMN end_detail TEXT;'),
];

/** A stored session row, as SQLite returns it. */
export interface SessionRow {
  id: string; user: string; uid: number; service: string; rhost: string; tty: string;
  pid: number; pid_start: string | null; started_at: number;
  /** epoch ms of the last renewal (session_renewal), null when never renewed */
  renewed_at?: number | null;
}

/** A row with its end, as `latchkeyctl sessions --ended` shows it. */
export interface EndedRow extends SessionRow { ended_at: number; end_reason: string; end_detail: string | null }

/** Where the sessions live by default: beside the cache file (tmpfs /run/latchkey), never in it. */
export function sessionStorePath(cachePath: string): string {
  if (cachePath === ':memory:') return ':memory:';
  const name = basename(cachePath) === 'sessions.db' ? 'latchkey-sessions.db' : 'sessions.db';
  return join(dirname(resolve(cachePath)), name);
}

/** Opens an existing or new file at the current version, or says why it cannot. */
function openAtCurrentVersion(path: string): { db: Database.Database; created: boolean } {
  const db = new Database(path);
  try {
    // Any read makes SQLite look at the header: a file that is not a database throws here.
    const version = db.pragma('user_version', { simple: true }) as number;
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[]);
    if (version === 0 && tables.length === 0) {
      db.exec(TABLE + INDEXES);
      db.pragma(`user_version = ${SESSIONS_SCHEMA_VERSION}`);
      return { db, created: true };
    }
    if (version === 0 && !tables.includes('sessions')) {
      throw new Error(`not a latchkey sessions file (tables: ${tables.join(', ')})`);
    }
    if (version > SESSIONS_SCHEMA_VERSION) {
      throw new Error(`schema version ${version} is newer than this latchkeyd understands (${SESSIONS_SCHEMA_VERSION}); a newer latchkeyd wrote it`);
    }
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new Error(`quick_check: ${String(check)}`);
    migrate(db, path, version, SESSIONS_SCHEMA_VERSION, MIGRATIONS, 'sessions.store_migrated');
    return { db, created: false };
  } catch (e) {
    db.close();
    throw e;
  }
}

/** Creates the file 0600 before SQLite opens it, so it never exists with looser permissions. */
function createPrivate(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const fd = openSync(path, constants.O_CREAT | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
  closeSync(fd);
  chmodSync(path, 0o600);
}

export class SessionStore {
  private readonly s;

  private constructor(readonly db: Database.Database, readonly path: string) {
    if (path !== ':memory:') db.pragma('journal_mode = WAL');
    this.s = {
      insert: db.prepare(`INSERT INTO sessions (id, user, uid, service, rhost, tty, pid, pid_start, started_at)
        VALUES (@id, @user, @uid, @service, @rhost, @tty, @pid, @pid_start, @started_at)`),
      endByPid: db.prepare<[number, string, number, string]>(`UPDATE sessions SET ended_at = ?, end_reason = ?
        WHERE ended_at IS NULL AND pid = ? AND user = ?`),
      endById: db.prepare<[number, string, string]>('UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL'),
      openAll: db.prepare<[], SessionRow>('SELECT * FROM sessions WHERE ended_at IS NULL ORDER BY started_at, rowid'),
      openOf: db.prepare<[string], SessionRow>('SELECT * FROM sessions WHERE ended_at IS NULL AND user = ? ORDER BY started_at, rowid'),
      countAll: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM sessions WHERE ended_at IS NULL'),
      countOf: db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM sessions WHERE ended_at IS NULL AND user = ?'),
      endedAll: db.prepare<[], EndedRow>('SELECT * FROM sessions WHERE ended_at IS NOT NULL ORDER BY ended_at, rowid'),
      endedOf: db.prepare<[string], EndedRow>('SELECT * FROM sessions WHERE ended_at IS NOT NULL AND user = ? ORDER BY ended_at, rowid'),
      endWithDetail: db.prepare<[number, string, string, string]>('UPDATE sessions SET ended_at = ?, end_reason = ?, end_detail = ? WHERE id = ? AND ended_at IS NULL'),
      renew: db.prepare<[number, string]>('UPDATE sessions SET renewed_at = ? WHERE id = ? AND ended_at IS NULL'),
      prune: db.prepare<[number]>('DELETE FROM sessions WHERE ended_at IS NOT NULL AND ended_at < ?'),
    };
  }

  /**
   * Opens (or creates) the sessions file. A file that is corrupt, not a sessions file, or from a
   * newer latchkeyd is moved aside (path.bad-TIME, kept) and reported at err; a new one is made.
   * `importFrom`: the cache file, whose `sessions` table held the open sessions before they had
   * a file of their own; a new store takes them over once, and the old table is dropped.
   */
  static open(path: string, opts: { importFrom?: string; now?: () => number } = {}): SessionStore {
    if (path === ':memory:') return new SessionStore(openAtCurrentVersion(path).db, path);
    const now = opts.now ?? Date.now;
    let opened: { db: Database.Database; created: boolean };
    try {
      if (!existsSync(path)) createPrivate(path);
      opened = openAtCurrentVersion(path);
    } catch (e) {
      const { aside, moved } = moveAside(path, now(), (why) =>
        new LatchkeyError('E_SESSIONS', `the sessions file ${path} cannot be used (${e instanceof Error ? e.message : String(e)}) nor moved aside (${why}); move it away by hand and restart latchkeyd`));
      log('error', 'sessions.store_unusable', {
        path, reason: e instanceof Error ? e.message : String(e), moved_to: moved,
        fix: 'latchkeyd starts with no sessions recorded: the logins listed in the moved file are not counted, listed or ended by it. '
          + `Look at them with \`sqlite3 ${aside} "SELECT * FROM sessions WHERE ended_at IS NULL"\`, end those still running by hand if needed, then delete the file`,
      });
      try {
        createPrivate(path);
        opened = openAtCurrentVersion(path);
      } catch (e2) {
        throw new LatchkeyError('E_SESSIONS', `cannot create the sessions file ${path}: ${e2 instanceof Error ? e2.message : String(e2)}; check that its directory is writable by the daemon`);
      }
    }
    chmodSync(path, 0o600);
    const store = new SessionStore(opened.db, path);
    if (opened.created && opts.importFrom && opts.importFrom !== ':memory:' && existsSync(opts.importFrom)) store.importLegacy(opts.importFrom);
    return store;
  }

  /** Takes over the open sessions of the cache file's old `sessions` table (once: it is dropped). */
  private importLegacy(cachePath: string): void {
    try {
      this.db.prepare('ATTACH DATABASE ? AS legacy').run(cachePath);
    } catch (e) {
      log('warn', 'sessions.import_failed', { from: cachePath, error: e instanceof Error ? e.message : String(e), detail: 'the sessions recorded in the cache file stay there' });
      return;
    }
    try {
      const has = this.db.prepare("SELECT count(*) AS n FROM legacy.sqlite_master WHERE type = 'table' AND name = 'sessions'").get() as { n: number };
      if (has.n === 0) return;
      const n = this.db.transaction(() => {
        const copied = this.db.prepare(`INSERT OR IGNORE INTO main.sessions (id, user, uid, service, rhost, tty, pid, pid_start, started_at)
          SELECT id, user, uid, service, rhost, tty, pid, pid_start, started_at FROM legacy.sessions WHERE ended_at IS NULL`).run().changes;
        this.db.exec('DROP TABLE legacy.sessions');
        return copied;
      })();
      log('info', 'sessions.imported', { from: cachePath, to: this.path, open_sessions: n });
    } catch (e) {
      log('warn', 'sessions.import_failed', { from: cachePath, error: e instanceof Error ? e.message : String(e), detail: 'the sessions recorded in the cache file stay there' });
    } finally {
      this.db.exec('DETACH DATABASE legacy');
    }
  }

  transaction<T>(fn: () => T): T { return this.db.transaction(fn)(); }

  insert(row: SessionRow): void { this.s.insert.run(row); }
  /** Ends the open sessions of this pid and user; returns how many there were. */
  endByPid(pid: number, user: string, at: number, reason: string): number { return this.s.endByPid.run(at, reason, pid, user).changes; }
  /** Ends one open session; returns whether it was open (false: someone else ended it first). */
  end(id: string, at: number, reason: string, detail?: string): boolean {
    return (detail === undefined ? this.s.endById.run(at, reason, id) : this.s.endWithDetail.run(at, reason, detail, id)).changes > 0;
  }
  /** Restarts the age clock of an open session. */
  renew(id: string, at: number): boolean { return this.s.renew.run(at, id).changes > 0; }
  /** Ended sessions still kept (24 h), oldest end first; only this user's when given. */
  endedRows(user?: string): EndedRow[] { return user === undefined ? this.s.endedAll.all() : this.s.endedOf.all(user); }
  /** Open sessions, oldest first; only this user's when given. */
  openRows(user?: string): SessionRow[] { return user === undefined ? this.s.openAll.all() : this.s.openOf.all(user); }
  countOpen(user?: string): number { return (user === undefined ? this.s.countAll.get()! : this.s.countOf.get(user)!).n; }
  /** Deletes ended rows older than `cutoff`; returns how many. */
  pruneEndedBefore(cutoff: number): number { return this.s.prune.run(cutoff).changes; }

  close(): void {
    try { this.db.pragma('wal_checkpoint(TRUNCATE)'); } catch { /* closing anyway */ }
    this.db.close();
  }
}
