// `make bench`: the whole benchmark in one run, one Markdown table and one JSON file.
//
// scripts/bench starts this inside `unshare -m` (a private mount namespace). Here: a mkdtemp dir
// with a tmpfs on it (the cache lives on tmpfs, as /run/latchkey does in production), N generated
// users served by the example user service, and the same N users in a private passwd file. Every
// measured program (test/bench/lkbench.c, getent, hyperfine) runs in a further `unshare -m` whose
// /etc/nsswitch.conf says `passwd: latchkey` or `passwd: files` and whose /etc/passwd is the
// generated one: the host's /etc is never touched. Only loopback addresses; only processes
// started here are killed (by pid); the dir is removed at the end.
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
import { ROW_IDS, type RowId } from './rows.js';

// ---- options --------------------------------------------------------------------------------
const USAGE = `usage: scripts/bench [--users N] [--quick] [--full] [--out DIR] [--profile] [--keep]
  --users N   users in the user service and in the private passwd file (default 10000)
  --quick     a few seconds: 200 users, short runs (what the smoke test runs)
  --full      also measure daemon RSS and cache size at 100000 users (a second daemon, ~1 min)
  --out DIR   where the JSON and Markdown go (default bench-results/)
  --profile   run the daemon with node --cpu-prof and print where its time went
  --keep      keep the temp dir (for debugging)
  --daemon-env K=V         extra environment for latchkeyd (repeatable), e.g. UV_THREADPOOL_SIZE=1
  --daemon-node-args ARGS  extra node flags for latchkeyd, e.g. "--max-semi-space-size=1"
                           (both for trying a fix; they are recorded in the JSON)`;

