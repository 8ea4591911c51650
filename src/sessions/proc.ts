// What the session registry needs to know about processes: is the pid alive, is it still the
// process that opened the session (pids are reused: the kernel start time, /proc/PID/stat field
// 22, tells them apart), and ending it. The session process runs as root (sshd's privileged
// child), so the unprivileged daemon reads /proc (world-readable) itself but asks latchkey-rootd
// to end it (src/privsep/rootd.ts). Tests replace it with a map of fake processes.
import { readFileSync } from 'node:fs';

export interface ProcessOps {
  /** true when a process with this pid exists (kill(pid, 0) did not fail with ESRCH) */
  alive(pid: number): boolean;
  /** kernel start time of the process in clock ticks, or null when unknown */
  startTime(pid: number): string | null;
  /** ends the session process (SIGTERM); false when it was already gone */
  terminate(p: SessionProcess): boolean | Promise<boolean>;
}

/** A recorded session process: what rootd re-checks before it signals (start time, login uid). */
export interface SessionProcess { pid: number; pidStart: string; uid: number; user: string }

/** alive/startTime from the kernel; ending a process is someone else's (see processOps). */
export const systemProcessOps: Omit<ProcessOps, 'terminate'> = {
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
  }
};

/** The system's view of processes, with `end` (latchkey-rootd's END_SESSION) to end one. */
export function processOps(end: (p: SessionProcess) => Promise<boolean>): ProcessOps {
  return { alive: systemProcessOps.alive, startTime: systemProcessOps.startTime, terminate: end };
}
