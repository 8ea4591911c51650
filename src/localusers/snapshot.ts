// Primary/secondary sync of the local users' store (issue 16), the daemon's two halves:
//
// - SnapshotPublisher (role primary): after start and after every change (debounced), an SQLite
//   online backup of the store into snapshot/.local.db.tmp, stamped with when and where it was
//   taken, fsynced, made 0640 (the daemon's group: the primary's sync account is a member and
//   its forced rrsync command reads the file), then renamed to snapshot/local.db. A reader
//   (rsync on the sync account) sees the old file or the new one, never a half-written one.
// - SnapshotFollower (role secondary): latchkey-sync (sync-pull.ts) drops the primary's file in
//   incoming/local.db by rename; the follower notices it (fs.watch, plus a stat poll because
//   inotify misses nothing on a local disk but says nothing on some others), copies it to a
//   private file beside the store, checks the copy (store.ts checkSnapshotFile: integrity,
//   version, every row), and only then renames the copy over the store and reopens it. A bad
//   file leaves the store as it was, and the reason is logged once and shown by `status`.
//
// The store file is only ever replaced by rename(2), so NSS lookups served from the store never
// see a half-written file, and a crash mid-way leaves the old store or the new one.
import {
  chmodSync, closeSync, constants, fchmodSync, fchownSync, fstatSync, fsyncSync, linkSync, lstatSync, mkdirSync,
  openSync, readSync, renameSync, statSync, unlinkSync, watch, writeSync, type FSWatcher,
} from 'node:fs';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import Database from 'better-sqlite3';
import { log } from '../log.js';
import type { RowRules } from './rows.js';
import { checkSnapshotFile, type LocalStore } from './store.js';
import type { SnapshotInfo } from './types.js';
import { MAX_SNAPSHOT_BYTES, parseSyncStatus, syncPaths, type SyncPaths } from './sync-pull.js';

