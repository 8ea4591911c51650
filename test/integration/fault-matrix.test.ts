// The fault matrix (README "Fault matrix"): one test per row, each asserting what a user sees
// through the real components: NSS through real `getent` and the module's own status (lkload
// probe: getent exits 2 for "not found" and "unavailable" alike), PAM through real `pamtester`,
// the log event, `latchkeyctl status --json`, and that cached data is kept and never served past
// its grace. The rows run in six groups, in parallel, each with its own daemon:
//   upstream  an http user service that goes down, slow, 5xx, 429, garbage, huge, flapping
//   tls       an https one with a certificate of another CA, an expired one, one for another host
//   killed    the daemon SIGKILLed with a request in flight, restarted with clients connected
//   cachefile the cache on a 1 MiB tmpfs of its own (a mount namespace): deleted, corrupted, full
//   fds       the daemon's RLIMIT_NOFILE lowered under a connection flood of an unprivileged user
//   clock     the daemon under libfaketime, its wall clock stepped forward and back
// Everything runs as root in private mount namespaces; only pids started here are killed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, chmodSync, existsSync, openSync, writeSync, closeSync, unlinkSync, readdirSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  ROOT, LATCHKEYD, NSS_LIB_DIR, TEST_DAEMON_UID, startDaemon, startEnv, writeConfig, request, runInNamespace,
  latchkeyctl, haveCommand, exampleUsers, examplePasswords, type DaemonProc, type ConfigOverrides,
} from '../lib/harness.js';
import { latchkeyStack, makePamDir, pamtester, PamMsg } from '../lib/pam.js';
import { startUserService, type UserService } from '../../src/example/userservice.js';
import { encodeRequest } from '../../src/protocol/codec.js';

const LKLOAD = join(ROOT, 'test/bench/build/lkload');
const FAKETIME_LIB = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
const SVC = 'latchkey-faults';
const PW = examplePasswords();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const skip = process.getuid?.() !== 0 ? 'needs root (mount namespaces, pamtester, prlimit)'
  : !haveCommand('pamtester') ? 'needs pamtester'
    : !haveCommand('cc') ? 'needs a C compiler for test/bench/lkload.c'
      : !existsSync(FAKETIME_LIB) ? 'needs libfaketime (package faketime)'
        : false;

let work = '';
/** FM_LOG_DIR=DIR: every daemon's log lines written there at the end (to read a failure). */
const logSets: Array<[string, string[]]> = [];
const keepLogs = (what: string, logs: string[]): void => { logSets.push([what, logs]); };
let pamDir = '';
const cleanups: Array<() => Promise<unknown> | unknown> = [];

before(() => {
  if (skip) return;
  const mk = spawnSync('make', ['-s', '-C', join(ROOT, 'test/bench')], { encoding: 'utf8' });
  assert.equal(mk.status, 0, `make -C test/bench: ${mk.stderr}`);
  work = mkdtempSync(join(tmpdir(), 'latchkey-faults-'));
  chmodSync(work, 0o755);
  pamDir = makePamDir(work, { [SVC]: latchkeyStack() });
});
after(async () => {
  for (const c of cleanups.reverse()) { try { await c(); } catch { /* keep cleaning */ } }
  const logDir = process.env.FM_LOG_DIR;
  if (logDir) logSets.forEach(([what, logs], i) => writeFileSync(join(logDir, `fault-matrix-${i}.log`), `${what}\n${logs.join('\n')}\n`));
  if (work) rmSync(work, { recursive: true, force: true });
});

// ---- what a user sees ---------------------------------------------------------------------------

/** NSS: getent's exit and line, and the module's own status and errno (lkload probe). */
interface NssView { getent: number | null; line: string; status: string; errno: string; found: boolean }
/** One row's answer for a user: 'found', 'tryagain' (unavailable: EAGAIN), 'notfound'. */
type NssAnswer = 'found' | 'tryagain' | 'notfound' | 'other';

async function nss(shimEnv: Record<string, string>, name: string, extra: Record<string, string> = {}): Promise<NssView & { answer: NssAnswer }> {
  const r = await runInNamespace(`getent passwd ${name}; echo "getent=$?"; ${LKLOAD} probe ${name}`, { ...shimEnv, ...extra }, { timeoutMs: 20_000 });
  const code = /getent=(\d+)/.exec(r.stdout);
  const line = r.stdout.split('\n').find((l) => l.startsWith(`${name}:`)) ?? '';
  const p = JSON.parse(r.stdout.split('\n').find((l) => l.startsWith('{')) ?? '{}') as { status?: string; errno_name?: string; found?: number };
  const view: NssView = { getent: code ? Number(code[1]) : null, line, status: p.status ?? '?', errno: p.errno_name ?? '?', found: p.found === 1 };
  const answer: NssAnswer = view.getent === 0 && view.found && view.status === 'SUCCESS' ? 'found'
    : view.getent === 2 && !view.found && (view.status === 'TRYAGAIN' || view.status === 'UNAVAIL') && view.errno === 'EAGAIN' ? 'tryagain'
      : view.getent === 2 && view.status === 'NOTFOUND' ? 'notfound' : 'other';
  return { ...view, answer };
}

/** PAM: authenticate + acct_mgmt through the real stack; 'ok' or pam_strerror's message. */
async function pam(shimEnv: Record<string, string>, user: string): Promise<string> {
  const r = await pamtester(pamDir, shimEnv, SVC, user, ['authenticate', 'acct_mgmt'], { input: `${PW[user] ?? 'x'}\n`, items: { rhost: '192.0.2.7' } });
  if (r.code === 0) return 'ok';
  for (const [k, msg] of Object.entries(PamMsg)) if (r.stdout.includes(msg)) return k;
  return `code ${r.code}: ${r.stdout.trim()}`;
}

