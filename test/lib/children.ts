// Child processes a long-running tool (make soak, make fleet) started: each is registered when
// spawned, so that the end of a run (or an interrupted one) kills exactly those, by pid.
import type { ChildProcess } from 'node:child_process';

const started = new Set<ChildProcess>();

/** Spawns and registers a child; killStarted() kills what is left of them, by pid. */
export function track(p: ChildProcess): ChildProcess {
  started.add(p);
  p.once('exit', () => started.delete(p));
  return p;
}

/** SIGKILL to every registered child still running; waits up to 5 s for them to go. */
export async function killStarted(): Promise<void> {
  const alive = [...started].filter((p) => p.exitCode === null && p.signalCode === null && p.pid);
  for (const p of alive) { try { process.kill(p.pid!, 'SIGKILL'); } catch { /* gone */ } }
  await Promise.race([Promise.all(alive.map((p) => new Promise((r) => p.once('exit', r)))), new Promise((r) => setTimeout(r, 5000))]);
}
