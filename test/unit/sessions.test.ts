// SessionRegistry and the SESSION_OPEN/SESSION_CLOSE handlers over a temporary better-sqlite3 file,
// with fake processes (no signal reaches a real process) and a fake ensureHome.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SessionRegistry, sessionHandlers, systemProcessOps, type ProcessOps, type EnsureHome } from '../../src/sessions/registry.js';
import type { Config } from '../../src/config/types.js';
import type { Lookup } from '../../src/cache/types.js';
import { Status } from '../../src/protocol/generated.js';
import type { Peer } from '../../src/server/dispatch.js';

function config(pam: Partial<Config['pam']> = {}): Config {
  return {
    source: '',
    users: { uidShift: 10000, gid: 10000, groupName: 'lega', minUid: 1000, maxUid: 2 ** 31, nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/, shell: '/bin/bash' },
    homes: { base: '/ega/inbox', layout: 'chroot', mode: 0o2750, umask: 0o027, uploadDir: 'upload' },
    pam: { prompt: 'p', chrootSessions: false, maxFailures: 3, throttleWindowSec: 60, throttleLockoutSec: 60, maxSessionsPerUser: 0, maxSessionAgeSec: 0, ...pam },
  } as unknown as Config;
}

/** Processes that exist only in this map: pid → start time. */
class FakeProcs implements ProcessOps {
  readonly running = new Map<number, string>();
  readonly terminated: number[] = [];
  alive(pid: number): boolean { return this.running.has(pid); }
  startTime(pid: number): string | null { return this.running.get(pid) ?? null; }
  terminate(pid: number): boolean {
    this.terminated.push(pid);
    return this.running.delete(pid);
  }
}

function setup(pam: Partial<Config['pam']> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-sessions-'));
  const db = new Database(join(dir, 'cache.db'));
  const procs = new FakeProcs();
  let now = 1_000_000;
  let cfg = config(pam);
  const reg = new SessionRegistry(db, () => cfg, procs, () => now);
  return {
    reg, procs, db,
    advance(ms: number) { now += ms; },
    setConfig(c: Config) { cfg = c; },
    cleanup() { db.close(); rmSync(dir, { recursive: true, force: true }); },
  };
}

const req = (user: string, pid: number) => ({ user, uid: 10001, service: 'sshd', rhost: '127.0.0.1', tty: 'ssh', pid });

test('open, list, countOpen and close by pid and user', () => {
  const s = setup();
  s.procs.running.set(100, 'a').set(101, 'b');
  const a = s.reg.open(req('alice', 100));
  const b = s.reg.open(req('bob', 101));
  assert.ok(a.ok && b.ok);
  assert.equal(s.reg.countOpen(), 2);
  assert.deepEqual(s.reg.list('alice').map((r) => [r.user, r.pid, r.service, r.rhost]), [['alice', 100, 'sshd', '127.0.0.1']]);
  assert.equal(s.reg.close('alice', 999), 0, 'wrong pid closes nothing');
  assert.equal(s.reg.close('bob', 100), 0, 'wrong user closes nothing');
  assert.equal(s.reg.close('alice', 100), 1);
  assert.deepEqual(s.reg.list().map((r) => r.user), ['bob']);
  s.cleanup();
});

test('the table lives in the given database, so the cache file holds it', () => {
  const s = setup();
  const row = s.db.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name='sessions'").get();
  assert.ok(row);
  s.cleanup();
});

test('maxSessionsPerUser refuses one more, counts per user, and ignores dead records', () => {
  const s = setup({ maxSessionsPerUser: 2 });
  for (const p of [1, 2, 3, 4]) s.procs.running.set(1000 + p, `t${p}`);
  assert.ok(s.reg.open(req('alice', 1001)).ok);
  assert.ok(s.reg.open(req('alice', 1002)).ok);
  const third = s.reg.open(req('alice', 1003));
  assert.deepEqual(third, { ok: false, reason: 'limit', open: 2, max: 2 });
  assert.ok(s.reg.open(req('bob', 1004)).ok, 'another user is not limited by alice');
  s.procs.running.delete(1001); // sshd died without closing
  assert.ok(s.reg.open(req('alice', 1003)).ok, 'a vanished session does not count');
  assert.equal(s.reg.countOpen('alice'), 2);
  s.cleanup();
});