interface StatusJson {
  pid: number;
  upstream: { health?: { state: string; last_lookup: { outcome: string } | null }; last_error: { message: string } | null; holdoff?: unknown };
  cache: { entries: { fresh: number; stale: number; total: number }; write_error?: { code: string; fix: string } | null; held_in_memory?: number; recreated?: { reason: string; restored_users: number } | null };
  clock?: { last_jump: { delta_ms: number; direction: string } | null; jumps: number };
}
async function status(socketDir: string): Promise<StatusJson> {
  const r = await latchkeyctl(socketDir, ['status', '--json']);
  assert.equal(r.code, 0, `latchkeyctl status: ${r.stderr}`);
  return JSON.parse(r.stdout) as StatusJson;
}

/** The daemon's log lines (JSON) from `mark` on. */
function events(d: DaemonProc, mark: number): Array<Record<string, unknown>> {
  return d.logs.slice(mark).flatMap((l) => { try { return [JSON.parse(l) as Record<string, unknown>]; } catch { return []; } });
}
const named = (d: DaemonProc, mark: number, event: string): Array<Record<string, unknown>> => events(d, mark).filter((e) => e.event === event);

/** Waits until `check` holds (polled), failing with `what` after `ms`. */
async function until(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) assert.fail(`timed out: ${what}`);
    await sleep(100);
  }
}

/**
 * The columns every row asserts: the known user served (or not, past its grace), an unknown
 * user "try again" and never "not found", PAM likewise.
 */
async function seen(shimEnv: Record<string, string>, users: { cached: string; unknown: string; dead?: string }): Promise<Record<string, string>> {
  const [c, u, d, pc, pu, pd] = await Promise.all([
    nss(shimEnv, users.cached), nss(shimEnv, users.unknown), users.dead ? nss(shimEnv, users.dead) : null,
    pam(shimEnv, users.cached), pam(shimEnv, users.unknown), users.dead ? pam(shimEnv, users.dead) : null,
  ]);
  return {
    nss_cached: c.answer, nss_unknown: u.answer, ...(d ? { nss_dead: d.answer } : {}),
    ...(u.answer === 'other' ? { nss_unknown_raw: JSON.stringify(u) } : {}),
    pam_cached: pc, pam_unknown: pu, ...(pd ? { pam_dead: pd } : {}),
  };
}
/** What the README table says for an upstream fault: cached users served, the rest "try again". */
const SERVED_STALE = { nss_cached: 'found', nss_unknown: 'tryagain', pam_cached: 'ok', pam_unknown: 'AUTHINFO_UNAVAIL' };
const PAST_GRACE = { nss_dead: 'tryagain', pam_dead: 'AUTHINFO_UNAVAIL' };

/** The users the rows use: the example users, minus the password hashes of the ones never cached. */
const USERS = exampleUsers();

// ---- group 1: the upstream misbehaves ----------------------------------------------------------

/**
 * ttl 1 s and stale_grace 6 s: `refreshed` is stale a second after its refetch; `dead`, fetched
 * once at the start, is past its grace for every row after the first seven seconds.
 */
const UPSTREAM_CONF: ConfigOverrides = {
  cache: { ttl: '1s', stale_grace: '6s', refresh_ahead: '0s', negative_ttl: '1s', jitter: '0%', warm_start: 0 },
  upstream: { connect_timeout: '1s', request_timeout: '1s', backoff_max: '1s' },
};

test('fault matrix', { skip, concurrency: true }, async (t) => {
  await Promise.all([
    t.test('upstream faults', upstreamGroup),
    t.test('tls faults', tlsGroup),
    t.test('killed daemon', killedGroup),
    t.test('cache file faults', cacheFileGroup),
    t.test('fd exhaustion', fdGroup),
    t.test('clock jumps', clockGroup),
  ]);
});

