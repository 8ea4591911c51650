// The real OpenSSH sshd for end-to-end tests: own host key and config in a temp dir, loopback
// only, started inside `unshare -m` where /etc is a private overlay (local test accounts, an
// ld.so.cache that finds the NSS module), /etc/nsswitch.conf says `passwd: files latchkey`,
// /etc/pam.d is a private copy holding our "sshd" service, and the test daemon's socket dir is
// bind-mounted on /run/latchkey (sshd runs AuthorizedKeysCommand with an empty environment, so
// the helper must find the daemon at the default path). Killed by pid.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync, mkdirSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, createConnection } from 'node:net';
import { join } from 'node:path';
import { ROOT, NSS_LIB_DIR, TEST_DAEMON_PASSWD_LINE, runCommand, type RunResult } from './harness.js';
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

export interface Sshd {
  port: number;
  /** the extra ports of SshdOptions.extraPorts, in order */
  ports: number[];
  pid: number;
  configFile: string;
  logs: () => string;
  /** runs a shell script inside sshd's mount namespace (its private /etc, /run) */
  inNamespace(script: string): Promise<RunResult>;
  stop(): Promise<void>;
}

/** The shipped PAM file with the module by absolute path. */
export function shippedPamStack(): string {
  return readFileSync(join(ROOT, 'etc/pam.d/latchkey-sshd'), 'utf8').replace(/\bpam_latchkey\.so\b/g, PAM_MODULE);
}

/** The shipped drop-in as installed, with the keys helper where the namespace has it. */
export function shippedDropIn(): string {
  return readFileSync(join(ROOT, 'etc/sshd_config.d/latchkey.conf'), 'utf8')
    .replace('/usr/local/libexec/latchkey-authorized-keys', AUTH_KEYS_HELPER_IN_NS);
}

export interface SshdOptions {
  /** global lines before the test defaults and the drop-in (sshd keeps the first value) */
  before?: string[];
  /** lines after the drop-in's Include, e.g. `Match LocalPort` blocks of the test (given the extra ports) */
  after?: (ports: number[]) => string[];
  /** how many more loopback ports to listen on (Sshd.ports), for per-port Match blocks */
  extraPorts?: number;
  /** a private /etc for sshd (local accounts, /etc/nologin): see makePrivateEtc */
  etc?: PrivateEtc;
}

/** Ports and the config file, written before latchkeyd starts so its [daemon] sshd_config can name it. */
export interface SshdPlan { dir: string; port: number; ports: number[]; configFile: string; etc?: PrivateEtc }

/**
 * Writes sshd_config: the test's lines, test defaults, then `Include` of a copy of the shipped
 * drop-in (in its own sshd_config.d, as Debian includes /etc/ssh/sshd_config.d/*.conf), then the
 * test's trailing lines.
 */