test('the same pid opening again replaces its record', () => {
  const s = setup({ maxSessionsPerUser: 1 });
  s.procs.running.set(50, 'x');
  assert.ok(s.reg.open(req('alice', 50)).ok);
  assert.ok(s.reg.open(req('alice', 50)).ok);
  assert.equal(s.reg.countOpen('alice'), 1);
  s.cleanup();
});

test('kill by id and by user signals the recorded pids and ends the sessions', () => {
  const s = setup();
  for (const p of [11, 12, 13]) s.procs.running.set(p, 's');
  const a = s.reg.open(req('alice', 11));
  s.reg.open(req('alice', 12));
  s.reg.open(req('bob', 13));
  assert.ok(a.ok);
  assert.equal(s.reg.kill({ id: a.id }), 1);
  assert.deepEqual(s.procs.terminated, [11]);
  assert.equal(s.reg.kill({ user: 'alice' }), 1);
  assert.deepEqual(s.procs.terminated, [11, 12]);
  assert.equal(s.reg.kill({ user: 'nobody' }), 0);
  assert.equal(s.reg.kill({ id: 'no-such-id' }), 0);
  assert.deepEqual(s.reg.list().map((r) => r.user), ['bob']);
  s.cleanup();
});

test('a reused pid (start time changed) is never signalled and counts as gone', () => {
  const s = setup();
  s.procs.running.set(77, 'old');
  s.reg.open(req('alice', 77));
  s.procs.running.set(77, 'new'); // the sshd exited; an unrelated process got pid 77
  assert.equal(s.reg.kill({ user: 'alice' }), 1);
  assert.deepEqual(s.procs.terminated, [], 'the stranger with the same pid is left alone');
  s.reg.open(req('bob', 77));
  assert.deepEqual(s.reg.sweep(), { gone: 0, aged: 0 });
  s.procs.running.set(77, 'newer');
  assert.deepEqual(s.reg.sweep(), { gone: 1, aged: 0 });
  s.cleanup();
});

test('sweep ends vanished sessions and kills those older than maxSessionAgeSec', () => {
  const s = setup({ maxSessionAgeSec: 60 });
  s.procs.running.set(21, 'a').set(22, 'b');
  s.reg.open(req('alice', 21));
  s.reg.open(req('bob', 22));
  s.reg.open(req('carol', 23)); // never running
  assert.deepEqual(s.reg.sweep(), { gone: 1, aged: 0 });
  s.advance(30_000);
  s.procs.running.set(24, 'd');
  s.reg.open(req('dave', 24));
  s.advance(31_000);
  assert.deepEqual(s.reg.sweep(), { gone: 0, aged: 2 });
  assert.deepEqual(s.procs.terminated.sort(), [21, 22]);
  assert.deepEqual(s.reg.list().map((r) => r.user), ['dave']);
  s.cleanup();
});

test('sweep deletes ended rows after a day, and maxSessionAgeSec=0 means unlimited', () => {
  const s = setup();
  s.procs.running.set(5, 'a');
  s.reg.open(req('alice', 5));
  s.reg.close('alice', 5);
  s.advance(3 * 24 * 3600 * 1000);
  s.procs.running.set(6, 'b');
  s.reg.open(req('bob', 6));
  s.advance(365 * 24 * 3600 * 1000);
  assert.deepEqual(s.reg.sweep(), { gone: 0, aged: 0 });
  const n = (s.db.prepare('SELECT count(*) AS n FROM sessions').get() as { n: number }).n;
  assert.equal(n, 1);
  s.cleanup();
});

test('systemProcessOps sees this process and its start time, and not a dead pid', () => {
  assert.equal(systemProcessOps.alive(process.pid), true);
  assert.match(systemProcessOps.startTime(process.pid) ?? '', /^\d+$/);
  assert.equal(systemProcessOps.alive(2 ** 22 + 12345), false);
});

// --- handlers ---------------------------------------------------------------------------------

