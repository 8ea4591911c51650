// `make bench`: latchkey (through its shared map and through its socket), SSSD (memcache on and
// off), nscd and nss_files side by side, in one run with the same users: one Markdown table and
// one JSON file.
//
// scripts/bench starts this inside `unshare -m` (a private mount namespace). Here: a mkdtemp dir
// with a tmpfs on it (the cache lives on tmpfs, as /run/latchkey does in production), N generated
// users served by the example user service, and the same N users in a private passwd file. Every
// measured program (test/bench/lkbench.c, getent, hyperfine) runs in a further mount namespace:
// for latchkey and files one of its own (`unshare -m`) whose /etc/nsswitch.conf says
// `passwd: latchkey` or `passwd: files` and whose /etc/passwd is the generated one; for SSSD and
// nscd the namespace of the daemon it measures (others.ts; `nsenter --mount`). The host's /etc is
// never touched. Only loopback addresses; only processes started here are killed (by pid); the
// dir is removed at the end.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  mkdtempSync, writeFileSync, readFileSync, rmSync, chmodSync, mkdirSync, statSync, existsSync,
  readdirSync, openSync, closeSync,
} from 'node:fs';
import { tmpdir, cpus, release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import bcrypt from 'bcrypt';
import { request as httpRequest, Agent } from 'undici';
import { request, TEST_DAEMON_UID } from '../lib/harness.js';
import { ROOT } from '../lib/paths.js';
import { startServiceProc, stopChild, waitForDaemon, type ServiceProc } from '../lib/service-proc.js';
import { ROW_IDS, BACKENDS, BACKEND_LABEL, VERSUS, NOT_INSTALLED, type RowId, type Backend, type Versus } from './rows.js';
import {
  startSssd, startNscd, stopOther, otherPids, enterArgv, sssdInstalled, nscdInstalled, sssdVersion, glibcVersion,
  sssdStateBytes, sssdHasMemcache, nscdStats, type Other, type Instance, type OtherSetup,
} from './others.js';

// ---- options --------------------------------------------------------------------------------
const USAGE = `usage: scripts/bench [--users N] [--quick] [--full] [--out DIR] [--profile] [--keep] [--no-install]
  --users N   users in the user service and in the private passwd file (default 10000)
  --quick     a few seconds: 200 users, short runs (what the smoke test runs); installs nothing
  --full      also measure the daemon's memory and cache size at 100000 users (a second daemon)
  --out DIR   where the JSON and Markdown go (default bench-results/)
  --profile   run the daemon with node --cpu-prof and print where its time went
  --keep      keep the temp dir (for debugging)
  --no-install  (scripts/bench) do not install SSSD, nscd and hyperfine first; their columns
              then say "skipped" when they are missing
  --daemon-env K=V         extra environment for latchkeyd (repeatable), e.g. UV_THREADPOOL_SIZE=1
  --daemon-node-args ARGS  extra node flags for latchkeyd, e.g. "--max-semi-space-size=1"
                           (both for trying a fix; they are recorded in the JSON)`;

const { values: argv } = parseArgs({
  options: {
    users: { type: 'string' }, quick: { type: 'boolean', default: false }, full: { type: 'boolean', default: false },
    out: { type: 'string' }, profile: { type: 'boolean', default: false }, keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false }, 'no-install': { type: 'boolean', default: false },
    'daemon-env': { type: 'string', multiple: true }, 'daemon-node-args': { type: 'string' },
    'exec-loop': { type: 'string' },
  },
  allowPositionals: true, strict: true,
});

const QUICK = argv.quick!;
const N = argv.users ? Number(argv.users) : QUICK ? 200 : 10_000;
const FULL_N = 100_000;
const DO_FULL = argv.full! && N < FULL_N;
if (!Number.isInteger(N) || N < 10 || N > 1_000_000) { process.stderr.write(`--users must be 10..1000000\n${USAGE}\n`); process.exit(2); }
const OUT = argv.out ?? join(ROOT, 'bench-results');
const DAEMON_ENV: Record<string, string> = Object.fromEntries((argv['daemon-env'] ?? []).map((kv) => {
  const i = kv.indexOf('=');
  if (i <= 0) { process.stderr.write(`--daemon-env wants KEY=VALUE, got ${kv}\n`); process.exit(2); }
  return [kv.slice(0, i), kv.slice(i + 1)];
}));
const DAEMON_NODE_ARGS = (argv['daemon-node-args'] ?? '').split(/\s+/).filter(Boolean);

/** Sizes of each measurement; --quick makes everything small. */
const P = QUICK
  ? { latIters: 2000, latSecs: 0.3, tputSecs: 0.5, hfRuns: 10, hfWarm: 2, enumRuns: 3, cold: 20, storm: 10, stormHashes: 2, baselineMs: 300, pacedUs: 1000 }
  : { latIters: 20000, latSecs: 1.5, tputSecs: 2, hfRuns: 200, hfWarm: 20, enumRuns: 10, cold: 200, storm: 100, stormHashes: 100, baselineMs: 2000, pacedUs: 1000 };

const BIN_DRIVER = join(ROOT, 'test/bench/build/lkbench');
const LATCHKEYD = join(ROOT, 'bin/latchkeyd');
const NSS_DIR = join(ROOT, 'native/nss');
const UID_BASE = 100_000; // upstream uid of user 0; local uid = + uid_shift
const UID_SHIFT = 10_000;
const GID = 10_000;
const NOBODY = 65534;
const AUTH = { user: 'lega', password: 'bench-secret' };
const DEMO_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtTQ5JPSQBeEpxa4l9g35KpDlRe4THz+oMCk/AQuQ6C bench@latchkey';
/** The issue's targets (issue 15) and the older ones still printed. */
const T = { hitUs: 0.5, vsSssd: 3, missUs: 1, tput2: 2_000_000, enumMs: 15, enumAt: 10_000, growthMiB: 40, socketHitUs: 50, stormP99Us: 5000, coldOverUs: 1000, rss100kBytes: 80e6 };

// ---- small helpers --------------------------------------------------------------------------
interface Lat { n: number; min_us: number; p50_us: number; p90_us: number; p99_us: number; max_us: number; mean_us: number }
type Json = Record<string, unknown>;

const started: ChildProcess[] = [];
const others: Other[] = [];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const say = (s: string): void => { process.stderr.write(`bench: ${s}\n`); };
const userName = (i: number, prefix = 'bu'): string => `${prefix}${String(i).padStart(6, '0')}`;
const localUid = (i: number): number => UID_BASE + i + UID_SHIFT;

function latFrom(samples: number[]): Lat {
  const t = [...samples].sort((a, b) => a - b);
  const n = t.length;
  const at = (p: number): number => (n ? t[Math.min(n - 1, Math.floor(n * p))]! : 0);
  return { n, min_us: n ? t[0]! : 0, p50_us: at(0.5), p90_us: at(0.9), p99_us: at(0.99), max_us: n ? t[n - 1]! : 0, mean_us: n ? t.reduce((a, b) => a + b, 0) / n : 0 };
}

function fmtUs(us: number): string {
  if (!Number.isFinite(us)) return 'n/a';
  if (us < 10) return `${us.toFixed(2)} µs`;
  if (us < 1000) return `${us.toFixed(1)} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(2)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}
const fmtLat = (l: Lat): string => `p50 ${fmtUs(l.p50_us)} · p99 ${fmtUs(l.p99_us)}`;
const fmtRate = (r: number): string => `${Math.round(r).toLocaleString('en-US')}/s`;
const fmtBytes = (b: number): string => (!Number.isFinite(b) ? 'n/a' : b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${(b / 1024).toFixed(0)} KiB`);
const fmtX = (x: number): string => (!Number.isFinite(x) || x <= 0 ? 'n/a' : `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)}×`);
const verdict = (ok: boolean): string => (ok ? '**met**' : '**missed**');