async function upstreamGroup(t: import('node:test').TestContext): Promise<void> {
  const env = await startEnv(UPSTREAM_CONF);
  cleanups.push(() => env.stop());
  keepLogs('upstream', env.daemon.logs);
  let service: UserService = env.service;
  const sock = env.shimEnv;
  // dave is fetched once and never again: past ttl + grace (7 s) by the time the rows check him.
  assert.equal((await nss(sock, 'dave')).answer, 'found');
  const deadAt = Date.now() + 7_500;
  /** alice refetched (the upstream healthy), then left to go stale; the fault then set. */
  const stale = async (fault: () => Promise<void> | void): Promise<number> => {
    await sleep(deadAt - Date.now());
    await until('alice fetched fresh', 10_000, async () => (await nss(sock, 'alice')).answer === 'found' && (await status(env.socketDir)).cache.entries.fresh > 0);
    await sleep(1_100);
    const mark = env.daemon.logs.length;
    await fault();
    return mark;
  };
  // Recovered: the upstream is asked again and answers (the hold-off is at most backoff_max,
  // 1 s). A name it does not have, so no row's "unknown" user gets cached by it.
  let probes = 0;
  const answering = async (): Promise<void> => {
    await until('the upstream answers again', 15_000, async () => (await nss(sock, `nobody${++probes}`)).answer === 'notfound');
  };
  const healthy = async (): Promise<void> => {
    service.setFault(null);
    service.setDelay(0);
    await answering();
  };
  const row = async (name: string, fault: () => Promise<void> | void, expect: { state: RegExp; event: RegExp }, heal = healthy): Promise<void> => {
    await t.test(name, async () => {
      const mark = await stale(fault);
      try {
        const got = await seen(sock, { cached: 'alice', unknown: 'bob', dead: 'dave' });
        assert.deepEqual(got, { ...SERVED_STALE, ...PAST_GRACE }, `${name}: ${JSON.stringify(got)}`);
        const s = await status(env.socketDir);
        // the last real request's outcome (health.state is what the health_url GET just saw)
        assert.match(String(s.upstream.health?.last_lookup?.outcome), expect.state, `${name}: status ${JSON.stringify(s.upstream)}`);
        assert.ok(s.cache.entries.stale >= 1, `${name}: alice kept as stale: ${JSON.stringify(s.cache)}`);
        const evs = events(env.daemon, mark).filter((e) => e.level === 'warn' || e.level === 'error').map((e) => `${String(e.event)}:${String(e.error_kind ?? e.reason ?? '')}`);
        assert.ok(evs.some((e) => expect.event.test(e)), `${name}: log ${JSON.stringify(evs)}`);
      } finally {
        await heal();
      }
    });
  };
  await row('upstream down', async () => { await service.close(); }, { state: /^unreachable$/, event: /^resolver\.fetch:connect$/ }, async () => {
    // back up on the same port
    service = await startUserService({ host: '127.0.0.1', port: env.service.port, users: USERS, basicAuth: { user: 'lega', password: 'testpass' }, retryAfterS: 2 });
    cleanups.push(() => service.close());
    await answering();
  });
  await row('upstream slow', () => service.setDelay(3_000), { state: /^unreachable$/, event: /^resolver\.fetch:timeout$/ });
  await row('upstream 5xx', () => service.setFault('5xx'), { state: /^http_error$/, event: /^resolver\.fetch:http$/ });
  await row('upstream 429', () => service.setFault('429'), { state: /^http_error$/, event: /^upstream\.holdoff:the user service asked to wait \(HTTP 429 Retry-After\)/ });
  await t.test('upstream 429: nothing asked during the Retry-After', async () => {
    await stale(() => service.setFault('429'));
    try {
      await nss(sock, 'erin'); // the 429 that starts the hold-off
      const before = service.stats().requests;
      for (const name of ['frank', 'grace', 'alice']) await nss(sock, name);
      assert.equal(service.stats().requests, before, 'requests sent during the hold-off');
      const s = await status(env.socketDir);
      assert.match(JSON.stringify(s.upstream.holdoff), /429/, JSON.stringify(s.upstream));
    } finally {
      await healthy();
    }
  });
  await row('upstream garbage', () => service.setFault('garbage'), { state: /^invalid_reply$/, event: /^resolver\.fetch:json$/ });
  await row('upstream huge', () => service.setFault('huge'), { state: /^invalid_reply$/, event: /^resolver\.fetch:too_large$/ });
  await t.test('upstream flapping', async () => {
    const mark = await stale(() => undefined);
    let on = false;
    const flap = setInterval(() => { on = !on; service.setFault(on ? '5xx' : null); }, 150);
    try {
      const answers: string[] = [];
      for (let i = 0; i < 4; i++) {
        const got = await seen(sock, { cached: 'alice', unknown: i % 2 ? 'heidi' : 'grace', dead: 'dave' });
        answers.push(JSON.stringify(got));
        // alice: fresh or stale, always served; an unknown user fetched or "try again", never "not found"
        assert.equal(got.nss_cached, 'found', JSON.stringify(got));
        assert.equal(got.pam_cached, 'ok', JSON.stringify(got));
        // getent and the module's own call run one after the other: they may see different
        // halves of a flap; neither may say "not found"
        assert.ok(got.nss_unknown !== 'notfound' && !(got.nss_unknown_raw ?? '').includes('"status":"NOTFOUND"'), JSON.stringify(got));
        assert.ok(['ok', 'AUTHINFO_UNAVAIL'].includes(got.pam_unknown!), JSON.stringify(got));
        // dave once refetched while the service was up is fresh again: served; otherwise not
        assert.ok(got.nss_dead !== 'notfound', JSON.stringify(got));
      }
      const evs = named(env.daemon, mark, 'resolver.fetch').filter((e) => e.outcome === 'error');
      assert.ok(evs.length >= 1, `no failed fetch logged while flapping: ${answers.join('\n')}`);
      const s = await status(env.socketDir);
      assert.ok(s.upstream.health !== undefined, JSON.stringify(s.upstream));
    } finally {
      clearInterval(flap);
    }
    await healthy();
  });
}

// ---- group 2: TLS ------------------------------------------------------------------------------

/** openssl without blocking this process: the example user services of the other groups live in it. */
const run = promisify(execFile);

async function certs(dir: string): Promise<{ ca: string; good: string[]; badCa: string[]; expired: string[]; wrongHost: string[] }> {
  const p = (f: string): string => join(dir, f);
  const ssl = async (args: string[], pre: string[] = []): Promise<void> => { await run(pre.length ? pre[0]! : 'openssl', pre.length ? [...pre.slice(1), 'openssl', ...args] : args); };
  await Promise.all(['ca1', 'ca2'].map((ca) => ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p(`${ca}.key`), '-out', p(`${ca}.pem`), '-days', '2', '-subj', `/CN=latchkey fault ${ca}`])));
  const leaf = async (name: string, ca: string, san: string, pre: string[] = []): Promise<string[]> => {
    await ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', '/CN=latchkey fault leaf']);
    writeFileSync(p(`${name}.ext`), `subjectAltName = ${san}\n`);
    await ssl(['x509', '-req', '-in', p(`${name}.csr`), '-CA', p(`${ca}.pem`), '-CAkey', p(`${ca}.key`), '-set_serial', String(Date.now() % 1e9 + name.length), '-out', p(`${name}.pem`), '-days', '1', '-extfile', p(`${name}.ext`)], pre);
    return [p(`${name}.pem`), p(`${name}.key`)];
  };
  chmodSync(dir, 0o755);
  const [good, badCa, expired, wrongHost] = await Promise.all([
    leaf('good', 'ca1', 'IP:127.0.0.1'),
    leaf('badca', 'ca2', 'IP:127.0.0.1'),
    // signed ten days ago for one day: expired for nine
    leaf('expired', 'ca1', 'IP:127.0.0.1', ['faketime', '-f', '-10d']),
    leaf('wronghost', 'ca1', 'DNS:users.example.org'),
  ]);
  chmodSync(p('ca1.pem'), 0o644);
  return { ca: p('ca1.pem'), good: good!, badCa: badCa!, expired: expired!, wrongHost: wrongHost! };
}

