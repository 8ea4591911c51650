// latchkeyctl end to end: the real bin/latchkeyctl, spawned as a separate process, against the
// real latchkeyd and the example user service (test/lib/harness.ts). Piped stdout (spawnSync)
// is the TSV mode; a pseudo-terminal from script(1) gives the table mode.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startEnv, examplePasswords, exampleUsers, request, haveCommand, ROOT, type TestEnv,
} from '../lib/harness.js';

const CTL = join(ROOT, 'bin/latchkeyctl');
let env: TestEnv;
const SECRETS = ['testpass', 'bGVnYTp0ZXN0cGFzcw'];

interface Ctl { code: number | null; stdout: string; stderr: string }

function ctl(args: string[], opts: { input?: string; uid?: number; socketDir?: string; extraEnv?: Record<string, string> } = {}): Ctl {
  const o: SpawnSyncOptions = {
    env: { ...process.env, LATCHKEY_SOCKET_DIR: opts.socketDir ?? env.socketDir, ...(opts.extraEnv ?? {}) },
    input: opts.input ?? '', encoding: 'utf8', timeout: 30000,
  };
  if (opts.uid !== undefined) { o.uid = opts.uid; o.gid = opts.uid; }
  const r = spawnSync(process.execPath, [CTL, ...args], o);
  const out: Ctl = { code: r.status, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
  // No output path may ever show an upstream credential or a password hash.
  for (const s of [...SECRETS, ...hashes()]) {
    assert.ok(!out.stdout.includes(s) && !out.stderr.includes(s), `latchkeyctl ${args.join(' ')} printed a secret`);
  }
  return out;
}

function json(args: string[]): Record<string, any> {
  const r = ctl([...args, '--json']);
  assert.equal(r.code, 0, `latchkeyctl ${args.join(' ')} --json: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, any>;
}

let hashCache: string[] | null = null;
function hashes(): string[] {
  hashCache ??= exampleUsers().map((u) => u.passwordHash).filter((h): h is string => typeof h === 'string' && h.length > 0);
  return hashCache;
}

/** Runs latchkeyctl on a pseudo-terminal (script(1)) to see the table output. */
function ctlTty(args: string[]): Ctl {
  const cmd = [process.execPath, CTL, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], {
    env: { ...process.env, LATCHKEY_SOCKET_DIR: env.socketDir, TERM: 'dumb' }, encoding: 'utf8', timeout: 30000,
  });
  return { code: r.status, stdout: (r.stdout ?? '').replace(/\r\n/g, '\n'), stderr: r.stderr ?? '' };
}

before(async () => { env = await startEnv(); });
after(async () => { await env?.stop(); });

test('status --json: documented fields, upstream reachable', () => {
  const s = json(['status']);
  assert.equal(s.daemon, 'up');
  for (const k of ['version', 'pid', 'started_at', 'uptime_s', 'config_file', 'sockets', 'upstream', 'cache', 'sessions']) assert.ok(k in s, k);
  assert.equal(s.config_file, env.configFile);
  assert.equal(s.sockets.priv, join(env.socketDir, 'priv.sock'));
  assert.equal(s.sockets.nss, join(env.socketDir, 'nss.sock'));
  assert.equal(s.upstream.reachable, true);
  assert.equal(typeof s.upstream.probe_ms, 'number');
  for (const k of ['fresh', 'stale', 'expired', 'negative', 'total']) assert.equal(typeof s.cache.entries[k], 'number', k);
  assert.equal(typeof s.cache.size_bytes, 'number');
  assert.equal(s.cache.file, join(env.dir, 'cache.db'));
  assert.equal(typeof s.sessions.open, 'number');
  assert.ok(!('ok' in s));
});

test('status piped: key<TAB>value lines; on a terminal: aligned', () => {
  const r = ctl(['status']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^version\t\d+\.\d+\.\d+$/m);
  assert.match(r.stdout, /^config\t.*latchkey\.conf$/m);
  assert.match(r.stdout, /^upstream\treachable$/m);
  for (const line of r.stdout.trim().split('\n')) assert.match(line, /^[a-z ]+\t/);
  if (haveCommand('script')) {
    const t = ctlTty(['status']);
    assert.equal(t.code, 0, t.stdout);
    assert.match(t.stdout, /^daemon:\s+up \(pid \d+, version /m);
    assert.match(t.stdout, /^uptime:\s+\d+[smhd]/m);
  }
});

test('status: upstream failing shows unreachable and the last error', () => {
  env.service.setFault('5xx');
  try {
    const s = json(['status']);
    assert.equal(s.upstream.reachable, false);
    assert.ok(s.upstream.probe_error);
    assert.ok(s.upstream.last_error && typeof s.upstream.last_error.message === 'string');
  } finally {
    env.service.setFault(null);
  }
});

test('daemon down: exit 3 with a clear message; status says down', () => {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-nodaemon-'));
  try {
    const s = ctl(['status'], { socketDir: dir });
    assert.equal(s.code, 3);
    assert.match(s.stdout, /^daemon\tdown$/m);
    assert.match(s.stderr, /latchkeyd is not running: no socket at .*priv\.sock/);
    const j = ctl(['status', '--json'], { socketDir: dir });
    assert.equal(j.code, 3);
    assert.equal(JSON.parse(j.stdout).daemon, 'down');
    const u = ctl(['users'], { socketDir: dir });
    assert.equal(u.code, 3);
    assert.match(u.stderr, /not running/);
    // --socket-dir overrides the environment
    assert.equal(ctl(['--socket-dir', dir, 'users']).code, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('not root: exit 3 and says to use sudo', () => {
  const r = ctl(['status'], { uid: 65534 });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /latchkeyctl needs root \(priv\.sock is root-only\); run it with sudo/);
  // check-config and --help need no daemon and no root
  assert.equal(ctl(['--help'], { uid: 65534 }).code, 0);
});

test('lookup: upstream first, then cache; timing shown; --refresh goes upstream', () => {
  const first = json(['lookup', 'alice']);
  assert.equal(first.result, 'found');
  assert.equal(first.entry.name, 'alice');
  assert.equal(first.entry.uid, 11001);
  assert.equal(typeof first.ms, 'number');
  assert.equal(json(['lookup', 'alice']).source, 'cache');
  assert.equal(json(['lookup', 'alice', '--refresh']).source, 'upstream');
  assert.equal(json(['lookup', '11001']).entry.name, 'alice');
  const piped = ctl(['lookup', 'alice']);
  assert.equal(piped.code, 0);
  assert.match(piped.stdout, /^alice:x:11001:10000:[^\t]*\tcache\t[\d.]+\n$/);
});

test('lookup: unknown user exits 1', () => {
  const r = ctl(['lookup', 'nosuchuser']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no such user: nosuchuser/);
  assert.equal(ctl(['lookup', '99999']).code, 1);
});

test('users: TSV in a pipe, JSON with the documented fields, table on a terminal', () => {
  for (const n of ['alice', 'bob', 'ivan']) assert.equal(ctl(['lookup', n]).code, 0);
  const r = ctl(['users']);
  assert.equal(r.code, 0, r.stderr);
  const alice = r.stdout.split('\n').find((l) => l.startsWith('alice\t'));
  assert.ok(alice, r.stdout);
  const cells = alice.split('\t');
  assert.equal(cells.length, 8);
  assert.equal(cells[1], '11001');
  assert.match(cells[2]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(cells[4], 'fresh');
  assert.equal(cells[6], 'yes');
  const j = json(['users']);
  const u = j.users.find((x: { name: string }) => x.name === 'ivan');
  for (const k of ['name', 'uid', 'upstream_uid', 'gid', 'fetched_at', 'expires_at', 'state', 'keys', 'has_password', 'home', 'home_exists']) assert.ok(k in u, k);
  assert.equal(u.has_password, false);
  assert.equal(u.upstream_uid, 1009);
  if (haveCommand('script')) {
    const t = ctlTty(['users']);
    assert.match(t.stdout, /^NAME\s+UID\s+FETCHED\s+EXPIRES\s+STATE\s+KEYS\s+PASSWORD\s+HOME$/m);
    assert.match(t.stdout, /^alice\s+11001\s+(\d+[smhd] ago|now)\s+in \d+[smhd]\s+fresh\s+1\s+yes\s+(yes|no)$/m);
    const utc = ctlTty(['users', '--utc']);
    assert.match(utc.stdout, /^alice\s+11001\s+\d{4}-\d\d-\d\dT\S+Z\s+\d{4}-/m);
  }
});

test('users --negative lists remembered "no such user" answers; --stale filters', () => {
  ctl(['lookup', 'ghost']);
  const j = json(['users', '--negative']);
  assert.ok(Array.isArray(j.negative));
  assert.ok(j.negative.some((n: { key: string }) => n.key === 'ghost'), JSON.stringify(j.negative));
  const stale = json(['users', '--stale']);
  assert.ok(stale.users.every((u: { state: string }) => u.state !== 'fresh'));
});

test('show: everything cached, hash only as kind and cost; unknown user exits 1', () => {
  ctl(['lookup', 'alice']);
  const j = json(['show', 'alice']);
  assert.equal(j.user.name, 'alice');
  assert.equal(j.user.uid, 11001);
  assert.deepEqual(j.user.password, { kind: 'bcrypt', cost: 10, cost_name: 'cost' });
  assert.equal(j.user.keys.length, 1);
  assert.equal(j.user.keys[0].type, 'ssh-ed25519');
  assert.match(j.user.keys[0].fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
  assert.ok(Array.isArray(j.sessions));
  assert.equal(json(['show', '11001']).user.name, 'alice');
  const piped = ctl(['show', 'alice']);
  assert.match(piped.stdout, /^password\tbcrypt \(cost 10\)$/m);
  assert.match(piped.stdout, /^keys\tssh-ed25519 SHA256:/m);
  const missing = ctl(['show', 'nobody-cached']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /not cached/);
});

test('invalidate: marks entries expired; unknown exits 1; --all', () => {
  ctl(['lookup', 'bob']);
  const r = json(['invalidate', 'bob']);
  assert.equal(r.invalidated, 1);
  assert.deepEqual(r.not_cached, []);
  const bob = json(['users']).users.find((u: { name: string }) => u.name === 'bob');
  assert.notEqual(bob.state, 'fresh');
  assert.equal(json(['lookup', 'bob']).source, 'upstream');
  const miss = ctl(['invalidate', 'bob', 'neverseen']);
  assert.equal(miss.code, 1);
  assert.match(miss.stderr, /neverseen: not cached/);
  const all = json(['invalidate', '--all']);
  assert.ok(all.invalidated >= 1);
  assert.equal(ctl(['invalidate']).code, 2);
  assert.equal(ctl(['invalidate', '--all', 'bob']).code, 2);
});

test('flush: --negative drops only negative entries, plain flush drops all', () => {
  ctl(['lookup', 'ghost2']);
  ctl(['lookup', 'alice']);
  const n = json(['flush', '--negative']);
  assert.ok(n.removed >= 1);
  assert.equal(n.negative_only, true);
  assert.equal(json(['users', '--negative']).negative.length, 0);
  assert.ok(json(['users']).users.length >= 1);
  const all = json(['flush']);
  assert.ok(all.removed >= 1);
  assert.equal(json(['users']).users.length, 0);
});

test('sessions: list, kill by id (terminates the process), kill by user, unknown exits 1', async () => {
  const sleeper = spawn('sleep', ['300'], { stdio: 'ignore' });
  const exited = new Promise<NodeJS.Signals | null>((r) => sleeper.once('exit', (_c, sig) => r(sig)));
  try {
    const priv = join(env.socketDir, 'priv.sock');
    const o = await request(priv, 'SESSION_OPEN', { user: 'alice', service: 'sshd', rhost: '192.0.2.7', tty: 'ssh', pid: sleeper.pid! });
    assert.equal(o.status, 0, o.detail);
    const id = o.fields!.session_id as string;
    const list = json(['sessions']);
    const s = list.sessions.find((x: { id: string }) => x.id === id);
    for (const k of ['id', 'user', 'uid', 'service', 'rhost', 'tty', 'pid', 'started_at']) assert.ok(k in s, k);
    assert.equal(s.pid, sleeper.pid);
    assert.equal(json(['sessions', 'alice']).sessions.length, 1);
    assert.equal(json(['sessions', 'bob']).sessions.length, 0);
    assert.match(ctl(['sessions']).stdout, new RegExp(`^${id}\talice\t11001\tsshd\t192\\.0\\.2\\.7\tssh\t${sleeper.pid}\t\\d{4}-`, 'm'));
    assert.equal(json(['show', 'alice']).sessions[0].id, id);
    assert.equal(json(['status']).sessions.open, 1);
    const k = ctl(['sessions', 'kill', id]);
    assert.equal(k.code, 0, k.stderr);
    assert.equal(await exited, 'SIGTERM');
    assert.equal(json(['sessions']).sessions.length, 0);
    assert.equal(ctl(['sessions', 'kill', id]).code, 1);
    assert.equal(ctl(['sessions', 'kill', '--user', 'alice']).code, 1);
    assert.equal(ctl(['sessions', 'kill']).code, 2);
    assert.equal(ctl(['sessions', 'kill', 'x', '--user', 'alice']).code, 2);
  } finally {
    sleeper.kill('SIGKILL');
  }
});

test('sessions kill --user ends all of that user\'s sessions', async () => {
  const sleepers = [spawn('sleep', ['300'], { stdio: 'ignore' }), spawn('sleep', ['300'], { stdio: 'ignore' })];
  try {
    const priv = join(env.socketDir, 'priv.sock');
    for (const p of sleepers) {
      const o = await request(priv, 'SESSION_OPEN', { user: 'bob', service: 'sshd', rhost: '', tty: '', pid: p.pid! });
      assert.equal(o.status, 0, o.detail);
    }
    assert.equal(json(['sessions', 'kill', '--user', 'bob']).ended, 2);
    assert.equal(json(['sessions', 'bob']).sessions.length, 0);
  } finally {
    for (const p of sleepers) p.kill('SIGKILL');
  }
});

test('auth-test: right password exits 0, wrong exits 1 with the reason, never throttles', () => {
  const pw = examplePasswords();
  const good = ctl(['auth-test', 'alice', '--json'], { input: `${pw.alice}\n` });
  assert.equal(good.code, 0, good.stderr);
  const g = JSON.parse(good.stdout);
  assert.equal(g.authenticated, true);
  assert.equal(g.result, 'ok');
  assert.deepEqual(g.hash, { kind: 'bcrypt', cost: 10, cost_name: 'cost' });
  for (let i = 0; i < 7; i++) {
    const bad = ctl(['auth-test', 'alice'], { input: 'wrong-password\n' });
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /^alice\twrong_password\tbcrypt\t/);
  }
  // seven failed tests later, the right password still works: tests are not login failures
  assert.equal(ctl(['auth-test', 'alice'], { input: `${pw.alice}\n` }).code, 0);
  const bobJ = ctl(['auth-test', 'bob', '--json'], { input: `${pw.bob}\r\n` });
  assert.equal(bobJ.code, 0, bobJ.stderr);
  assert.equal(JSON.parse(bobJ.stdout).hash.kind, 'sha512crypt');
  const nopw = ctl(['auth-test', 'ivan', '--json'], { input: 'anything\n' });
  assert.equal(nopw.code, 1);
  assert.equal(JSON.parse(nopw.stdout).result, 'no_password');
  const unknown = ctl(['auth-test', 'nosuchuser', '--json'], { input: 'x\n' });
  assert.equal(unknown.code, 1);
  assert.equal(JSON.parse(unknown.stdout).result, 'unknown_user');
  assert.equal(ctl(['auth-test']).code, 2);
  assert.equal(ctl(['auth-test', '10001']).code, 2);
});

test('stats --json: lookups, upstream, verify by hash kind, throttle', () => {
  ctl(['lookup', 'alice']);
  const s = json(['stats']);
  for (const k of ['since', 'uptime_s', 'verify', 'throttle']) assert.ok(k in s, k);
  assert.ok('by_kind' in s.verify);
  assert.equal(typeof s.verify.throttled, 'number');
  const piped = ctl(['stats']);
  assert.equal(piped.code, 0);
  for (const line of piped.stdout.trim().split('\n')) assert.match(line, /^\S+\t/);
});

test('check-config: valid file prints the effective config, redacted; offline', () => {
  const r = ctl(['check-config', env.configFile], { socketDir: '/nonexistent' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\[upstream\]$/m);
  assert.match(r.stdout, /^\[cache\]$/m);
  assert.match(r.stderr, /: ok$/m);
  const j = JSON.parse(ctl(['check-config', env.configFile, '--json']).stdout);
  assert.equal(j.ok, true);
  assert.equal(j.config.upstream.basicAuth.password, '<redacted>');
});

test('check-config: a bad file is reported with file:line, exit 1; a missing file too', () => {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-badconf-'));
  try {
    const bad = join(dir, 'bad.conf');
    writeFileSync(bad, '[upstream]\nby_name_url = http://x/u/\nby_uid_url = http://x/i/\n\n[cache]\nttl = banana\n');
    chmodSync(bad, 0o600);
    const r = ctl(['check-config', bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${bad.replace(/[.]/g, '\\.')}:6: .*ttl`));
    const typo = join(dir, 'typo.conf');
    writeFileSync(typo, '[cache]\nttll = 1h\n');
    chmodSync(typo, 0o600);
    const t = ctl(['check-config', typo]);
    assert.equal(t.code, 1);
    assert.match(t.stderr, /typo\.conf:2:/);
    const missing = ctl(['check-config', join(dir, 'nope.conf')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nope\.conf/);
    assert.equal(ctl(['check-config', 'a', 'b']).code, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('usage errors exit 2; --help works for every command', () => {
  assert.equal(ctl([]).code, 2);
  const unknown = ctl(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  assert.equal(ctl(['show']).code, 2);
  assert.equal(ctl(['show', 'a', 'b']).code, 2);
  assert.equal(ctl(['users', '--bogus']).code, 2);
  assert.equal(ctl(['lookup', 'a/b']).code, 2);
  assert.equal(ctl(['--socket-dir']).code, 2);
  const help = ctl(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /exit codes:/);
  for (const cmd of ['status', 'users', 'show', 'lookup', 'invalidate', 'flush', 'sessions', 'stats', 'check-config', 'auth-test']) {
    const h = ctl([cmd, '--help']);
    assert.equal(h.code, 0, cmd);
    assert.match(h.stdout, new RegExp(`^usage: latchkeyctl ${cmd}`));
    assert.match(h.stdout, /examples:/);
    assert.equal(ctl(['help', cmd]).stdout, h.stdout);
  }
});
