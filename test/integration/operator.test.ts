// Issue 18's operator commands end to end: real pamtester logins through pam_latchkey.so against
// the real latchkeyd, then the real bin/latchkeyctl explains them (`why`); `flush NAME`; host
// accounts and the deny list answered as "not managed by latchkey" (exit 4); --json failures as
// one {"ok": false, "error", "code"} object on stdout; piped listings hold exactly the columns
// their --help documents.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startEnv, examplePasswords, latchkeyctl, request, type TestEnv } from '../lib/harness.js';
import { latchkeyStack, makePamDir, pamtester, PamMsg } from '../lib/pam.js';
import { COMMAND_HELP } from '../../src/cli/help.js';

const SVC = 'latchkey-why';
const passwords = examplePasswords();
let env: TestEnv;
let pamDir: string;

before(async () => {
  env = await startEnv({ users: { deny_names: 'erin' }, pam: { max_failures: 5 } });
  pamDir = makePamDir(env.dir, { [SVC]: latchkeyStack() });
  mkdirSync(join(env.dir, 'homes'), { recursive: true, mode: 0o755 });
});
after(async () => { await env?.stop(); });

const ctl = (args: string[]) => latchkeyctl(env.socketDir, args);
async function json(args: string[], code = 0): Promise<Record<string, any>> {
  const r = await ctl([...args, '--json']);
  assert.equal(r.code, code, `latchkeyctl ${args.join(' ')} --json: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, any>;
}
const login = (user: string, password: string, ops: string[]) =>
  pamtester(pamDir, env.shimEnv, SVC, user, ops, { input: `${password}\n`, items: { rhost: '192.0.2.7', tty: 'ssh' } });

test('why: "nothing recorded" before any login, then each PAM phase of a real login, with hash, throttle and session', async () => {
  // Nothing yet: a clear answer, exit 1, and since when records are kept.
  const none = await ctl(['why', 'alice']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /nothing recorded for alice since latchkeyd started/);
  const noneJson = await json(['why', 'alice'], 1);
  assert.equal(noneJson.ok, false);
  assert.equal(noneJson.code, 'not_found');
  assert.equal(typeof noneJson.since, 'number');

  // A wrong password: refused, recorded with the hash kind and cost, and the throttle counts it.
  const bad = await login('alice', 'not her password', ['authenticate']);
  assert.match(bad.stdout, new RegExp(PamMsg.AUTH_ERR));
  let w = await json(['why', 'alice']);
  assert.equal(w.served, true);
  assert.equal(w.phases.login_check.result, 'served');
  assert.equal(w.phases.login_check.uid, 11001);
  assert.equal(w.phases.auth_password.result, 'wrong_password');
  assert.deepEqual(w.phases.auth_password.hash, { kind: 'bcrypt', cost: 10, cost_name: 'cost' });
  assert.equal(w.phases.auth_password.rhost, '192.0.2.7');
  assert.equal(w.phases.auth_password.service, SVC);
  assert.equal(w.throttle.failures, 1);
  assert.equal(w.throttle.limit, 5);
  assert.equal(w.phases.session_open, null);
  assert.equal(w.session, null);

  // The right password, the account phase and a session opened and closed.
  const good = await login('alice', passwords.alice!, ['authenticate', 'acct_mgmt', 'open_session', 'close_session']);
  assert.equal(good.code, 0, good.stdout);
  w = await json(['why', 'alice']);
  assert.equal(w.phases.auth_password.result, 'ok');
  assert.ok(['cache', 'upstream'].includes(w.phases.auth_password.source), w.phases.auth_password.source);
  assert.equal(w.phases.acct_mgmt.result, 'active');
  assert.equal(w.phases.session_open.result, 'opened');
  const id = w.phases.session_open.session_id as string;
  assert.match(id, /\S/);
  assert.deepEqual({ id: w.session.id, state: w.session.state, end_reason: w.session.end_reason }, { id, state: 'ended', end_reason: 'closed' });
  assert.equal(w.account.state, 'active');
  assert.equal(w.account.cache_state, 'fresh');
  // The failure before the right password stays counted (a right password clears nothing).
  assert.equal(w.throttle.failures, 1);
  // Never a secret: no password, no hash.
  const text = JSON.stringify(w);
  assert.ok(!text.includes(passwords.alice!) && !text.includes('not her password') && !text.includes('$2b$'), text);

  // Piped: one key<TAB>value line per fact, times exact.
  const piped = await ctl(['why', 'alice']);
  assert.equal(piped.code, 0, piped.stderr);
  assert.match(piped.stdout, /^password\tok \d{4}-\d\d-\d\dT[\d:]+Z from 192\.0\.2\.7 \(latchkey-why\): password accepted; bcrypt \(cost 10\), source /m);
  assert.match(piped.stdout, new RegExp(`^session now\\t${id} ended `, 'm'));
  for (const line of piped.stdout.trim().split('\n')) assert.match(line, /^[a-z ]+\t/);
});

test('why: a session refused by the limit, and a lockout, are explained', async () => {
  const open = await request(join(env.socketDir, 'priv.sock'), 'SESSION_OPEN', { user: 'dave', service: 'sshd', rhost: '192.0.2.8', tty: 'ssh', pid: process.pid, pid_start: '' });
  assert.equal(open.status, 0, open.detail);
  for (let i = 0; i < 5; i++) await login('dave', 'wrong', ['authenticate']);
  const locked = await login('dave', passwords.dave!, ['authenticate']);
  assert.notEqual(locked.code, 0);
  const w = await json(['why', 'dave']);
  assert.equal(w.phases.auth_password.result, 'throttled');
  assert.match(w.phases.auth_password.detail, /too many recent failures for dave \(5 of 5\)/);
  assert.equal(w.throttle.failures, 5);
  assert.equal(typeof w.throttle.locked_until, 'number');
  assert.equal(w.session.state, 'open');
  const human = await ctl(['why', 'dave']);
  assert.match(human.stdout, /^throttle\t5 of 5 failures, locked until \d{4}-.*latchkeyctl throttle reset dave/m);
});

test('host accounts and the deny list: "not managed by latchkey", exit 4, in lookup, show and why', async () => {
  for (const args of [['lookup', 'root'], ['show', 'root'], ['why', 'root'], ['lookup', '0']]) {
    const r = await ctl(args);
    assert.equal(r.code, 4, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /: local account, not managed by latchkey \(/);
    const j = await json(args, 4);
    assert.equal(j.ok, false);
    assert.equal(j.code, 'not_found');
    assert.equal(j.not_managed, 'local account');
  }
  const denied = await ctl(['lookup', 'erin']);
  assert.equal(denied.code, 4);
  assert.match(denied.stderr, /erin: deny list, not managed by latchkey \(erin is in \[users\] deny_names\)/);
  // A user latchkey would serve but upstream does not have stays a plain "not found" (exit 1).
  const unknown = await ctl(['lookup', 'nosuchuser']);
  assert.equal(unknown.code, 1);
  assert.doesNotMatch(unknown.stderr, /not managed/);
});

test('flush NAME: drops one user\'s entry and its negative entries, leaves the others', async () => {
  await json(['lookup', 'bob']);
  await json(['lookup', 'carol']);
  assert.equal((await ctl(['lookup', 'ghost'])).code, 1);
  const before = await json(['users', '--negative']);
  assert.ok(before.negative.some((n: { key: string }) => n.key === 'ghost'));
  const f = await json(['flush', 'bob']);
  assert.deepEqual(f, { removed: 1, negative_only: false, user: 'bob' });
  const names = (await json(['users'])).users.map((u: { name: string }) => u.name);
  assert.ok(!names.includes('bob') && names.includes('carol'), names.join(','));
  assert.equal((await json(['flush', 'ghost'])).removed, 1);
  assert.ok(!(await json(['users', '--negative'])).negative.some((n: { key: string }) => n.key === 'ghost'));
  // By uid, and a user with nothing cached: exit 1 with a note.
  await json(['lookup', 'bob']);
  assert.equal((await json(['flush', '11002'])).removed, 1);
  const again = await ctl(['flush', 'bob']);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /bob: nothing cached/);
  assert.equal((await ctl(['flush', 'bob', '--negative'])).code, 2);
  // The next lookup asks the upstream again.
  assert.equal((await json(['lookup', 'bob'])).source, 'upstream');
});

test('--json: every kind of failure is one {"ok": false, "error", "code"} object on stdout, exit code kept', async () => {
  const cases: Array<{ args: string[]; exit: number; code: string; extra?: Record<string, unknown> }> = [
    { args: ['show', 'nosuchuser'], exit: 1, code: 'not_found' },
    { args: ['lookup', 'nosuchuser'], exit: 1, code: 'not_found', extra: { result: 'notfound' } },
    { args: ['flush', 'a', 'b'], exit: 2, code: 'usage' },
    { args: ['no-such-command'], exit: 2, code: 'usage' },
    { args: ['--timeout', 'x', 'status'], exit: 2, code: 'usage' },
    { args: ['users', '--socket-dir', join(env.dir, 'nowhere')], exit: 3, code: 'daemon_unavailable', extra: { reason: 'no_socket' } },
    { args: ['sessions', 'kill', 'no-such-id'], exit: 1, code: 'not_found' },
    { args: ['check-config', join(env.dir, 'missing.conf')], exit: 1, code: 'invalid' },
  ];
  for (const c of cases) {
    const r = await ctl([...c.args, '--json']);
    assert.equal(r.code, c.exit, `${c.args.join(' ')}: ${r.stdout}${r.stderr}`);
    const j = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(j.ok, false, c.args.join(' '));
    assert.equal(j.code, c.code, c.args.join(' '));
    assert.equal(typeof j.error, 'string');
    for (const [k, v] of Object.entries(c.extra ?? {})) assert.equal(j[k], v, `${c.args.join(' ')}: ${k}`);
  }
});

test('piped listings: no header, exactly the columns each --help documents', async () => {
  await json(['lookup', 'alice']);
  await login('heidi', 'wrong', ['authenticate']); // a throttle entry
  // A session whose process lives (its login uid is the user's, as pam_loginuid sets it for sshd).
  const sleeper = spawn('sh', ['-c', 'echo 11006 > /proc/self/loginuid && exec sleep 300'], { stdio: 'ignore' });
  after(() => { sleeper.kill('SIGKILL'); });
  const o = await request(join(env.socketDir, 'priv.sock'), 'SESSION_OPEN', { user: 'frank', service: 'sshd', rhost: '', tty: '', pid: sleeper.pid!, pid_start: '' });
  assert.equal(o.status, 0, o.detail);
  const columnsOf = (cmd: string, which = 'columns:'): string[] => {
    const line = COMMAND_HELP[cmd]!.split('\n').find((l) => l.startsWith(which));
    assert.ok(line, `${cmd} --help has no "${which}" line`);
    return line.slice(which.length).trim().split(/\s+/);
  };
  const check = async (args: string[], columns: string[]): Promise<void> => {
    const r = await ctl(args);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n').filter((l) => l !== '');
    assert.ok(lines.length > 0, `${args.join(' ')} printed nothing: ${JSON.stringify(await json(args))}`);
    assert.notEqual(lines[0], columns.join('\t'), `${args.join(' ')} printed a header`);
    for (const l of lines) assert.equal(l.split('\t').length, columns.length, `${args.join(' ')}: "${l}" against ${columns.join(' ')}`);
  };
  await check(['users'], columnsOf('users'));
  await check(['sessions'], columnsOf('sessions'));
  await check(['throttle'], columnsOf('throttle'));
  // Every command says what its piped lines hold.
  for (const [cmd, help] of Object.entries(COMMAND_HELP)) assert.match(help, /^[a-z ,]*\b(columns|piped)\b[^:\n]*:/m, `${cmd} --help documents no piped output`);
});