// ---- the namespaces the clients run in --------------------------------------------------------
let WORK = '';
let SOCKDIR = '';
const nsFile = (kind: 'latchkey' | 'files' | 'sss'): string => join(WORK, `nsswitch.${kind}`);
const passwdFile = (): string => join(WORK, 'passwd');
const EXTERNAL = new Set<Backend>(['sss_mc', 'sss', 'nscd']);
/** Why a backend's column is empty (not installed, or its daemon did not start). */
const skipped: Partial<Record<Backend, string>> = {};
const ext: Partial<Record<Instance, Other>> = {};
const live = (): Backend[] => BACKENDS.filter((b) => !skipped[b]);

// An nscd on the host would answer the latchkey and files clients before nsswitch.conf is read:
// their namespaces hide its socket directory.
const NS_SCRIPT = 'mount --bind "$1" /etc/nsswitch.conf && mount --bind "$2" /etc/passwd'
  + ' && { [ ! -d /run/nscd ] || mount -t tmpfs -o mode=755,size=1m lkb-no-nscd /run/nscd; } && shift 2 && exec "$@"';
const SSS_CLIENT_SCRIPT = 'mount --bind "$1" /etc/nsswitch.conf && shift && exec "$@"';

interface ClientOpts {
  /** run as this uid (and gid) with no groups: a negative entry reaches the map only for non-root
   *  askers, and the daemon lets each uid fetch only so many never-seen names per second */
  asUid?: number;
  /** taskset -c CPU */
  cpu?: string;
  /** SSSD: the instance with enumerate = true */
  enumerating?: boolean;
}

/** argv that runs cmd as a client of backend b. */
function clientArgv(b: Backend, cmd: string[], o: ClientOpts = {}): string[] {
  const inner = [
    ...(o.cpu !== undefined ? ['taskset', '-c', o.cpu] : []),
    ...(o.asUid !== undefined ? ['setpriv', `--reuid=${o.asUid}`, `--regid=${o.asUid}`, '--clear-groups', '--'] : []),
    ...(b === 'socket' ? ['env', 'LATCHKEY_NSS_NO_MMAP=1'] : []),
    ...cmd,
  ];
  if (b === 'map' || b === 'socket' || b === 'files') {
    return ['unshare', '-m', '--propagation', 'private', 'sh', '-c', NS_SCRIPT, 'lkns', nsFile(b === 'files' ? 'files' : 'latchkey'), passwdFile(), ...inner];
  }
  if (b === 'nscd') return [...enterArgv(ext.nscd!), ...inner];
  // SSSD: the daemon's namespace (its /etc/passwd, /var/lib/sss), then a nested one for `passwd: sss`
  const o2 = ext[o.enumerating ? 'sss_enum' : b]!;
  return [...enterArgv(o2), 'unshare', '-m', '--propagation', 'private', 'sh', '-c', SSS_CLIENT_SCRIPT, 'lkns', nsFile('sss'), ...inner];
}
const nsEnv = (): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LD_LIBRARY_PATH: NSS_DIR, LATCHKEY_SOCKET_DIR: SOCKDIR, LATCHKEY_DAEMON_USER: String(TEST_DAEMON_UID), LC_ALL: 'C',
});

