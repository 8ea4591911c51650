// The other NSS caches `make bench` compares latchkey with: SSSD (proxy provider in front of
// nss_files, its memcache on or off) and nscd (shared passwd cache), each in a private mount
// namespace of its own.
//
// The daemon is the first process of its namespace (`unshare -m`, then a shell that mounts and
// execs it), so the namespace lives exactly as long as the daemon. In there: private tmpfs mounts
// over its state dirs (/var/lib/sss, /run, /var/log/sssd, /var/cache/nscd: the host's stay
// untouched and nothing survives the run), its own config (sssd.conf 0600 bind-mounted as
// /etc/sssd; nscd -f FILE), and the bench's generated passwd file bind-mounted on /etc/passwd with
// an nsswitch.conf saying `passwd: files`: that is what SSSD's proxy provider (proxy_lib_name =
// files: libnss_files, dlopen'ed) and nscd serve. A measured client joins the namespace with
// `nsenter --mount` (run.ts); SSSD's clients additionally get an nsswitch.conf of `passwd: sss`
// in a nested namespace, so every lookup they make is SSSD's. Only loopback is used (no network
// namespace needed: neither daemon talks to a network here); only the pids started here, and the
// children those daemons forked, are ever signalled.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type Instance = 'sss_mc' | 'sss' | 'sss_enum' | 'nscd';

export interface Other {
  inst: Instance;
  /** the daemon (sssd's monitor, or nscd): the first process of its mount namespace */
  pid: number;
  proc: ChildProcess;
  log: string;
}

export interface OtherSetup {
  /** the run's work dir (a tmpfs); each instance gets a subdir */
  work: string;
  /** the generated passwd file, bind-mounted on /etc/passwd */
  passwd: string;
  /** an nsswitch.conf with `passwd: files`, bind-mounted on /etc/nsswitch.conf */
  nsswitchFiles: string;
  users: number;
  /** receives each daemon as soon as it is spawned (before it is up), for the caller's cleanup */
  register: (o: Other) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sh = (cmd: string): boolean => spawnSync('sh', ['-c', cmd], { stdio: 'ignore' }).status === 0;

/** sssd, its proxy provider and the client module (packages sssd-common, sssd-proxy, libnss-sss). */
export const sssdInstalled = (): boolean =>
  sh('command -v sssd && ls /usr/lib/*/sssd/libsss_proxy.so /usr/lib/sssd/libsss_proxy.so 2>/dev/null | grep -q . && ldconfig -p | grep -q libnss_sss.so.2');
export const nscdInstalled = (): boolean => sh('command -v nscd');
export const sssdVersion = (): string => spawnSync('sssd', ['--version'], { encoding: 'utf8' }).stdout?.trim() ?? '?';
export const glibcVersion = (): string => /\s([\d.]+)\s*$/m.exec(spawnSync('ldd', ['--version'], { encoding: 'utf8' }).stdout?.split('\n')[0] ?? '')?.[1] ?? '?';

/** argv prefix that runs a command in o's mount namespace. */
export const enterArgv = (o: Other): string[] => ['nsenter', `--mount=/proc/${o.pid}/ns/mnt`, '--'];

// ---- SSSD -------------------------------------------------------------------------------------
const SSSD_NS_SCRIPT = [
  'set -e',
  'mount -t tmpfs -o mode=755,size=2g lkb-sss-lib /var/lib/sss',
  'cd /var/lib/sss',
  'mkdir -p db mc pipes/private pubconf gpo_cache',
  'chmod 700 db; chmod 775 mc; chmod 750 pipes/private',
  'mount -t tmpfs -o mode=755,size=64m lkb-sss-run /run',
  'if [ -d /var/log/sssd ]; then mount -t tmpfs -o mode=750,size=64m lkb-sss-log /var/log/sssd; fi',
  'mount --bind "$1" /etc/sssd',
  'mount --bind "$2" /etc/passwd',
  'mount --bind "$3" /etc/nsswitch.conf',
  'exec sssd -i --logger=stderr',
].join('\n');

function sssdConf(inst: Instance): string {
  const memcache = inst !== 'sss';
  const enumerate = inst === 'sss_enum';
  return `# latchkey bench (${inst}): SSSD's proxy provider in front of nss_files, which reads the
# bench's passwd file (bind-mounted on /etc/passwd in this namespace only).
[sssd]
config_file_version = 2
services = nss
domains = bench

[nss]
# Cache lifetimes of 1 h, as latchkey's ttl and negative_ttl in the same run: every warm lookup is
# a cache hit for both.
memcache_timeout = ${memcache ? 3600 : 0}
entry_negative_timeout = 3600
enum_cache_timeout = 3600
${enumerate ? `# Building the first enumeration of many users keeps the responder busy for longer than its
# default watchdog (3 x 10 s) allows: it would be killed and restarted over and over.
timeout = 600
` : ''}
[domain/bench]
id_provider = proxy
proxy_lib_name = files
auth_provider = none
entry_cache_timeout = 3600
enumerate = ${enumerate ? 'true' : 'false'}
`;
}

export async function startSssd(inst: Exclude<Instance, 'nscd'>, s: OtherSetup): Promise<Other> {
  const dir = join(s.work, inst);
  const etc = join(dir, 'etc');
  mkdirSync(join(etc, 'conf.d'), { recursive: true });
  chmodSync(etc, 0o711);
  const conf = join(etc, 'sssd.conf');
  writeFileSync(conf, sssdConf(inst), { mode: 0o600 });
  chmodSync(conf, 0o600); // sssd refuses a config anybody else can read
  const o = launch(inst, dir, ['unshare', '-m', '--propagation', 'private', 'sh', '-c', SSSD_NS_SCRIPT, 'lkb-sssd', etc, s.passwd, s.nsswitchFiles], s);
  await waitFor(o, '/var/lib/sss/pipes/nss', 60_000);
  return o;
}

/** Bytes of SSSD's cache database and of its memcache files. */
export function sssdStateBytes(o: Other): { db: number; mc: number } {
  const sum = (d: string): number => {
    const p = `/proc/${o.pid}/root${d}`;
    try { return readdirSync(p).reduce((n, f) => n + statSync(join(p, f)).size, 0); } catch { return NaN; }
  };
  return { db: sum('/var/lib/sss/db'), mc: sum('/var/lib/sss/mc') };
}

/** Whether o's client-side memcache file exists (it must for sss_mc, and must not for sss). */
export const sssdHasMemcache = (o: Other): boolean => existsSync(`/proc/${o.pid}/root/var/lib/sss/mc/passwd`);

// ---- nscd -------------------------------------------------------------------------------------
const NSCD_NS_SCRIPT = [
  'set -e',
  'mount -t tmpfs -o mode=755,size=64m lkb-nscd-run /run',
  'mkdir -p /run/nscd',
  'if [ -d /var/cache/nscd ]; then mount -t tmpfs -o mode=755,size=64m lkb-nscd-cache /var/cache/nscd; fi',
  'mount --bind "$1" /etc/passwd',
  'mount --bind "$2" /etc/nsswitch.conf',
  'exec nscd -F -f "$3"',
].join('\n');

function nextPrime(n: number): number {
  const prime = (k: number): boolean => { for (let d = 2; d * d <= k; d++) if (k % d === 0) return false; return k > 1; };
  let k = n;
  while (!prime(k)) k++;
  return k;
}

export async function startNscd(s: OtherSetup): Promise<Other> {
  const dir = join(s.work, 'nscd');
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'nscd.conf');
  // passwd only; hash table sized for the users (nscd wants a prime), entries living 1 h like
  // latchkey's; `shared`: glibc maps the cache and answers hits and misses in-process.
  writeFileSync(conf, `debug-level 0
paranoia no
enable-cache passwd yes
positive-time-to-live passwd 3600
negative-time-to-live passwd 3600
suggested-size passwd ${nextPrime(Math.max(211, Math.ceil(s.users * 1.5)))}
check-files passwd yes
persistent passwd no
shared passwd yes
max-db-size passwd ${Math.max(32 << 20, s.users * 2048)}
auto-propagate passwd yes
enable-cache group no
enable-cache hosts no
enable-cache services no
enable-cache netgroup no
`);
  const o = launch('nscd', dir, ['unshare', '-m', '--propagation', 'private', 'sh', '-c', NSCD_NS_SCRIPT, 'lkb-nscd', s.passwd, s.nsswitchFiles, conf], s);
  await waitFor(o, '/run/nscd/socket', 30_000);
  return o;
}

