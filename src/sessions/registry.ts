// Login sessions opened through pam_latchkey: recorded in the cache database (table `sessions`),
// limited per user, listed and ended by latchkeyctl, swept when their process is gone or too old.
//
// The recorded pid is the process that called pam_open_session: for sshd that is the per-connection
// privileged process, which lives as long as the login; SIGTERM to it ends the login (sshd(8)).
// Because pids are reused, the kernel start time of the process (/proc/PID/stat field 22) is stored
// too, and a pid whose start time changed is treated as gone: we never signal a stranger.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type Database from 'better-sqlite3';
import type { Config, HomesConfig } from '../config/types.js';
import type { Lookup } from '../cache/types.js';
import { ok, fail, type HandlerTable } from '../server/dispatch.js';
import { Status } from '../protocol/generated.js';
import { ensureHome as realEnsureHome } from '../homes/ensure.js';
import { sessionChroot, NO_SSHD_FACTS, type SshdFacts } from '../sshdconf/checks.js';
import { log } from '../log.js';

/** An open session as latchkeyctl shows it. */
export interface SessionRecord {
  id: string;
  user: string;
  uid: number;
  service: string;
  rhost: string;
  tty: string;
  pid: number;
  /** epoch milliseconds */
  startedAt: number;
}

export interface OpenRequest { user: string; uid: number; service: string; rhost: string; tty: string; pid: number }

/** Why SessionRegistry.open refused. */
export type OpenResult = { ok: true; id: string } | { ok: false; reason: 'limit'; open: number; max: number };

/** What the registry needs from the operating system; tests replace it. */
export interface ProcessOps {
  /** true when a process with this pid exists (kill(pid, 0) did not fail with ESRCH) */
  alive(pid: number): boolean;
  /** kernel start time of the process in clock ticks, or null when unknown */
  startTime(pid: number): string | null;
  /** sends SIGTERM; false when the process was already gone */
  terminate(pid: number): boolean;
}

export const systemProcessOps: ProcessOps = {
  alive(pid) {
    try {
      process.kill(pid, 0);
      return true;
    } catch (e) {
      // EPERM means it exists but belongs to someone we may not signal: still alive.
      return (e as NodeJS.ErrnoException).code !== 'ESRCH';
    }
  },
  startTime(pid) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // comm (field 2) may contain spaces and parentheses: split after the last ')'.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return rest[19] ?? null; // field 22 = index 19 after pid, comm
    } catch {
      return null;
    }
  },
  terminate(pid) {
    try {
      process.kill(pid, 'SIGTERM');
      return true;
    } catch {
      return false;
    }
  },
};

interface Row {
  id: string; user: string; uid: number; service: string; rhost: string; tty: string;
  pid: number; pid_start: string | null; started_at: number;
}

/** Ended rows are kept this long for `latchkeyctl` history, then deleted by sweep(). */
const KEEP_ENDED_MS = 24 * 3600 * 1000;

export class SessionRegistry {
  constructor(
    private readonly db: Database.Database,
    private readonly config: () => Config,
    private readonly procs: ProcessOps = systemProcessOps,
    private readonly now: () => number = Date.now,
  ) {
    db.exec(`CREATE TABLE IF NOT EXISTS sessions (
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
      end_reason TEXT
    );
    CREATE INDEX IF NOT EXISTS sessions_open_user ON sessions (user) WHERE ended_at IS NULL;
    CREATE INDEX IF NOT EXISTS sessions_open_pid ON sessions (pid) WHERE ended_at IS NULL;`);
  }

