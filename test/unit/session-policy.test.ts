// Issue 17 session policies over the real SessionStore (a temporary SQLite file) with fake
// processes: session_limit scopes, on_limit = replace-oldest, max_session_age from the last
// renewal, renewal on login and its refusal for privileged groups, revoke(), the events each
// emits, the schema v1 → v2 migration, and the events collector against a real HTTP server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SessionRegistry } from '../../src/sessions/registry.js';
import { SessionStore, SESSIONS_SCHEMA_VERSION } from '../../src/sessions/store.js';
import type { SessionEvent } from '../../src/events/types.js';
import { EventCollector } from '../../src/events/collector.js';
import { SessionEvents } from '../../src/events/hub.js';
import { setLogSink } from '../../src/log.js';
import type { Config } from '../../src/config/types.js';
import { FakeProcs } from '../lib/fake-procs.js';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'latchkey-policy-'));
  dirs.push(d);
  return d;
}
test.after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function config(pam: Partial<Config['pam']>, users: Partial<Config['users']> = {}): Config {
  return {
    source: '',
    users: { gid: 10000, groupName: 'lega', localGroupFile: '/nonexistent', ...users },
    pam: {
      maxSessionsPerUser: 0, sessionLimit: 'per-user', onLimit: 'refuse', maxSessionAgeSec: 0, sessionRenewal: 'off', privilegedGroups: [], privilegedUsers: [], ...pam,
    },
  } as unknown as Config;
}


function setup(pam: Partial<Config['pam']>, users: Partial<Config['users']> = {}) {
  const store = SessionStore.open(join(tmp(), 'sessions.db'));
  const procs = new FakeProcs();
  let now = 1_000_000;
  const cfg = config(pam, users);
  const reg = new SessionRegistry(store, () => cfg, procs, () => now);
  const events: SessionEvent[] = [];
  reg.events = (e) => events.push(e);
  return {
    reg, procs, events, cfg, store,
    advance(ms: number) { now += ms; },
    start(user: string, pid: number, service = 'sshd', rhost = '192.0.2.1') {
      procs.running.set(pid, `t${pid}`);
      return reg.open({ user, uid: 10001, service, rhost, tty: 'ssh', pid });
    },
    done() { reg.stop(); store.close(); },
  };
}

const flush = () => new Promise((r) => setImmediate(r));

test('replace-oldest ends the oldest session of the scope (record, process, event) and lets the new one in', async () => {
  const s = setup({ maxSessionsPerUser: 2, onLimit: 'replace-oldest' });
  const a = s.start('alice', 101);
  s.advance(10);
  const b = s.start('alice', 102);
  s.advance(10);
  const c = s.start('alice', 103);
  assert.ok(a.ok && b.ok && c.ok);
  assert.deepEqual(c.replaced, [a.id]);
  await flush();
  assert.deepEqual(s.procs.terminated, [101], 'the oldest sshd process is ended');
  assert.deepEqual(s.reg.list('alice').map((r) => r.pid), [102, 103]);
  const ended = s.reg.listEnded('alice');
  assert.deepEqual(ended.map((e) => [e.id, e.endReason, e.endDetail]), [[a.id, 'replaced', `replaced by session ${c.id}`]]);
  assert.deepEqual(s.events.map((e) => [e.event, e.reason, e.pid]), [
    ['open', 'login', 101], ['open', 'login', 102], ['replaced', 'replaced', 101], ['open', 'login', 103],
  ]);
  s.done();
});

test('refuse keeps the old sessions and refuses the new one', () => {
  const s = setup({ maxSessionsPerUser: 1, onLimit: 'refuse' });
  assert.ok(s.start('alice', 101).ok);
  assert.deepEqual(s.start('alice', 102), { ok: false, reason: 'limit', open: 1, max: 1 });
  assert.deepEqual(s.procs.terminated, []);
  s.done();
});

