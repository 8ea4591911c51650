// The example user service as a child process (dist/src/example/userservice.js), for the drivers
// that keep the test process free to measure (make bench, make soak): started on a free
// loopback port, steered through /_control, stopped by pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { request as httpRequest } from 'undici';
import { ROOT } from './paths.js';
import { request } from './harness.js';

const SERVICE_JS = join(ROOT, 'dist/src/example/userservice.js');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface ServiceProc {
  url: string;
  pid: number;
  proc: ChildProcess;
  /** POST /_control (users, faults, delays) */
  control(body: Record<string, unknown>): Promise<void>;
  stop(): Promise<void>;
}

/** `register` receives the child at once, so the caller's cleanup can kill it whatever happens next. */
export async function startServiceProc(usersFile: string, auth: { user: string; password: string }, register: (p: ChildProcess) => void): Promise<ServiceProc> {
  const proc = spawn(process.execPath, [SERVICE_JS, '--listen', '127.0.0.1:0', '--users', usersFile, '--auth', `${auth.user}:${auth.password}`, '--quiet'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  register(proc);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const deadline = Date.now() + 60_000;
  while (!/^listening (\S+)/m.test(out)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`user service did not start: ${err}`);
    await sleep(20);
  }
  const url = /^listening (\S+)/m.exec(out)![1]!;
  return {
    url, pid: proc.pid!, proc,
    async control(body) {
      const r = await httpRequest(`${url}/_control`, { method: 'POST', body: JSON.stringify(body) });
      await r.body.text();
      if (r.statusCode !== 200) throw new Error(`/_control: ${r.statusCode}`);
    },
    stop: () => stopChild(proc),
  };
}

/** SIGTERM, then SIGKILL after 10 s; resolves when the child is gone. */
export async function stopChild(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null || !p.pid) return;
  const done = new Promise((r) => p.once('exit', r));
  process.kill(p.pid, 'SIGTERM');
  const t = setTimeout(() => { if (p.exitCode === null && p.pid) process.kill(p.pid, 'SIGKILL'); }, 10_000);
  await done;
  clearTimeout(t);
}

/** Waits until the daemon `proc` answers PING on `socketDir`/nss.sock; throws with its log
 *  (`logText()`) when it exits first or `timeoutMs` passes. */
export async function waitForDaemon(proc: ChildProcess, socketDir: string, logText: () => string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`latchkeyd exited ${proc.exitCode}:\n${logText()}`);
    try { if ((await request(join(socketDir, 'nss.sock'), 'PING', {}, 1000)).status === 0) return; } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`latchkeyd did not start:\n${logText()}`);
    await sleep(50);
  }
}