  /** Records a session unless the user is at cfg.pam.maxSessionsPerUser. */
  open(r: OpenRequest): OpenResult {
    // A record whose process died without SESSION_CLOSE (sshd killed -9) must not count.
    for (const row of this.openRows(r.user)) {
      if (!this.isRunning(row)) this.end(row.id, 'gone');
    }
    const tx = this.db.transaction((): OpenResult => {
      // The same process opening again replaces its earlier record (pam_open_session twice).
      this.db.prepare(`UPDATE sessions SET ended_at = ?, end_reason = 'replaced'
        WHERE ended_at IS NULL AND pid = ? AND user = ?`).run(this.now(), r.pid, r.user);
      const max = this.config().pam.maxSessionsPerUser;
      const open = this.countOpen(r.user);
      if (max > 0 && open >= max) return { ok: false, reason: 'limit', open, max };
      const id = randomUUID();
      this.db.prepare(`INSERT INTO sessions (id, user, uid, service, rhost, tty, pid, pid_start, started_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(id, r.user, r.uid, r.service, r.rhost, r.tty, r.pid, this.procs.startTime(r.pid), this.now());
      return { ok: true, id };
    });
    return tx();
  }

  /** Marks the sessions of this pid and user ended; returns how many were open. */
  close(user: string, pid: number): number {
    return this.db.prepare(`UPDATE sessions SET ended_at = ?, end_reason = 'closed'
      WHERE ended_at IS NULL AND pid = ? AND user = ?`).run(this.now(), pid, user).changes;
  }

  /** Open sessions, oldest first; only this user's when given. */
  list(user?: string): SessionRecord[] {
    return this.openRows(user).map((r) => ({
      id: r.id, user: r.user, uid: r.uid, service: r.service, rhost: r.rhost, tty: r.tty,
      pid: r.pid, startedAt: r.started_at,
    }));
  }

  countOpen(user?: string): number {
    const row = user === undefined
      ? this.db.prepare('SELECT count(*) AS n FROM sessions WHERE ended_at IS NULL').get() as { n: number }
      : this.db.prepare('SELECT count(*) AS n FROM sessions WHERE ended_at IS NULL AND user = ?').get(user) as { n: number };
    return row.n;
  }

  /** SIGTERMs the session process(es) and marks them ended; returns how many sessions were ended. */
  kill(target: { id: string } | { user: string }): number {
    const rows = 'id' in target
      ? this.openRows().filter((r) => r.id === target.id)
      : this.openRows(target.user);
    for (const row of rows) {
      if (this.isSameProcess(row)) this.procs.terminate(row.pid);
      this.end(row.id, 'killed');
      log('info', 'session.killed', { id: row.id, user: row.user, pid: row.pid });
    }
    return rows.length;
  }

  /** Ends records of vanished processes and sessions older than maxSessionAgeSec; prunes old rows. */
  sweep(): { gone: number; aged: number } {
    const maxAgeMs = this.config().pam.maxSessionAgeSec * 1000;
    let gone = 0;
    let aged = 0;
    for (const row of this.openRows()) {
      if (!this.isRunning(row)) {
        this.end(row.id, 'gone');
        gone++;
      } else if (maxAgeMs > 0 && this.now() - row.started_at > maxAgeMs) {
        if (this.isSameProcess(row)) this.procs.terminate(row.pid);
        this.end(row.id, 'max_age');
        log('info', 'session.max_age', { id: row.id, user: row.user, pid: row.pid });
        aged++;
      }
    }
    this.db.prepare('DELETE FROM sessions WHERE ended_at IS NOT NULL AND ended_at < ?').run(this.now() - KEEP_ENDED_MS);
    return { gone, aged };
  }

  private openRows(user?: string): Row[] {
    return (user === undefined
      ? this.db.prepare('SELECT * FROM sessions WHERE ended_at IS NULL ORDER BY started_at, rowid').all()
      : this.db.prepare('SELECT * FROM sessions WHERE ended_at IS NULL AND user = ? ORDER BY started_at, rowid').all(user)) as Row[];
  }

  /** Alive and still the same process that opened the session (pid not reused). */
  private isRunning(row: Row): boolean {
    if (row.pid <= 1 || row.pid === process.pid) return false;
    if (!this.procs.alive(row.pid)) return false;
    if (row.pid_start === null) return true;
    const now = this.procs.startTime(row.pid);
    return now === null || now === row.pid_start;
  }

  /**
   * Review fix: whether a signal to row.pid would reach the process that opened the session.
   * isRunning() counts a pid whose start time is unknown (not recorded, or unreadable now) as
   * running, which is right for the session limit but not for kill(2): that pid may since have
   * been reused by anyone. Signal only a process whose start time was recorded and still matches.
   */
  private isSameProcess(row: Row): boolean {
    if (row.pid <= 1 || row.pid === process.pid || row.pid_start === null) return false;
    if (!this.procs.alive(row.pid)) return false;
    return this.procs.startTime(row.pid) === row.pid_start;
  }

  private end(id: string, reason: string): void {
    this.db.prepare('UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL')
      .run(this.now(), reason, id);
  }
}

/** The part of the Resolver the session handlers use. */
export interface UserLookup { byName(name: string): Promise<Lookup> }
/** The homes module's contract (src/homes): creates base/name race-free if missing. */
export type EnsureHome = (cfg: HomesConfig, user: { name: string; uid: number; gid: number })
  => Promise<{ path: string; created: boolean; problems: string[] }>;

/**
 * SESSION_OPEN and SESSION_CLOSE for priv.sock. `ensureHome` is replaceable for tests; `sshd`
 * gives what latchkeyd read from sshd_config at start/reload (src/sshdconf), used for the chroot.
 */
export function sessionHandlers(
  sessions: SessionRegistry, resolver: UserLookup, config: () => Config, ensureHome: EnsureHome = realEnsureHome,
  sshd: () => SshdFacts = () => NO_SSHD_FACTS,
): HandlerTable {
  return {
    SESSION_OPEN: async (f) => {
      const user = f.user as string;
      const service = f.service as string;
      const rhost = f.rhost as string;
      const pid = f.pid as number;
      const cfg = config();
      const l = await resolver.byName(user);
      if (l.status === 'unavail') return fail(Status.UNAVAIL, 'user service unavailable');
      if (l.status === 'notfound') return fail(Status.NOTFOUND, `${user} is not a latchkey user`);
      let home: Awaited<ReturnType<EnsureHome>>;
      try {
        home = await ensureHome(cfg.homes, { name: l.user.username, uid: l.user.uid, gid: cfg.users.gid });
      } catch (e) {
        const error = e instanceof Error ? e.message : String(e);
        log('error', 'session.home_refused', { user, service, rhost, error });
        return fail(Status.INTERNAL, 'home directory could not be prepared; see the latchkeyd log');
      }
      // ensureHome throws when the home is unsafe (symlink, foreign owner); `problems` lists
      // repairs it made (mode, group), logged by it together with home.created: the home is usable.
      const r = sessions.open({ user, uid: l.user.uid, service, rhost, tty: f.tty as string, pid });
      if (!r.ok) {
        log('warn', 'session.limit', { user, service, rhost, open: r.open, max: r.max });
        return fail(Status.LIMIT, `${user} already has ${r.open} open sessions (max ${r.max})`);
      }
      log('info', 'session.open', { id: r.id, user, service, rhost, pid });
      // chroot_sessions, except for sshd sessions that sshd's own ChrootDirectory confines
      // (checks.ts sessionChroot: chrooting them here would make sshd refuse the login).
      const chroot = sessionChroot(cfg, sshd(), service);
      return ok({ session_id: r.id, home: home.path, umask: cfg.homes.umask, chroot: chroot ? 1 : 0 });
    },

    SESSION_CLOSE: (f) => {
      const user = f.user as string;
      const n = sessions.close(user, f.pid as number);
      log('info', 'session.close', { user, service: f.service, pid: f.pid, ended: n });
      return ok();
    },
  };
}
