// Login throttling end to end: many pamtester runs at once through the real pam_latchkey.so and
// the real latchkeyd (each in its own private mount namespace, test/lib/pam.ts), counted from
// the daemon's own log; then the real bin/latchkeyctl lists the lockout and lifts it.
// The regression: the old throttle counted failures only after verification, so every attempt
// of a parallel burst passed the gate (40 parallel wrong passwords were all checked), and a
// right password in the burst reset the user's count.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startEnv, examplePasswords, ROOT, type TestEnv } from '../lib/harness.js';
import { latchkeyStack, makePamDir, pamtester, PamMsg, type NsResult } from '../lib/pam.js';
import { MAX_CHECKS_IN_FLIGHT_PER_HOST } from '../../src/answers/priv-auth.js';

const SVC = 'latchkey-throttle';
const CTL = join(ROOT, 'bin/latchkeyctl');
const MAX_FAILURES = 5;
const HOST_MAX_FAILURES = 20;
const passwords = examplePasswords();

let env: TestEnv;
let pamDir: string;

before(async () => {
  env = await startEnv({
    pam: { max_failures: MAX_FAILURES, host_max_failures: HOST_MAX_FAILURES, throttle_window: '10m', throttle_lockout: '10m' },
  });
  pamDir = makePamDir(env.dir, { [SVC]: latchkeyStack() });
  mkdirSync(join(env.dir, 'homes'), { recursive: true, mode: 0o755 });
});
after(async () => { await env?.stop(); });

type Outcome = 'ok' | 'AUTH_ERR' | 'MAXTRIES' | string;
function outcome(r: NsResult): Outcome {
  if (r.code === 0) return 'ok';
  if (r.stdout.includes(PamMsg.MAXTRIES)) return 'MAXTRIES';
  if (r.stdout.includes(PamMsg.AUTH_ERR)) return 'AUTH_ERR';
  // more than MAX_CHECKS_IN_FLIGHT_PER_HOST at once from one address: "try again"
  if (r.stdout.includes(PamMsg.AUTHINFO_UNAVAIL)) return 'UNAVAIL';
  return `other: ${r.stdout}${r.stderr}`;
}

function login(user: string, password: string, rhost: string): Promise<NsResult> {
  return pamtester(pamDir, env.shimEnv, SVC, user, ['authenticate'], { input: `${password}\n`, items: { rhost } });
}

interface LogLine { event?: string; user?: string; rhost?: string; result?: string; scope?: string; key?: string; refused?: number; failures?: number; reason?: string }
function logLines(pred: (e: LogLine) => boolean): LogLine[] {
  const out: LogLine[] = [];
  for (const line of env.daemon.logs) {
    try {
      const e = JSON.parse(line) as LogLine;
      if (pred(e)) out.push(e);
    } catch { /* not a log line */ }
  }
  return out;
}
/** Wrong passwords the daemon actually verified for this user (or from this host). */
const checkedWrong = (f: { user?: string; rhost?: string }): number =>
  logLines((e) => e.event === 'auth.result' && e.result === 'wrong_password'
    && (f.user === undefined || e.user === f.user) && (f.rhost === undefined || e.rhost === f.rhost)).length;

