// The session policy: login sessions opened through pam_latchkey are recorded (store.ts), limited
// per user, listed and ended by latchkeyctl, and ended when their process is gone or too old.
//
// The recorded pid is the process that called pam_open_session: for sshd that is the per-connection
// privileged process, which lives as long as the login; SIGTERM to it ends the login (sshd(8)).
// Because pids are reused, the kernel start time of the process is stored too (proc.ts), and a pid
// whose start time changed is treated as gone: we never signal a stranger.
import { randomUUID } from 'node:crypto';
import type { Config } from '../config/types.js';
import type { ProcessOps, SessionProcess } from './proc.js';
import type { SessionRow, SessionStore } from './store.js';
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

/** Ended rows are kept this long for `latchkeyctl` history, then deleted by sweep(). */
const KEEP_ENDED_MS = 24 * 3600 * 1000;

export class SessionRegistry {
  constructor(
    private readonly store: SessionStore,
    private readonly config: () => Config,
    private readonly procs: ProcessOps,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records a session unless the user is at cfg.pam.maxSessionsPerUser. */
  open(r: OpenRequest): OpenResult {
    // A record whose process died without SESSION_CLOSE (sshd killed -9) must not count.
    for (const row of this.store.openRows(r.user)) {
      if (!this.isRunning(row)) this.store.end(row.id, this.now(), 'gone');
    }
    return this.store.transaction((): OpenResult => {
      // The same process opening again replaces its earlier record (pam_open_session twice).
      this.store.endByPid(r.pid, r.user, this.now(), 'replaced');
      const max = this.config().pam.maxSessionsPerUser;
      const open = this.store.countOpen(r.user);
      if (max > 0 && open >= max) return { ok: false, reason: 'limit', open, max };
      const id = randomUUID();
      this.store.insert({ id, ...r, pid_start: this.procs.startTime(r.pid), started_at: this.now() });
      return { ok: true, id };
    });
  }

  /** Marks the sessions of this pid and user ended; returns how many were open. */
  close(user: string, pid: number): number {
    return this.store.endByPid(pid, user, this.now(), 'closed');
  }

  /** Open sessions, oldest first; only this user's when given. */
  list(user?: string): SessionRecord[] {
    return this.store.openRows(user).map((r) => ({
      id: r.id, user: r.user, uid: r.uid, service: r.service, rhost: r.rhost, tty: r.tty,
      pid: r.pid, startedAt: r.started_at,
    }));
  }

  countOpen(user?: string): number {
    return this.store.countOpen(user);
  }

  /** Ends the session process(es) and marks them ended; returns how many sessions were ended. */
  async kill(target: { id: string } | { user: string }): Promise<number> {
    const rows = 'id' in target
      ? this.store.openRows().filter((r) => r.id === target.id)
      : this.store.openRows(target.user);
    for (const row of rows) {
      this.store.end(row.id, this.now(), 'killed');
      const signalled = this.isSameProcess(row) ? await this.terminate(row, 'killed') : false;
      log('info', 'session.killed', { id: row.id, user: row.user, pid: row.pid, signalled });
    }
    return rows.length;
  }

  /** Asks for the process to be ended; a refusal or failure is logged, never thrown (the record is ended either way). */
  private async terminate(row: SessionRow, why: string): Promise<boolean> {
    const p: SessionProcess = { pid: row.pid, pidStart: row.pid_start!, uid: row.uid, user: row.user };
    try {
      return await this.procs.terminate(p);
    } catch (e) {
      log('error', 'session.end_failed', { id: row.id, user: row.user, pid: row.pid, why, error: e instanceof Error ? e.message : String(e) });
      return false;
    }
  }

  /** Ends records of vanished processes and sessions older than maxSessionAgeSec; prunes old rows. */
  sweep(): { gone: number; aged: number } {
    const maxAgeMs = this.config().pam.maxSessionAgeSec * 1000;
    let gone = 0;
    let aged = 0;
    for (const row of this.store.openRows()) {
      if (!this.isRunning(row)) {
        this.store.end(row.id, this.now(), 'gone');
        gone++;
      } else if (maxAgeMs > 0 && this.now() - row.started_at > maxAgeMs) {
        if (this.isSameProcess(row)) void this.terminate(row, 'max_age');
        this.store.end(row.id, this.now(), 'max_age');
        log('info', 'session.max_age', { id: row.id, user: row.user, pid: row.pid });
        aged++;
      }
    }
    this.store.pruneEndedBefore(this.now() - KEEP_ENDED_MS);
    return { gone, aged };
  }

  /** Alive and still the same process that opened the session (pid not reused). */
  private isRunning(row: SessionRow): boolean {
    if (row.pid <= 1 || row.pid === process.pid) return false;
    if (!this.procs.alive(row.pid)) return false;
    if (row.pid_start === null) return true;
    const now = this.procs.startTime(row.pid);
    return now === null || now === row.pid_start;
  }

  /**
   * Whether a signal to row.pid would reach the process that opened the session. isRunning()
   * counts a pid whose start time is unknown (not recorded, or unreadable now) as running, which
   * is right for the session limit but not for kill(2): that pid may since have been reused by
   * anyone. Signal only a process whose start time was recorded and still matches.
   */
  private isSameProcess(row: SessionRow): boolean {
    if (row.pid <= 1 || row.pid === process.pid || row.pid_start === null) return false;
    if (!this.procs.alive(row.pid)) return false;
    return this.procs.startTime(row.pid) === row.pid_start;
  }
}
