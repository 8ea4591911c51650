// Shared integration-test harness: a real example user service, a real latchkeyd on a private
// socket dir, and commands run inside a private mount namespace with our nsswitch.conf.
// Everything lives under one mkdtemp dir; processes are killed by pid.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, existsSync, chmodSync, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { startUserService } from '../../src/example/userservice.js';
import { encodeRequest, decodeReply, type Fields } from '../../src/protocol/codec.js';

import { ROOT } from './paths.js';
export { ROOT };
export const NSS_LIB_DIR = join(ROOT, 'native/nss');
export const LATCHKEYD = join(ROOT, 'bin/latchkeyd');

export type ServiceHandle = Awaited<ReturnType<typeof startUserService>>;
export type CegaUser = Parameters<ServiceHandle['setUsers']>[0][number];

export function exampleUsers(): CegaUser[] {
  return JSON.parse(readFileSync(join(ROOT, 'etc/example-users.json'), 'utf8')) as CegaUser[];
}
export function examplePasswords(): Record<string, string> {
  return JSON.parse(readFileSync(join(ROOT, 'test/fixtures/passwords.json'), 'utf8')) as Record<string, string>;
}

export type ConfigOverrides = Record<string, Record<string, string | number | boolean>>;

/** The unprivileged account test daemons drop to ([daemon] user): no passwd entry needed for a
 *  numeric uid; the shims are told with LATCHKEY_DAEMON_USER (sshd namespaces list it as
 *  `_latchkey` in their private /etc/passwd). */
export const TEST_DAEMON_UID = 64199;
export const TEST_DAEMON_PASSWD_LINE = `_latchkey:x:${TEST_DAEMON_UID}:${TEST_DAEMON_UID}:latchkey test daemon:/nonexistent:/usr/sbin/nologin`;

/** Writes a sectioned latchkey.conf pointing at the service, with test-friendly defaults. */
export function writeConfig(dir: string, serviceUrl: string, over: ConfigOverrides = {}): string {
  const base: ConfigOverrides = {
    upstream: {
      by_name_url: `${serviceUrl}/username/`,
      by_uid_url: `${serviceUrl}/user-id/`,
      username: 'lega', password: 'testpass',
      // The example service listens on plain http on loopback; credentials over http:// are
      // refused unless the config says so (src/config/safety.ts).
      insecure_http: 'yes',
      json_prefix: 'response.result',
      connect_timeout: '1s', request_timeout: '2s',
      // `latchkeyctl status` GETs it (issue 18); a test of the default passes health_url: 'none'.
      health_url: `${serviceUrl}/health`,
    },
    // In the socket dir: latchkeyd hands that directory to its user before dropping root.
    // No jitter and no warm start unless a test asks (issue 19): the older tests time expiries
    // to the ttl exactly, and a warm start's delayed requests would land in their counts. The
    // recent-users list is never the host's /var/lib/latchkey.
    cache: {
      db_path: join(dir, 'run', 'cache.db'), ttl: '1h', negative_ttl: '60s',
      jitter: '0%', warm_start: '0', recent_file: join(dir, 'state', 'recent-users'),
    },
    users: { uid_shift: 10000, gid: 10000, group_name: 'lega' },
    homes: { base: join(dir, 'homes') },
    // The persistent local users' store: never the host's /var/lib/latchkey.
    local: { db_path: join(dir, 'state', 'local.db') },
    // The host's own sshd_config must not decide whether a test daemon starts: no file, no checks.
    daemon: {
      socket_dir: join(dir, 'run'), log_level: 'debug', sshd_config: join(dir, 'no-sshd_config'),
      user: TEST_DAEMON_UID, rootd_socket: join(dir, 'rootd', 'rootd.sock'),
    },
  };
  for (const [sec, kv] of Object.entries(over)) base[sec] = { ...(base[sec] ?? {}), ...kv };
  const text = Object.entries(base)
    .map(([sec, kv]) => `[${sec}]\n` + Object.entries(kv).map(([k, v]) => `${k} = ${v}`).join('\n'))
    .join('\n\n') + '\n';
  const file = join(dir, 'latchkey.conf');
  writeFileSync(file, text, { mode: 0o600 });
  // It holds the upstream password: root's, readable by the daemon's group (so a SIGHUP after the
  // drop re-reads it), by nobody else. The dir must be traversable by the dropped daemon.
  if (process.getuid?.() === 0) {
    chownSync(file, 0, TEST_DAEMON_UID);
    chmodSync(file, 0o640);
    chmodSync(dir, 0o755);
  } else {
    chmodSync(file, 0o600);
  }
  return file;
}