async function tlsGroup(t: import('node:test').TestContext): Promise<void> {
  const dir = mkdtempSync(join(work, 'tls-'));
  const c = await certs(mkdtempSync(join(work, 'pki-')));
  const serve = async (pair: string[]): Promise<UserService> => {
    const s = await startUserService({ host: '127.0.0.1', port: 0, users: USERS, basicAuth: { user: 'lega', password: 'testpass' }, tls: { cert: readFileSync(pair[0]!), key: readFileSync(pair[1]!) } });
    cleanups.push(() => s.close());
    return s;
  };
  const [good, badCa, expired, wrongHost] = await Promise.all([serve(c.good), serve(c.badCa), serve(c.expired), serve(c.wrongHost)]);
  const over = (s: UserService): ConfigOverrides => ({
    ...UPSTREAM_CONF,
    upstream: { ...UPSTREAM_CONF.upstream, cacertfile: c.ca, health_url: 'none', by_name_url: `${s.url}/username/`, by_uid_url: `${s.url}/user-id/` },
  });
  const configFile = writeConfig(dir, good.url, over(good));
  const socketDir = join(dir, 'run');
  const daemon = await startDaemon(configFile, socketDir);
  cleanups.push(() => daemon.stop());
  keepLogs('tls', daemon.logs);
  const sock = { LATCHKEY_SOCKET_DIR: socketDir, LD_LIBRARY_PATH: NSS_LIB_DIR, LATCHKEY_DAEMON_USER: String(TEST_DAEMON_UID) };
  const reloadTo = async (s: UserService): Promise<void> => {
    writeConfig(dir, s.url, over(s));
    const mark = daemon.logs.length;
    daemon.proc.kill('SIGHUP');
    await until('config reloaded', 5_000, () => named(daemon, mark, 'config.reloaded').length > 0);
  };
  assert.equal((await nss(sock, 'dave')).answer, 'found');
  const deadAt = Date.now() + 7_500;
  for (const [name, svc, reason] of [
    ['TLS bad CA', badCa, /certificate|self.signed|issuer|verify/i],
    ['TLS expired cert', expired, /expired/i],
    ['TLS wrong host', wrongHost, /altname|host|IP: 127\.0\.0\.1|does not match/i],
  ] as const) {
    await t.test(name, async () => {
      await sleep(deadAt - Date.now());
      await reloadTo(good);
      await until('alice fetched fresh', 10_000, async () => (await nss(sock, 'alice')).answer === 'found' && (await status(socketDir)).cache.entries.fresh > 0);
      await sleep(1_100);
      await reloadTo(svc);
      const mark = daemon.logs.length;
      const got = await seen(sock, { cached: 'alice', unknown: 'bob', dead: 'dave' });
      assert.deepEqual(got, { ...SERVED_STALE, ...PAST_GRACE }, `${name}: ${JSON.stringify(got)}`);
      const s = await status(socketDir);
      assert.equal(s.upstream.health?.state, 'unreachable', JSON.stringify(s.upstream));
      assert.match(String(s.upstream.last_error?.message), reason, JSON.stringify(s.upstream.last_error));
      const fails = named(daemon, mark, 'resolver.fetch').filter((e) => e.outcome === 'error');
      assert.ok(fails.some((e) => reason.test(String(e.error))), `${name}: ${JSON.stringify(fails)}`);
      assert.ok(s.cache.entries.stale >= 1, JSON.stringify(s.cache));
    });
  }
}

// ---- group 3: SIGKILL mid-request ----------------------------------------------------------------