/** What `latchkeyctl status` shows about sync (the lead's facade passes it on). */
export interface SyncStatus {
  /** primary: the last snapshot published; secondary: the snapshot the store came from */
  snapshot: SnapshotInfo | null;
  /** primary: when it last published; secondary: when latchkey-sync last ran */
  lastSyncAt: number | null;
  /** why the last publish, pull or swap failed; null when the last one worked */
  lastSyncError: string | null;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** fsync a directory, so a rename in it survives a power loss (rename(2) alone does not). */
function fsyncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

/** Removes a leftover temp file; a missing one is fine. */
function unlinkQuiet(path: string): void {
  try { unlinkSync(path); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
}

export interface PublisherOptions {
  /** the host name stamped as taken_on (default: os.hostname()) */
  host?: string;
  /** how long changes are gathered before one snapshot (default 1 s) */
  debounceMs?: number;
  now?: () => number;
}

/** Role primary: keeps snapshot/local.db a consistent copy of the store. */
export class SnapshotPublisher {
  readonly paths: SyncPaths;
  private readonly host: string;
  private readonly debounceMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  /** a change came in while a snapshot was being taken: take another after it */
  private again = false;
  private stopped = true;
  private chained: (() => void) | null = null;
  private handler: (() => void) | null = null;
  private published: SnapshotInfo | null = null;
  private publishedAt: number | null = null;
  private lastError: string | null = null;

  constructor(private readonly store: LocalStore, opts: PublisherOptions = {}) {
    this.paths = syncPaths(store.path);
    const h = opts.host ?? hostname();
    // readMeta (store.ts) drops a taken_on that is no host name; say so here rather than there.
    this.host = /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/.test(h) ? h : 'unknown';
    this.debounceMs = opts.debounceMs ?? 1000;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Publishes once (making snapshot/ if needed); from then on every store change publishes again.
   * It chains onto store.onChange (keeping a handler set before, and giving it back on stop).
   */
  async start(): Promise<void> {
    this.stopped = false;
    this.chained = this.store.onChange;
    this.handler = () => { this.chained?.(); this.changed(); };
    this.store.onChange = this.handler;
    this.kick();
    await this.running;
  }

  /** Stops listening and waits for a snapshot in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (this.handler && this.store.onChange === this.handler) this.store.onChange = this.chained;
    this.handler = null;
    await this.running;
  }

  /** A change in the store: one snapshot after debounceMs of quiet (or of changes). */
  changed(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => { this.timer = null; this.kick(); }, this.debounceMs);
    this.timer.unref();
  }

  /** Resolves when no snapshot is being taken (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running || this.timer) {
      if (this.running) await this.running;
      else await new Promise((r) => setTimeout(r, 20));
    }
  }

  status(): SyncStatus {
    return { snapshot: this.published, lastSyncAt: this.publishedAt, lastSyncError: this.lastError };
  }

  /**
   * The directory of the store is the daemon's (0700 by store.ts); the sync account must pass
   * through it to snapshot/, so it gets group search (0710: no listing, and local.db stays 0600).
   */
  private prepareDirs(): void {
    const st = statSync(this.paths.dir);
    if ((st.mode & 0o010) === 0) {
      chmodSync(this.paths.dir, (st.mode & 0o7777) | 0o010);
      log('info', 'local.snapshot_dir_opened', { dir: this.paths.dir, mode: ((st.mode & 0o7777) | 0o010).toString(8), why: 'the sync account (group member) reaches snapshot/ through it' });
    }
    mkdirSync(this.paths.snapshotDir, { recursive: true, mode: 0o750 });
    const sd = lstatSync(this.paths.snapshotDir);
    if (!sd.isDirectory()) throw new Error(`${this.paths.snapshotDir} is not a directory`);
    chmodSync(this.paths.snapshotDir, 0o750);
  }

  private kick(): void {
    if (this.running) { this.again = true; return; }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.publish();
        } while (this.again && !this.stopped);
      } finally {
        this.running = null;
      }
    })();
  }

  /** One snapshot; a failure is kept for `status` and logged, the last good file stays. */
  private async publish(): Promise<void> {
    const { snapshotTmp: tmp, snapshotFile: dest, snapshotDir } = this.paths;
    try {
      // Every time: a snapshot/ removed by hand comes back, and a failure here is one more
      // failed publish (logged, in status), never a daemon that stops publishing for good.
      this.prepareDirs();
      unlinkQuiet(tmp);
      // SQLite's online backup: a consistent copy even while the store changes (the backup
      // restarts, or follows changes made through this same connection).
      await this.store.database.backup(tmp);
      const takenAt = this.now();
      const db = new Database(tmp, { fileMustExist: true });
      let users: number;
      try {
        db.pragma('journal_mode = DELETE');
        // Written directly, not through a LocalStore: opening the copy as a store would check
        // and log its rows a second time. The meta table is store.ts's (key, value) table.
        db.transaction(() => {
          const put = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
          put.run('taken_at', String(takenAt));
          put.run('taken_on', this.host);
        })();
        users = Number(db.prepare('SELECT count(*) FROM users').pluck().get());
      } finally {
        db.close();
      }
      const fd = openSync(tmp, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        fsyncSync(fd);
        // Group read for the sync account, which is in the daemon's group; nobody else.
        if (process.getegid) fchownSync(fd, -1, process.getegid());
        fchmodSync(fd, 0o640);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, dest);
      fsyncDir(snapshotDir);
      this.published = { takenAt, takenOn: this.host, users };
      this.publishedAt = takenAt;
      if (this.lastError !== null) log('info', 'local.snapshot_recovered', { path: dest });
      this.lastError = null;
      log('debug', 'local.snapshot_published', { path: dest, users, taken_at: new Date(takenAt).toISOString() });
    } catch (e) {
      const why = `cannot publish ${dest}: ${message(e)}`;
      if (why !== this.lastError) {
        log('error', 'local.snapshot_failed', { path: dest, reason: message(e), fix: `check that ${snapshotDir} is a directory the daemon can write (and that the disk is not full); secondaries keep the previous snapshot` });
      }
      this.lastError = why;
      try { unlinkQuiet(tmp); } catch { /* reported above */ }
    }
  }
}

/** How far ahead of this host's clock a snapshot's taken_at may be (clocks differ a little). */
export const FUTURE_SLACK_MS = 10 * 60_000;

export interface FollowerOptions {
  /** the rules every row of a snapshot must pass (the current config's) */
  rules: () => RowRules;
  /** the stat poll's interval (default 2 s) */
  pollMs?: number;
}

/** dev/ino/size/mtime: a new file from rsync (new inode) or one written in place both change it. */
function identity(st: { dev: number; ino: number; size: number; mtimeMs: number }): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
}