/** Runs a command to completion; resolves with its stdout (rejects on a non-zero exit). */
function run(argvList: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(argvList[0]!, argvList.slice(1), { env: opts.env ?? nsEnv(), stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    started.push(p);
    p.stdin?.on('error', () => { /* the child exited without reading: its exit code tells */ });
    let out = '';
    let err = '';
    p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    p.stdin?.end(opts.input);
    const timer = setTimeout(() => { if (p.pid) process.kill(p.pid, 'SIGKILL'); }, opts.timeoutMs ?? 600_000);
    p.on('close', (code, sig) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${argvList.slice(-6).join(' ')}: exit ${code ?? sig}\n${err.slice(-2000)}`));
    });
  });
}

const lastJson = (out: string): Json => JSON.parse(out.trim().split('\n').pop()!) as Json;
async function driver(b: Backend, args: string[], o: ClientOpts = {}, timeoutMs?: number): Promise<Json> {
  return lastJson(await run(clientArgv(b, [BIN_DRIVER, ...args], o), { timeoutMs }));
}
const asLat = (j: Json): Lat => j as unknown as Lat;

/** Fills latchkey's cache with `names`: FILL_PROCS processes at once, each as a uid of its own
 *  (the daemon lets one uid fetch NEW_NAMES_PER_UID_PER_SEC never-seen names per second, root ten
 *  times that: a real cache fills from many users' lookups), each retrying a refused name. */
const FILL_PROCS = 100;
const FILL_UID_BASE = 300_000;
async function fillLatchkey(names: string[], tag: string): Promise<{ found: number; errors: number; retries: number; procs: number; wall_us: number; ops_per_s: number }> {
  const procs = Math.min(FILL_PROCS, names.length);
  const files = Array.from({ length: procs }, (_, p) => {
    const f = join(WORK, `fill-${tag}-${p}.txt`);
    writeFileSync(f, names.filter((_, i) => i % procs === p).join('\n') + '\n');
    return f;
  });
  const t0 = process.hrtime.bigint();
  const res = await Promise.all(files.map((f, p) => driver('map', ['fill', f], { asUid: FILL_UID_BASE + p })));
  const wall = Number(process.hrtime.bigint() - t0) / 1000;
  const sum = (k: string): number => res.reduce((a, j) => a + Number(j[k]), 0);
  return { found: sum('found'), errors: sum('errors'), retries: sum('retries'), procs, wall_us: wall, ops_per_s: names.length / (wall / 1e6) };
}

// ---- users, files, service, daemon ----------------------------------------------------------
interface CegaUser { username: string; uid: number; passwordHash: string | null; sshPublicKeys: string[]; gecos: string }

function makeUsers(n: number, sharedHash: string, stormHashes: string[], stormCount: number): CegaUser[] {
  const users: CegaUser[] = [];
  for (let i = 0; i < n; i++) {
    users.push({
      username: userName(i), uid: UID_BASE + i,
      passwordHash: i < stormCount ? stormHashes[i % stormHashes.length]! : sharedHash,
      sshPublicKeys: [DEMO_KEY], gecos: `Bench User ${i}`,
    });
  }
  return users;
}

function writePasswd(path: string, n: number): void {
  const lines = ['root:x:0:0:root:/root:/bin/bash'];
  for (let i = 0; i < n; i++) {
    const name = userName(i);
    lines.push(`${name}:x:${localUid(i)}:${GID}:Bench User ${i}:${join(WORK, 'homes', name)}:/bin/bash`);
  }
  lines.push(`nobody:x:${NOBODY}:${NOBODY}:nobody:/nonexistent:/usr/sbin/nologin`);
  writeFileSync(path, lines.join('\n') + '\n');
}

const startService = (usersFile: string): Promise<ServiceProc> => startServiceProc(usersFile, AUTH, (p) => started.push(p));

function writeConfig(dir: string, url: string, dbPath: string): string {
  const text = `[upstream]
by_name_url = ${url}/username/
by_uid_url = ${url}/user-id/
username = ${AUTH.user}
password = ${AUTH.password}
insecure_http = yes
json_prefix = response.result
connect_timeout = 2s
request_timeout = 10s
[cache]
db_path = ${dbPath}
ttl = 1h
negative_ttl = 1h
[users]
uid_shift = ${UID_SHIFT}
gid = ${GID}
group_name = lega
shell = /bin/bash
[homes]
base = ${join(dir, 'homes')}
[local]
db_path = ${join(dir, 'state', 'local.db')}
[daemon]
socket_dir = ${SOCKDIR}
log_level = warn
user = ${TEST_DAEMON_UID}
rootd_socket = ${join(dir, 'rootd', 'rootd.sock')}
`;
  const file = join(dir, 'latchkey.conf');
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

interface Daemon { pid: number; proc: ChildProcess; log: string; stop(): Promise<void> }

async function startDaemon(config: string, profileDir: string | null): Promise<Daemon> {
  const log = join(WORK, `daemon-${Date.now()}.log`);
  const fd = openSync(log, 'a');
  // bin/latchkeyd runs itself (its shebang carries the production V8 flags); extra flags go in
  // through NODE_OPTIONS so the bench measures what `systemctl start latchkeyd` runs.
  const nodeArgs = [...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), ...DAEMON_NODE_ARGS];
  const nodeOptions = [process.env.NODE_OPTIONS ?? '', ...nodeArgs].join(' ').trim();
  const proc = spawn(LATCHKEYD, ['--config', config], {
    stdio: ['ignore', fd, fd],
    // MALLOC_ARENA_MAX=2 as etc/systemd/latchkeyd.service sets it: the bench measures what systemd runs.
    env: { ...process.env, LATCHKEY_NSS_DISABLE: '1', MALLOC_ARENA_MAX: '2', ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}), ...DAEMON_ENV },
  });
  closeSync(fd);
  started.push(proc);
  await waitForDaemon(proc, SOCKDIR, () => readFileSync(log, 'utf8'));
  return { pid: proc.pid!, proc, log, stop: () => stopChild(proc) };
}

interface Mem { rss_kb: number; hwm_kb: number; anon_kb: number; file_kb: number; shmem_kb: number; procs: number }
/** VmRSS and its parts (RssAnon, RssFile, RssShmem) from /proc/PID/status, summed over pids. */
function memOf(...pids: number[]): Mem {
  const m: Mem = { rss_kb: 0, hwm_kb: 0, anon_kb: 0, file_kb: 0, shmem_kb: 0, procs: 0 };
  for (const pid of pids) {
    let s = '';
    try { s = readFileSync(`/proc/${pid}/status`, 'utf8'); } catch { continue; }
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
    m.rss_kb += kb('VmRSS'); m.hwm_kb += kb('VmHWM'); m.anon_kb += kb('RssAnon'); m.file_kb += kb('RssFile'); m.shmem_kb += kb('RssShmem');
    m.procs++;
  }
  return m;
}
const fmtMem = (m: Mem): string => `RSS ${fmtBytes(m.rss_kb * 1024)} (anon ${fmtBytes(m.anon_kb * 1024)}, file ${fmtBytes(m.file_kb * 1024)}${m.shmem_kb > 0 ? `, shmem ${fmtBytes(m.shmem_kb * 1024)}` : ''})${m.procs > 1 ? `, ${m.procs} processes` : ''}`;
function fileSize(p: string): number {
  let n = 0;
  for (const s of ['', '-wal', '-shm']) { try { n += statSync(p + s).size; } catch { /* absent */ } }
  return n;
}
const MIB = 1 << 20;

// ---- measurements ---------------------------------------------------------------------------
async function hyperfine(b: Backend, cmd: string[], runs: number, warmup: number, o: ClientOpts = {}): Promise<Lat> {
  if (spawnSync('sh', ['-c', 'command -v hyperfine']).status === 0) {
    const jf = join(WORK, `hf-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
    await run(clientArgv(b, ['hyperfine', '-N', '--style', 'none', '--warmup', String(warmup), '--runs', String(runs), '--export-json', jf, cmd.join(' ')], o));
    const r = (JSON.parse(readFileSync(jf, 'utf8')) as { results: { times: number[] }[] }).results[0]!;
    return latFrom(r.times.map((s) => s * 1e6));
  }
  // No hyperfine: our own loop, run by node inside the same kind of namespace.
  const out = await run(clientArgv(b, [process.execPath, process.argv[1]!, '--exec-loop', `${runs}:${warmup}`, '--', ...cmd], o));
  return lastJson(out) as unknown as Lat;
}

/** `--exec-loop RUNS:WARMUP -- cmd...` (the fallback when hyperfine is not installed). */
function execLoop(spec: string, cmd: string[]): void {
  const [runs, warm] = spec.split(':').map(Number) as [number, number];
  const t: number[] = [];
  for (let i = 0; i < runs + warm; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd[0]!, cmd.slice(1), { stdio: 'ignore' });
    const us = Number(process.hrtime.bigint() - t0) / 1000;
    if (r.status !== 0) { process.stderr.write(`${cmd.join(' ')}: exit ${r.status}\n`); process.exit(1); }
    if (i >= warm) t.push(us);
  }
  process.stdout.write(JSON.stringify(latFrom(t)) + '\n');
}

/** Upstream alone: GETs of the same URLs the daemon would fetch, over one keep-alive connection (undici, as the daemon). */
async function upstreamAlone(url: string, names: string[]): Promise<Lat> {
  const agent = new Agent({ connections: 1 });
  const auth = 'Basic ' + Buffer.from(`${AUTH.user}:${AUTH.password}`).toString('base64');
  const t: number[] = [];
  for (const [i, n] of names.entries()) {
    const t0 = process.hrtime.bigint();
    const r = await httpRequest(`${url}/username/${n}`, { dispatcher: agent, headers: { authorization: auth } });
    JSON.parse(await r.body.text());
    if (i > 0) t.push(Number(process.hrtime.bigint() - t0) / 1000); // the first one also connects
  }
  await agent.close();
  return latFrom(t);
}

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }
function summarizeProfile(dir: string): { self_pct: number; fn: string }[] {
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')) : [];
  if (!files.length) return [];
  const prof = JSON.parse(readFileSync(join(dir, files[0]!), 'utf8')) as { nodes: ProfileNode[] };
  const by = new Map<string, number>();
  let total = 0;
  for (const n of prof.nodes) {
    const h = n.hitCount ?? 0;
    total += h;
    const f = n.callFrame;
    const where = f.url ? `${f.url.replace(`file://${ROOT}/`, '').replace(/^node:/, 'node:')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    by.set(key, (by.get(key) ?? 0) + h);
  }
  return [...by.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([fn, h]) => ({ fn, self_pct: +(100 * h / total).toFixed(1) }));
}

// ---- the table ------------------------------------------------------------------------------
type Cells = Record<Backend, string>;
interface Row { id: RowId; section: string; what: string; cells: Cells; vs: Record<Versus, string>; target: string }
const rows = new Map<RowId, Row>();
const notes: string[] = [];
/** Measurements that failed for an SSSD or nscd column (the run goes on; the note says why). */
const failed = new Set<string>();

/** A row: cells not given say "skipped" (backend not there), "error" (its measurement failed) or
 *  "—" (does not apply). `vs` and `target` are optional. */
function row(id: RowId, section: string, what: string, given: Partial<Cells>, extra: { vs?: Partial<Record<Versus, string>>; target?: string } = {}): void {
  const cells = Object.fromEntries(BACKENDS.map((b) => [b,
    given[b] ?? (skipped[b] ? 'skipped' : failed.has(`${id}:${b}`) ? 'error (see the notes)' : '—')])) as Cells;
  const vs = Object.fromEntries(VERSUS.map((v) => [v, extra.vs?.[v] ?? ''])) as Record<Versus, string>;
  rows.set(id, { id, section, what, cells, vs, target: extra.target ?? '' });
}

