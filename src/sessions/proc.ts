// What the session registry needs to know about processes: is the pid alive, is it still the
// process that opened the session (pids are reused: the kernel start time, /proc/PID/stat field
// 22, tells them apart), and ending it. Tests replace it with a map of fake processes.
import { readFileSync } from 'node:fs';

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