export async function planSshd(parent: string, opts: SshdOptions = {}): Promise<SshdPlan> {
  const dir = join(parent, 'sshd');
  // Readable by latchkeyd's unprivileged user: the daemon reads sshd_config (chroot decisions).
  mkdirSync(join(dir, 'sshd_config.d'), { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  chmodSync(join(dir, 'sshd_config.d'), 0o755);
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_ed25519')]);
  const port = await freePort();
  const ports: number[] = [];
  while (ports.length < (opts.extraPorts ?? 0)) {
    const p = await freePort();
    if (p !== port && !ports.includes(p)) ports.push(p);
  }
  writeFileSync(join(dir, 'sshd_config.d', 'latchkey.conf'), shippedDropIn());
  const configFile = join(dir, 'sshd_config');
  writeFileSync(configFile, [
    ...(opts.before ?? []),
    ...[port, ...ports].map((p) => `ListenAddress 127.0.0.1:${p}`),
    `HostKey ${join(dir, 'host_ed25519')}`,
    'PidFile none',
    'AuthorizedKeysFile none',
    'PermitRootLogin no',
    'LogLevel VERBOSE',
    'Subsystem sftp internal-sftp',
    'MaxAuthTries 3',
    `Include ${join(dir, 'sshd_config.d')}/*.conf`,
    ...(opts.after?.(ports) ?? []),
  ].join('\n') + '\n');
  return { dir, port, ports, configFile, ...(opts.etc ? { etc: opts.etc } : {}) };
}

export interface LocalAccount { name: string; uid: number; password: string }

/**
 * A private /etc for sshd's namespace: an overlay on the host's /etc whose upper layer holds
 * copies of passwd, group, shadow and gshadow with the test's local accounts added (password
 * hashed by `openssl passwd -6`) and root's password locked. The host's /etc never changes; the
 * files are also readable from outside, so latchkeyd's [users] local_passwd/local_group can name
 * the same copies.
 */
export interface PrivateEtc { upper: string; work: string; passwd: string; group: string }

export function makePrivateEtc(parent: string, accounts: LocalAccount[]): PrivateEtc {
  const upper = join(parent, 'etc-upper');
  const work = join(parent, 'etc-work');
  mkdirSync(upper, { recursive: true });
  mkdirSync(work, { recursive: true });
  for (const f of ['passwd', 'group', 'shadow', 'gshadow']) {
    if (!existsSync(`/etc/${f}`)) continue;
    const r = spawnSync('cp', ['-p', `/etc/${f}`, join(upper, f)]);
    if (r.status !== 0) throw new Error(`cp /etc/${f}: ${r.stderr}`);
  }
  const shadow = readFileSync(join(upper, 'shadow'), 'utf8').split('\n')
    .map((l) => (l.startsWith('root:') ? l.replace(/^root:[^:]*:/, 'root:!:') : l)).join('\n');
  let passwd = readFileSync(join(upper, 'passwd'), 'utf8');
  let group = readFileSync(join(upper, 'group'), 'utf8');
  let shadowOut = shadow.endsWith('\n') ? shadow : shadow + '\n';
  for (const a of accounts) {
    const hash = spawnSync('openssl', ['passwd', '-6', '-stdin'], { input: a.password, encoding: 'utf8' }).stdout.trim();
    if (!hash.startsWith('$6$')) throw new Error('openssl passwd -6 failed');
    passwd += `${a.name}:x:${a.uid}:${a.uid}:local test account:/:/bin/sh\n`;
    group += `${a.name}:x:${a.uid}:\n`;
    // lastchg is a day in the past: 0 would make pam_unix demand a password change.
    shadowOut += `${a.name}:${hash}:19000:0:99999:7:::\n`;
  }
  writeFileSync(join(upper, 'passwd'), passwd);
  writeFileSync(join(upper, 'group'), group);
  writeFileSync(join(upper, 'shadow'), shadowOut);
  return { upper, work, passwd: join(upper, 'passwd'), group: join(upper, 'group') };
}

/**
 * The shell script that runs sshd (`configFile`) in a private mount namespace: the /etc overlay
 * of `etc`, the shipped pam.d stack, `passwd: files latchkey` and the daemon's socket dir at
 * /run/latchkey. Whoever spawns it picks the network namespace (this host's, or a test lab's).
 */
export function sshdNamespaceScript(dir: string, socketDir: string, etc: PrivateEtc, configFile: string): string {
  const pamDir = makePamDir(dir, { sshd: shippedPamStack() });
  const ns = join(dir, 'nsswitch.conf');
  writeFileSync(ns, 'passwd: files latchkey\ngroup: files latchkey\nshadow: files\nhosts: files\n');
  // /run gets a private tmpfs so /run/sshd (privsep dir) and /run/latchkey exist without
  // touching the host's /run. The /etc overlay comes first: the bind mounts go on top of it.
  // sshd runs AuthorizedKeysCommand with an empty environment (no LD_LIBRARY_PATH), and the keys
  // helper resolves the user through NSS as sshd did: the private ld.so.cache lists the NSS
  // module's directory, as an installed module in the system libdir would be found (ldconfig -X
  // touches no symlinks, and its aux cache goes to a private tmpfs).
  return [
    'set -e',
    'mount --make-rprivate /',
    `mount -t overlay latchkey-test-etc -o lowerdir=/etc,upperdir=${etc.upper},workdir=${etc.work} /etc`,
    `echo ${NSS_LIB_DIR} > /etc/ld.so.conf.d/zz-latchkey-test.conf`,
    // The daemon's account, as the package's sysusers.d would make it: the keys helper runs with
    // an empty environment and finds the daemon user here.
    `grep -q '^_latchkey:' /etc/passwd || echo '${TEST_DAEMON_PASSWD_LINE}' >> /etc/passwd`,
    'if [ -d /var/cache/ldconfig ]; then mount -t tmpfs -o mode=0700 latchkey-test-ldcache /var/cache/ldconfig; fi',
    'ldconfig -X',
    `mount --bind ${ns} /etc/nsswitch.conf`,
    `mount --bind ${pamDir} /etc/pam.d`,
    'mount -t tmpfs -o mode=0755 latchkey-test-run /run',
    'mkdir -p /run/sshd /run/latchkey /run/latchkey-bin',
    `install -m 0755 ${AUTH_KEYS_HELPER} ${AUTH_KEYS_HELPER_IN_NS}`,
    `mount --bind ${socketDir} /run/latchkey`,
    `/usr/sbin/sshd -t -f ${configFile}`,
    `exec /usr/sbin/sshd -D -e -f ${configFile}`,
  ].join('\n');
}

export async function startSshd(dir: string, socketDir: string, env: Record<string, string>, plan?: SshdPlan): Promise<Sshd> {
  const p = plan ?? await planSshd(dir);
  const cfg = p.configFile;
  const script = sshdNamespaceScript(p.dir, socketDir, p.etc ?? makePrivateEtc(p.dir, []), cfg);
  const run = spawnSshdScript(script, env);
  const { proc } = run;
  const log = (): string => run.logs();
  const deadline = Date.now() + 10000;
  for (const port of [p.port, ...p.ports]) {
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`sshd exited ${proc.exitCode}:\n${log()}`);
      const up = await new Promise<boolean>((r) => {
        const c = createConnection(port, '127.0.0.1');
        c.once('connect', () => { c.destroy(); r(true); });
        c.once('error', () => r(false));
      });
      if (up) break;
      if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`sshd did not listen:\n${log()}`); }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    port: p.port, ports: p.ports, pid: proc.pid!, configFile: cfg, logs: log,
    // `exec` made the namespace's sh into sshd: this pid is sshd, inside the namespace.
    inNamespace: (s) => runCommand('nsenter', ['-t', String(proc.pid), '-m', '--', 'sh', '-c', s], {}),
    stop: run.stop,
  };
}

