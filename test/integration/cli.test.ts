// latchkeyctl end to end: the real bin/latchkeyctl, spawned as a separate process, against the
// real latchkeyd and the example user service (test/lib/harness.ts). Piped stdout (spawnSync)
// is the TSV mode; a pseudo-terminal from script(1) gives the table mode.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startEnv, examplePasswords, exampleUsers, request, haveCommand, ROOT, type TestEnv,
} from '../lib/harness.js';

const CTL = join(ROOT, 'bin/latchkeyctl');
let env: TestEnv;
const SECRETS = ['testpass', 'bGVnYTp0ZXN0cGFzcw']; // the upstream password and its basic-auth token

interface Ctl { code: number | null; stdout: string; stderr: string }

/**
 * Spawns a process and collects its output. Never spawnSync here: the example user service runs
 * in this test process, and a blocked event loop would leave the daemon's upstream unanswered.
 */
function runProcess(cmd: string, args: string[], o: SpawnOptions & { input?: string }): Promise<Ctl> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { ...o, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), 30000);
    p.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('error', reject);
    p.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    p.stdin!.on('error', () => { /* the command may exit before reading stdin */ });
    p.stdin!.end(o.input ?? '');
  });
}

async function ctl(args: string[], opts: { input?: string; uid?: number; socketDir?: string } = {}): Promise<Ctl> {
  const o: SpawnOptions & { input?: string } = {
    env: { ...process.env, LATCHKEY_SOCKET_DIR: opts.socketDir ?? env.socketDir },
    input: opts.input ?? '',
  };
  if (opts.uid !== undefined) { o.uid = opts.uid; o.gid = opts.uid; }
  const out = await runProcess(process.execPath, [CTL, ...args], o);
  // No output path may ever show an upstream credential or a password hash.
  for (const s of [...SECRETS, ...hashes()]) {
    assert.ok(!out.stdout.includes(s) && !out.stderr.includes(s), `latchkeyctl ${args.join(' ')} printed a secret`);
  }
  return out;
}