/** `nscd -g` figures of the passwd cache (the first table it prints). */
export function nscdStats(statsText: string): { cached: number; usedPool: number } {
  const num = (label: string): number => Number(new RegExp(`^\\s*(\\d+)\\s+${label}`, 'm').exec(statsText)?.[1] ?? NaN);
  return { cached: num('current number of cached values'), usedPool: num('used data pool size') };
}

// ---- both -------------------------------------------------------------------------------------
function launch(inst: Instance, dir: string, argv: string[], s: OtherSetup): Other {
  const log = join(dir, 'daemon.log');
  const fd = openSync(log, 'a');
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', fd, fd], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } });
  closeSync(fd);
  const o: Other = { inst, pid: proc.pid!, proc, log };
  s.register(o);
  return o;
}

/** Waits until `path` exists inside o's namespace (the daemon's socket): the daemon is up. */
async function waitFor(o: Other, path: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(`/proc/${o.pid}/root${path}`)) {
    if (o.proc.exitCode !== null || o.proc.signalCode !== null || Date.now() > deadline) {
      const tail = (() => { try { return readFileSync(o.log, 'utf8').slice(-1500); } catch { return ''; } })();
      throw new Error(`${o.inst}: ${path} did not appear (${o.proc.exitCode !== null ? `exit ${o.proc.exitCode}` : 'timeout'}): ${tail.trim()}`);
    }
    await sleep(50);
  }
}

function childrenOf(pid: number): number[] {
  let tasks: string[] = [];
  try { tasks = readdirSync(`/proc/${pid}/task`); } catch { return []; }
  const out: number[] = [];
  for (const t of tasks) {
    try { out.push(...readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)); } catch { /* gone */ }
  }
  return out;
}

/** The daemon and every process it forked (sssd: the monitor, sssd_be, sssd_nss). */
export function otherPids(o: Other): number[] {
  const all: number[] = [];
  const walk = (p: number): void => { all.push(p); for (const c of childrenOf(p)) walk(c); };
  if (o.proc.exitCode === null && o.proc.signalCode === null) walk(o.pid);
  return all;
}

const comm = (pid: number): string => { try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); } catch { return ''; } };

/** SIGTERM to the daemon (sssd's monitor stops its children), up to 10 s; then SIGKILL to what is
 *  left of the pids it had, each still carrying a daemon's name (not a reused pid). */
export async function stopOther(o: Other): Promise<void> {
  const pids = otherPids(o);
  if (o.proc.exitCode === null && o.proc.signalCode === null) {
    const gone = new Promise((r) => o.proc.once('exit', r));
    try { process.kill(o.pid, 'SIGTERM'); } catch { /* already gone */ }
    await Promise.race([gone, sleep(10_000)]);
  }
  for (const p of pids) {
    if (/^(sssd|sssd_\w+|nscd)$/.test(comm(p))) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
  }
}