test('session_limit scopes: per-user-service-host counts one service from one host; per-user-service one service', () => {
  const h = setup({ maxSessionsPerUser: 1, sessionLimit: 'per-user-service-host' });
  assert.ok(h.start('alice', 101, 'sshd', '192.0.2.1').ok);
  assert.ok(h.start('alice', 102, 'sshd', '192.0.2.2').ok, 'another host is another scope');
  assert.ok(h.start('alice', 103, 'vsftpd', '192.0.2.1').ok, 'another service is another scope');
  assert.equal(h.start('alice', 104, 'sshd', '192.0.2.1').ok, false, 'same service and host: at the limit');
  h.done();
  const s = setup({ maxSessionsPerUser: 1, sessionLimit: 'per-user-service' });
  assert.ok(s.start('alice', 101, 'sshd', '192.0.2.1').ok);
  assert.equal(s.start('alice', 102, 'sshd', '192.0.2.2').ok, false, 'same service from another host counts');
  assert.ok(s.start('alice', 103, 'vsftpd', '192.0.2.1').ok);
  s.done();
});

test('max_session_age ends a session at its age, counted from its last renewal; renewal on login extends it', () => {
  const s = setup({ maxSessionAgeSec: 60, sessionRenewal: 'on-login' });
  const a = s.start('alice', 101);
  const b = s.start('bob', 102);
  assert.ok(a.ok && b.ok);
  s.advance(50_000);
  s.reg.renewOnLogin('alice');
  s.advance(20_000);
  assert.deepEqual(s.reg.sweep(), { gone: 0, aged: 1 });
  assert.deepEqual(s.reg.list().map((r) => r.user), ['alice'], 'bob is past 60 s; alice was renewed at 50 s');
  assert.equal(s.reg.list()[0]!.renewedAt, 1_050_000);
  assert.deepEqual(s.procs.terminated, [102]);
  const exp = s.events.find((e) => e.event === 'expired')!;
  assert.equal(exp.user, 'bob');
  assert.equal(exp.reason, 'max_age');
  s.advance(40_000);
  assert.deepEqual(s.reg.sweep(), { gone: 0, aged: 1 });
  assert.equal(s.reg.listEnded('alice')[0]!.endReason, 'max_age');
  s.done();
});

test('session_renewal = off: a login renews nothing', () => {
  const s = setup({ maxSessionAgeSec: 60, sessionRenewal: 'off' });
  s.start('alice', 101);
  s.advance(50_000);
  s.reg.renewOnLogin('alice');
  assert.equal(s.reg.list()[0]!.renewedAt, null);
  s.done();
});

test('privileged_users and members of privileged_groups are never renewed (primary gid, member list, [users] group, unreadable file)', () => {
  const dir = tmp();
  const group = join(dir, 'group');
  writeFileSync(group, 'root:x:0:\nwheel:x:10:alice\nstaff:x:10000:\n');
  const cases: Array<[string, Partial<Config['pam']>, Partial<Config['users']>, boolean]> = [
    ['member list', { privilegedGroups: ['wheel'] }, { localGroupFile: group }, false],
    ['primary gid', { privilegedGroups: ['staff'] }, { localGroupFile: group }, false],
    ['[users] group_name', { privilegedGroups: ['lega'] }, { localGroupFile: group }, false],
    ['unreadable file', { privilegedGroups: ['wheel'] }, { localGroupFile: join(dir, 'missing') }, false],
    ['not a member', { privilegedGroups: ['root'] }, { localGroupFile: group }, true],
    ['privileged_users', { privilegedUsers: ['alice'] }, { localGroupFile: group }, false],
    ['someone else in privileged_users', { privilegedUsers: ['bob'] }, { localGroupFile: group }, true],
  ];
  for (const [what, pam, users, renewed] of cases) {
    const s = setup({ maxSessionAgeSec: 60, sessionRenewal: 'on-login', ...pam }, users);
    s.start('alice', 101);
    s.advance(1000);
    s.reg.renewOnLogin('alice');
    assert.equal(s.reg.list()[0]!.renewedAt !== null, renewed, what);
    const r = s.reg.renew({ user: 'alice' }, 'admin');
    assert.equal(r.ok, renewed, what);
    if (!r.ok) assert.equal(r.reason, 'privileged');
    s.done();
  }
});