async function killedGroup(t: import('node:test').TestContext): Promise<void> {
  const env = await startEnv({ cache: { jitter: '0%', warm_start: 0 } });
  cleanups.push(() => env.stop());
  const noMap = { ...env.shimEnv, LATCHKEY_NSS_NO_MMAP: '1' };
  await t.test('daemon SIGKILL mid-request', async () => {
    assert.equal((await nss(env.shimEnv, 'alice')).answer, 'found');
    assert.equal(await pam(env.shimEnv, 'alice'), 'ok');
    // A client that stays connected across the restart: lkload, one thread, its pooled
    // connection on nss.sock (no map: every lookup goes to the socket).
    writeFileSync(join(env.dir, 'names'), 'alice\n');
    writeFileSync(join(env.dir, 'nsswitch.conf'), 'passwd: files latchkey\ngroup: files latchkey\n');
    const client = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
      `mount --make-rprivate / && mount --bind ${join(env.dir, 'nsswitch.conf')} /etc/nsswitch.conf && exec ${LKLOAD} rate ${join(env.dir, 'names')} 20 1`],
    { env: { PATH: process.env.PATH!, ...noMap }, stdio: ['pipe', 'pipe', 'pipe'] });
    cleanups.push(() => { if (client.exitCode === null) client.kill('SIGKILL'); });
    const phases: Array<Record<string, number | string>> = [];
    let buf = '';
    client.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) phases.push(JSON.parse(buf.slice(0, i)) as Record<string, number | string>);
    });
    await until('lkload ready', 10_000, () => phases.some((p) => p.ready === 1));
    // A request in flight to a slow upstream when the daemon dies.
    env.service.setDelay(10_000);
    // In flight: the module's own call (lkload probe reports its status and errno; its second
    // call, after the kill, is not looked at) and a getent.
    const inFlight = Promise.all([
      runInNamespace(`${LKLOAD} probe bob`, noMap, { timeoutMs: 20_000 }),
      runInNamespace('getent passwd bob; echo "getent=$?"', noMap, { timeoutMs: 20_000 }),
    ]);
    await sleep(500);
    env.daemon.proc.kill('SIGKILL');
    const t0 = Date.now();
    const [probe, getent] = await inFlight;
    const p = JSON.parse(probe.stdout.trim().split('\n')[0] ?? '{}') as { status: string; errno_name: string };
    assert.ok(['TRYAGAIN', 'UNAVAIL'].includes(p.status) && p.errno_name === 'EAGAIN', `the module's call in flight: ${probe.stdout}`);
    assert.match(getent.stdout, /getent=2/);
    assert.ok(Date.now() - t0 < 6_000, 'the lookups waited past the shim timeout');
    // While no daemon listens (the socket file is still there, nobody accepts: systemd is
    // restarting it), a new lookup is "try again", never "no such user".
    const dead = await runInNamespace(`${LKLOAD} probe alice`, noMap, { timeoutMs: 10_000 });
    const d = JSON.parse(dead.stdout.trim().split('\n')[0] ?? '{}') as { status: string; errno_name: string };
    assert.ok(['TRYAGAIN', 'UNAVAIL'].includes(d.status) && d.errno_name === 'EAGAIN', `a lookup while no daemon listens: ${dead.stdout}`);
    client.stdin!.write('before-restart\n');
    // Restarted with the upstream still hanging: only the surviving cache file can answer alice.
    env.service.setFault('hang');
    const mark0 = 0;
    env.daemon = await startDaemon(env.configFile, env.socketDir);
    keepLogs('killed: restarted', env.daemon.logs);
    const got = await seen(env.shimEnv, { cached: 'alice', unknown: 'bob' });
    assert.deepEqual(got, { nss_cached: 'found', nss_unknown: 'tryagain', pam_cached: 'ok', pam_unknown: 'AUTHINFO_UNAVAIL' }, JSON.stringify(got));
    assert.ok(named(env.daemon, mark0, 'daemon.ready').length === 1);
    const s = await status(env.socketDir);
    assert.ok(s.cache.entries.fresh >= 1 && s.pid === env.daemon.pid, JSON.stringify(s.cache));
    // The connected client reconnects: its lookups of alice succeed again.
    await sleep(2_500);
    client.stdin!.write('after-restart\n');
    await until('lkload phase after the restart', 5_000, () => phases.some((p) => p.phase === 'after-restart'));
    client.stdin!.end();
    const afterPhase = phases.find((p) => p.phase === 'after-restart')!;
    assert.ok(Number(afterPhase.found) > 0, `lkload after the restart: ${JSON.stringify(afterPhase)}`);
    assert.equal(Number(afterPhase.notfound), 0, `"not found" after the restart: ${JSON.stringify(afterPhase)}`);
    env.service.setFault(null);
    env.service.setDelay(0);
  });
}

// ---- group 4: the cache file ---------------------------------------------------------------------

/**
 * latchkeyd started through `argv` (a wrapper that ends by exec'ing it, so the pid is the
 * daemon's), waited for until it answers PING.
 */
async function spawnDaemon(argv: string[], socketDir: string): Promise<DaemonProc> {
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  let buf = '';
  proc.stderr!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) logs.push(buf.slice(0, i));
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  keepLogs(argv.join(' '), logs);
  const daemon: DaemonProc = {
    proc, pid: proc.pid!, logs, exited,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const tm = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(tm);
    },
  };
  cleanups.push(() => daemon.stop());
  await until('latchkeyd started', 15_000, async () => {
    if (proc.exitCode !== null) assert.fail(`latchkeyd exited:\n${logs.join('\n')}`);
    try { return (await request(join(socketDir, 'nss.sock'), 'PING', {}, 1000)).status === 0; } catch { return false; }
  });
  return daemon;
}

/** A daemon whose cache directory is a 1 MiB tmpfs of its own (mounted in its mount namespace). */
async function startOnTinyTmpfs(dir: string, serviceUrl: string): Promise<{ daemon: DaemonProc; cacheDir: string; socketDir: string; configFile: string }> {
  const cacheDir = join(dir, 'cachefs');
  const socketDir = join(dir, 'run');
  const configFile = writeConfig(dir, serviceUrl, { cache: { db_path: join(cacheDir, 'cache.db'), jitter: '0%', warm_start: 0 } });
  mkdirSync(cacheDir, { recursive: true });
  const daemon = await spawnDaemon(['unshare', '-m', '--propagation', 'private', 'sh', '-c',
    `mount -t tmpfs -o size=1m,mode=0700,uid=${TEST_DAEMON_UID},gid=${TEST_DAEMON_UID} latchkey-faults ${cacheDir} && exec ${process.execPath} ${LATCHKEYD} --config ${configFile}`], socketDir);
  return { daemon, cacheDir, socketDir, configFile };
}