/**
 * Runs an sshdNamespaceScript in a private mount namespace (after `prefix`, e.g. nsenter into a
 * network namespace), collecting its output; stop() ends it (SIGTERM, then SIGKILL after 3 s).
 * The caller decides when it is ready.
 */
export function spawnSshdScript(script: string, env: Record<string, string>, prefix: string[] = []): { proc: ChildProcess; logs(): string; stop(): Promise<void> } {
  const argv = [...prefix, 'unshare', '-m', '--propagation', 'private', 'sh', '-c', script];
  const proc: ChildProcess = spawn(argv[0]!, argv.slice(1), {
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => { log += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    proc,
    logs: () => log,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

export interface SftpResult { code: number | null; out: string; ms: number }

/**
 * How the client logs in: a key (BatchMode), a password (sshpass), or both, the password given
 * to the `password` or `keyboard-interactive` method after the key (AuthenticationMethods).
 */
export type SftpAuth = { key: string } | { password: string } | { key: string; password: string; then: 'password' | 'keyboard-interactive' };

/** Runs `sftp -b batch` as a client; asynchronous. */
export function sftp(port: number, user: string, batch: string, auth: SftpAuth, workDir: string): Promise<SftpResult> {
  const batchFile = join(workDir, `batch-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  writeFileSync(batchFile, batch);
  const common = [
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=' + ('password' in auth ? 'no' : 'yes'),
    '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR', '-P', String(port), '-b', batchFile,
  ];
  const withKey = (k: string): string[] => ['-i', k, '-o', 'IdentitiesOnly=yes'];
  let cmd: string;
  let args: string[];
  if (!('password' in auth)) {
    [cmd, args] = ['sftp', [...withKey(auth.key), '-o', 'PreferredAuthentications=publickey', ...common, `${user}@127.0.0.1`]];
  } else if (!('key' in auth)) {
    [cmd, args] = ['sshpass', ['-p', auth.password, 'sftp', '-o', 'PreferredAuthentications=password', '-o', 'PubkeyAuthentication=no', '-o', 'NumberOfPasswordPrompts=1', ...common, `${user}@127.0.0.1`]];
  } else {
    // sshpass answers the first prompt containing "assword" (ours: "... password: ") once;
    // a second prompt means the first answer was refused, and sshpass gives up.
    [cmd, args] = ['sshpass', ['-p', auth.password, 'sftp', ...withKey(auth.key), '-o', `PreferredAuthentications=publickey,${auth.then}`,
      '-o', 'KbdInteractiveAuthentication=yes', '-o', 'NumberOfPasswordPrompts=1', ...common, `${user}@127.0.0.1`]];
  }
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: workDir } });
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => p.kill('SIGKILL'), 30000);
    p.on('close', (code) => { clearTimeout(timer); resolve({ code, out, ms: Date.now() - t0 }); });
  });
}

/** What a suite of sftp logins needs besides the daemon: see sftpWorkspace. */
export interface SftpWorkspace { base: string; work: string; key: string; pub: string; remove(): void }

/**
 * A homes base sshd's ChrootDirectory accepts (every component root-owned and not group- or
 * world-writable, so under /var/lib: /tmp is 1777) and a client directory with an ed25519 key
 * (`pub`: its public line, for the users' records). remove() deletes both.
 */
export function sftpWorkspace(name: string): SftpWorkspace {
  const base = mkdtempSync(`/var/lib/latchkey-${name}-test-`);
  chmodSync(base, 0o755);
  const work = mkdtempSync(join(tmpdir(), `latchkey-${name}-client-`));
  const key = join(work, 'id_ed25519');
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
  return {
    base, work, key, pub: readFileSync(`${key}.pub`, 'utf8').trim(),
    remove() {
      rmSync(work, { recursive: true, force: true });
      rmSync(base, { recursive: true, force: true });
    },
  };
}