test('a /proc the daemon cannot read (hidepid): the start time pam_latchkey sent is what makes the process endable', async () => {
  const s = setup({ maxSessionsPerUser: 1, onLimit: 'replace-oldest' });
  // Root's processes are alive (kill -0 says EPERM) but their /proc/PID/stat is hidden.
  s.procs.startTime = () => null;
  s.procs.running.set(101, 'hidden');
  s.procs.running.set(102, 'hidden');
  s.procs.running.set(103, 'hidden');
  const log: string[] = [];
  setLogSink((l) => log.push(l));
  try {
    const a = s.reg.open({ user: 'alice', uid: 10001, service: 'sshd', rhost: 'h', tty: 'ssh', pid: 101, pidStart: '5551' });
    const b = s.reg.open({ user: 'alice', uid: 10001, service: 'sshd', rhost: 'h', tty: 'ssh', pid: 102, pidStart: '' });
    await flush();
    assert.ok(a.ok && b.ok);
    assert.deepEqual(s.procs.terminated, [101], 'replaced, and signalled through rootd, which compares 5551 itself');
    // b was recorded without a start time: replacing it ends the record, not an unknown pid
    s.reg.open({ user: 'alice', uid: 10001, service: 'sshd', rhost: 'h', tty: 'ssh', pid: 103, pidStart: '5553' });
    await flush();
    assert.deepEqual(s.procs.terminated, [101]);
    assert.ok(log.some((l) => l.includes('"session.not_signalled"') && l.includes('"pid":102')), log.join('\n'));
  } finally {
    setLogSink((l) => process.stderr.write(l + '\n'));
    s.done();
  }
});

test('the start time pam_latchkey sends: over a u64 it is no start time; where /proc is readable, /proc wins and a mismatch is said', () => {
  const s = setup({});
  const log: string[] = [];
  setLogSink((l) => log.push(l));
  try {
    s.procs.running.set(201, 't201');
    s.reg.open({ user: 'alice', uid: 10001, service: 'sshd', rhost: 'h', tty: 'ssh', pid: 201, pidStart: '777' });
    assert.equal(s.store.openRows('alice')[0]!.pid_start, 't201');
    assert.ok(log.some((l) => l.includes('"session.start_mismatch"')));
    s.procs.startTime = () => null;
    s.procs.running.set(202, 'hidden');
    s.reg.open({ user: 'bob', uid: 10002, service: 'sshd', rhost: 'h', tty: 'ssh', pid: 202, pidStart: '99999999999999999999' });
    assert.equal(s.store.openRows('bob')[0]!.pid_start, null);
  } finally {
    setLogSink((l) => process.stderr.write(l + '\n'));
    s.done();
  }
});

test('revoke ends every open session of the user with the reason and detail, once', async () => {
  const s = setup({});
  s.start('alice', 101);
  s.start('alice', 102);
  s.start('bob', 103);
  assert.equal(await s.reg.revoke('alice', 'removed', 'the upstream answered 404'), 2);
  assert.deepEqual(s.procs.terminated.sort(), [101, 102]);
  assert.deepEqual(s.reg.list().map((r) => r.user), ['bob']);
  assert.deepEqual(s.reg.listEnded('alice').map((e) => [e.endReason, e.endDetail]), [['removed', 'the upstream answered 404'], ['removed', 'the upstream answered 404']]);
  assert.deepEqual(s.events.filter((e) => e.event === 'revoked').map((e) => [e.reason, e.detail]), [['removed', 'the upstream answered 404'], ['removed', 'the upstream answered 404']]);
  assert.equal(await s.reg.revoke('alice', 'removed', 'again'), 0, 'idempotent');
  assert.equal(s.events.filter((e) => e.event === 'revoked').length, 2);
  assert.equal(s.reg.close('alice', 101), 0, 'PAM close after a revoke ends nothing more');
  s.done();
});

test('revoke with a uid ends only the sessions opened with that uid (a namesake of another source keeps its own)', async () => {
  const s = setup({});
  s.start('alice', 101);
  s.procs.running.set(102, 't102');
  s.reg.open({ user: 'alice', uid: 9001, service: 'sshd', rhost: '192.0.2.1', tty: 'ssh', pid: 102 });
  assert.equal(await s.reg.revoke('alice', 'removed', 'the upstream answered 404', 10001), 1);
  assert.deepEqual(s.procs.terminated, [101]);
  assert.deepEqual(s.reg.list().map((r) => [r.user, r.uid]), [['alice', 9001]]);
  s.done();
});