/** Role secondary: takes incoming/local.db into the store when it passes the checks. */
export class SnapshotFollower {
  readonly paths: SyncPaths;
  private readonly rules: () => RowRules;
  private readonly pollMs: number;
  private watcher: FSWatcher | null = null;
  private poll: NodeJS.Timeout | null = null;
  private soon: NodeJS.Timeout | null = null;
  /** the identity of the incoming file last looked at, taken or not */
  private seen: string | null = null;
  /** why the incoming file last looked at was refused; null once one is taken */
  private rejected: string | null = null;
  private stopped = true;

  constructor(private readonly store: LocalStore, opts: FollowerOptions) {
    this.paths = syncPaths(store.path);
    this.rules = opts.rules;
    this.pollMs = opts.pollMs ?? 2000;
  }

  /** Makes incoming/ (0700), looks at what is there now, then watches it. */
  start(): void {
    this.stopped = false;
    mkdirSync(this.paths.incomingDir, { recursive: true, mode: 0o700 });
    this.check();
    try {
      this.watcher = watch(this.paths.incomingDir, { persistent: false }, (_event, name) => {
        // rsync's temp file (.local.db.XXXXXX) and the status file come and go too; the rename
        // onto local.db is the event that matters. Some platforms give no name: look anyway.
        if (name === null || basename(String(name)) === 'local.db') this.checkSoon();
      });
      this.watcher.on('error', (e) => {
        log('warn', 'local.sync_watch_failed', { dir: this.paths.incomingDir, reason: message(e), fallback: `polling every ${this.pollMs} ms` });
        this.watcher?.close();
        this.watcher = null;
      });
    } catch (e) {
      log('warn', 'local.sync_watch_failed', { dir: this.paths.incomingDir, reason: message(e), fallback: `polling every ${this.pollMs} ms` });
    }
    this.poll = setInterval(() => this.check(), this.pollMs);
    this.poll.unref();
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.poll) clearInterval(this.poll);
    if (this.soon) clearTimeout(this.soon);
    this.poll = null;
    this.soon = null;
  }

  /** Gathers the burst of events one rename makes into one look. */
  private checkSoon(): void {
    if (this.soon || this.stopped) return;
    this.soon = setTimeout(() => { this.soon = null; this.check(); }, 100);
    this.soon.unref();
  }

  /**
   * Looks at incoming/local.db; a file not seen before is checked and, when good, swapped in.
   * Returns what happened (tests and logs); never throws.
   */
  check(): 'none' | 'unchanged' | 'taken' | 'current' | 'rejected' {
    let st;
    try { st = lstatSync(this.paths.incomingFile); } catch { return 'none'; }
    const id = identity(st);
    if (id === this.seen) return 'unchanged';
    this.seen = id;
    const tmp = join(this.paths.dir, '.local.db.incoming');
    try {
      if (st.isSymbolicLink() || !st.isFile()) throw new Error('it is not a regular file');
      if (st.size > MAX_SNAPSHOT_BYTES) throw new Error(`it is ${st.size} bytes, more than ${MAX_SNAPSHOT_BYTES}`);
      // A private copy first: the file in incoming/ may be replaced by the next pull at any
      // moment, and what is checked must be exactly what is renamed over the store.
      this.copyPrivate(tmp);
      const c = checkSnapshotFile(tmp, this.rules());
      if (!c.ok) throw new Error(c.error);
      const cur = this.store.meta();
      if (c.info.takenAt !== null && c.info.takenAt === cur.takenAt && c.info.takenOn === cur.takenOn) {
        // The snapshot the store already is (a daemon restart, or the same file again).
        unlinkQuiet(tmp);
        this.rejected = null;
        return 'current';
      }
      // An older snapshot than the one in use (a replayed file, a primary restored from a
      // backup) would bring back users removed or disabled since: refused, and said how to take
      // it on purpose.
      // One from the future (a primary whose clock ran ahead) would make every later, correct
      // snapshot look older, and revocations would stop reaching this host: refused too.
      if (c.info.takenAt !== null && c.info.takenAt > Date.now() + FUTURE_SLACK_MS) {
        throw new Error(`it was taken ${new Date(c.info.takenAt).toISOString()}, more than ${FUTURE_SLACK_MS / 60_000} minutes ahead of this host's clock; check the primary's clock (and this one's)`);
      }
      if (cur.takenAt !== null && (c.info.takenAt === null || c.info.takenAt < cur.takenAt)) {
        throw new Error(`it was taken ${c.info.takenAt === null ? 'at an unknown time' : new Date(c.info.takenAt).toISOString()}, before the one in use (${new Date(cur.takenAt).toISOString()}); `
          + `if the primary was restored on purpose, stop latchkeyd, remove ${this.store.path} and start it: the next sync takes the primary's`);
      }
      this.swap(tmp);
      this.rejected = null;
      log('info', 'local.snapshot_taken', {
        path: this.paths.incomingFile, users: c.info.users, taken_on: c.info.takenOn,
        taken_at: c.info.takenAt === null ? null : new Date(c.info.takenAt).toISOString(),
      });
      return 'taken';
    } catch (e) {
      try { unlinkQuiet(tmp); } catch { /* the next look retries */ }
      // One line: SQLite's integrity_check report has newlines, and status prints this.
      const why = message(e).replace(/\s+/g, ' ').trim();
      this.rejected = `the snapshot ${this.paths.incomingFile} was refused: ${why}; the previous local users stay in use`;
      // Once per file identity: the poll sees the same bad file every 2 s.
      log('error', 'local.snapshot_rejected', {
        path: this.paths.incomingFile, reason: why, kept: this.store.path,
        fix: 'check the primary (latchkeyctl status there, and its snapshot/local.db); the next good snapshot latchkey-sync fetches replaces this one',
      });
      return 'rejected';
    }
  }

  /** Copies incoming/local.db to `tmp` (created 0600, never following a link). */
  private copyPrivate(tmp: string): void {
    unlinkQuiet(tmp);
    const src = openSync(this.paths.incomingFile, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const sst = fstatSync(src);
      if (!sst.isFile()) throw new Error('it is not a regular file');
      const dst = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        const buf = Buffer.allocUnsafe(1 << 20);
        let total = 0;
        for (;;) {
          const n = readSync(src, buf, 0, buf.length, null);
          if (n === 0) break;
          total += n;
          if (total > MAX_SNAPSHOT_BYTES) throw new Error(`it grew past ${MAX_SNAPSHOT_BYTES} bytes while being read`);
          let off = 0;
          while (off < n) off += writeSync(dst, buf, off, n - off);
        }
        fsyncSync(dst);
      } finally {
        closeSync(dst);
      }
    } finally {
      closeSync(src);
    }
  }

  /**
   * Renames the checked copy over the store and reopens it. The old file is kept as a hard link
   * until the reopen worked, so a store that cannot be reopened is put back.
   */
  private swap(tmp: string): void {
    const store = this.store.path;
    const prev = join(this.paths.dir, '.local.db.prev');
    unlinkQuiet(prev);
    linkSync(store, prev);
    renameSync(tmp, store);
    fsyncDir(this.paths.dir);
    try {
      this.store.reopen();
    } catch (e) {
      renameSync(prev, store);
      fsyncDir(this.paths.dir);
      this.store.reopen();
      throw new Error(`the store did not reopen with it (${message(e)})`);
    }
    unlinkQuiet(prev);
  }

  status(): SyncStatus {
    const meta = this.store.meta();
    const pulled = this.readPullStatus();
    let error = this.rejected;
    if (error === null && pulled.error !== null) error = pulled.error;
    return { snapshot: meta.takenAt === null ? null : meta, lastSyncAt: pulled.at, lastSyncError: error };
  }

  /** incoming/sync-status.json, written by latchkey-sync at the end of every run. */
  private readPullStatus(): { at: number | null; error: string | null } {
    let fd: number;
    try {
      fd = openSync(this.paths.statusFile, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { at: null, error: null };
      return { at: null, error: `cannot read ${this.paths.statusFile}: ${message(e)}` };
    }
    try {
      const buf = Buffer.alloc(4096);
      const n = readSync(fd, buf, 0, buf.length, 0);
      const s = parseSyncStatus(buf.subarray(0, n).toString('utf8'));
      if (s === null) return { at: null, error: `${this.paths.statusFile} is not a latchkey-sync status file` };
      return { at: s.at, error: s.ok ? null : `latchkey-sync failed: ${s.error ?? 'no reason given'}` };
    } catch (e) {
      return { at: null, error: `cannot read ${this.paths.statusFile}: ${message(e)}` };
    } finally {
      closeSync(fd);
    }
  }
}
