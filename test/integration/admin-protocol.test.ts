// The admin protocol against the real latchkeyd: every golden request of every command
// (test/golden/admin/) is sent to a running daemon, in a state where it has something to say
// (users cached, a failed login throttled, sessions open), and every reply it gives must pass
// the reply check latchkeyctl applies (src/protocol/admin.ts). Each command must answer
// {"ok": true} at least once; the golden bad requests must come back as bad_request naming the
// field. A command added to the protocol without a golden sample fails here too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEnv, request, examplePasswords, ROOT, type TestEnv } from '../lib/harness.js';
import { Status } from '../../src/protocol/generated.js';
import { ADMIN_COMMAND_NAMES, checkAdminReply, type AdminCommand, type AdminReply } from '../../src/protocol/admin.js';

let env: TestEnv;
const sleepers: ChildProcess[] = [];
const priv = (): string => join(env.socketDir, 'priv.sock');

interface Sample { requests: unknown[]; bad_requests: Array<{ request: unknown; field: string }> }
const sample = (cmd: AdminCommand): Sample =>
  JSON.parse(readFileSync(join(ROOT, 'test/golden/admin', `${cmd}.json`), 'utf8')) as Sample;

/** One ADMIN round trip; the raw JSON reply, unchecked. */
async function admin(req: unknown): Promise<unknown> {
  const r = await request(priv(), 'ADMIN', { json: Buffer.from(JSON.stringify(req), 'utf8') }, 30_000);
  assert.equal(r.status, Status.OK, r.detail);
  return JSON.parse((r.fields!.json as Buffer).toString('utf8')) as unknown;
}

async function checked<C extends AdminCommand>(cmd: C, req: unknown): Promise<AdminReply<C>> {
  const raw = await admin(req);
  try {
    return checkAdminReply(cmd, raw);
  } catch (e) {
    assert.fail(`${cmd}: the daemon's reply to ${JSON.stringify(req)} fails the protocol: ${(e as Error).message}\n${JSON.stringify(raw)}`);
  }
}

before(async () => {
  env = await startEnv();
  mkdirSync(join(env.dir, 'homes'), { recursive: true, mode: 0o755 });
  // Something to list: cached users, a "no such user", a failed login, three open sessions.
  for (const name of ['alice', 'bob', 'ivan', 'ghost']) await admin({ cmd: 'lookup', user: name });
  const failed = await request(priv(), 'AUTH_PASSWORD', { user: 'alice', password: 'wrong', service: 'sshd', rhost: '192.0.2.7' });
  assert.equal(failed.status, Status.AUTH_FAILED, failed.detail);
  // bob's two go to kill-session's golden requests, alice's to renew-session's.
  for (const user of ['bob', 'bob', 'alice']) {
    const p = spawn('sleep', ['300'], { stdio: 'ignore' });
    sleepers.push(p);
    const o = await request(priv(), 'SESSION_OPEN', { user, service: 'sshd', rhost: '192.0.2.8', tty: 'ssh', pid: p.pid!, pid_start: '' });
    assert.equal(o.status, Status.OK, o.detail);
  }
});

after(async () => {
  for (const p of sleepers) p.kill('SIGKILL');
  await env?.stop();
});

test('every command\'s real replies to its golden requests pass the reply check; each answers ok at least once', async () => {
  const answeredOk = new Set<AdminCommand>();
  for (const cmd of ADMIN_COMMAND_NAMES) {
    for (const req of sample(cmd).requests) {
      const r = await checked(cmd, req);
      if (r.ok) answeredOk.add(cmd);
    }
  }
  // The auth-test sample's password is not alice's; the real one must pass the check too.
  const good = await checked('auth-test', { cmd: 'auth-test', user: 'alice', password: examplePasswords().alice });
  assert.ok(good.ok && good.authenticated && good.hash?.kind === 'bcrypt', JSON.stringify(good));
  assert.deepEqual(ADMIN_COMMAND_NAMES.filter((c) => !answeredOk.has(c)), []);
});

test('replies that carry the optional and nullable parts pass too: negatives, failing upstream, locked throttle', async () => {
  // The golden flush requests emptied the cache: fill it again.
  for (const name of ['alice', 'bob', 'ghost']) await admin({ cmd: 'lookup', user: name });
  const users = await checked('users', { cmd: 'users', negative: true });
  assert.ok(users.ok && users.negative?.some((n) => n.key === 'ghost'), JSON.stringify(users));
  const show = await checked('show', { cmd: 'show', user: 'bob' });
  assert.ok(show.ok && show.user.password?.kind === 'sha512crypt', JSON.stringify(show));
  // [pam] max_failures is 5: the sixth attempt finds alice locked.
  for (let i = 0; i < 6; i++) await request(priv(), 'AUTH_PASSWORD', { user: 'alice', password: 'wrong', service: 'sshd', rhost: '192.0.2.9' });
  const throttle = await checked('throttle', { cmd: 'throttle' });
  assert.ok(throttle.ok && throttle.entries.some((e) => e.key === 'alice' && e.locked_until !== null), JSON.stringify(throttle));
  const stats = await checked('stats', { cmd: 'stats' });
  assert.ok(stats.ok && stats.throttle.lockedUsers.some((u) => u.user === 'alice'), JSON.stringify(stats));
  assert.ok(Object.keys(stats.verify.by_kind).length > 0, JSON.stringify(stats.verify));
  env.service.setFault('5xx');
  try {
    const status = await checked('status', { cmd: 'status' });
    assert.ok(status.ok && status.upstream.reachable === false && status.upstream.last_error !== null, JSON.stringify(status));
    const down = await checked('lookup', { cmd: 'lookup', user: 'neverseen' });
    assert.ok(!down.ok && down.code === 'unavailable' && down.result === 'unavail' && typeof down.reason === 'string', JSON.stringify(down));
  } finally {
    env.service.setFault(null);
  }
  const missing = await checked('lookup', { cmd: 'lookup', user: 'nosuchuser' });
  assert.ok(!missing.ok && missing.code === 'not_found' && missing.source === 'upstream', JSON.stringify(missing));
});

test('the daemon refuses every golden bad request with bad_request naming the field', async () => {
  for (const cmd of ADMIN_COMMAND_NAMES) {
    for (const { request: req, field } of sample(cmd).bad_requests) {
      const r = await checked(cmd, req);
      assert.ok(!r.ok, `${cmd}: ${JSON.stringify(req)} was answered`);
      assert.equal(r.code, 'bad_request');
      assert.ok(r.error.includes(`"${field}"`), `${cmd}: "${r.error}" does not name "${field}"`);
    }
  }
  const unknown = await admin({ cmd: 'frobnicate' });
  assert.equal((unknown as { code: string }).code, 'unknown_command');
});