const alice: Lookup = {
  status: 'found', source: 'cache',
  user: { username: 'alice', upstreamUid: 1, uid: 10001, passwordHash: null, sshPublicKeys: [], gecos: '', fetchedAt: 0, expiresAt: 0 },
};
const peer: Peer = { socket: 'priv', uid: 0, pid: 1 };

function handlerSetup(pam: Partial<Config['pam']> = {}, lookup: (n: string) => Lookup = (n) => (n === 'alice' ? alice : { status: 'notfound', source: 'upstream' })) {
  const s = setup(pam);
  const homeCalls: Array<[unknown, unknown]> = [];
  let homeError: Error | null = null;
  let homeProblems: string[] = [];
  const ensureHome: EnsureHome = async (cfg, user) => {
    homeCalls.push([cfg, user]);
    if (homeError) throw homeError;
    return { path: `/ega/inbox/${user.name}`, created: homeCalls.length === 1, problems: homeProblems };
  };
  const cfg = config(pam);
  const h = sessionHandlers(s.reg, { byName: async (n) => lookup(n) }, () => cfg, ensureHome);
  const open = (user: string, pid: number) =>
    Promise.resolve(h.SESSION_OPEN!({ user, service: 'sshd', rhost: '::1', tty: 'ssh', pid }, peer));
  return { s, h, homeCalls, open, failHome(e: Error) { homeError = e; }, problems(p: string[]) { homeProblems = p; } };
}

test('SESSION_OPEN creates the home with uid and configured gid, records, replies home/umask/chroot', async () => {
  const t = handlerSetup({ chrootSessions: true });
  t.s.procs.running.set(300, 'z');
  const r = await t.open('alice', 300);
  assert.equal(r.status, Status.OK);
  assert.equal(r.fields!.home, '/ega/inbox/alice');
  assert.equal(r.fields!.umask, 0o027);
  assert.equal(r.fields!.chroot, 1);
  assert.match(r.fields!.session_id as string, /^[0-9a-f-]{36}$/);
  assert.deepEqual(t.homeCalls[0]![1], { name: 'alice', uid: 10001, gid: 10000 });
  assert.deepEqual(t.s.reg.list().map((x) => [x.id, x.user, x.pid, x.rhost]), [[r.fields!.session_id, 'alice', 300, '::1']]);
  const c = await Promise.resolve(t.h.SESSION_CLOSE!({ user: 'alice', service: 'sshd', pid: 300 }, peer));
  assert.equal(c.status, Status.OK);
  assert.equal(t.s.reg.countOpen(), 0);
  t.s.cleanup();
});

test('SESSION_OPEN: unknown user → NOTFOUND, upstream down → UNAVAIL, neither touches homes', async () => {
  const t = handlerSetup({}, (n) => (n === 'down' ? { status: 'unavail', reason: 'timeout' } : { status: 'notfound', source: 'upstream' }));
  assert.equal((await t.open('ghost', 1)).status, Status.NOTFOUND);
  assert.equal((await t.open('down', 1)).status, Status.UNAVAIL);
  assert.equal(t.homeCalls.length, 0);
  assert.equal(t.s.reg.countOpen(), 0);
  t.s.cleanup();
});

test('SESSION_OPEN: limit → LIMIT; unsafe home → INTERNAL and no session', async () => {
  const t = handlerSetup({ maxSessionsPerUser: 1 });
  t.s.procs.running.set(400, 'a').set(401, 'b');
  assert.equal((await t.open('alice', 400)).status, Status.OK);
  const r = await t.open('alice', 401);
  assert.equal(r.status, Status.LIMIT);
  assert.match(r.detail ?? '', /max 1/);
  t.s.reg.kill({ user: 'alice' });
  t.failHome(new Error('base/alice is a symlink'));
  const h = await t.open('alice', 401);
  assert.equal(h.status, Status.INTERNAL);
  assert.doesNotMatch(h.detail ?? '', /symlink/, 'details stay in the daemon log');
  t.failHome(null as unknown as Error);
  assert.equal(t.s.reg.countOpen(), 0);
  t.problems(['inbox had mode 0777; set to 2750']);
  assert.equal((await t.open('alice', 401)).status, Status.OK, 'repairs reported as problems do not stop the login');
  t.s.cleanup();
});