/** Runs f for each live backend in bs; a failure in an SSSD or nscd column is noted and the run
 *  goes on (latchkey's and files' failures end it). */
async function each<T>(id: RowId, bs: readonly Backend[], f: (b: Backend) => Promise<T>): Promise<Partial<Record<Backend, T>>> {
  const out: Partial<Record<Backend, T>> = {};
  for (const b of bs) {
    if (skipped[b]) continue;
    try {
      out[b] = await f(b);
    } catch (e) {
      if (!EXTERNAL.has(b)) throw e;
      failed.add(`${id}:${b}`);
      notes.push(`${BACKEND_LABEL[b]}, ${id}: ${(e instanceof Error ? e.message : String(e)).split('\n').slice(0, 3).join(' ')}`);
    }
  }
  return out;
}

/** The ratio columns: how many times faster the map is (times: theirs ÷ the map's; rates: the map's ÷ theirs). */
function versus(r: Partial<Record<Backend, number>>, kind: 'time' | 'rate'): Record<Versus, string> {
  const m = r.map;
  return Object.fromEntries(VERSUS.map((v) => {
    const o = r[v];
    if (m === undefined || o === undefined) return [v, ''];
    return [v, fmtX(kind === 'time' ? o / m : m / o)];
  })) as Record<Versus, string>;
}
const p50s = (r: Partial<Record<Backend, Lat>>): Partial<Record<Backend, number>> =>
  Object.fromEntries(Object.entries(r).map(([b, l]) => [b, (l as Lat).p50_us])) as Partial<Record<Backend, number>>;
const latCells = (r: Partial<Record<Backend, Lat>>): Partial<Cells> =>
  Object.fromEntries(Object.entries(r).map(([b, l]) => [b, fmtLat(l as Lat)])) as Partial<Cells>;

/** Target text of a warm hit: the map's p50 and its lead over SSSD's memcache; the socket's p50 when unpinned. */
function hitTarget(r: Partial<Record<Backend, Lat>>, unpinned: boolean): string {
  const parts: string[] = [];
  if (r.map) parts.push(`map p50 ≤ ${T.hitUs} µs: ${verdict(r.map.p50_us <= T.hitUs)}`);
  parts.push(`map ≥ ${T.vsSssd}× SSSD memcache: ${r.map && r.sss_mc ? verdict(r.sss_mc.p50_us / r.map.p50_us >= T.vsSssd) : 'n/a (no SSSD)'}`);
  if (unpinned && r.socket) parts.push(`socket p50 ≤ ${T.socketHitUs} µs: ${verdict(r.socket.p50_us <= T.socketHitUs)}`);
  return parts.join('; ');
}

function markdown(meta: Json): string {
  const cols = ['', 'measurement', ...BACKENDS.map((b) => BACKEND_LABEL[b]), ...VERSUS.map((v) => `map vs ${BACKEND_LABEL[v]}`), 'target'];
  const head = `latchkey bench — ${meta.date}, ${meta.machine}, N = ${N.toLocaleString('en-US')} users${QUICK ? ' (--quick: numbers are not meaningful)' : ''}\n`
    + 'Ratio columns: how many times faster the map is than that column (times: theirs ÷ the map\'s p50; rates: the map\'s ÷ theirs); above 1 the map wins.\n\n'
    + `| ${cols.join(' | ')} |\n|${cols.map(() => '---').join('|')}|\n`;
  const body = ROW_IDS.map((id) => rows.get(id) ?? { id, section: '', what: id, cells: Object.fromEntries(BACKENDS.map((b) => [b, 'not measured'])) as Cells, vs: { sss_mc: '', nscd: '', files: '' }, target: '' })
    .map((r) => `| ${[r.section, r.what, ...BACKENDS.map((b) => r.cells[b]), ...VERSUS.map((v) => r.vs[v]), r.target].join(' | ')} |`).join('\n');
  return head + body + '\n';
}

