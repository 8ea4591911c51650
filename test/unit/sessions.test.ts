// SessionRegistry over its own store (a temporary SQLite file), the store's versioning and
// recovery, and the SESSION_OPEN/SESSION_CLOSE answers, with fake processes (no signal reaches a
// real process) and a fake ensureHome.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SessionRegistry } from '../../src/sessions/registry.js';
import { SessionStore, SESSIONS_SCHEMA_VERSION, sessionStorePath } from '../../src/sessions/store.js';
import { systemProcessOps } from '../../src/sessions/proc.js';
import { sessionHandlers, type EnsureHome } from '../../src/answers/priv-session.js';
import { UserCache } from '../../src/cache/db.js';
import { setLogSink } from '../../src/log.js';
import type { Config } from '../../src/config/types.js';
import type { Lookup } from '../../src/cache/types.js';
import { Status } from '../../src/protocol/generated.js';
import type { Peer } from '../../src/server/dispatch.js';
import { FakeProcs } from '../lib/fake-procs.js';

function config(pam: Partial<Config['pam']> = {}): Config {
  return {
    source: '',
    users: { uidShift: 10000, gid: 10000, groupName: 'lega', minUid: 1000, maxUid: 2 ** 31, nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/, shell: '/bin/bash' },
    homes: { base: '/ega/inbox', layout: 'chroot', mode: 0o2750, umask: 0o027, uploadDir: 'upload' },
    pam: { prompt: 'p', chrootSessions: false, maxFailures: 3, throttleWindowSec: 60, throttleLockoutSec: 60, maxSessionsPerUser: 0, maxSessionAgeSec: 0, ...pam },
  } as unknown as Config;
}


