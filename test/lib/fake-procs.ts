// Processes that exist only in a map (pid → kernel start time), for the session registry's
// tests: what it may signal, and what it did signal.
import type { ProcessOps, SessionProcess } from '../../src/sessions/proc.js';

export class FakeProcs implements ProcessOps {
  readonly running = new Map<number, string>();
  readonly terminated: number[] = [];
  alive(pid: number): boolean { return this.running.has(pid); }
  startTime(pid: number): string | null { return this.running.get(pid) ?? null; }
  terminate(p: SessionProcess): boolean {
    this.terminated.push(p.pid);
    return this.running.delete(p.pid);
  }
}