// ---- main -----------------------------------------------------------------------------------
async function main(): Promise<void> {
  if (argv.help) { process.stdout.write(USAGE + '\n'); return; }
  if (argv['exec-loop']) { execLoop(argv['exec-loop'], process.argv.slice(process.argv.indexOf('--') + 1)); return; }
  if (process.getuid?.() !== 0) throw new Error('needs root (mount namespaces); run as root');
  if (!existsSync(BIN_DRIVER)) throw new Error(`${BIN_DRIVER} missing: scripts/bench builds it`);
  const t0 = Date.now();
  WORK = mkdtempSync(join(tmpdir(), 'latchkey-bench-'));
  chmodSync(WORK, 0o755);
  // The cache and the sockets on tmpfs, as in production (/run/latchkey); private to our namespace.
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'mode=755,size=4g', 'latchkey-bench', WORK], { encoding: 'utf8' });
  if (m.status !== 0) throw new Error(`mount tmpfs: ${m.stderr} (scripts/bench runs this inside unshare -m)`);
  SOCKDIR = join(WORK, 'run');
  say(`work dir ${WORK}`);
  mkdirSync(join(WORK, 'homes'));
  const profileDir = argv.profile ? join(OUT, `profile-${new Date().toISOString().replace(/[:.]/g, '-')}`) : null;
  const raw: Json = {};
  try {
    writeFileSync(nsFile('latchkey'), 'passwd: latchkey\ngroup: files\nshadow: files\nhosts: files\n');
    writeFileSync(nsFile('files'), 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n');
    writeFileSync(nsFile('sss'), 'passwd: sss\ngroup: files\nshadow: files\nhosts: files\n');
    writePasswd(passwdFile(), N);

    say(`generating ${N} users (${P.stormHashes} bcrypt cost-10 hashes for the login storm)`);
    const sharedHash = await bcrypt.hash('bench-shared-password', 10);
    const stormPw = (i: number): string => `storm-pw-${i % P.stormHashes}`;
    const stormHashes = await Promise.all(Array.from({ length: P.stormHashes }, (_, i) => bcrypt.hash(stormPw(i), 10)));
    const users = makeUsers(N, sharedHash, stormHashes, P.storm);
    // cold users: in the service, never looked up before the cold-path measurement
    const coldNames = { d0: [] as string[], d1: [] as string[] };
    for (let i = 0; i < P.cold + 1; i++) {
      for (const [k, prefix] of [['d0', 'ca'], ['d1', 'cb']] as const) {
        const name = userName(i, prefix);
        coldNames[k].push(name);
        users.push({ username: name, uid: (k === 'd0' ? 3_000_000 : 4_000_000) + i, passwordHash: null, sshPublicKeys: [], gecos: 'cold' });
      }
    }
    writeFileSync(join(WORK, 'users.json'), JSON.stringify(users));
    const names = users.slice(0, N).map((u) => u.username);
    writeFileSync(join(WORK, 'names.txt'), names.join('\n') + '\n');
    const passwdBytes = statSync(passwdFile()).size;

    const service = await startService(join(WORK, 'users.json'));
    const dbPath = join(SOCKDIR, 'cache.db');
    const config = writeConfig(WORK, service.url, dbPath);
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    const daemon = await startDaemon(config, profileDir);
    const idle = memOf(daemon.pid);
    raw.daemon_idle = idle;

    // ---- SSSD and nscd, each in its own namespace (others.ts)
    const setup: OtherSetup = { work: WORK, passwd: passwdFile(), nsswitchFiles: nsFile('files'), users: N, register: (o) => { others.push(o); started.push(o.proc); } };
    const otherIdle: Partial<Record<Instance, Mem>> = {};
    if (!sssdInstalled()) { skipped.sss_mc = NOT_INSTALLED; skipped.sss = NOT_INSTALLED; }
    if (!nscdInstalled()) skipped.nscd = NOT_INSTALLED;
    const sssdInsts = skipped.sss_mc ? [] : (['sss_mc', 'sss', 'sss_enum'] as const);
    for (const inst of [...sssdInsts, ...(skipped.nscd ? [] : ['nscd'] as const)]) {
      say(`starting ${inst} in its own namespace`);
      try {
        const o = inst === 'nscd' ? await startNscd(setup) : await startSssd(inst, setup);
        ext[inst] = o;
        otherIdle[inst] = memOf(...otherPids(o));
      } catch (e) {
        const why = `skipped: ${inst === 'nscd' ? 'nscd' : 'sssd'} did not start: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}`;
        notes.push(why);
        if (inst === 'nscd') skipped.nscd = why;
        else if (inst === 'sss_enum') notes.push('SSSD enumeration not measured');
        else skipped[inst] = why;
      }
    }
    raw.others_idle = otherIdle;

    // ---- warm the caches: every user once, 8 threads (latchkey alone: upstream fetches)
    say(`warming latchkey's cache: ${N} first lookups from ${Math.min(FILL_PROCS, N)} processes, each as its own uid`);
    const fill = await fillLatchkey(names, 'n');
    raw.fill = fill;
    if (fill.found !== N) throw new Error(`warm-up found ${String(fill.found)} of ${N} users: ${JSON.stringify(fill)}\ndaemon log: ${readFileSync(daemon.log, 'utf8').slice(-3000)}`);
    const memWarm = memOf(daemon.pid);
    const cacheBytes = fileSize(dbPath);
    const mapPath = join(SOCKDIR, 'nss.map');
    await sleep(200); // the map is written behind the answers
    const mapBytes = existsSync(mapPath) ? statSync(mapPath).size : NaN;
    raw.daemon_warm = memWarm;
    raw.cache_bytes = cacheBytes;
    raw.map_bytes = mapBytes;

    // SSSD and nscd fill at the same time as each other (their first lookups scan the passwd
    // file; SSSD's first enumeration of N users takes minutes): not a measurement, a warm-up.
    say('warming SSSD and nscd (at once; SSSD\'s first enumeration of all users takes a while)');
    const otherFill: Partial<Record<Instance, { wall_us: number; found: number }>> = {};
    await Promise.all((['sss_mc', 'sss', 'nscd', 'sss_enum'] as const).filter((i) => ext[i]).map(async (inst) => {
      const b: Backend = inst === 'sss_enum' ? 'sss_mc' : inst;
      const o: ClientOpts = { enumerating: inst === 'sss_enum' };
      const s = Date.now();
      try {
        const j = inst === 'sss_enum'
          ? await driver(b, ['enum'], o, Math.max(300_000, N * 60))
          : await driver(b, ['each', join(WORK, 'names.txt'), '8'], o);
        const found = Number(inst === 'sss_enum' ? j.entries : j.found);
        otherFill[inst] = { wall_us: (Date.now() - s) * 1000, found };
        if (found < N) throw new Error(`found ${found} of ${N} users`);
      } catch (e) {
        notes.push(`${inst} warm-up: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}`);
        if (inst === 'sss_enum') { ext.sss_enum = undefined; } else { skipped[inst] = `skipped: warm-up failed (see the notes)`; }
      }
    }));
    raw.others_fill = otherFill;
    if (ext.sss && !skipped.sss && sssdHasMemcache(ext.sss)) { skipped.sss = 'skipped: memcache_timeout = 0 left a memcache file'; notes.push(skipped.sss); }
    if (ext.sss_mc && !skipped.sss_mc && !sssdHasMemcache(ext.sss_mc)) { skipped.sss_mc = 'skipped: no memcache file after the warm-up'; notes.push(skipped.sss_mc); }
    const nscdAfterFill = ext.nscd && !skipped.nscd ? nscdStats(await run(clientArgv('nscd', ['nscd', '-g']))) : undefined;
    if (nscdAfterFill && !(nscdAfterFill.cached >= N)) {
      skipped.nscd = `skipped: nscd holds ${nscdAfterFill.cached} entries after the warm-up, not ${N}: the clients did not reach it`;
      notes.push(skipped.nscd);
    }
    const otherWarm: Partial<Record<Instance, Mem>> = {};
    for (const inst of ['sss_mc', 'sss', 'nscd'] as const) if (ext[inst]) otherWarm[inst] = memOf(...otherPids(ext[inst]));
    raw.others_warm = otherWarm;

    const mapUsed = Number.isFinite(mapBytes);
    row('setup', 'setup', 'what each column is', {
      map: mapUsed ? 'latchkeyd; the NSS module reads nss.map first (socket for what the map cannot answer)' : 'latchkeyd; **no nss.map was written: these are socket lookups**',
      socket: 'the same daemon, LATCHKEY_NSS_NO_MMAP=1 in the client (every lookup on nss.sock)',
      sss_mc: skipped.sss_mc ?? `sssd ${sssdVersion()}, proxy provider → nss_files, memcache on; client \`passwd: sss\``,
      sss: skipped.sss ?? 'the same, memcache_timeout = 0 (every lookup on SSSD\'s socket)',
      nscd: skipped.nscd ?? `nscd (glibc ${glibcVersion()}), shared passwd cache, its nsswitch \`passwd: files\``,
      files: 'nss_files over the same passwd file (a linear scan)',
    });
    const fillCell = (i: Instance): string | undefined => {
      const f = otherFill[i];
      return f ? `${f.found.toLocaleString('en-US')} in ${fmtUs(f.wall_us)} (with the other fills at once)` : undefined;
    };
    row('fill', 'cache', `fill: ${N.toLocaleString('en-US')} first lookups (latchkey: an upstream fetch each, from ${fill.procs} processes as ${fill.procs} uids, alone on the machine; the others: 8 threads)`, {
      map: `${fmtRate(fill.ops_per_s)} (${fmtUs(fill.wall_us)} in all; ${fill.retries.toLocaleString('en-US')} refusals retried)`, socket: '(the same daemon)',
      sss_mc: fillCell('sss_mc'), sss: fillCell('sss'), nscd: fillCell('nscd'), files: 'n/a (no cache)',
    });

    // ---- warm latency: hit and miss, first/middle/last user
    say('warm getpwnam_r / getpwuid_r latency');
    const picks = { first: 0, middle: Math.floor(N / 2), last: N - 1 };
    const lat: Record<string, Partial<Record<Backend, Lat>>> = {};
    for (const fn of ['name', 'uid'] as const) {
      for (const [pos, i] of [...Object.entries(picks), ['miss', -1] as const]) {
        const miss = i < 0;
        const key = fn === 'name' ? (miss ? 'nosuchbenchuser' : userName(i as number)) : String(miss ? localUid(N + 5_000_000) : localUid(i as number));
        const id = `${fn === 'name' ? 'getpwnam' : 'getpwuid'}_${pos}` as RowId;
        const r = await each(id, BACKENDS, async (b) => {
          // A miss as uid 65534, once before the measured run: the daemon publishes a negative
          // entry in the map only for a non-root asker (root's lookups may carry passwords).
          if (miss) { await driver(b, ['lat', fn, key, '1'], { asUid: NOBODY }); await sleep(200); }
          const j = await driver(b, ['lat', fn, key, String(P.latIters), String(P.latSecs)], miss ? { asUid: NOBODY } : {});
          if (j.found !== (miss ? 0 : j.n) || j.errors !== 0) throw new Error(`${b} lat ${fn} ${key}: ${JSON.stringify(j)}`);
          return asLat(j);
        });
        lat[id] = r;
        const what = `${fn === 'name' ? 'getpwnam_r' : 'getpwuid_r'} ${miss ? `miss (no such user; asked as uid ${NOBODY}, which asked once before)` : `hit, ${pos} user`}`;
        const target = miss ? `map p50 ≤ ${T.missUs} µs: ${r.map ? verdict(r.map.p50_us <= T.missUs) : 'n/a'}` : hitTarget(r, true);
        row(id, 'warm, 1 process', what, latCells(r), { vs: versus(p50s(r), 'time'), target });
      }
    }
    raw.latency = lat;

    // The same hit with the client and the daemon(s) pinned (taskset) to one core, then to
    // different cores: a round trip that wakes an idle vCPU costs more than one that stays on a
    // busy core, and unpinned runs land on either (bimodal p50).
    const ncpu = cpus().length;
    const allCpus = `0-${ncpu - 1}`;
    const daemonPids = (b: Backend): number[] => (b === 'map' || b === 'socket' ? [daemon.pid] : b === 'files' ? [] : otherPids(ext[b]!));
    const pin = async (b: Backend, cpu: string): Promise<void> => {
      for (const pid of daemonPids(b)) await run(['taskset', '-a', '-pc', cpu, String(pid)], { env: process.env });
    };
    const pinned: Json = {};
    for (const [id, cpu, label] of [['pin_same', '0', 'client and daemon pinned to the same core'], ['pin_cross', '1', 'client and daemon pinned to different cores']] as const) {
      const what = `getpwnam_r hit, middle user, ${label}`;
      if (id === 'pin_cross' && ncpu < 2) { row(id, 'warm, 1 process', what, Object.fromEntries(live().map((b) => [b, 'skipped: one CPU']))); continue; }
      const r = await each(id, BACKENDS, async (b) => {
        await pin(b, '0');
        try {
          return asLat(await driver(b, ['lat', 'name', userName(picks.middle), String(P.latIters), String(P.latSecs)], { cpu }));
        } finally {
          await pin(b, allCpus);
        }
      });
      pinned[id] = r;
      row(id, 'warm, 1 process', what, latCells(r), { vs: versus(p50s(r), 'time'), target: hitTarget(r, false) });
    }
    raw.pinned = pinned;

    // ---- throughput
    say('throughput with 1, 2 and 8 threads');
    const tput: Record<string, Partial<Record<Backend, number>>> = {};
    for (const th of [1, 2, 8]) {
      const id = `tput_${th}` as RowId;
      const r = await each(id, BACKENDS, async (b) => {
        const j = await driver(b, ['tput', join(WORK, 'names.txt'), String(th), String(P.tputSecs)]);
        if (j.errors !== 0 || j.found !== j.ops) throw new Error(`${b} tput: ${JSON.stringify(j)}`);
        return j.ops_per_s as number;
      });
      tput[`t${th}`] = r;
      row(id, 'throughput', `getpwnam_r lookups/s, ${th} client thread${th > 1 ? 's' : ''} (all users, round robin)`,
        Object.fromEntries(Object.entries(r).map(([b, v]) => [b, fmtRate(v)])), {
          vs: versus(r, 'rate'),
          target: th === 2 ? `map ≥ ${T.tput2.toLocaleString('en-US')}/s: ${r.map !== undefined ? verdict(r.map >= T.tput2) : 'n/a'}` : '',
        });
    }
    raw.throughput = tput;

    // ---- whole processes
    say('whole getent processes (hyperfine)');
    const mid = userName(picks.middle);
    const gp = await each('getent_one', BACKENDS, (b) => hyperfine(b, ['getent', 'passwd', mid], P.hfRuns, P.hfWarm));
    const tr = await hyperfine('files', ['/bin/true'], P.hfRuns, P.hfWarm);
    raw.process = { getent: gp, bin_true: tr };
    row('getent_one', 'process', `\`getent passwd ${mid}\` (middle user), whole process`, latCells(gp), { vs: versus(p50s(gp), 'time') });
    const over = Object.fromEntries(Object.entries(gp).map(([b, l]) => [b, Math.max(0.01, (l as Lat).p50_us - tr.p50_us)])) as Partial<Record<Backend, number>>;
    row('getent_floor', 'process', `… minus the process floor (\`/bin/true\`: ${fmtLat(tr)}), p50`,
      Object.fromEntries(Object.entries(over).map(([b, v]) => [b, fmtUs(v)])), { vs: versus(over, 'time') });

    // ---- enumeration
    say('enumeration (getent passwd)');
    const enumBs = BACKENDS.filter((b) => b !== 'sss' && (b !== 'sss_mc' || ext.sss_enum));
    const en = await each('enum', enumBs, (b) => hyperfine(b, ['getent', 'passwd'], P.enumRuns, 1, { enumerating: b === 'sss_mc' }));
    const counts = await each('enum', enumBs, async (b) => Number((await driver(b, ['enum'], { enumerating: b === 'sss_mc' })).entries));
    raw.enumeration = { times: en, entries: counts, sssd_first_enumeration: otherFill.sss_enum };
    for (const b of ['map', 'socket'] as const) if (counts[b] !== N) notes.push(`latchkey (${b}) enumeration returned ${String(counts[b])} entries, expected ${N}`);
    const enumCells = latCells(en);
    if (en.sss_mc && otherFill.sss_enum) enumCells.sss_mc = `${enumCells.sss_mc} (the instance with enumerate = true; its first one after start: ${fmtUs(otherFill.sss_enum.wall_us)})`;
    if (!skipped.sss) enumCells.sss = '(enumeration never reads the memcache: see the memcache column)';
    if (en.nscd) enumCells.nscd = `${enumCells.nscd} (nscd does not serve getpwent: glibc reads files)`;
    row('enum', 'enumeration', `\`getent passwd\` (all users; entries: ${enumBs.filter((b) => counts[b] !== undefined).map((b) => `${BACKEND_LABEL[b]} ${counts[b]}`).join(', ')})`, enumCells, {
      vs: versus(p50s(en), 'time'),
      target: `map ≤ ${T.enumMs} ms at ${T.enumAt.toLocaleString('en-US')} users: ${N !== T.enumAt ? `n/a (N = ${N})` : en.map ? verdict(en.map.p50_us <= T.enumMs * 1000) : 'n/a'}`,
    });

    // ---- cold path (latchkey only: a first lookup always goes to the daemon, map or not)
    say('cold path: first lookups of never-seen users, upstream delay 0 and 1 ms');
    const cold: Json = {};
    const filesLast = lat.getpwnam_last!.files!;
    for (const [delay, list, key] of [[0, coldNames.d0, 'cold0.txt'], [1, coldNames.d1, 'cold1.txt']] as const) {
      await service.control({ delayMs: delay });
      // the first name opens the daemon's upstream connection: not part of the sample
      await driver('map', ['lat', 'name', list[0]!, '1']);
      writeFileSync(join(WORK, key), list.slice(1).join('\n') + '\n');
      const c = await driver('map', ['each', join(WORK, key)]);
      if (c.found !== list.length - 1) throw new Error(`cold ${delay} ms: ${JSON.stringify(c)}`);
      const up = await upstreamAlone(service.url, list.slice(1));
      const overUs = (c.p50_us as number) - up.p50_us;
      cold[`delay_${delay}`] = { lookup: c, upstream_alone: up, overhead_p50_us: overUs };
      row(`cold_${delay}ms` as RowId, 'cold miss', `first lookup of a never-seen user, upstream delay ${delay} ms (latchkey: the daemon, map or not; files: last-user scan)`,
        { map: fmtLat(asLat(c)), files: fmtLat(filesLast) }, { vs: { files: fmtX(filesLast.p50_us / (c.p50_us as number)) } });
      row(`cold_over_${delay}ms` as RowId, 'cold miss', '… the upstream alone (same GETs, undici keep-alive) and the daemon\'s overhead (p50 difference)',
        { map: `upstream ${fmtLat(up)}; overhead ${fmtUs(overUs)}` }, { target: `overhead ≤ 1 ms: ${verdict(overUs <= T.coldOverUs)}` });
    }
    await service.control({ delayMs: 0 });
    raw.cold = cold;

    // ---- lookups during a bcrypt storm
    say(`lookup latency during ${P.storm} concurrent bcrypt cost-10 logins`);
    // The paced client is itself a process on the same 2 cores: the files column runs the same
    // client against nss_files (first user: ~5 µs of work) during an identical storm, so what is
    // scheduling noise on a loaded machine and what is the daemon can be told apart.
    writeFileSync(join(WORK, 'first.txt'), userName(0) + '\n');
    interface Storm { lookups: Lat; logins?: Lat; ok?: number; refused?: Record<string, number>; retried?: number; wall_ms?: number }
    const stormOnce = async (b: 'map' | 'socket' | 'files', logins: number): Promise<Storm> => {
      const cmd = clientArgv(b, [BIN_DRIVER, 'paced', join(WORK, b === 'files' ? 'first.txt' : 'names.txt'), String(P.pacedUs)]);
      const p = spawn(cmd[0]!, cmd.slice(1), { env: nsEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
      started.push(p);
      p.stdin!.on('error', () => { /* exited early: reported by its exit code */ });
      let out = '';
      let err = '';
      p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
      p.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
      const closed = new Promise<number | null>((r) => p.on('close', r));
      while (!out.includes('"ready"')) { if (p.exitCode !== null) throw new Error(`paced: ${err}`); await sleep(10); }
      await sleep(100);
      let res: Omit<Storm, 'lookups'> = {};
      if (logins === 0) {
        await sleep(P.baselineMs);
      } else {
        const s0 = Date.now();
        const times = await Promise.all(Array.from({ length: logins }, async (_, i) => {
          const a = process.hrtime.bigint();
          // one client address per login, as many people logging in at once: the daemon lets one
          // address have only a few checks in flight (MAX_CHECKS_IN_FLIGHT_PER_HOST)
          const rhost = `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
          // A check that cannot get a hash slot soon is refused with "try again" (HASH_WAIT_MS):
          // the client tries again, as sshd's user would, so the hashing never lets up.
          let retries = 0;
          for (;;) {
            const r = await request(join(SOCKDIR, 'priv.sock'), 'AUTH_PASSWORD', { user: userName(i), password: stormPw(i), service: 'sshd', rhost }, 300_000);
            if (r.status === 0 || !/try again/.test(r.detail) || Date.now() - s0 > 120_000) {
              return { us: Number(process.hrtime.bigint() - a) / 1000, status: r.status, detail: r.detail, retries };
            }
            retries++;
            await sleep(100);
          }
        }));
        const refused: Record<string, number> = {};
        for (const t of times) if (t.status !== 0) { const k = `status ${t.status}${t.detail ? `: ${t.detail}` : ''}`; refused[k] = (refused[k] ?? 0) + 1; }
        res = { logins: latFrom(times.map((x) => x.us)), ok: times.filter((x) => x.status === 0).length, refused, retried: times.reduce((n, x) => n + x.retries, 0), wall_ms: Date.now() - s0 };
      }
      p.stdin!.end();
      if ((await closed) !== 0) throw new Error(`paced: ${err}`);
      const j = lastJson(out);
      if (j.errors !== 0) throw new Error(`paced lookups failed during the storm: ${JSON.stringify(j)}`);
      return { lookups: asLat(j), ...res };
    };
    const stormBs = ['map', 'socket', 'files'] as const;
    const base: Partial<Record<Backend, Storm>> = {};
    const storm: Partial<Record<Backend, Storm>> = {};
    for (const b of stormBs) base[b] = await stormOnce(b, 0);
    for (const b of stormBs) storm[b] = await stormOnce(b, P.storm);
    raw.storm = { baseline: base, storm };
    for (const b of stormBs) if (storm[b]!.ok !== P.storm) notes.push(`storm (${b} column): ${storm[b]!.ok} of ${P.storm} logins succeeded; refusals: ${JSON.stringify(storm[b]!.refused)}`);
    const stormLat = (s: Partial<Record<Backend, Storm>>): Partial<Record<Backend, Lat>> => Object.fromEntries(Object.entries(s).map(([b, x]) => [b, (x as Storm).lookups]));
    row('storm_base', 'bcrypt storm', `lookup latency, no logins (paced: 1 lookup per ${P.pacedUs} µs; files: first user)`, latCells(stormLat(base)), { vs: versus(p50s(stormLat(base)), 'time') });
    row('storm', 'bcrypt storm', `lookup latency while ${P.storm} bcrypt cost-10 logins run at once (AUTH_PASSWORD on priv.sock from ${P.storm} addresses, "try again" retried; a new storm for each column)`, latCells(stormLat(storm)), {
      vs: versus(p50s(stormLat(storm)), 'time'), target: `p99 < 5 ms: map ${verdict(storm.map!.lookups.p99_us < T.stormP99Us)}, socket ${verdict(storm.socket!.lookups.p99_us < T.stormP99Us)}`,
    });
    row('storm_logins', 'bcrypt storm', `… the ${P.storm} logins themselves`, Object.fromEntries(stormBs.map((b) => [b, `${storm[b]!.ok} OK (${storm[b]!.retried} "try again" retried); ${fmtLat(storm[b]!.logins!)}; all done in ${fmtUs(storm[b]!.wall_ms! * 1000)}`])));

    // ---- memory
    const memEnd = memOf(daemon.pid);
    raw.daemon_end = memEnd;
    const otherCells = (mm: Partial<Record<Instance, Mem>>): Partial<Cells> =>
      Object.fromEntries((['sss_mc', 'sss', 'nscd'] as const).filter((i) => mm[i] && !skipped[i]).map((i) => [i, fmtMem(mm[i]!)]));
    row('mem_idle', 'memory', 'daemon memory, idle (empty cache)', { map: fmtMem(idle), socket: '(the same daemon)', ...otherCells(otherIdle), files: 'n/a' });
    row('mem_n', 'memory', `daemon memory at ${N.toLocaleString('en-US')} cached users, after the warm-up (latchkey: and after all runs)`, {
      map: `${fmtMem(memWarm)}, peak ${fmtBytes(memWarm.hwm_kb * 1024)}; at the end RSS ${fmtBytes(memEnd.rss_kb * 1024)} (anon ${fmtBytes(memEnd.anon_kb * 1024)})`,
      socket: '(the same daemon)', ...otherCells(otherWarm), files: 'n/a',
    }, { target: N >= FULL_N ? `RSS < 80 MB at 100k: ${verdict(memEnd.rss_kb * 1024 < T.rss100kBytes)}` : '' });
    const sssBytes = (i: 'sss_mc' | 'sss'): string | undefined => {
      if (!ext[i] || skipped[i]) return undefined;
      const s = sssdStateBytes(ext[i]);
      return `cache db ${fmtBytes(s.db)}${s.mc > 0 ? ` + memcache files ${fmtBytes(s.mc)}` : ''}`;
    };
    const nscdNow = ext.nscd && !skipped.nscd ? nscdStats(await run(clientArgv('nscd', ['nscd', '-g']))) : undefined;
    row('cache_n', 'memory', `cache size at ${N.toLocaleString('en-US')} users (files: the passwd file)`, {
      map: `cache db ${fmtBytes(cacheBytes)}; nss.map ${fmtBytes(mapBytes)}`, socket: '(the same daemon)',
      sss_mc: sssBytes('sss_mc'), sss: sssBytes('sss'), nscd: nscdNow ? `${fmtBytes(nscdNow.usedPool)} of its shared pool` : undefined, files: fmtBytes(passwdBytes),
    });

    await daemon.stop();
    await service.stop();

    // Anonymous memory growth from idle (RssAnon): at N here, per 100,000 users only where measured
    // (--full: a second daemon filled with 100k). Never extrapolated from 10k: the daemon's V8 heap
    // does not grow linearly (its first thousands of users cost more each than the next ones).
    const grew = (a: Mem, b: Mem): number => (b.anon_kb - a.anon_kb) * 1024;
    const plus = (b: number): string => `${b >= 0 ? '+' : '−'}${fmtBytes(Math.abs(b))}`;
    let growth100k: number | undefined = N >= FULL_N ? (grew(idle, memWarm) * FULL_N) / N : undefined;
    if (DO_FULL) {
      say(`--full: daemon memory and cache size at ${FULL_N} users`);
      const big = makeUsers(FULL_N, sharedHash, stormHashes, 0);
      writeFileSync(join(WORK, 'users-full.json'), JSON.stringify(big));
      writePasswd(join(WORK, 'passwd-full'), FULL_N);
      const svc = await startService(join(WORK, 'users-full.json'));
      const db2 = join(SOCKDIR, 'cache-full.db');
      const d2 = await startDaemon(writeConfig(WORK, svc.url, db2), null);
      const idle2 = memOf(d2.pid);
      const f2 = await fillLatchkey(big.map((u) => u.username), 'full');
      if (f2.found !== FULL_N) throw new Error(`--full warm-up: ${JSON.stringify(f2)}`);
      await sleep(500);
      const m2 = memOf(d2.pid);
      const s2 = fileSize(db2);
      const map2 = existsSync(mapPath) ? statSync(mapPath).size : NaN;
      raw.full = { fill: f2, idle: idle2, mem: m2, cache_bytes: s2, map_bytes: map2 };
      growth100k = grew(idle2, m2);
      row('mem_full', 'memory', `daemon memory at ${FULL_N.toLocaleString('en-US')} cached users (--full)`, { map: `${fmtMem(m2)}, peak ${fmtBytes(m2.hwm_kb * 1024)}`, socket: '(the same daemon)' },
        { target: `RSS < 80 MB: ${verdict(m2.rss_kb * 1024 < T.rss100kBytes)}` });
      row('cache_full', 'memory', `cache size at ${FULL_N.toLocaleString('en-US')} users (files: the passwd file)`,
        { map: `cache db ${fmtBytes(s2)}; nss.map ${fmtBytes(map2)}`, socket: '(the same daemon)', files: fmtBytes(statSync(join(WORK, 'passwd-full')).size) });
      await d2.stop();
      await svc.stop();
    } else if (N < FULL_N) {
      row('mem_full', 'memory', `daemon memory at ${FULL_N.toLocaleString('en-US')} cached users`, { map: 'not run (default is 10k: `scripts/bench --full` or `--users 100000`)' }, { target: 'RSS < 80 MB' });
      row('cache_full', 'memory', `cache size at ${FULL_N.toLocaleString('en-US')} users`, { map: 'not run (see above)' });
    } else {
      row('mem_full', 'memory', `daemon memory at ${FULL_N.toLocaleString('en-US')} cached users`, { map: 'see the rows above (this run is ≥ 100k)' });
      row('cache_full', 'memory', `cache size at ${FULL_N.toLocaleString('en-US')} users`, { map: 'see the rows above' });
    }
    raw.anon_growth = { at_n_bytes: grew(idle, memWarm), per_100k_bytes: growth100k ?? null };
    const otherGrowth = Object.fromEntries((['sss_mc', 'sss', 'nscd'] as const).filter((i) => otherIdle[i] && otherWarm[i] && !skipped[i])
      .map((i) => [i, `${plus(grew(otherIdle[i]!, otherWarm[i]!))} at ${N.toLocaleString('en-US')}`]));
    row('mem_growth', 'memory', 'anonymous memory growth from idle (RssAnon of the daemon\'s processes)', {
      map: `${plus(grew(idle, memWarm))} at ${N.toLocaleString('en-US')}; ${growth100k !== undefined ? `${plus(growth100k)} per 100,000 (measured${DO_FULL ? ', --full' : ''})` : 'per 100,000: `--full` measures it'}`,
      socket: '(the same daemon)', ...otherGrowth, files: 'n/a',
    }, { target: `≤ ${T.growthMiB} MiB per 100k users: ${growth100k !== undefined ? verdict(growth100k <= T.growthMiB * MIB) : 'n/a (run --full)'}` });

    // ---- output
    const cpu = cpus();
    const meta = {
      date: new Date().toISOString().slice(0, 19) + 'Z',
      machine: `${cpu.length} cores (${cpu[0]?.model.trim() ?? '?'}), Linux ${release()}, Node ${process.version}`,
    };
    const md = markdown(meta);
    let profile: { self_pct: number; fn: string }[] = [];
    if (profileDir) {
      profile = summarizeProfile(profileDir);
      raw.profile = { dir: profileDir, top_self: profile };
    }
    mkdirSync(OUT, { recursive: true });
    const stamp = meta.date.replace(/[:]/g, '-');
    const jsonFile = join(OUT, `bench-${stamp}.json`);
    const rowList = ROW_IDS.map((id) => rows.get(id)!);
    writeFileSync(jsonFile, JSON.stringify({
      ...meta, users: N, quick: QUICK, full: DO_FULL || N >= FULL_N, params: P, targets: T, backends: BACKENDS, skipped,
      daemon_env: DAEMON_ENV, daemon_node_args: DAEMON_NODE_ARGS, rows: rowList, notes, raw,
    }, null, 2) + '\n');
    writeFileSync(join(OUT, `bench-${stamp}.md`), md + (notes.length ? '\n' + notes.map((n) => `- ${n}`).join('\n') + '\n' : ''));
    process.stdout.write('\n' + md);
    for (const n of notes) process.stdout.write(`\nnote: ${n}`);
    if (profile.length) {
      process.stdout.write(`\nDaemon CPU profile (self time, whole run): ${profileDir}\n`);
      for (const p of profile) process.stdout.write(`  ${p.self_pct.toFixed(1).padStart(5)}%  ${p.fn}\n`);
    }
    process.stdout.write(`\nwritten: ${jsonFile} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
  } finally {
    // SSSD and nscd first, gracefully (sssd's monitor stops its own children); then the rest
    await Promise.all(others.map((o) => stopOther(o)));
    const dying = started.filter((p) => p.exitCode === null && p.signalCode === null && p.pid);
    for (const p of dying) { try { process.kill(p.pid!, 'SIGKILL'); } catch { /* gone */ } }
    await Promise.race([Promise.all(dying.map((p) => new Promise((r) => p.once('exit', r)))), sleep(5000)]);
    if (!argv.keep) {
      // lazy: a process still holding a file there must not leave the mount point behind
      if (spawnSync('umount', [WORK]).status !== 0) spawnSync('umount', ['-l', WORK]);
      rmSync(WORK, { recursive: true, force: true });
    } else {
      say(`kept ${WORK} (a tmpfs inside the bench's namespace: gone when it exits)`);
    }
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
