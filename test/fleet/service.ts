// The fleet's one upstream: the example user service (dist/src/example/userservice.js of this
// tree, whatever build the hosts run) as a child process in the driver's namespace, on the
// bridge address for the hosts and on loopback for its /_stats and /_control. "Down" is the
// process stopped: connections to it are refused, as when a service is not running.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { request as httpRequest } from 'undici';
import { ROOT } from '../lib/paths.js';
import type { UserServiceStats } from '../../src/example/userservice.js';
import { SERVICE_PORT, sleep, track } from './hosts.js';

export class Service {
  private proc: ChildProcess | null = null;
  /** when the current process started listening (epoch ms) */
  upSince = 0;
  constructor(private readonly usersFile: string, private readonly auth: { user: string; password: string }) {}

  get url(): string { return `http://127.0.0.1:${SERVICE_PORT}`; }

  async start(): Promise<void> {
    const p = track(spawn(process.execPath, [join(ROOT, 'dist/src/example/userservice.js'), '--listen', `0.0.0.0:${SERVICE_PORT}`,
      '--users', this.usersFile, '--auth', `${this.auth.user}:${this.auth.password}`, '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.proc = p;
    let out = '';
    let err = '';
    p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const deadline = Date.now() + 30_000;
    while (!out.includes('listening')) {
      if (p.exitCode !== null || Date.now() > deadline) throw new Error(`user service did not start: ${err}`);
      await sleep(10);
    }
    this.upSince = Date.now();
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    // SIGKILL: an outage is abrupt, and the kept connections must break at once
    process.kill(p.pid!, 'SIGKILL');
    await gone;
  }

  /** `answers`: with each client's last 200 per user (large: only where it is needed) */
  async stats(answers = false): Promise<UserServiceStats | null> {
    if (!this.proc) return null;
    try {
      const r = await httpRequest(`${this.url}/_stats${answers ? '?answers=1' : ''}`, { headersTimeout: 5000, bodyTimeout: 5000 });
      const body = await r.body.text();
      return r.statusCode === 200 ? JSON.parse(body) as UserServiceStats : null;
    } catch {
      return null;
    }
  }

  async control(body: Record<string, unknown>): Promise<void> {
    const r = await httpRequest(`${this.url}/_control`, { method: 'POST', body: JSON.stringify(body) });
    const text = await r.body.text();
    if (r.statusCode !== 200) throw new Error(`/_control: ${r.statusCode} ${text}`);
  }
}