const { values: argv } = parseArgs({
  options: {
    users: { type: 'string' }, quick: { type: 'boolean', default: false }, full: { type: 'boolean', default: false },
    out: { type: 'string' }, profile: { type: 'boolean', default: false }, keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
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
  : { latIters: 20000, latSecs: 1.5, tputSecs: 3, hfRuns: 200, hfWarm: 20, enumRuns: 10, cold: 200, storm: 100, stormHashes: 100, baselineMs: 2000, pacedUs: 1000 };

const BIN_DRIVER = join(ROOT, 'test/bench/build/lkbench');
const LATCHKEYD = join(ROOT, 'bin/latchkeyd');
const NSS_DIR = join(ROOT, 'native/nss');
const UID_BASE = 100_000; // upstream uid of user 0; local uid = + uid_shift
const UID_SHIFT = 10_000;
const GID = 10_000;
const AUTH = { user: 'lega', password: 'bench-secret' };
const DEMO_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtTQ5JPSQBeEpxa4l9g35KpDlRe4THz+oMCk/AQuQ6C bench@latchkey';

// ---- small helpers --------------------------------------------------------------------------
interface Lat { n: number; min_us: number; p50_us: number; p90_us: number; p99_us: number; max_us: number; mean_us: number }
type Json = Record<string, unknown>;

const started: ChildProcess[] = [];
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
const fmtLat = (l: Lat): string => `p50 ${fmtUs(l.p50_us)} · p99 ${fmtUs(l.p99_us)} · min ${fmtUs(l.min_us)}`;
const fmtRate = (r: number): string => `${Math.round(r).toLocaleString('en-US')}/s`;
const fmtBytes = (b: number): string => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${(b / 1024).toFixed(0)} KiB`);
const ratio = (a: number, b: number): string => (b > 0 && Number.isFinite(a) ? `${(a / b) < 0.1 ? (a / b).toFixed(3) : (a / b).toFixed(2)}×` : 'n/a');

// ---- the namespace wrapper ------------------------------------------------------------------
type Backend = 'latchkey' | 'files';
let WORK = '';
let SOCKDIR = '';
const nsFile = (b: Backend): string => join(WORK, `nsswitch.${b}`);
const passwdFile = (): string => join(WORK, 'passwd');

/** argv that runs cmd in a fresh mount namespace with backend b's nsswitch.conf and our passwd. */
function inNs(b: Backend, cmd: string[]): string[] {
  return ['unshare', '-m', '--propagation', 'private', 'sh', '-c',
    'mount --bind "$1" /etc/nsswitch.conf && mount --bind "$2" /etc/passwd && shift 2 && exec "$@"',
    'lkns', nsFile(b), passwdFile(), ...cmd];
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
async function driver(b: Backend, args: string[], timeoutMs?: number): Promise<Json> {
  return lastJson(await run(inNs(b, [BIN_DRIVER, ...args]), { timeoutMs }));
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
  lines.push('nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin');
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
    env: { ...process.env, LATCHKEY_NSS_DISABLE: '1', ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}), ...DAEMON_ENV },
  });
  closeSync(fd);
  started.push(proc);
  await waitForDaemon(proc, SOCKDIR, () => readFileSync(log, 'utf8'));
  return { pid: proc.pid!, proc, log, stop: () => stopChild(proc) };
}

interface Mem { rss_kb: number; hwm_kb: number; anon_kb: number; file_kb: number; shmem_kb: number }
function memOf(pid: number): Mem {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rss_kb: kb('VmRSS'), hwm_kb: kb('VmHWM'), anon_kb: kb('RssAnon'), file_kb: kb('RssFile'), shmem_kb: kb('RssShmem') };
}
const fmtMem = (m: Mem): string => `${fmtBytes(m.rss_kb * 1024)} (anon ${fmtBytes(m.anon_kb * 1024)}, file ${fmtBytes(m.file_kb * 1024)})`;
function fileSize(p: string): number {
  let n = 0;
  for (const s of ['', '-wal', '-shm']) { try { n += statSync(p + s).size; } catch { /* absent */ } }
  return n;
}

// ---- measurements ---------------------------------------------------------------------------
async function hyperfine(b: Backend, cmd: string[], runs: number, warmup: number): Promise<Lat> {
  if (spawnSync('sh', ['-c', 'command -v hyperfine']).status === 0) {
    const jf = join(WORK, `hf-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
    await run(inNs(b, ['hyperfine', '-N', '--style', 'none', '--warmup', String(warmup), '--runs', String(runs), '--export-json', jf, cmd.join(' ')]));
    const r = (JSON.parse(readFileSync(jf, 'utf8')) as { results: { times: number[] }[] }).results[0]!;
    return latFrom(r.times.map((s) => s * 1e6));
  }
  // No hyperfine: our own loop, run by node inside the same kind of namespace.
  const out = await run(inNs(b, [process.execPath, process.argv[1]!, '--exec-loop', `${runs}:${warmup}`, '--', ...cmd]));
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

const asLat = (j: Json): Lat => j as unknown as Lat;

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
interface Row { id: RowId; section: string; what: string; latchkey: string; files: string; ratio: string; target: string }
const rows = new Map<RowId, Row>();
function row(id: RowId, r: Omit<Row, 'id'>): void { rows.set(id, { id, ...r }); }
const verdict = (ok: boolean): string => (ok ? '**met**' : '**missed**');

function markdown(meta: Json): string {
  const head = `latchkey bench — ${meta.date}, ${meta.machine}, N = ${N.toLocaleString('en-US')} users${QUICK ? ' (--quick: numbers are not meaningful)' : ''}\n\n`
    + '| | measurement | latchkey | files (nss_files) | latchkey ÷ files | target |\n|---|---|---|---|---|---|\n';
  const body = ROW_IDS.map((id) => rows.get(id) ?? { id, section: '', what: id, latchkey: 'not measured', files: '', ratio: '', target: '' })
    .map((r) => `| ${r.section} | ${r.what} | ${r.latchkey} | ${r.files} | ${r.ratio} | ${r.target} |`).join('\n');
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
  const notes: string[] = [];
  try {
    writeFileSync(nsFile('latchkey'), 'passwd: latchkey\ngroup: files\nshadow: files\nhosts: files\n');
    writeFileSync(nsFile('files'), 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n');
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
    writeFileSync(join(WORK, 'cold0.txt'), coldNames.d0.join('\n') + '\n');
    writeFileSync(join(WORK, 'cold1.txt'), coldNames.d1.join('\n') + '\n');
    const passwdBytes = statSync(passwdFile()).size;

    const service = await startService(join(WORK, 'users.json'));
    const dbPath = join(SOCKDIR, 'cache.db');
    const config = writeConfig(WORK, service.url, dbPath);
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    const daemon = await startDaemon(config, profileDir);
    const idle = memOf(daemon.pid);
    raw.daemon_idle = idle;

    // ---- warm the cache: every user once, 8 threads (first lookups: upstream fetches)
    say(`warming the cache: ${N} first lookups with 8 threads`);
    const fill = await driver('latchkey', ['each', join(WORK, 'names.txt'), '8']);
    raw.fill = fill;
    if (fill.found !== N) throw new Error(`warm-up found ${String(fill.found)} of ${N} users: ${JSON.stringify(fill)}`);
    const memWarm = memOf(daemon.pid);
    const cacheBytes = fileSize(dbPath);
    raw.daemon_warm = memWarm;
    raw.cache_bytes = cacheBytes;
    row('fill', { section: 'cache', what: `fill: ${N.toLocaleString('en-US')} first lookups (upstream fetch each), 8 threads`, latchkey: `${fmtRate(fill.ops_per_s as number)} (${fmtUs(fill.wall_us as number)} in all)`, files: 'n/a (no cache)', ratio: '', target: '' });

    // ---- warm latency: hit and miss, first/middle/last user
    say('warm getpwnam_r / getpwuid_r latency');
    const picks = { first: 0, middle: Math.floor(N / 2), last: N - 1 };
    const lat: Record<string, Record<Backend, Lat>> = {};
    for (const fn of ['name', 'uid'] as const) {
      for (const [pos, i] of [...Object.entries(picks), ['miss', -1] as const]) {
        const key = fn === 'name' ? (i < 0 ? 'nosuchbenchuser' : userName(i as number)) : String(i < 0 ? localUid(N + 5_000_000) : localUid(i as number));
        const r: Partial<Record<Backend, Lat>> = {};
        for (const b of ['latchkey', 'files'] as const) {
          const j = await driver(b, ['lat', fn, key, String(P.latIters), String(P.latSecs)]);
          const expectFound = i >= 0 ? j.n : 0;
          if (j.found !== expectFound || j.errors !== 0) throw new Error(`${b} lat ${fn} ${key}: ${JSON.stringify(j)}`);
          r[b] = asLat(j);
        }
        lat[`${fn}_${pos}`] = r as Record<Backend, Lat>;
        const l = r.latchkey!;
        const f = r.files!;
        const id = `${fn === 'name' ? 'getpwnam' : 'getpwuid'}_${pos}` as RowId;
        const what = `${fn === 'name' ? 'getpwnam_r' : 'getpwuid_r'} ${pos === 'miss' ? 'miss (no such user; latchkey: negative cache)' : `hit, ${pos} user`}`;
        const hitTarget = pos === 'miss' ? '' : `p50 ≤ 50 µs: ${verdict(l.p50_us <= 50)}`;
        row(id, { section: 'warm, 1 process', what, latchkey: fmtLat(l), files: fmtLat(f), ratio: ratio(l.p50_us, f.p50_us), target: hitTarget });
      }
    }
    raw.latency = lat;

    // The same hit with the client and the daemon pinned (taskset) to one core, then to different
    // cores: a round trip that wakes an idle vCPU costs more than one that stays on a busy core, and
    // unpinned runs land on either (bimodal p50). files is pinned the same way for the ratio.
    const ncpu = cpus().length;
    const allCpus = `0-${ncpu - 1}`;
    const pinned: Json = {};
    for (const [id, cpu, label] of [['pin_same', '0', 'client and daemon pinned to the same core'], ['pin_cross', '1', 'client and daemon pinned to different cores']] as const) {
      if (id === 'pin_cross' && ncpu < 2) { row(id, { section: 'warm, 1 process', what: `getpwnam_r hit, middle user, ${label}`, latchkey: 'skipped: one CPU', files: '', ratio: '', target: '' }); continue; }
      await run(['taskset', '-a', '-pc', '0', String(daemon.pid)], { env: process.env });
      const r: Partial<Record<Backend, Lat>> = {};
      for (const b of ['latchkey', 'files'] as const) {
        const j = await run(inNs(b, ['taskset', '-c', cpu, BIN_DRIVER, 'lat', 'name', userName(picks.middle), String(P.latIters), String(P.latSecs)]));
        r[b] = asLat(lastJson(j));
      }
      await run(['taskset', '-a', '-pc', allCpus, String(daemon.pid)], { env: process.env });
      pinned[id] = r;
      row(id, { section: 'warm, 1 process', what: `getpwnam_r hit, middle user, ${label}`, latchkey: fmtLat(r.latchkey!), files: fmtLat(r.files!), ratio: ratio(r.latchkey!.p50_us, r.files!.p50_us), target: `p50 ≤ 50 µs: ${verdict(r.latchkey!.p50_us <= 50)}` });
    }
    raw.pinned = pinned;

    // ---- throughput
    say('throughput with 1, 2 and 8 threads');
    const tput: Record<string, Record<Backend, number>> = {};
    for (const th of [1, 2, 8]) {
      const r: Partial<Record<Backend, number>> = {};
      for (const b of ['latchkey', 'files'] as const) {
        const j = await driver(b, ['tput', join(WORK, 'names.txt'), String(th), String(P.tputSecs)]);
        if (j.errors !== 0 || j.found !== j.ops) throw new Error(`${b} tput: ${JSON.stringify(j)}`);
        r[b] = j.ops_per_s as number;
      }
      tput[`t${th}`] = r as Record<Backend, number>;
      row(`tput_${th}` as RowId, {
        section: 'throughput', what: `getpwnam_r lookups/s, ${th} client thread${th > 1 ? 's' : ''} (all users, round robin)`,
        latchkey: fmtRate(r.latchkey!), files: fmtRate(r.files!), ratio: ratio(r.latchkey!, r.files!),
        target: th === 1 ? '' : `≥ 50,000/s on 2 cores: ${verdict(r.latchkey! >= 50_000)}`,
      });
    }
    raw.throughput = tput;

    // ---- whole processes
    say('whole getent processes (hyperfine)');
    const mid = userName(picks.middle);
    const gl = await hyperfine('latchkey', ['getent', 'passwd', mid], P.hfRuns, P.hfWarm);
    const gf = await hyperfine('files', ['getent', 'passwd', mid], P.hfRuns, P.hfWarm);
    const tr = await hyperfine('files', ['/bin/true'], P.hfRuns, P.hfWarm);
    raw.process = { getent_latchkey: gl, getent_files: gf, bin_true: tr };
    row('getent_one', { section: 'process', what: `\`getent passwd ${mid}\` (middle user), whole process`, latchkey: fmtLat(gl), files: fmtLat(gf), ratio: ratio(gl.p50_us, gf.p50_us), target: '' });
    row('getent_floor', { section: 'process', what: '`/bin/true` (process floor), and getent p50 minus it', latchkey: `floor ${fmtLat(tr)}; getent − floor ${fmtUs(gl.p50_us - tr.p50_us)}`, files: `getent − floor ${fmtUs(gf.p50_us - tr.p50_us)}`, ratio: ratio(gl.p50_us - tr.p50_us, gf.p50_us - tr.p50_us), target: '' });

    // ---- enumeration
    say('enumeration (getent passwd)');
    const el = await hyperfine('latchkey', ['getent', 'passwd'], P.enumRuns, 1);
    const ef = await hyperfine('files', ['getent', 'passwd'], P.enumRuns, 1);
    const cl = await driver('latchkey', ['enum']);
    const cf = await driver('files', ['enum']);
    raw.enumeration = { latchkey: el, files: ef, count_latchkey: cl, count_files: cf };
    if (cl.entries !== N) notes.push(`latchkey enumeration returned ${String(cl.entries)} entries, expected ${N}`);
    row('enum', { section: 'enumeration', what: `\`getent passwd\` (all users; entries: latchkey ${String(cl.entries)}, files ${String(cf.entries)})`, latchkey: fmtLat(el), files: fmtLat(ef), ratio: ratio(el.p50_us, ef.p50_us), target: '' });

    // ---- cold path
    say('cold path: first lookups of never-seen users, upstream delay 0 and 1 ms');
    const cold: Json = {};
    const filesLast = lat.name_last!.files;
    for (const [delay, list, key] of [[0, coldNames.d0, 'cold0.txt'], [1, coldNames.d1, 'cold1.txt']] as const) {
      await service.control({ delayMs: delay });
      // the first name opens the daemon's upstream connection: not part of the sample
      await driver('latchkey', ['lat', 'name', list[0]!, '1']);
      writeFileSync(join(WORK, key), list.slice(1).join('\n') + '\n');
      const c = await driver('latchkey', ['each', join(WORK, key)]);
      if (c.found !== list.length - 1) throw new Error(`cold ${delay} ms: ${JSON.stringify(c)}`);
      const up = await upstreamAlone(service.url, list.slice(1));
      const over = (c.p50_us as number) - up.p50_us;
      cold[`delay_${delay}`] = { lookup: c, upstream_alone: up, overhead_p50_us: over };
      row(`cold_${delay}ms` as RowId, {
        section: 'cold miss', what: `first lookup of a never-seen user, upstream delay ${delay} ms (files: last-user scan)`,
        latchkey: fmtLat(asLat(c)), files: fmtLat(filesLast), ratio: ratio(c.p50_us as number, filesLast.p50_us), target: '',
      });
      row(`cold_over_${delay}ms` as RowId, {
        section: 'cold miss', what: `… the upstream alone (same GETs, undici keep-alive) and the daemon's overhead (p50 difference)`,
        latchkey: `upstream ${fmtLat(up)}; overhead ${fmtUs(over)}`, files: '', ratio: '', target: `overhead ≤ 1 ms: ${verdict(over <= 1000)}`,
      });
    }
    await service.control({ delayMs: 0 });
    raw.cold = cold;

    // ---- lookups during a bcrypt storm
    say(`lookup latency during ${P.storm} concurrent bcrypt cost-10 logins`);
    // The paced client is itself a process on the same 2 cores: the files column runs the same
    // client against nss_files (first user: ~5 µs of work) during an identical storm, so what is
    // scheduling noise on a loaded machine and what is the daemon can be told apart.
    writeFileSync(join(WORK, 'first.txt'), userName(0) + '\n');
    const stormOnce = async (b: Backend, logins: number): Promise<{ lookups: Lat; logins?: Lat; ok?: number; wall_ms?: number }> => {
      const cmd = inNs(b, [BIN_DRIVER, 'paced', join(WORK, b === 'latchkey' ? 'names.txt' : 'first.txt'), String(P.pacedUs)]);
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
      let res: { logins?: Lat; ok?: number; wall_ms?: number } = {};
      if (logins === 0) {
        await sleep(P.baselineMs);
      } else {
        const s0 = Date.now();
        const times = await Promise.all(Array.from({ length: logins }, async (_, i) => {
          const a = process.hrtime.bigint();
          const r = await request(join(SOCKDIR, 'priv.sock'), 'AUTH_PASSWORD', { user: userName(i), password: stormPw(i), service: 'sshd', rhost: '127.0.0.1' }, 300_000);
          return { us: Number(process.hrtime.bigint() - a) / 1000, ok: r.status === 0 };
        }));
        res = { logins: latFrom(times.map((x) => x.us)), ok: times.filter((x) => x.ok).length, wall_ms: Date.now() - s0 };
      }
      p.stdin!.end();
      if ((await closed) !== 0) throw new Error(`paced: ${err}`);
      const j = lastJson(out);
      if (j.errors !== 0) throw new Error(`paced lookups failed during the storm: ${JSON.stringify(j)}`);
      return { lookups: asLat(j), ...res };
    };
    const base = await stormOnce('latchkey', 0);
    const baseF = await stormOnce('files', 0);
    const storm = await stormOnce('latchkey', P.storm);
    const stormF = await stormOnce('files', P.storm);
    raw.storm = { baseline: base, baseline_files_first_user: baseF, storm, storm_files_first_user: stormF };
    if (storm.ok !== P.storm || stormF.ok !== P.storm) notes.push(`only ${storm.ok} and ${stormF.ok} of ${P.storm} storm logins succeeded`);
    row('storm_base', { section: 'bcrypt storm', what: `lookup latency, no logins (paced: 1 lookup per ${P.pacedUs} µs; files: first user)`, latchkey: fmtLat(base.lookups), files: fmtLat(baseF.lookups), ratio: ratio(base.lookups.p50_us, baseF.lookups.p50_us), target: '' });
    row('storm', { section: 'bcrypt storm', what: `lookup latency while ${P.storm} bcrypt cost-10 logins run at once (AUTH_PASSWORD on priv.sock)`, latchkey: fmtLat(storm.lookups), files: fmtLat(stormF.lookups), ratio: ratio(storm.lookups.p50_us, stormF.lookups.p50_us), target: `p99 < 5 ms: ${verdict(storm.lookups.p99_us < 5000)}` });
    row('storm_logins', { section: 'bcrypt storm', what: `… the ${P.storm} logins themselves (${storm.ok} OK)`, latchkey: `${fmtLat(storm.logins!)}; all done in ${fmtUs(storm.wall_ms! * 1000)}`, files: `(second storm) all done in ${fmtUs(stormF.wall_ms! * 1000)}`, ratio: '', target: '' });

    // ---- memory
    const memEnd = memOf(daemon.pid);
    raw.daemon_end = memEnd;
    row('mem_idle', { section: 'memory', what: 'daemon RSS, idle (empty cache)', latchkey: fmtMem(idle), files: 'n/a', ratio: '', target: '' });
    row('mem_n', { section: 'memory', what: `daemon RSS / peak (VmHWM) at ${N.toLocaleString('en-US')} users, after warm-up and after all runs`, latchkey: `${fmtMem(memWarm)}, peak ${fmtBytes(memWarm.hwm_kb * 1024)}; at the end ${fmtBytes(memEnd.rss_kb * 1024)}, peak ${fmtBytes(memEnd.hwm_kb * 1024)}`, files: 'n/a', ratio: '', target: N >= FULL_N ? `RSS < 80 MB at 100k: ${verdict(memEnd.rss_kb * 1024 < 80e6)}` : '' });
    row('cache_n', { section: 'memory', what: `cache file size at ${N.toLocaleString('en-US')} users (files: the passwd file)`, latchkey: fmtBytes(cacheBytes), files: fmtBytes(passwdBytes), ratio: ratio(cacheBytes, passwdBytes), target: '' });

    await daemon.stop();
    await service.stop();

    if (DO_FULL) {
      say(`--full: daemon RSS and cache size at ${FULL_N} users`);
      const big = makeUsers(FULL_N, sharedHash, stormHashes, 0);
      writeFileSync(join(WORK, 'users-full.json'), JSON.stringify(big));
      writeFileSync(join(WORK, 'names-full.txt'), big.map((u) => u.username).join('\n') + '\n');
      writePasswd(join(WORK, 'passwd-full'), FULL_N);
      const svc = await startService(join(WORK, 'users-full.json'));
      const db2 = join(SOCKDIR, 'cache-full.db');
      const d2 = await startDaemon(writeConfig(WORK, svc.url, db2), null);
      const f2 = await driver('latchkey', ['each', join(WORK, 'names-full.txt'), '8']);
      if (f2.found !== FULL_N) throw new Error(`--full warm-up: ${JSON.stringify(f2)}`);
      const m2 = memOf(d2.pid);
      const s2 = fileSize(db2);
      raw.full = { fill: f2, mem: m2, cache_bytes: s2 };
      row('mem_full', { section: 'memory', what: `daemon RSS / peak at ${FULL_N.toLocaleString('en-US')} users (--full)`, latchkey: `${fmtMem(m2)}, peak ${fmtBytes(m2.hwm_kb * 1024)}`, files: 'n/a', ratio: '', target: `RSS < 80 MB: ${verdict(m2.rss_kb * 1024 < 80e6)}` });
      row('cache_full', { section: 'memory', what: `cache file size at ${FULL_N.toLocaleString('en-US')} users (files: the passwd file)`, latchkey: fmtBytes(s2), files: fmtBytes(statSync(join(WORK, 'passwd-full')).size), ratio: ratio(s2, statSync(join(WORK, 'passwd-full')).size), target: '' });
      await d2.stop();
      await svc.stop();
    } else if (N < FULL_N) {
      row('mem_full', { section: 'memory', what: `daemon RSS at ${FULL_N.toLocaleString('en-US')} users`, latchkey: 'not run (default is 10k: `scripts/bench --full` or `--users 100000`)', files: '', ratio: '', target: 'RSS < 80 MB' });
      row('cache_full', { section: 'memory', what: `cache file size at ${FULL_N.toLocaleString('en-US')} users`, latchkey: 'not run (see above)', files: '', ratio: '', target: '' });
    } else {
      row('mem_full', { section: 'memory', what: `daemon RSS at ${FULL_N.toLocaleString('en-US')} users`, latchkey: 'see the row above (this run is ≥ 100k)', files: '', ratio: '', target: '' });
      row('cache_full', { section: 'memory', what: `cache file size at ${FULL_N.toLocaleString('en-US')} users`, latchkey: 'see the row above', files: '', ratio: '', target: '' });
    }

    // ---- other NSS backends
    const have = (c: string): boolean => spawnSync('sh', ['-c', `command -v ${c} || test -x /usr/sbin/${c}`]).status === 0;
    row('sss', { section: 'others', what: '`sss` (SSSD)', latchkey: have('sssd') ? 'skipped: installed, but the bench does not configure SSSD' : 'skipped: sssd not installed', files: '', ratio: '', target: '' });
    row('nscd', { section: 'others', what: '`nscd` in front of files', latchkey: have('nscd') ? 'skipped: installed, but the bench does not configure nscd' : 'skipped: nscd not installed', files: '', ratio: '', target: '' });

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
    writeFileSync(jsonFile, JSON.stringify({ ...meta, users: N, quick: QUICK, full: DO_FULL || N >= FULL_N, params: P, daemon_env: DAEMON_ENV, daemon_node_args: DAEMON_NODE_ARGS, rows: rowList, notes, raw }, null, 2) + '\n');
    writeFileSync(join(OUT, `bench-${stamp}.md`), md + (notes.length ? '\n' + notes.map((n) => `- ${n}`).join('\n') + '\n' : ''));
    process.stdout.write('\n' + md);
    for (const n of notes) process.stdout.write(`\nnote: ${n}`);
    if (profile.length) {
      process.stdout.write(`\nDaemon CPU profile (self time, whole run): ${profileDir}\n`);
      for (const p of profile) process.stdout.write(`  ${p.self_pct.toFixed(1).padStart(5)}%  ${p.fn}\n`);
    }
    process.stdout.write(`\nwritten: ${jsonFile} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
  } finally {
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
