// The real OpenSSH sshd for end-to-end tests: own host key and config in a temp dir, loopback
// only, started inside `unshare -m` where /etc/nsswitch.conf says `passwd: files latchkey`,
// /etc/pam.d is a private copy holding our "sshd" service, and the test daemon's socket dir is
// bind-mounted on /run/latchkey (sshd runs AuthorizedKeysCommand with an empty environment, so
// the helper must find the daemon at the default path). Killed by pid.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { join } from 'node:path';
import { ROOT } from './harness.js';
import { makePamDir, PAM_MODULE } from './pam.js';

export const AUTH_KEYS_HELPER = join(ROOT, 'native/latchkey-authorized-keys');
/**
 * Where sshd runs the helper from, inside the test's namespace. sshd refuses an
 * AuthorizedKeysCommand with a group/world-writable path component, and a checkout may live
 * anywhere (CI clones under /tmp), so the test installs a copy on its private tmpfs /run.
 */
export const AUTH_KEYS_HELPER_IN_NS = '/run/latchkey-bin/latchkey-authorized-keys';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface Sshd { port: number; pid: number; logs: () => string; stop(): Promise<void> }

/** The shipped PAM file with the module by absolute path. */
export function shippedPamStack(): string {
  return readFileSync(join(ROOT, 'etc/pam.d/latchkey-sshd'), 'utf8').replace(/\bpam_latchkey\.so\b/g, PAM_MODULE);
}

/** Test lines first (sshd keeps the first value of a keyword), then the shipped drop-in. */
export function sshdConfig(dir: string, port: number): string {
  const shipped = readFileSync(join(ROOT, 'etc/sshd_config.d/latchkey.conf'), 'utf8')
    .replace('/usr/local/libexec/latchkey-authorized-keys', AUTH_KEYS_HELPER_IN_NS);
  return [
    `ListenAddress 127.0.0.1:${port}`,
    `HostKey ${join(dir, 'host_ed25519')}`,
    'PidFile none',
    'AuthorizedKeysFile none',
    'PermitRootLogin no',
    'LogLevel VERBOSE',
    'Subsystem sftp internal-sftp',
    'MaxAuthTries 3',
    shipped,
  ].join('\n') + '\n';
}

export async function startSshd(dir: string, socketDir: string, env: Record<string, string>): Promise<Sshd> {
  const sdir = join(dir, 'sshd');
  mkdirSync(sdir, { recursive: true, mode: 0o700 });
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(sdir, 'host_ed25519')]);
  const port = await freePort();
  const cfg = join(sdir, 'sshd_config');
  writeFileSync(cfg, sshdConfig(sdir, port));
  const pamDir = makePamDir(sdir, { sshd: shippedPamStack() });
  const ns = join(sdir, 'nsswitch.conf');
  writeFileSync(ns, 'passwd: files latchkey\ngroup: files latchkey\nshadow: files\nhosts: files\n');
  // /run gets a private tmpfs so /run/sshd (privsep dir) and /run/latchkey exist without
  // touching the host's /run.
  const script = [
    'set -e',
    'mount --make-rprivate /',
    `mount --bind ${ns} /etc/nsswitch.conf`,
    `mount --bind ${pamDir} /etc/pam.d`,
    'mount -t tmpfs -o mode=0755 latchkey-test-run /run',
    'mkdir -p /run/sshd /run/latchkey /run/latchkey-bin',
    `install -m 0755 ${AUTH_KEYS_HELPER} ${AUTH_KEYS_HELPER_IN_NS}`,
    `mount --bind ${socketDir} /run/latchkey`,
    `/usr/sbin/sshd -t -f ${cfg}`,
    `exec /usr/sbin/sshd -D -e -f ${cfg}`,
  ].join('\n');
  const proc: ChildProcess = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], {
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => { log += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const deadline = Date.now() + 10000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`sshd exited ${proc.exitCode}:\n${log}`);
    const up = await new Promise<boolean>((r) => {
      const c = createConnection(port, '127.0.0.1');
      c.once('connect', () => { c.destroy(); r(true); });
      c.once('error', () => r(false));
    });
    if (up) break;
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`sshd did not listen:\n${log}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port, pid: proc.pid!, logs: () => log,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM'); // `exec` made the namespace's sh into sshd: this pid is sshd
      const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

export interface SftpResult { code: number | null; out: string; ms: number }

/** Runs `sftp -b batch` (key or, with sshpass, password) as a client; asynchronous. */
export function sftp(port: number, user: string, batch: string, auth: { key: string } | { password: string }, workDir: string): Promise<SftpResult> {
  const batchFile = join(workDir, `batch-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  writeFileSync(batchFile, batch);
  const common = [
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=' + ('key' in auth ? 'yes' : 'no'),
    '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR', '-P', String(port), '-b', batchFile,
  ];
  const [cmd, args] = 'key' in auth
    ? ['sftp', ['-i', auth.key, '-o', 'IdentitiesOnly=yes', '-o', 'PreferredAuthentications=publickey', ...common, `${user}@127.0.0.1`]]
    : ['sshpass', ['-p', auth.password, 'sftp', '-o', 'PreferredAuthentications=password', '-o', 'PubkeyAuthentication=no', '-o', 'NumberOfPasswordPrompts=1', ...common, `${user}@127.0.0.1`]];
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(cmd as string, args as string[], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: workDir } });
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => p.kill('SIGKILL'), 30000);
    p.on('close', (code) => { clearTimeout(timer); resolve({ code, out, ms: Date.now() - t0 }); });
  });
}