/** The users in the cache file as its own SQLite reader sees them (the daemon's view is its memo). */
function usersInFile(file: string): string[] {
  // A copy, file and WAL: SQLite resolves the /proc/PID/root symlink in the path to "/", which
  // is this namespace's root, where the daemon's tmpfs is not mounted.
  const copy = mkdtempSync(join(work, 'copy-'));
  try {
    for (const suffix of ['', '-wal']) if (existsSync(file + suffix)) writeFileSync(join(copy, `c.db${suffix}`), readFileSync(file + suffix));
    const db = new Database(join(copy, 'c.db'), { fileMustExist: true });
    try { return (db.prepare('SELECT name FROM users ORDER BY name').pluck().all() as string[]); } finally { db.close(); }
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}

async function cacheFileGroup(t: import('node:test').TestContext): Promise<void> {
  const dir = mkdtempSync(join(work, 'cachefile-'));
  chmodSync(dir, 0o755);
  const service = await startUserService({ host: '127.0.0.1', port: 0, users: USERS, basicAuth: { user: 'lega', password: 'testpass' } });
  cleanups.push(() => service.close());
  const { daemon, cacheDir, socketDir } = await startOnTinyTmpfs(dir, service.url);
  // The tmpfs as the daemon sees it (it lives in the daemon's mount namespace only).
  const fs = `/proc/${daemon.pid}/root${cacheDir}`;
  const file = join(fs, 'cache.db');
  const sock = { LATCHKEY_SOCKET_DIR: socketDir, LD_LIBRARY_PATH: NSS_LIB_DIR, LATCHKEY_DAEMON_USER: String(TEST_DAEMON_UID) };
  const ok = { nss_cached: 'found', nss_unknown: 'found', pam_cached: 'ok', pam_unknown: 'ok' };

  await t.test('cache file deleted', async () => {
    assert.equal(await pam(sock, 'alice'), 'ok');
    const mark = daemon.logs.length;
    for (const f of readdirSync(fs)) if (f.startsWith('cache.db')) unlinkSync(join(fs, f));
    // The next write (bob's fetch) notices; the sweep would too, without one.
    const got = await seen(sock, { cached: 'alice', unknown: 'bob' });
    assert.deepEqual(got, ok, JSON.stringify(got));
    const s = await status(socketDir);
    assert.match(String(s.cache.recreated?.reason), /deleted/, JSON.stringify(s.cache));
    assert.equal(named(daemon, mark, 'cache.recreated').length, 1, JSON.stringify(events(daemon, mark)));
    assert.deepEqual(usersInFile(file).filter((n) => n === 'alice' || n === 'bob'), ['alice', 'bob'], 'alice carried over into the new file');
  });

  await t.test('cache file corrupted', async () => {
    const mark = daemon.logs.length;
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 0);
    closeSync(fd);
    const got = await seen(sock, { cached: 'bob', unknown: 'carol' });
    assert.deepEqual(got, ok, JSON.stringify(got));
    const s = await status(socketDir);
    assert.match(String(s.cache.recreated?.reason), /overwritten|corrupt/, JSON.stringify(s.cache));
    assert.equal(named(daemon, mark, 'cache.recreated').length, 1, JSON.stringify(events(daemon, mark)));
    assert.ok(existsSync(`${file}.bad`), 'the corrupt file kept aside for a post-mortem');
    assert.deepEqual(usersInFile(file).filter((n) => ['alice', 'bob', 'carol'].includes(n)), ['alice', 'bob', 'carol']);
  });

  await t.test('cache filesystem full', async () => {
    const filler = join(fs, 'filler');
    // Every byte taken (again before each lookup: a checkpoint may free a few pages).
    const mark = daemon.logs.length;
    const fill = (): void => {
      for (const size of [65536, 4096, 512]) {
        const fd = openSync(filler, 'a');
        try { for (;;) writeSync(fd, Buffer.alloc(size)); } catch { /* ENOSPC at this size */ } finally { closeSync(fd); }
      }
    };
    // New users while nothing can be written: answered from memory, not "unavailable". Users
    // with 100 keys each (~11 KiB, overflow pages) so that the file must grow: a small row fits
    // in free pages, and the first failures make room (rows past grace, the WAL checkpointed and
    // truncated) until nothing is left to free. Asked over nss.sock directly (fast), until the
    // daemon logs that the file refuses writes.
    const key = USERS[0]!.sshPublicKeys![0]!.split(' ').slice(0, 2).join(' ');
    const big = (i: number): typeof USERS[number] => ({
      username: `full${i}`, uid: 3000 + i, passwordHash: USERS[4]!.passwordHash, gecos: 'fault matrix '.repeat(70),
      sshPublicKeys: Array.from({ length: 100 }, (_, k) => `${key} key-${k}-of-full${i}-${'x'.repeat(40)}`),
    });
    const extra = Array.from({ length: 120 }, (_, i) => big(i));
    for (const u of extra) service.addUser(u);
    fill();
    let n = 0;
    for (; n < extra.length && named(daemon, mark, 'cache.write_failed').length === 0; n++) {
      const r = await request(join(socketDir, 'nss.sock'), 'PW_BY_NAME', { name: extra[n]!.username });
      assert.equal(r.status, 0, `${extra[n]!.username} with the tmpfs full: ${r.detail}`);
    }
    let s = await status(socketDir);
    assert.equal(s.cache.write_error?.code, 'SQLITE_FULL', JSON.stringify(s.cache));
    assert.match(String(s.cache.write_error?.fix), /full/);
    const fetched = extra.slice(0, n).map((u) => u.username);
    assert.equal((await nss(sock, extra[n]!.username)).answer, 'found', 'a new user while the file is full');
    fetched.push(extra[n]!.username);
    // more new users, and the cached ones, while it stays full
    const got = await seen(sock, { cached: 'alice', unknown: 'grace' });
    assert.deepEqual(got, ok, JSON.stringify(got));
    assert.equal(await pam(sock, 'erin'), 'ok');
    s = await status(socketDir);
    assert.equal(s.cache.write_error?.code, 'SQLITE_FULL', JSON.stringify(s.cache));
    assert.ok((s.cache.held_in_memory ?? 0) >= 2, JSON.stringify(s.cache));
    // once per state change, not once per lookup
    assert.equal(named(daemon, mark, 'cache.write_failed').length, 1, JSON.stringify(named(daemon, mark, 'cache.write_failed')));
    // Room again: the next write succeeds, the error clears itself, the held users are written.
    rmSync(filler);
    assert.equal((await nss(sock, 'heidi')).answer, 'found');
    s = await status(socketDir);
    assert.equal(s.cache.write_error ?? null, null, JSON.stringify(s.cache));
    assert.equal(s.cache.held_in_memory ?? 0, 0);
    assert.equal(named(daemon, mark, 'cache.write_recovered').length, 1);
    const inFile = usersInFile(file);
    for (const name of [...fetched, 'erin', 'grace', 'heidi']) assert.ok(inFile.includes(name), `${name} written once there was room: ${inFile.join(',')}`);
  });
}