test('the open, close, gone and reopened events carry the session fields', () => {
  const s = setup({});
  const a = s.start('alice', 101, 'sshd', '192.0.2.9');
  assert.ok(a.ok);
  s.start('alice', 101);
  assert.equal(s.reg.close('alice', 101), 1);
  s.start('bob', 102);
  s.procs.running.delete(102);
  s.reg.sweep();
  assert.deepEqual(s.events.map((e) => [e.event, e.reason, e.user]), [
    ['open', 'login', 'alice'], ['close', 'reopened', 'alice'], ['open', 'login', 'alice'], ['close', 'closed', 'alice'],
    ['open', 'login', 'bob'], ['close', 'gone', 'bob'],
  ]);
  const first = s.events[0]!;
  assert.deepEqual(Object.keys(first).sort(), ['at', 'event', 'host', 'pid', 'reason', 'rhost', 'service', 'session_id', 'uid', 'user']);
  assert.equal(first.session_id, a.id);
  assert.equal(first.rhost, '192.0.2.9');
  s.done();
});

test('a schema v1 sessions file opens: migrated to v2, its rows kept', () => {
  const file = join(tmp(), 'sessions.db');
  const db = new Database(file);
  db.exec(`CREATE TABLE sessions (id TEXT PRIMARY KEY, user TEXT NOT NULL, uid INTEGER NOT NULL, service TEXT NOT NULL,
    rhost TEXT NOT NULL, tty TEXT NOT NULL, pid INTEGER NOT NULL, pid_start TEXT, started_at INTEGER NOT NULL, ended_at INTEGER, end_reason TEXT);
    CREATE INDEX sessions_open_user ON sessions (user) WHERE ended_at IS NULL;
    CREATE INDEX sessions_open_pid ON sessions (pid) WHERE ended_at IS NULL;
    INSERT INTO sessions VALUES ('v1-open', 'alice', 10001, 'sshd', 'h', 'ssh', 4242, NULL, 5000, NULL, NULL);
    INSERT INTO sessions VALUES ('v1-ended', 'bob', 10002, 'sshd', 'h', 'ssh', 4243, NULL, 5000, 6000, 'closed');
    PRAGMA user_version = 1;`);
  db.close();
  const store = SessionStore.open(file);
  assert.equal(SESSIONS_SCHEMA_VERSION, 2);
  assert.equal(store.db.pragma('user_version', { simple: true }), 2);
  assert.deepEqual(store.openRows().map((r) => [r.id, r.renewed_at]), [['v1-open', null]]);
  assert.deepEqual(store.endedRows().map((r) => [r.id, r.end_reason, r.end_detail]), [['v1-ended', 'closed', null]]);
  store.close();
});

// ---- the collector ----

function ev(n: number): SessionEvent {
  return { event: 'open', reason: 'login', session_id: `s${n}`, user: 'alice', uid: 10001, service: 'sshd', rhost: '', pid: n, host: 'h', at: n };
}