function setup(pam: Partial<Config['pam']> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-sessions-'));
  const store = SessionStore.open(sessionStorePath(join(dir, 'cache.db')));
  const db = store.db;
  const procs = new FakeProcs();
  let now = 1_000_000;
  let cfg = config(pam);
  const reg = new SessionRegistry(store, () => cfg, procs, () => now);
  return {
    reg, procs, db, dir,
    advance(ms: number) { now += ms; },
    setConfig(c: Config) { cfg = c; },
    cleanup() { store.close(); rmSync(dir, { recursive: true, force: true }); },
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

test('sessions live in their own versioned file beside the cache, created 0600, never in the cache file', () => {
  const s = setup();
  const row = s.db.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name='sessions'").get();
  assert.ok(row);
  assert.equal(s.db.pragma('user_version', { simple: true }), SESSIONS_SCHEMA_VERSION);
  const file = join(s.dir, 'sessions.db');
  assert.equal(s.db.name, file);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(sessionStorePath(join(s.dir, 'sessions.db')), join(s.dir, 'latchkey-sessions.db'), 'never the cache file itself');
  const cache = UserCache.open(join(s.dir, 'cache.db'));
  assert.equal(cache.db.prepare("SELECT name FROM sqlite_master WHERE name='sessions'").get(), undefined);
  cache.close();
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

test('kill by id and by user signals the recorded pids and ends the sessions', async () => {
  const s = setup();
  for (const p of [11, 12, 13]) s.procs.running.set(p, 's');
  const a = s.reg.open(req('alice', 11));
  s.reg.open(req('alice', 12));
  s.reg.open(req('bob', 13));
  assert.ok(a.ok);
  assert.equal(await s.reg.kill({ id: a.id }), 1);
  assert.deepEqual(s.procs.terminated, [11]);
  assert.equal(await s.reg.kill({ user: 'alice' }), 1);
  assert.deepEqual(s.procs.terminated, [11, 12]);
  assert.equal(await s.reg.kill({ user: 'nobody' }), 0);
  assert.equal(await s.reg.kill({ id: 'no-such-id' }), 0);
  assert.deepEqual(s.reg.list().map((r) => r.user), ['bob']);
  s.cleanup();
});

test('a reused pid (start time changed) is never signalled and counts as gone', async () => {
  const s = setup();
  s.procs.running.set(77, 'old');
  s.reg.open(req('alice', 77));
  s.procs.running.set(77, 'new'); // the sshd exited; an unrelated process got pid 77
  assert.equal(await s.reg.kill({ user: 'alice' }), 1);
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

// --- the store: versioned, never silently emptied -------------------------------------------

/** The `sessions` table as latchkeyd created it inside the cache file, before it had a version. */
const LEGACY_TABLE = `CREATE TABLE sessions (id TEXT PRIMARY KEY, user TEXT NOT NULL, uid INTEGER NOT NULL,
  service TEXT NOT NULL, rhost TEXT NOT NULL, tty TEXT NOT NULL, pid INTEGER NOT NULL, pid_start TEXT,
  started_at INTEGER NOT NULL, ended_at INTEGER, end_reason TEXT)`;
const legacyRow = (db: Database.Database, id: string, user: string, endedAt: number | null): void => {
  db.prepare('INSERT INTO sessions VALUES (?, ?, 10001, ?, ?, ?, ?, ?, ?, ?, ?)')
    .run(id, user, 'sshd', '192.0.2.1', 'ssh', 4000, 'st', 5000, endedAt, endedAt === null ? null : 'closed');
};

function captureLog(): { lines: Array<Record<string, unknown>>; restore: () => void } {
  const lines: Array<Record<string, unknown>> = [];
  setLogSink((l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  return { lines, restore: () => setLogSink((l) => process.stderr.write(l + '\n')) };
}

function storeDir(): { dir: string; file: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-store-'));
  return { dir, file: join(dir, 'sessions.db'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

test('a restart keeps the open sessions: limits, lists and kills still see them', async () => {
  const t = storeDir();
  const procs = new FakeProcs();
  procs.running.set(600, 'a');
  const cfg = config({ maxSessionsPerUser: 1 });
  let store = SessionStore.open(t.file);
  const first = new SessionRegistry(store, () => cfg, procs).open(req('alice', 600));
  assert.ok(first.ok);
  store.close();
  store = SessionStore.open(t.file);
  const reg = new SessionRegistry(store, () => cfg, procs);
  assert.deepEqual(reg.list().map((r) => [r.id, r.user, r.pid]), [[first.id, 'alice', 600]]);
  procs.running.set(601, 'b');
  assert.deepEqual(reg.open(req('alice', 601)), { ok: false, reason: 'limit', open: 1, max: 1 });
  assert.equal(await reg.kill({ user: 'alice' }), 1);
  assert.deepEqual(procs.terminated, [600]);
  store.close();
  t.cleanup();
});

test('a corrupt sessions file is moved aside and kept, reported at err with the path and what to do', () => {
  const t = storeDir();
  const garbage = 'not a database, but somebody\'s sessions\n'.repeat(200);
  writeFileSync(t.file, garbage);
  const log = captureLog();
  let store: SessionStore;
  try { store = SessionStore.open(t.file, { now: () => Date.UTC(2030, 0, 2, 3, 4, 5) }); } finally { log.restore(); }
  assert.equal(store.countOpen(), 0, 'a usable, empty store');
  const aside = join(t.dir, 'sessions.db.bad-20300102T030405000Z');
  assert.ok(existsSync(aside), `moved aside: ${readdirSync(t.dir).join(' ')}`);
  assert.equal(statSync(aside).size, Buffer.byteLength(garbage), 'kept as it was');
  const err = log.lines.filter((l) => l.level === 'error');
  assert.equal(err.length, 1);
  assert.equal(err[0]!.event, 'sessions.store_unusable');
  assert.equal(err[0]!.path, t.file);
  assert.deepEqual(err[0]!.moved_to, [aside]);
  assert.match(String(err[0]!.fix), new RegExp(`sqlite3 ${aside.replace(/[.]/g, '\\.')}`));
  assert.equal(statSync(t.file).mode & 0o777, 0o600);
  store.close();
  t.cleanup();
});

test('an older schema (the unversioned table of the cache-file era) is migrated, its open sessions kept', () => {
  const t = storeDir();
  const old = new Database(t.file);
  old.exec(LEGACY_TABLE);
  legacyRow(old, 'old-open', 'alice', null);
  legacyRow(old, 'old-ended', 'bob', 6000);
  old.close();
  const log = captureLog();
  let store: SessionStore;
  try { store = SessionStore.open(t.file); } finally { log.restore(); }
  assert.equal(store.db.pragma('user_version', { simple: true }), SESSIONS_SCHEMA_VERSION);
  assert.deepEqual(store.openRows().map((r) => r.id), ['old-open']);
  const indexes = store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'sessions_open_%' ORDER BY name").pluck().all();
  assert.deepEqual(indexes, ['sessions_open_pid', 'sessions_open_user']);
  assert.deepEqual(log.lines.map((l) => [l.event, l.from_version, l.to_version]), [['sessions.store_migrated', 0, 1], ['sessions.store_migrated', 1, 2]]);
  assert.deepEqual(readdirSync(t.dir).filter((f) => f.includes('.bad')), [], 'nothing moved aside');
  store.close();
  t.cleanup();
});

test('a file from a newer latchkeyd (unknown schema version) is moved aside with its records, not opened', () => {
  const t = storeDir();
  const newer = new Database(t.file);
  newer.exec(LEGACY_TABLE);
  legacyRow(newer, 'future', 'alice', null);
  newer.pragma(`user_version = ${SESSIONS_SCHEMA_VERSION + 1}`);
  newer.close();
  const log = captureLog();
  let store: SessionStore;
  try { store = SessionStore.open(t.file); } finally { log.restore(); }
  assert.equal(store.countOpen(), 0);
  const err = log.lines.find((l) => l.event === 'sessions.store_unusable');
  assert.ok(err && err.level === 'error');
  assert.match(String(err.reason), new RegExp(`schema version ${SESSIONS_SCHEMA_VERSION + 1} is newer`));
  const aside = (err.moved_to as string[])[0]!;
  const kept = new Database(aside, { readonly: true });
  assert.deepEqual(kept.prepare('SELECT id FROM sessions').pluck().all(), ['future'], 'the records are still in the moved file');
  kept.close();
  store.close();
  t.cleanup();
});

test('upgrade: a new store takes over the open sessions the cache file held, once', () => {
  const t = storeDir();
  const cachePath = join(t.dir, 'cache.db');
  const cache = UserCache.open(cachePath);
  cache.db.exec(LEGACY_TABLE);
  legacyRow(cache.db, 'open-1', 'alice', null);
  legacyRow(cache.db, 'ended-1', 'bob', 6000);
  const log = captureLog();
  let store: SessionStore;
  try { store = SessionStore.open(sessionStorePath(cachePath), { importFrom: cachePath }); } finally { log.restore(); }
  assert.deepEqual(store.openRows().map((r) => [r.id, r.user, r.pid, r.pid_start]), [['open-1', 'alice', 4000, 'st']]);
  assert.equal(cache.db.prepare("SELECT name FROM sqlite_master WHERE name = 'sessions'").get(), undefined, 'the old table is gone');
  assert.ok(log.lines.some((l) => l.event === 'sessions.imported' && l.open_sessions === 1));
  store.close();
  store = SessionStore.open(sessionStorePath(cachePath), { importFrom: cachePath });
  assert.equal(store.countOpen(), 1);
  store.close();
  cache.close();
  t.cleanup();
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
  await t.s.reg.kill({ user: 'alice' });
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
