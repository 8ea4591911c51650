// The session policy: login sessions opened through pam_latchkey are recorded (store.ts), limited
// per scope ([pam] session_limit, max_sessions, on_limit), listed and ended by latchkeyctl, renewed
// ([pam] session_renewal), and ended when their process is gone, too old (max_session_age), or
// the account is removed, disabled or expired (revoke). Every start and end is one session event
// (src/events/types.ts): one log line, and the collector's when [events] url is set.
//
// The recorded pid is the process that called pam_open_session: for sshd that is the per-connection
// privileged process, which lives as long as the login; SIGTERM to it ends the login (sshd(8)).
// Because pids are reused, the kernel start time of the process is stored too (proc.ts), and a pid
// whose start time changed is treated as gone: we never signal a stranger.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Config } from '../config/types.js';
import type { ProcessOps, SessionProcess } from './proc.js';
import type { EndedRow, SessionRow, SessionStore } from './store.js';
import type { SessionEvent, SessionEventName, SessionEventSink } from '../events/types.js';
import { logSessionEvent } from '../events/log.js';
import { privilegeOf } from './privileged.js';
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
  /** epoch milliseconds of the last renewal, null if never renewed */
  renewedAt: number | null;
}

/** An ended session kept for history (24 h). */
export interface EndedRecord extends SessionRecord {
  endedAt: number;
  /** closed, gone, reopened, replaced, max_age, killed, removed, disabled, expired */
  endReason: string;
  endDetail: string | null;
}

/**
 * pidStart: the kernel start time pam_latchkey read of its own process (SESSION_OPEN
 * pid_start). The daemon cannot read a root process's /proc entry itself when /proc is mounted
 * with hidepid; without a start time the session could be recorded but never ended.
 */
export interface OpenRequest { user: string; uid: number; service: string; rhost: string; tty: string; pid: number; pidStart?: string | null }

/** Why SessionRegistry.open refused, or which sessions the new one replaced. */
export type OpenResult =
  | { ok: true; id: string; replaced: string[] }
  | { ok: false; reason: 'limit'; open: number; max: number };

export type RenewResult = { ok: true; renewed: number } | { ok: false; reason: 'privileged' | 'not_found'; detail: string };

