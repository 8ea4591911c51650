// What a long-running tool (make soak, make fleet) leaves to clean up: the child processes it
// started, each registered when spawned so that the end of a run (or an interrupted one) kills
// exactly those, by pid; and the tmpfs it worked in.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

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

/**
 * The run's work dir (a tmpfs mounted in the run's own namespace): unmounted (lazily when still
 * busy) and removed, or with --keep left for debugging, which `say` tells.
 */
export function releaseWorkDir(dir: string, keep: boolean, say: (s: string) => void, run: string): void {
  if (!keep) {
    if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  } else {
    say(`kept ${dir} (a tmpfs inside the ${run}'s namespace: gone when it exits)`);
  }
}