function ctl(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // Never spawnSync: the example user service runs in this process and must keep answering.
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CTL, '--socket-dir', env.socketDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('40 parallel attempts for one user: at most max_failures are checked; a right one in the burst resets nothing', { timeout: 120_000 }, async () => {
  const N = 40;
  const RIGHT_AT = 12;
  const runs = await Promise.all(Array.from({ length: N }, (_, i) =>
    login('alice', i === RIGHT_AT ? passwords.alice! : `wrong guess ${i}`, `198.51.100.${i % 4 + 1}`)));
  const seen = runs.map(outcome);
  const tally: Record<string, number> = {};
  for (const s of seen) tally[s] = (tally[s] ?? 0) + 1;
  const checked = checkedWrong({ user: 'alice' });
  process.stdout.write(`# ${N} parallel pamtester runs for alice (1 right password): ${JSON.stringify(tally)}; wrong passwords checked by latchkeyd: ${checked}\n`);
  assert.ok(checked <= MAX_FAILURES, `latchkeyd checked ${checked} wrong passwords, max_failures is ${MAX_FAILURES}`);
  assert.equal(checked, MAX_FAILURES, 'the budget is used, then the user is locked');
  assert.equal(tally.AUTH_ERR, checked, JSON.stringify(tally));
  assert.equal((tally.MAXTRIES ?? 0) + (tally.AUTH_ERR ?? 0) + (tally.ok ?? 0) + (tally.UNAVAIL ?? 0), N, JSON.stringify(seen));
  // One lockout line, one refusal line (the rest are counted for the next summary).
  const lockouts = logLines((e) => e.event === 'auth.lockout' && e.key === 'alice');
  assert.deepEqual(lockouts.map((e) => [e.scope, e.failures]), [['user', MAX_FAILURES]]);
  const refusals = logLines((e) => e.event === 'auth.throttled' && e.key === 'alice');
  assert.equal(refusals.length, 1, JSON.stringify(refusals));
  assert.equal(refusals[0]!.scope, 'user');
  // Whether or not the right password came through in the burst, the count stood: locked.
  assert.equal(outcome(await login('alice', passwords.alice!, '198.51.100.9')), 'MAXTRIES');
  assert.equal(logLines((e) => e.event === 'auth.throttled' && e.key === 'alice').length, 1, 'refusals within a minute are not logged one by one');
});

test('a right password between failures does not reset the count', { timeout: 60_000 }, async () => {
  // Each attempt from its own address: only the user's budget is at play.
  const from = (i: number): string => `198.51.100.${20 + i}`;
  for (let i = 0; i < 3; i++) assert.equal(outcome(await login('dave', `wrong ${i}`, from(i))), 'AUTH_ERR');
  assert.equal(outcome(await login('dave', passwords.dave!, from(3))), 'ok');
  assert.equal(outcome(await login('dave', 'wrong 3', from(4))), 'AUTH_ERR');
  assert.equal(outcome(await login('dave', 'wrong 4', from(5))), 'AUTH_ERR');
  // Five failures in the window, the right password between them notwithstanding.
  assert.equal(outcome(await login('dave', passwords.dave!, from(6))), 'MAXTRIES');
});

test('latchkeyctl throttle lists the lockout; throttle reset USER lifts it and the right password works', { timeout: 60_000 }, async () => {
  const piped = await ctl(['throttle']);
  assert.equal(piped.code, 0, piped.stderr);
  const row = piped.stdout.split('\n').find((l) => l.startsWith('user\talice\t'));
  assert.ok(row, piped.stdout);
  const cells = row.split('\t');
  assert.deepEqual(cells.slice(0, 5), ['user', 'alice', String(MAX_FAILURES), String(MAX_FAILURES), '0']);
  assert.match(cells[6]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'LOCKED_UNTIL');
  assert.ok(Number(cells[7]) >= 1, 'REFUSED');
  const j = await ctl(['throttle', '--json']);
  assert.equal(j.code, 0, j.stderr);
  const listing = JSON.parse(j.stdout) as { max_failures: number; entries: Array<Record<string, unknown>>; counters: Record<string, number> };
  assert.equal(listing.max_failures, MAX_FAILURES);
  const alice = listing.entries.find((e) => e.scope === 'user' && e.key === 'alice')!;
  assert.equal(typeof alice.locked_until, 'number');
  assert.ok((alice.retry_after_s as number) > 500);
  assert.ok(listing.counters.lockouts >= 1);

  const r = await ctl(['throttle', 'reset', 'alice']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(logLines((e) => e.event === 'admin.throttle_reset' && e.user === 'alice').length, 1);
  const after = JSON.parse((await ctl(['throttle', '--json'])).stdout) as { entries: Array<Record<string, unknown>> };
  assert.ok(!after.entries.some((e) => e.scope === 'user' && e.key === 'alice'), JSON.stringify(after.entries));
  assert.equal(outcome(await login('alice', passwords.alice!, '198.51.100.9')), 'ok');
  const again = await ctl(['throttle', 'reset', 'alice']);
  assert.equal(again.code, 1, 'nothing recorded any more');
  assert.match(again.stderr, /no failures recorded for user alice/);
  assert.equal((await ctl(['throttle', 'reset'])).code, 2);
  assert.equal((await ctl(['throttle', '--all'])).code, 2, '--all belongs to reset');
  const help = await ctl(['throttle', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: latchkeyctl throttle/);
  assert.match((await ctl(['--help'])).stdout, /throttle reset USER \| --host RHOST \| --all/);
  assert.equal((await ctl(['throttle', 'reset', 'alice', '--all'])).code, 2);
});

test('one address gets at most MAX_CHECKS_IN_FLIGHT_PER_HOST password checks at once; the rest "try again", logged once', { timeout: 60_000 }, async () => {
  const rhost = '203.0.113.77';
  const runs = await Promise.all(Array.from({ length: 16 }, (_, i) => login('ivan', `burst ${i}`, rhost)));
  const seen = runs.map(outcome);
  const unavail = seen.filter((o) => o === 'UNAVAIL').length;
  assert.ok(unavail >= 16 - 2 * MAX_CHECKS_IN_FLIGHT_PER_HOST, JSON.stringify(seen));
  assert.ok(checkedWrong({ rhost }) <= MAX_FAILURES);
  assert.equal(logLines((e) => e.event === 'auth.host_busy' && e.rhost === rhost).length, 1, 'rate-limited');
  await ctl(['throttle', 'reset', '--all']);
});

test('per source address: a separate budget; its lockout refuses other users, says so in the log, and reset --host lifts it', { timeout: 120_000 }, async () => {
  const rhost = '203.0.113.9';
  const attacked = ['bob', 'carol', 'erin', 'frank', 'grace', 'heidi'];
  // In waves of MAX_CHECKS_IN_FLIGHT_PER_HOST: more at once from one address are answered
  // "try again" before the throttle (tested below).
  const attempts = attacked.flatMap((u) => Array.from({ length: 5 }, (_, i) => [u, `guess ${u} ${i}`] as const));
  const runs: NsResult[] = [];
  for (let i = 0; i < attempts.length; i += MAX_CHECKS_IN_FLIGHT_PER_HOST) {
    runs.push(...await Promise.all(attempts.slice(i, i + MAX_CHECKS_IN_FLIGHT_PER_HOST).map(([u, p]) => login(u, p, rhost))));
  }
  const checked = checkedWrong({ rhost });
  process.stdout.write(`# 30 parallel wrong passwords from one address over 6 users: ${checked} checked (host_max_failures ${HOST_MAX_FAILURES})\n`);
  assert.ok(checked <= HOST_MAX_FAILURES, `latchkeyd checked ${checked} wrong passwords from ${rhost}`);
  assert.equal(runs.filter((r) => outcome(r) === 'AUTH_ERR').length, checked);
  const lock = logLines((e) => e.event === 'auth.lockout' && e.scope === 'host');
  assert.deepEqual(lock.map((e) => [e.key, e.failures]), [[rhost, HOST_MAX_FAILURES]]);

  // An innocent user's right password from that address: refused, and the log says why.
  assert.equal(outcome(await login('alice', passwords.alice!, rhost)), 'MAXTRIES');
  const why = logLines((e) => e.event === 'auth.throttled' && e.scope === 'host' && e.key === rhost);
  assert.ok(why.length >= 1 && why.length <= 2, JSON.stringify(why));
  // From elsewhere alice is not affected.
  assert.equal(outcome(await login('alice', passwords.alice!, '203.0.113.10')), 'ok');

  const list = JSON.parse((await ctl(['throttle', '--json'])).stdout) as { entries: Array<Record<string, unknown>> };
  const host = list.entries.find((e) => e.scope === 'host' && e.key === rhost)!;
  assert.deepEqual([host.failures, host.limit, typeof host.locked_until], [HOST_MAX_FAILURES, HOST_MAX_FAILURES, 'number']);
  const r = await ctl(['throttle', 'reset', '--host', rhost]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(logLines((e) => e.event === 'admin.throttle_reset' && (e as { host?: string }).host === rhost).length, 1);
  assert.equal(outcome(await login('alice', passwords.alice!, rhost)), 'ok');

  const all = await ctl(['throttle', 'reset', '--all', '--json']);
  assert.equal(all.code, 0, all.stderr);
  assert.ok((JSON.parse(all.stdout) as { users: number }).users >= 1, 'the attacked users had failures');
  const empty = await ctl(['throttle']);
  assert.equal(empty.stdout, '', 'nothing left (TSV prints no header)');
});