/** Ended rows are kept this long for `latchkeyctl` history, then deleted by sweep(). */
const KEEP_ENDED_MS = 24 * 3600 * 1000;
/** setTimeout's ceiling (about 24.8 days); a later max-age deadline is re-armed from there. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const HOST = hostname();

export class SessionRegistry {
  /** Where session events go: the log line at least; daemon/main.ts adds the collector. */
  events: SessionEventSink = logSessionEvent;
  private ageTimer: NodeJS.Timeout | null = null;
  private ageTimerAt = Infinity;

  constructor(
    private readonly store: SessionStore,
    private readonly config: () => Config,
    private readonly procs: ProcessOps,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Records a session unless its scope ([pam] session_limit) is at [pam] max_sessions; then
   * on_limit = replace-oldest ends the oldest session(s) of that scope and lets this one in.
   */
  open(r: OpenRequest): OpenResult {
    const cfg = this.config().pam;
    // A record whose process died without SESSION_CLOSE (sshd killed -9) must not count.
    for (const row of this.store.openRows(r.user)) {
      if (!this.isRunning(row) && this.store.end(row.id, this.now(), 'gone')) this.emit('close', 'gone', row);
    }
    const id = randomUUID();
    const { pidStart, ...rec } = r;
    // Read before the transaction: it is /proc I/O, and the transaction should hold only SQL.
    const start = this.startTimeOf(r.pid, pidStart);
    const ended: Array<{ row: SessionRow; reason: 'reopened' | 'replaced' }> = [];
    const result = this.store.transaction((): OpenResult => {
      // The same process opening again replaces its earlier record (pam_open_session twice).
      for (const row of this.store.openRows(r.user)) {
        if (row.pid === r.pid && this.store.end(row.id, this.now(), 'reopened')) ended.push({ row, reason: 'reopened' });
      }
      const max = cfg.maxSessionsPerUser;
      const scope = cfg.sessionLimit ?? 'per-user';
      const inScope = this.store.openRows(r.user).filter((row) => sameScope(scope, row, r));
      if (max > 0 && inScope.length >= max) {
        // A refusal still keeps the reopened rows ended: that process has one session at most.
        if (cfg.onLimit !== 'replace-oldest') return { ok: false, reason: 'limit', open: inScope.length, max };
        for (const row of inScope.slice(0, inScope.length - max + 1)) {
          if (this.store.end(row.id, this.now(), 'replaced', `replaced by session ${id}`)) ended.push({ row, reason: 'replaced' });
        }
      }
      this.store.insert({ id, ...rec, pid_start: start, started_at: this.now() });
      return { ok: true, id, replaced: ended.filter((e) => e.reason === 'replaced').map((e) => e.row.id) };
    });
    for (const { row, reason } of ended) {
      if (reason === 'reopened') { this.emit('close', 'reopened', row); continue; }
      this.emit('replaced', 'replaced', row, `replaced by session ${id}`);
      // Never awaited: the new login proceeds while rootd ends the old one (a hung rootd must
      // not hold a login); terminate() logs a failure itself.
      void this.endProcess(row, 'replaced');
    }
    if (result.ok) {
      this.emit('open', 'login', { id, ...rec, pid_start: null, started_at: this.now() });
      this.armAgeTimer();
    }
    return result;
  }

  /** Marks the sessions of this pid and user ended; returns how many were open. */
  close(user: string, pid: number): number {
    let n = 0;
    for (const row of this.store.openRows(user)) {
      if (row.pid === pid && this.store.end(row.id, this.now(), 'closed')) {
        this.emit('close', 'closed', row);
        n++;
      }
    }
    return n;
  }

  /** Open sessions, oldest first; only this user's when given. */
  list(user?: string): SessionRecord[] {
    return this.store.openRows(user).map(toRecord);
  }

  /** Ended sessions still kept (24 h), oldest end first; only this user's when given. */
  listEnded(user?: string): EndedRecord[] {
    return this.store.endedRows(user).map((r: EndedRow) => ({ ...toRecord(r), endedAt: r.ended_at, endReason: r.end_reason, endDetail: r.end_detail }));
  }

  countOpen(user?: string): number {
    return this.store.countOpen(user);
  }

  /** Ends the session process(es) and marks them ended (killed); returns how many sessions were ended. */
  async kill(target: { id: string } | { user: string }): Promise<number> {
    const rows = 'id' in target
      ? this.store.openRows().filter((r) => r.id === target.id)
      : this.store.openRows(target.user);
    return this.endRows(rows, 'killed', 'ended by latchkeyctl sessions kill');
  }

  /**
   * Ends every open session of `user` (record and process): the account was removed, disabled or
   * expired (`reason`), as the upstream's answer or the cleanup says in `detail`. Idempotent: a
   * user with no open sessions costs a query. Returns how many sessions were ended. `uid`: only
   * sessions opened with that uid; an upstream account removed under a name that a local user
   * (another uid) now answers for must not end that user's sessions.
   */
  async revoke(user: string, reason: string, detail: string, uid?: number): Promise<number> {
    const rows = this.store.openRows(user).filter((r) => uid === undefined || r.uid === uid);
    return this.endRows(rows, reason, detail);
  }

  private async endRows(rows: SessionRow[], reason: string, detail: string): Promise<number> {
    const signals: Array<Promise<boolean>> = [];
    let n = 0;
    for (const row of rows) {
      // Another path (close, sweep, a second revoke) may have ended it meanwhile: one event only.
      if (!this.store.end(row.id, this.now(), reason, detail)) continue;
      n++;
      this.emit('revoked', reason, row, detail);
      signals.push(this.endProcess(row, reason));
    }
    await Promise.all(signals);
    return n;
  }

  /**
   * Restarts the age clock (max_session_age) of the user's open sessions, or of one session:
   * the user proved their password again (session_renewal = on-login) or an admin said so.
   * Members of [pam] privileged_groups are never renewed.
   */
  renew(target: { id: string } | { user: string }, by: 'login' | 'admin'): RenewResult {
    const rows = 'id' in target ? this.store.openRows().filter((r) => r.id === target.id) : this.store.openRows(target.user);
    if (rows.length === 0) {
      return { ok: false, reason: 'not_found', detail: 'id' in target ? `no open session ${target.id}` : `${target.user} has no open sessions` };
    }
    const user = rows[0]!.user;
    const p = privilegeOf(this.config(), user);
    if (p.privileged) {
      log('info', 'session.renewal_refused', { user, by, sessions: rows.length, reason: p.why, fix: 'privileged sessions end at [pam] max_session_age; the user logs in again' });
      return { ok: false, reason: 'privileged', detail: `${user} is privileged (${p.why}): its sessions are never renewed` };
    }
    const at = this.now();
    let renewed = 0;
    for (const row of rows) if (this.store.renew(row.id, at)) renewed++;
    log('info', 'session.renewed', { user, by, sessions: renewed, ids: rows.map((r) => r.id) });
    this.armAgeTimer();
    return { ok: true, renewed };
  }

  /** The AUTHENTICATE hook: with session_renewal = on-login, a good password renews the user's open sessions. */
  renewOnLogin(user: string): void {
    const pam = this.config().pam;
    if (pam.sessionRenewal !== 'on-login' || pam.maxSessionAgeSec <= 0) return;
    if (this.store.countOpen(user) === 0) return;
    this.renew({ user }, 'login');
  }

  /** Ends records of vanished processes and sessions older than maxSessionAgeSec; prunes old rows. */
  sweep(): { gone: number; aged: number } {
    let gone = 0;
    for (const row of this.store.openRows()) {
      if (!this.isRunning(row) && this.store.end(row.id, this.now(), 'gone')) {
        this.emit('close', 'gone', row);
        gone++;
      }
    }
    const aged = this.endAged();
    this.store.pruneEndedBefore(this.now() - KEEP_ENDED_MS);
    this.armAgeTimer();
    return { gone, aged };
  }

  /** Stops the max-age timer (daemon stop). */
  stop(): void {
    if (this.ageTimer) clearTimeout(this.ageTimer);
    this.ageTimer = null;
    this.ageTimerAt = Infinity;
  }

  /** Ends the sessions past max_session_age, counted from their last renewal. */
  private endAged(): number {
    const maxAgeMs = this.config().pam.maxSessionAgeSec * 1000;
    if (!(maxAgeMs > 0)) return 0;
    let aged = 0;
    for (const row of this.store.openRows()) {
      const from = row.renewed_at ?? row.started_at;
      if (this.now() - from < maxAgeMs) continue;
      const detail = `older than [pam] max_session_age ${maxAgeMs / 1000}s${row.renewed_at ? ' since its last renewal' : ''}`;
      if (!this.store.end(row.id, this.now(), 'max_age', detail)) continue;
      this.emit('expired', 'max_age', row, detail);
      void this.endProcess(row, 'max_age');
      aged++;
    }
    return aged;
  }

  /**
   * One timer at the earliest max-age deadline, so a session ends at its age and not up to a
   * sweep interval later. Re-armed by open, renew and sweep (the daemon's periodic sweep also
   * picks up a max_session_age changed by a reload).
   */
  private armAgeTimer(): void {
    const maxAgeMs = this.config().pam.maxSessionAgeSec * 1000;
    let next = Infinity;
    if (maxAgeMs > 0) for (const row of this.store.openRows()) next = Math.min(next, (row.renewed_at ?? row.started_at) + maxAgeMs);
    if (next === this.ageTimerAt && this.ageTimer) return;
    this.stop();
    if (next === Infinity) return;
    this.ageTimerAt = next;
    const delay = Math.min(Math.max(next - this.now(), 0) + 50, MAX_TIMER_MS);
    this.ageTimer = setTimeout(() => {
      this.ageTimer = null;
      this.ageTimerAt = Infinity;
      // A timer callback that throws is an uncaughtException (the daemon exits): a failing
      // SQLite write costs this check only; the periodic sweep tries again.
      try { this.endAged(); } catch (e) { log('error', 'sessions.sweep_failed', { error: e instanceof Error ? e.message : String(e) }); }
      try { this.armAgeTimer(); } catch { /* the periodic sweep re-arms */ }
    }, delay);
    this.ageTimer.unref();
  }

  private emit(event: SessionEventName, reason: string, row: SessionRow, detail?: string): void {
    const e: SessionEvent = {
      event, reason, session_id: row.id, user: row.user, uid: row.uid, service: row.service, rhost: row.rhost,
      pid: row.pid, host: HOST, at: this.now(),
    };
    if (detail !== undefined) e.detail = detail;
    try { this.events(e); } catch (err) { log('error', 'session.event_failed', { event, id: row.id, error: err instanceof Error ? err.message : String(err) }); }
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
   * anyone. Signal only a process whose start time was recorded and, where this daemon can read
   * it, still matches; where it cannot (/proc with hidepid), latchkey-rootd compares it before it
   * signals (END_SESSION carries it), so a reused pid is still never hit.
   */
  private isSameProcess(row: SessionRow): boolean {
    if (row.pid <= 1 || row.pid === process.pid || row.pid_start === null) return false;
    if (!this.procs.alive(row.pid)) return false;
    const now = this.procs.startTime(row.pid);
    return now === null || now === row.pid_start;
  }

  /**
   * The start time to record: what pam_latchkey read of itself when it is a kernel value (a u64),
   * checked against /proc where this daemon can read it (there the kernel's word wins, and a
   * disagreement is said: pam_latchkey in another pid namespace, or a module that lies).
   */
  private startTimeOf(pid: number, sent: string | null | undefined): string | null {
    const own = this.procs.startTime(pid);
    const valid = typeof sent === 'string' && /^\d{1,20}$/.test(sent) && BigInt(sent) <= 0xffff_ffff_ffff_ffffn ? sent : null;
    if (own !== null && valid !== null && own !== valid) {
      log('warn', 'session.start_mismatch', { pid, sent: valid, proc: own, detail: 'pam_latchkey sent another start time than /proc shows; /proc is used' });
    }
    return own ?? valid;
  }

  /** Ends the session's process when it is still that process; says so when it cannot tell. */
  private async endProcess(row: SessionRow, why: string): Promise<boolean> {
    if (this.isSameProcess(row)) return this.terminate(row, why);
    if (row.pid_start === null && row.pid > 1 && this.procs.alive(row.pid)) {
      // Recorded without a start time (an older pam_latchkey, /proc unreadable): signalling that
      // pid might hit a stranger, so the record ends and the process is left; say so, once.
      log('warn', 'session.not_signalled', {
        id: row.id, user: row.user, pid: row.pid, why,
        reason: 'its start time was not recorded, so the pid cannot be told from a reused one',
        fix: `check that pid ${row.pid} is still ${row.user}'s login and end it by hand (kill ${row.pid})`,
      });
    }
    return false;
  }
}

/** Whether an open row counts against the limit of the new request under this scope. */
function sameScope(scope: Config['pam']['sessionLimit'], row: SessionRow, r: OpenRequest): boolean {
  if (scope === 'per-user') return true;
  if (row.service !== r.service) return false;
  return scope === 'per-user-service' || row.rhost === r.rhost;
}

function toRecord(r: SessionRow): SessionRecord {
  return {
    id: r.id, user: r.user, uid: r.uid, service: r.service, rhost: r.rhost, tty: r.tty,
    pid: r.pid, startedAt: r.started_at, renewedAt: r.renewed_at ?? null,
  };
}