// ---- group 5: fd exhaustion ----------------------------------------------------------------------

/** Holds `n` connections to nss.sock as uid 65534 (an unprivileged local user); prints "held N". */
const HOLDER = `
const net = require('node:net');
const [path, n] = [process.argv[1], Number(process.argv[2])];
let open = 0;
for (let i = 0; i < n; i++) {
  const c = net.createConnection(path);
  c.on('connect', () => { open++; });
  c.on('error', () => {});
}
setTimeout(() => { console.log('held ' + open); }, 1500);
setInterval(() => {}, 1000);
`;

/** The daemon's open-file limit: its listeners, cache, map, logs and ~100 connections. */
const FD_LIMIT = 80;

async function fdGroup(t: import('node:test').TestContext): Promise<void> {
  const dir = mkdtempSync(join(work, 'fds-'));
  chmodSync(dir, 0o755);
  const service = await startUserService({ host: '127.0.0.1', port: 0, users: USERS, basicAuth: { user: 'lega', password: 'testpass' } });
  cleanups.push(() => service.close());
  const configFile = writeConfig(dir, service.url, { cache: { jitter: '0%', warm_start: 0 } });
  const socketDir = join(dir, 'run');
  // Started with a small RLIMIT_NOFILE (prlimit execs it: the pid is the daemon's). Changing a
  // running daemon's limit (prlimit --pid) needs CAP_SYS_RESOURCE over another uid's process.
  const daemon = await spawnDaemon(['prlimit', `--nofile=${FD_LIMIT}:${FD_LIMIT}`, process.execPath, LATCHKEYD, '--config', configFile], socketDir);
  const sock = { LATCHKEY_SOCKET_DIR: socketDir, LD_LIBRARY_PATH: NSS_LIB_DIR, LATCHKEY_DAEMON_USER: String(TEST_DAEMON_UID) };
  await t.test('fd exhaustion', async () => {
    assert.equal(await pam(sock, 'alice'), 'ok');
    // A connection root opened before: it must keep working.
    const kept = await new Promise<Socket>((resolve, reject) => { const c = createConnection(join(socketDir, 'nss.sock')); c.once('connect', () => resolve(c)); c.once('error', reject); });
    cleanups.push(() => kept.destroy());
    const mark = daemon.logs.length;
    const holder: ChildProcess = spawn('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, '-e', HOLDER, join(socketDir, 'nss.sock'), String(2 * FD_LIMIT)], { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push(() => { if (holder.exitCode === null) holder.kill('SIGKILL'); });
    let out = '';
    holder.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    await until('the holder connected', 10_000, () => /held \d+/.test(out));
    await until('descriptors low', 5_000, () => named(daemon, mark, 'socket.fds_low').length > 0);
    // alive, its old connection answers
    assert.equal(daemon.proc.exitCode, null, 'the daemon died');
    const reply = await new Promise<Buffer>((resolve) => { kept.once('data', resolve); kept.write(encodeRequest('PW_BY_NAME', { name: 'alice' })); });
    assert.ok(reply.length > 4, 'the connection opened before answers');
    // root's PAM (priv.sock) and NSS get descriptors: idle connections of the flooding uid go
    const got = await seen(sock, { cached: 'alice', unknown: 'bob' });
    assert.equal(got.nss_cached, 'found', JSON.stringify(got));
    assert.equal(got.pam_cached, 'ok', JSON.stringify(got));
    assert.ok(got.nss_unknown === 'found' || got.nss_unknown === 'tryagain', `never "not found": ${JSON.stringify(got)}`);
    assert.ok(got.pam_unknown === 'ok' || got.pam_unknown === 'AUTHINFO_UNAVAIL', JSON.stringify(got));
    const lines = named(daemon, mark, 'socket.fds_low');
    assert.equal(lines.length, 1, `rate-limited: ${JSON.stringify(lines)}`);
    assert.ok(Number(lines[0]!.shed_idle) > 0, JSON.stringify(lines[0]));
    assert.match(String(lines[0]!.fix), /LimitNOFILE/);
    const s = await status(socketDir);
    assert.ok(s.cache.entries.total >= 1);
    holder.kill('SIGKILL');
  });
}

// ---- group 6: clock jumps ------------------------------------------------------------------------

async function clockGroup(t: import('node:test').TestContext): Promise<void> {
  const dir = mkdtempSync(join(work, 'clock-'));
  chmodSync(dir, 0o755);
  const service = await startUserService({ host: '127.0.0.1', port: 0, users: USERS, basicAuth: { user: 'lega', password: 'testpass' } });
  cleanups.push(() => service.close());
  const stamp = join(dir, 'faketime');
  writeFileSync(stamp, '+0\n', { mode: 0o644 });
  // ttl 10 min, grace 10 min: alice is servable for 20 minutes of the daemon's clock.
  const configFile = writeConfig(dir, service.url, { cache: { ttl: '10m', stale_grace: '10m', refresh_ahead: '0s', jitter: '0%', warm_start: 0 }, upstream: { backoff_max: '1s' } });
  const socketDir = join(dir, 'run');
  const daemon = await startDaemon(configFile, socketDir, {
    LD_PRELOAD: FAKETIME_LIB, FAKETIME_TIMESTAMP_FILE: stamp, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1',
  });
  cleanups.push(() => daemon.stop());
  keepLogs('clock', daemon.logs);
  // No map: its expiries are wall-clock times that the readers (not under faketime) judge by
  // their own clock; on a real host both clocks step together.
  const sock = { LATCHKEY_SOCKET_DIR: socketDir, LD_LIBRARY_PATH: NSS_LIB_DIR, LATCHKEY_DAEMON_USER: String(TEST_DAEMON_UID), LATCHKEY_NSS_NO_MMAP: '1' };
  assert.equal((await nss(sock, 'alice')).answer, 'found');
  service.setFault('5xx');
  const jump = async (offset: string): Promise<number> => {
    const mark = daemon.logs.length;
    writeFileSync(stamp, `${offset}\n`);
    return mark;
  };
  await t.test('clock jump forward', async () => {
    // +15 min: alice expired, within her grace: served stale while the upstream fails
    let mark = await jump('+15m');
    let s = await status(socketDir);
    assert.equal(s.clock?.last_jump?.direction, 'forward', JSON.stringify(s.clock));
    assert.ok(Math.abs(s.clock!.last_jump!.delta_ms - 15 * 60_000) < 30_000, JSON.stringify(s.clock));
    assert.equal(named(daemon, mark, 'clock.jump').length, 1);
    let got = await seen(sock, { cached: 'alice', unknown: 'bob' });
    assert.deepEqual(got, SERVED_STALE, JSON.stringify(got));
    // +25 min: past ttl + grace: never served, "try again"
    mark = await jump('+25m');
    s = await status(socketDir);
    assert.equal(s.clock?.jumps, 2, JSON.stringify(s.clock));
    assert.equal(named(daemon, mark, 'clock.jump').length, 1);
    got = await seen(sock, { cached: 'carol', unknown: 'bob', dead: 'alice' });
    assert.equal(got.nss_dead, 'tryagain', JSON.stringify(got));
    assert.equal(got.pam_dead, 'AUTHINFO_UNAVAIL', JSON.stringify(got));
  });
  await t.test('clock jump back', async () => {
    // Back to the start, alice fetched again (fresh), then the clock 1 h back. Her times move back
    // with it: she stays fresh for her real ttl (not asked upstream), then is served stale for
    // her real grace, then never: not for an hour longer (the step).
    service.setFault(null);
    await jump('+0');
    // That was a step back of 25 min too: status looks at the clocks, so the cached times move
    // now (alice's with them: past her grace) and she is fetched again below.
    await status(socketDir);
    await until('alice refetched', 10_000, async () => (await nss(sock, 'alice')).answer === 'found' && (await status(socketDir)).cache.entries.fresh > 0);
    service.setFault('5xx');
    let mark = await jump('-60m');
    const s = await status(socketDir);
    assert.equal(s.clock?.last_jump?.direction, 'back', JSON.stringify(s.clock));
    assert.equal(named(daemon, mark, 'clock.jump').length, 1);
    assert.ok(named(daemon, mark, 'cache.clock_shifted').some((e) => Number(e.users) >= 1), 'the cached times moved with the clock');
    const asked = service.stats().byPath['/username/alice'] ?? 0;
    assert.equal((await nss(sock, 'alice')).answer, 'found');
    assert.equal(service.stats().byPath['/username/alice'] ?? 0, asked, 'still fresh by her real age: not asked upstream');
    // 15 min of her own time later: expired, within her grace: served stale
    mark = await jump('-45m');
    let got = await seen(sock, { cached: 'alice', unknown: 'bob' });
    assert.deepEqual(got, SERVED_STALE, JSON.stringify(got));
    // 25 min: past her ttl + grace (20 min), though an hour short of the old clock's: never served
    mark = await jump('-35m');
    got = await seen(sock, { cached: 'carol', unknown: 'bob', dead: 'alice' });
    assert.equal(got.nss_dead, 'tryagain', JSON.stringify(got));
    assert.equal(got.pam_dead, 'AUTHINFO_UNAVAIL', JSON.stringify(got));
  });
}

// ---- the README's table and these tests --------------------------------------------------------

test('every row of the README "Fault matrix" table has a test here', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = /^## Fault matrix\n([\s\S]*?)(?=^## )/m.exec(readme);
  assert.ok(section, 'README.md has a "## Fault matrix" section');
  const rows = section[1]!.split('\n').filter((l) => /^\| [^-]/.test(l)).slice(1).map((l) => l.split('|')[1]!.trim());
  const self = readFileSync(new URL(import.meta.url), 'utf8');
  assert.ok(rows.length >= 17, rows.join(', '));
  for (const row of rows) assert.ok(self.includes(`'${row}'`), `no test named '${row}' in fault-matrix.test.ts`);
});