async function json(args: string[]): Promise<Record<string, any>> {
  const r = await ctl([...args, '--json']);
  assert.equal(r.code, 0, `latchkeyctl ${args.join(' ')} --json: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, any>;
}

let hashCache: string[] | null = null;
function hashes(): string[] {
  hashCache ??= exampleUsers().map((u) => u.passwordHash).filter((h): h is string => typeof h === 'string' && h.length > 0);
  return hashCache;
}

/** Runs latchkeyctl on a pseudo-terminal (script(1)) to see the table output. */
async function ctlTty(args: string[]): Promise<Ctl> {
  const cmd = [process.execPath, CTL, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const r = await runProcess('script', ['-qec', cmd, '/dev/null'], {
    env: { ...process.env, LATCHKEY_SOCKET_DIR: env.socketDir, TERM: 'dumb' },
  });
  return { ...r, stdout: r.stdout.replace(/\r\n/g, '\n') };
}

before(async () => {
  env = await startEnv();
  // SESSION_OPEN creates homes under the base; the base itself is the admin's to create.
  mkdirSync(join(env.dir, 'homes'), { recursive: true, mode: 0o755 });
});
after(async () => { await env?.stop(); });

test('status --json: documented fields, upstream reachable', async () => {
  const s = await json(['status']);
  assert.equal(s.daemon, 'up');
  for (const k of ['version', 'pid', 'started_at', 'uptime_s', 'config_file', 'sockets', 'upstream', 'cache', 'sessions']) assert.ok(k in s, k);
  assert.equal(s.config_file, env.configFile);
  assert.equal(s.sockets.priv, join(env.socketDir, 'priv.sock'));
  assert.equal(s.sockets.nss, join(env.socketDir, 'nss.sock'));
  assert.equal(s.upstream.reachable, true);
  assert.equal(typeof s.upstream.probe_ms, 'number');
  for (const k of ['fresh', 'stale', 'expired', 'negative', 'total']) assert.equal(typeof s.cache.entries[k], 'number', k);
  assert.equal(typeof s.cache.size_bytes, 'number');
  assert.equal(s.cache.file, join(env.socketDir, 'cache.db'));
  assert.equal(typeof s.sessions.open, 'number');
  assert.ok(!('ok' in s));
});

test('status piped: key<TAB>value lines; on a terminal: aligned', async () => {
  const r = await ctl(['status']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^version\t\d+\.\d+\.\d+$/m);
  assert.match(r.stdout, /^config\t.*latchkey\.conf$/m);
  assert.match(r.stdout, /^upstream\treachable$/m);
  for (const line of r.stdout.trim().split('\n')) assert.match(line, /^[a-z ]+\t/);
  if (haveCommand('script')) {
    const t = await ctlTty(['status']);
    assert.equal(t.code, 0, t.stdout);
    assert.match(t.stdout, /^daemon:\s+up \(pid \d+, version /m);
    assert.match(t.stdout, /^uptime:\s+\d+[smhd]/m);
  }
});

test('status: upstream failing shows unreachable and the last error', async () => {
  env.service.setFault('5xx');
  try {
    const s = await json(['status']);
    assert.equal(s.upstream.reachable, false);
    assert.ok(s.upstream.probe_error);
    assert.ok(s.upstream.last_error && typeof s.upstream.last_error.message === 'string');
  } finally {
    env.service.setFault(null);
  }
});

test('daemon down: exit 3 with a clear message; status says down', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-nodaemon-'));
  try {
    const s = await ctl(['status'], { socketDir: dir });
    assert.equal(s.code, 3);
    assert.match(s.stdout, /^daemon\tdown$/m);
    assert.match(s.stderr, /latchkeyd is not running: no socket at .*priv\.sock/);
    const j = await ctl(['status', '--json'], { socketDir: dir });
    assert.equal(j.code, 3);
    assert.equal(JSON.parse(j.stdout).daemon, 'down');
    const u = await ctl(['users'], { socketDir: dir });
    assert.equal(u.code, 3);
    assert.match(u.stderr, /not running/);
    // --socket-dir overrides the environment
    assert.equal((await ctl(['--socket-dir', dir, 'users'])).code, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('not root: exit 3 and says to use sudo', async () => {
  const r = await ctl(['status'], { uid: 65534 });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /latchkeyctl needs root \(priv\.sock is root-only\); run it with sudo/);
  // check-config and --help need no daemon and no root
  assert.equal((await ctl(['--help'], { uid: 65534 })).code, 0);
});

test('lookup: upstream first, then cache; timing shown; --refresh goes upstream', async () => {
  const first = await json(['lookup', 'alice']);
  assert.equal(first.result, 'found');
  assert.equal(first.entry.name, 'alice');
  assert.equal(first.entry.uid, 11001);
  assert.equal(typeof first.ms, 'number');
  assert.equal((await json(['lookup', 'alice'])).source, 'cache');
  assert.equal((await json(['lookup', 'alice', '--refresh'])).source, 'upstream');
  assert.equal((await json(['lookup', '11001'])).entry.name, 'alice');
  const piped = await ctl(['lookup', 'alice']);
  assert.equal(piped.code, 0);
  assert.match(piped.stdout, /^alice:x:11001:10000:[^\t]*\tcache\t[\d.]+\n$/);
});

test('lookup: unknown user exits 1', async () => {
  const r = await ctl(['lookup', 'nosuchuser']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no such user: nosuchuser/);
  assert.equal((await ctl(['lookup', '99999'])).code, 1);
});

test('users: TSV in a pipe, JSON with the documented fields, table on a terminal', async () => {
  for (const n of ['alice', 'bob', 'ivan']) assert.equal((await ctl(['lookup', n])).code, 0);
  const r = await ctl(['users']);
  assert.equal(r.code, 0, r.stderr);
  const alice = r.stdout.split('\n').find((l) => l.startsWith('alice\t'));
  assert.ok(alice, r.stdout);
  const cells = alice.split('\t');
  assert.equal(cells.length, 8);
  assert.equal(cells[1], '11001');
  assert.match(cells[2]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(cells[4], 'fresh');
  assert.equal(cells[6], 'yes');
  const j = await json(['users']);
  const u = j.users.find((x: { name: string }) => x.name === 'ivan');
  for (const k of ['name', 'uid', 'upstream_uid', 'gid', 'fetched_at', 'expires_at', 'state', 'keys', 'has_password', 'home', 'home_exists']) assert.ok(k in u, k);
  assert.equal(u.has_password, false);
  assert.equal(u.upstream_uid, 1009);
  if (haveCommand('script')) {
    const t = await ctlTty(['users']);
    assert.match(t.stdout, /^NAME\s+UID\s+FETCHED\s+EXPIRES\s+STATE\s+KEYS\s+PASSWORD\s+HOME$/m);
    assert.match(t.stdout, /^alice\s+11001\s+(\d+[smhd] ago|now)\s+in \d+[smhd]\s+fresh\s+1\s+yes\s+(yes|no)$/m);
    const utc = await ctlTty(['users', '--utc']);
    assert.match(utc.stdout, /^alice\s+11001\s+\d{4}-\d\d-\d\dT\S+Z\s+\d{4}-/m);
  }
});

test('users --negative lists remembered "no such user" answers; --stale filters', async () => {
  await ctl(['lookup', 'ghost']);
  const j = await json(['users', '--negative']);
  assert.ok(Array.isArray(j.negative));
  assert.ok(j.negative.some((n: { key: string }) => n.key === 'ghost'), JSON.stringify(j.negative));
  const stale = await json(['users', '--stale']);
  assert.ok(stale.users.every((u: { state: string }) => u.state !== 'fresh'));
});

test('show: everything cached, hash only as kind and cost; unknown user exits 1', async () => {
  await ctl(['lookup', 'alice']);
  const j = await json(['show', 'alice']);
  assert.equal(j.user.name, 'alice');
  assert.equal(j.user.uid, 11001);
  assert.deepEqual(j.user.password, { kind: 'bcrypt', cost: 10, cost_name: 'cost' });
  assert.equal(j.user.keys.length, 1);
  assert.equal(j.user.keys[0].type, 'ssh-ed25519');
  assert.match(j.user.keys[0].fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
  assert.ok(Array.isArray(j.sessions));
  assert.equal((await json(['show', '11001'])).user.name, 'alice');
  const piped = await ctl(['show', 'alice']);
  assert.match(piped.stdout, /^password\tbcrypt \(cost 10\)$/m);
  assert.match(piped.stdout, /^keys\tssh-ed25519 SHA256:/m);
  const missing = await ctl(['show', 'nobody-cached']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /not cached/);
});

test('invalidate: marks entries expired; unknown exits 1; --all', async () => {
  await ctl(['lookup', 'bob']);
  const r = await json(['invalidate', 'bob']);
  assert.equal(r.invalidated, 1);
  assert.deepEqual(r.not_cached, []);
  const bob = (await json(['users'])).users.find((u: { name: string }) => u.name === 'bob');
  assert.notEqual(bob.state, 'fresh');
  assert.equal((await json(['lookup', 'bob'])).source, 'upstream');
  const miss = await ctl(['invalidate', 'bob', 'neverseen']);
  assert.equal(miss.code, 1);
  assert.match(miss.stderr, /neverseen: not cached/);
  const all = await json(['invalidate', '--all']);
  assert.ok(all.invalidated >= 1);
  assert.equal((await ctl(['invalidate'])).code, 2);
  assert.equal((await ctl(['invalidate', '--all', 'bob'])).code, 2);
});

test('flush: --negative drops only negative entries, plain flush drops all', async () => {
  await ctl(['lookup', 'ghost2']);
  await ctl(['lookup', 'alice']);
  const n = await json(['flush', '--negative']);
  assert.ok(n.removed >= 1);
  assert.equal(n.negative_only, true);
  assert.equal((await json(['users', '--negative'])).negative.length, 0);
  assert.ok((await json(['users'])).users.length >= 1);
  const all = await json(['flush']);
  assert.ok(all.removed >= 1);
  assert.equal((await json(['users'])).users.length, 0);
});

/** A stand-in for sshd's session process: pam_loginuid has set its login uid to the user's (rootd
 *  ends only a process whose login uid is the session user's), then it sleeps. */
function loginProcess(uid: number): ReturnType<typeof spawn> {
  return spawn('sh', ['-c', `echo ${uid} > /proc/self/loginuid && exec sleep 300`], { stdio: 'ignore' });
}

test('sessions: list, kill by id (terminates the process), kill by user, unknown exits 1', async () => {
  const sleeper = loginProcess(11001);
  const exited = new Promise<NodeJS.Signals | null>((r) => sleeper.once('exit', (_c, sig) => r(sig)));
  try {
    const priv = join(env.socketDir, 'priv.sock');
    const o = await request(priv, 'SESSION_OPEN', { user: 'alice', service: 'sshd', rhost: '192.0.2.7', tty: 'ssh', pid: sleeper.pid!, pid_start: '' });
    assert.equal(o.status, 0, o.detail);
    const id = o.fields!.session_id as string;
    const list = await json(['sessions']);
    const s = list.sessions.find((x: { id: string }) => x.id === id);
    for (const k of ['id', 'user', 'uid', 'service', 'rhost', 'tty', 'pid', 'started_at']) assert.ok(k in s, k);
    assert.equal(s.pid, sleeper.pid);
    assert.equal((await json(['sessions', 'alice'])).sessions.length, 1);
    assert.equal((await json(['sessions', 'bob'])).sessions.length, 0);
    assert.match((await ctl(['sessions'])).stdout, new RegExp(`^${id}\talice\t11001\tsshd\t192\\.0\\.2\\.7\tssh\t${sleeper.pid}\t\\d{4}-`, 'm'));
    assert.equal((await json(['show', 'alice'])).sessions[0].id, id);
    assert.equal((await json(['status'])).sessions.open, 1);
    const k = await ctl(['sessions', 'kill', id]);
    assert.equal(k.code, 0, k.stderr);
    assert.equal(await exited, 'SIGTERM');
    assert.equal((await json(['sessions'])).sessions.length, 0);
    assert.equal((await ctl(['sessions', 'kill', id])).code, 1);
    assert.equal((await ctl(['sessions', 'kill', '--user', 'alice'])).code, 1);
    assert.equal((await ctl(['sessions', 'kill'])).code, 2);
    assert.equal((await ctl(['sessions', 'kill', 'x', '--user', 'alice'])).code, 2);
  } finally {
    sleeper.kill('SIGKILL');
  }
});

test('sessions kill --user ends all of that user\'s sessions', async () => {
  const sleepers = [loginProcess(11002), loginProcess(11002)];
  try {
    const priv = join(env.socketDir, 'priv.sock');
    for (const p of sleepers) {
      const o = await request(priv, 'SESSION_OPEN', { user: 'bob', service: 'sshd', rhost: '', tty: '', pid: p.pid!, pid_start: '' });
      assert.equal(o.status, 0, o.detail);
    }
    assert.equal((await json(['sessions', 'kill', '--user', 'bob'])).ended, 2);
    assert.equal((await json(['sessions', 'bob'])).sessions.length, 0);
  } finally {
    for (const p of sleepers) p.kill('SIGKILL');
  }
});

test('auth-test: right password exits 0, wrong exits 1 with the reason, never throttles', async () => {
  const pw = examplePasswords();
  const good = await ctl(['auth-test', 'alice', '--json'], { input: `${pw.alice}\n` });
  assert.equal(good.code, 0, good.stderr);
  const g = JSON.parse(good.stdout);
  assert.equal(g.authenticated, true);
  assert.equal(g.result, 'ok');
  assert.deepEqual(g.hash, { kind: 'bcrypt', cost: 10, cost_name: 'cost' });
  for (let i = 0; i < 7; i++) {
    const bad = await ctl(['auth-test', 'alice'], { input: 'wrong-password\n' });
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /^alice\twrong_password\tbcrypt\t/);
  }
  // seven failed tests later, the right password still works: tests are not login failures
  assert.equal((await ctl(['auth-test', 'alice'], { input: `${pw.alice}\n` })).code, 0);
  const bobJ = await ctl(['auth-test', 'bob', '--json'], { input: `${pw.bob}\r\n` });
  assert.equal(bobJ.code, 0, bobJ.stderr);
  assert.equal(JSON.parse(bobJ.stdout).hash.kind, 'sha512crypt');
  const nopw = await ctl(['auth-test', 'ivan', '--json'], { input: 'anything\n' });
  assert.equal(nopw.code, 1);
  assert.equal(JSON.parse(nopw.stdout).result, 'no_password');
  const unknown = await ctl(['auth-test', 'nosuchuser', '--json'], { input: 'x\n' });
  assert.equal(unknown.code, 1);
  assert.equal(JSON.parse(unknown.stdout).result, 'unknown_user');
  assert.equal((await ctl(['auth-test'])).code, 2);
  assert.equal((await ctl(['auth-test', '10001'])).code, 2);
});

test('stats --json: lookups, upstream, verify by hash kind, throttle', async () => {
  await ctl(['lookup', 'alice']);
  const s = await json(['stats']);
  for (const k of ['since', 'uptime_s', 'verify', 'throttle']) assert.ok(k in s, k);
  assert.ok('by_kind' in s.verify);
  assert.equal(typeof s.verify.throttled, 'number');
  const piped = await ctl(['stats']);
  assert.equal(piped.code, 0);
  for (const line of piped.stdout.trim().split('\n')) assert.match(line, /^\S+\t/);
});

test('check-config: valid file prints the effective config, redacted; offline', async () => {
  const r = await ctl(['check-config', env.configFile], { socketDir: '/nonexistent' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\[upstream\]$/m);
  assert.match(r.stdout, /^\[cache\]$/m);
  assert.match(r.stderr, /: ok$/m);
  const j = JSON.parse((await ctl(['check-config', env.configFile, '--json'])).stdout);
  assert.equal(j.ok, true);
  assert.equal(j.config.upstream.basicAuth.password, '<redacted>');
});

test('check-config: a bad file is reported with file:line, exit 1; a missing file too', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-badconf-'));
  try {
    const bad = join(dir, 'bad.conf');
    writeFileSync(bad, '[upstream]\nby_name_url = http://x/u/\nby_uid_url = http://x/i/\n\n[cache]\nttl = banana\n');
    chmodSync(bad, 0o600);
    const r = await ctl(['check-config', bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${bad.replace(/[.]/g, '\\.')}:6: .*ttl`));
    const typo = join(dir, 'typo.conf');
    writeFileSync(typo, '[cache]\nttll = 1h\n');
    chmodSync(typo, 0o600);
    const t = await ctl(['check-config', typo]);
    assert.equal(t.code, 1);
    assert.match(t.stderr, /typo\.conf:2:/);
    const missing = await ctl(['check-config', join(dir, 'nope.conf')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nope\.conf/);
    assert.equal((await ctl(['check-config', 'a', 'b'])).code, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('usage errors exit 2; --help works for every command', async () => {
  assert.equal((await ctl([])).code, 2);
  const unknown = await ctl(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  assert.equal((await ctl(['show'])).code, 2);
  assert.equal((await ctl(['show', 'a', 'b'])).code, 2);
  assert.equal((await ctl(['users', '--bogus'])).code, 2);
  assert.equal((await ctl(['lookup', 'a/b'])).code, 2);
  assert.equal((await ctl(['--socket-dir'])).code, 2);
  const help = await ctl(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /exit codes:/);
  for (const cmd of ['status', 'users', 'show', 'lookup', 'invalidate', 'flush', 'sessions', 'stats', 'check-config', 'auth-test']) {
    const h = await ctl([cmd, '--help']);
    assert.equal(h.code, 0, cmd);
    assert.match(h.stdout, new RegExp(`^usage: latchkeyctl ${cmd}`));
    assert.match(h.stdout, /examples:/);
    assert.equal((await ctl(['help', cmd])).stdout, h.stdout);
  }
});

test('a stopped daemon: latchkeyctl gives up after --timeout (default 5 s) with exit 3', async () => {
  process.kill(env.daemon.pid, 'SIGSTOP');
  try {
    const t0 = Date.now();
    const r = await ctl(['status', '--timeout', '700ms']);
    const ms = Date.now() - t0;
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /did not answer/);
    assert.ok(ms < 4000, `took ${ms} ms with --timeout 700ms`);
    const d0 = Date.now();
    const d = await ctl(['users']);
    assert.equal(d.code, 3);
    const dms = Date.now() - d0;
    assert.ok(dms >= 4500 && dms < 12_000, `default timeout took ${dms} ms`);
  } finally {
    process.kill(env.daemon.pid, 'SIGCONT');
  }
  assert.equal((await ctl(['status'])).code, 0);
});