async function collectorServer(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => { body += d.toString(); });
    req.on('end', () => handler(req, res, body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`, server };
}

async function until(what: string, f: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('collector: events are POSTed in batches with the bearer token, counted as sent', async () => {
  const got: SessionEvent[] = [];
  const auths: string[] = [];
  const { url, server } = await collectorServer((req, res, body) => {
    auths.push(String(req.headers.authorization));
    got.push(...(JSON.parse(body) as { events: SessionEvent[] }).events);
    res.end('{}');
  });
  const c = new EventCollector({ url, bearerToken: 'tok-123', caFile: null, queueSize: 100, timeoutMs: 1000 });
  for (let i = 0; i < 70; i++) c.enqueue(ev(i));
  await until('70 events', () => got.length === 70);
  assert.deepEqual(got.map((e) => e.pid), [...Array(70).keys()], 'in order, each once');
  assert.ok(auths.length >= 2, 'more than one batch (at most 50 a POST)');
  assert.ok(auths.every((a) => a === 'Bearer tok-123'));
  await until('counters', () => c.snapshot().sent === 70);
  assert.deepEqual({ ...c.snapshot(), last_error: null }, { sent: 70, failed_attempts: 0, dropped: 0, queued: 0, last_error: null });
  c.close();
  server.close();
});

test('collector: a slow collector never blocks enqueue; the bounded queue drops and counts; the token is never logged', async () => {
  const lines: string[] = [];
  setLogSink((l) => lines.push(l));
  const held: ServerResponse[] = [];
  const { url, server } = await collectorServer((_req, res) => { held.push(res); });
  try {
    const c = new EventCollector({ url, bearerToken: 'secret-tok', caFile: null, queueSize: 5, timeoutMs: 200 }, { random: () => 0 });
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) c.enqueue(ev(i));
    assert.ok(performance.now() - t0 < 50, 'enqueue does not wait for the collector');
    assert.equal(c.snapshot().dropped, 15);
    assert.equal(c.snapshot().queued, 5);
    await until('a timed-out attempt', () => c.snapshot().failed_attempts >= 1);
    assert.match(c.snapshot().last_error!.message, /no answer within 200 ms/);
    c.close();
    assert.ok(!lines.some((l) => l.includes('secret-tok')), 'no token in the log');
  } finally {
    setLogSink((l) => process.stderr.write(l + '\n'));
    for (const r of held) r.destroy();
    server.close();
  }
});

test('collector: down, then up: retries with backoff deliver what was queued', async () => {
  // A port with nothing listening, then a server on it.
  const probe = await collectorServer((_q, res) => res.end());
  const url = probe.url;
  await new Promise((r) => probe.server.close(r));
  const c = new EventCollector({ url, bearerToken: null, caFile: null, queueSize: 10, timeoutMs: 500 }, { random: () => 0 });
  c.enqueue(ev(1));
  c.enqueue(ev(2));
  await until('two failed attempts', () => c.snapshot().failed_attempts >= 2);
  assert.equal(c.snapshot().sent, 0);
  assert.equal(c.snapshot().queued, 2);
  const got: number[] = [];
  const port = Number(new URL(url).port);
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => { body += d.toString(); });
    req.on('end', () => { got.push(...(JSON.parse(body) as { events: SessionEvent[] }).events.map((e) => e.pid)); res.end(); });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  await until('delivery after the collector came back', () => c.snapshot().sent === 2, 10_000);
  assert.deepEqual(got, [1, 2]);
  c.close();
  server.close();
});

test('collector: a 400 drops the batch (counted) instead of blocking the queue forever', async () => {
  let n = 0;
  const { url, server } = await collectorServer((_q, res) => { n++; res.statusCode = n === 1 ? 400 : 204; res.end(); });
  const c = new EventCollector({ url, bearerToken: null, caFile: null, queueSize: 10, timeoutMs: 500 });
  c.enqueue(ev(1));
  await until('refused', () => c.snapshot().dropped === 1);
  c.enqueue(ev(2));
  await until('sent', () => c.snapshot().sent === 1);
  c.close();
  server.close();
});

test('collector: a 401 (a token rotated at the collector first) is retried with backoff, and delivered once it is taken', async () => {
  let n = 0;
  const { url, server } = await collectorServer((_q, res) => { n++; res.statusCode = n <= 2 ? 401 : 204; res.end(); });
  const c = new EventCollector({ url, bearerToken: 'old-token', caFile: null, queueSize: 10, timeoutMs: 500 });
  c.enqueue(ev(1));
  await until('delivered after two refusals', () => c.snapshot().sent === 1, 10_000);
  assert.deepEqual([c.snapshot().dropped, c.snapshot().failed_attempts], [0, 2]);
  c.close();
  server.close();
});

test('events hub: the log line always; a reload to another collector keeps the counters and hands over the queue', async () => {
  const lines: Array<Record<string, unknown>> = [];
  setLogSink((l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  try {
    const hub = new SessionEvents({ url: null, bearerToken: null, caFile: null, queueSize: 10, timeoutMs: 500 });
    hub.emit(ev(7));
    assert.equal(lines.filter((l) => l.event === 'session.open' && l.id === 's7').length, 1);
    assert.equal(hub.status().url, null);
    const got: number[] = [];
    const { url, server } = await collectorServer((_q, res, body) => { got.push(...(JSON.parse(body) as { events: SessionEvent[] }).events.map((e) => e.pid)); res.end(); });
    hub.reconfigure({ url, bearerToken: null, caFile: null, queueSize: 10, timeoutMs: 500 });
    hub.emit(ev(8));
    await until('sent', () => hub.status().sent === 1);
    assert.deepEqual(got, [8]);
    hub.close();
    server.close();
  } finally {
    setLogSink((l) => process.stderr.write(l + '\n'));
  }
});