export interface DaemonProc {
  proc: ChildProcess;
  pid: number;
  logs: string[];
  /** resolves with the exit code */
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** Sends one request to a socket and decodes the reply. */
export function request(sockPath: string, op: string, fields: Fields, timeoutMs = 5000): Promise<ReturnType<typeof decodeReply>> {
  return new Promise((resolvePromise, reject) => {
    const c = createConnection(sockPath);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => { c.destroy(); reject(new Error(`timeout on ${op}`)); }, timeoutMs);
    c.on('connect', () => c.write(encodeRequest(op, fields)));
    c.on('data', (d: Buffer) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      if (all.length >= 4 && all.length >= 4 + all.readUInt32BE(0)) {
        clearTimeout(timer);
        c.destroy();
        try { resolvePromise(decodeReply(all.subarray(4, 4 + all.readUInt32BE(0)))); } catch (e) { reject(e); }
      }
    });
    c.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/** Starts bin/latchkeyd and waits until it answers PING on nss.sock. */
export async function startDaemon(configFile: string, socketDir: string, env: Record<string, string> = {}): Promise<DaemonProc> {
  const proc = spawn(process.execPath, [LATCHKEYD, '--config', configFile], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  let buf = '';
  proc.stderr!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) { logs.push(buf.slice(0, i)); buf = buf.slice(i + 1); }
  });
  proc.stdout!.on('data', (d: Buffer) => logs.push(d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const deadline = Date.now() + 15000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`latchkeyd exited ${proc.exitCode}:\n${logs.join('\n')}`);
    try {
      const r = await request(join(socketDir, 'nss.sock'), 'PING', {}, 1000);
      if (r.status === 0) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`latchkeyd did not start:\n${logs.join('\n')}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proc, pid: proc.pid!, logs, exited,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGCONT');
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

export interface TestEnv {
  dir: string;
  socketDir: string;
  configFile: string;
  service: ServiceHandle;
  daemon: DaemonProc;
  /** env for shims and tools: socket dir and NSS module path */
  shimEnv: Record<string, string>;
  stop(): Promise<void>;
}

/** Example service + daemon on a fresh temp dir; `over` tweaks the config. */
export async function startEnv(over: ConfigOverrides = {}, users: CegaUser[] = exampleUsers()): Promise<TestEnv> {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-test-'));
  chmodSync(dir, 0o755);
  const service = await startUserService({ host: '127.0.0.1', port: 0, users, basicAuth: { user: 'lega', password: 'testpass' } });
  const configFile = writeConfig(dir, service.url, over);
  const socketDir = (over.daemon?.socket_dir as string | undefined) ?? join(dir, 'run');
  let daemon: DaemonProc;
  try {
    daemon = await startDaemon(configFile, socketDir);
  } catch (e) {
    await service.close();
    throw e;
  }
  const shimEnv = { LATCHKEY_SOCKET_DIR: socketDir, LD_LIBRARY_PATH: NSS_LIB_DIR, LATCHKEY_DAEMON_USER: String(TEST_DAEMON_UID) };
  const env: TestEnv = {
    dir, socketDir, configFile, service, daemon, shimEnv,
    async stop() {
      // env.daemon, not the first one: a test may have restarted it.
      await env.daemon.stop();
      await service.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return env;
}

export interface RunResult { code: number | null; stdout: string; stderr: string; ms: number }

/**
 * Runs a program without blocking this process's event loop: the example user service lives
 * in the test process, so a synchronous spawn would stall it and every cache miss would run
 * into the daemon's upstream timeout.
 */
export function runCommand(cmd: string, args: string[], env: Record<string, string>, timeoutMs = 30000): Promise<RunResult> {
  const t0 = Date.now();
  return new Promise((resolvePromise) => {
    const p = spawn(cmd, args, {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/**
 * Runs a shell script in a private mount namespace whose /etc/nsswitch.conf says
 * `passwd: files latchkey` / `group: files latchkey`. The host's /etc is never touched:
 * the bind mount exists only inside the namespace and dies with it.
 */
export async function runInNamespace(script: string, env: Record<string, string>, opts: { nsswitch?: string; timeoutMs?: number; extraMounts?: string } = {}): Promise<RunResult> {
  const ns = opts.nsswitch ?? 'passwd: files latchkey\ngroup: files latchkey\nshadow: files\nhosts: files\n';
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-ns-'));
  const nsFile = join(dir, 'nsswitch.conf');
  writeFileSync(nsFile, ns);
  const wrapped = `set -e\nmount --make-rprivate /\nmount --bind ${nsFile} /etc/nsswitch.conf\n${opts.extraMounts ?? ''}\nset +e\n${script}\n`;
  try {
    return await runCommand('unshare', ['-m', '--propagation', 'private', 'sh', '-c', wrapped], env, opts.timeoutMs);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The real bin/latchkeyctl as its own process, `input` on its stdin; never spawnSync: the example
 * user service runs in the test's process and must keep answering.
 */
export function latchkeyctl(socketDir: string, args: string[], input = '', timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin/latchkeyctl'), ...args], { env: { ...process.env, LATCHKEY_SOCKET_DIR: socketDir }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('error', reject);
    p.on('close', (code) => { clearTimeout(timer); resolvePromise({ code, stdout, stderr }); });
    p.stdin!.on('error', () => { /* it may exit before reading stdin */ });
    p.stdin!.end(input);
  });
}

export function haveCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}
export { existsSync };
