// The persistent local users' store (src/localusers/store.ts, rows.ts) on real temporary SQLite
// files: creation modes, the index and its change notifications, uid allocation and the range,
// compare-and-swap of hashes, migrations of an older file, a corrupt or newer file moved aside
// (never emptied), symlinks and foreign files refused, bad rows skipped and logged once, and
// checkSnapshotFile on good, truncated, corrupt, newer and hostile files.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { LocalStore, LOCAL_SCHEMA_VERSION, checkSnapshotFile, keyFingerprint } from '../../src/localusers/store.js';
import { rowProblem, type RowRules } from '../../src/localusers/rows.js';
import { LocalStoreError, type NewLocalUser } from '../../src/localusers/types.js';
import { setLogSink } from '../../src/log.js';

const TMP = mkdtempSync(join(tmpdir(), 'latchkey-localstore-'));
after(() => rmSync(TMP, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(TMP, `case${++n}`, 'lib', 'local.db');

const RULES: RowRules = { users: { nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/ }, minUid: 9000, maxUid: 9999 };
const KEY1 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFv6UPGQC4gcFy54/rw4P/tQdrdL9lsk7/mOyUEUwauf ops@laptop';
const KEY2 = 'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBKYG/pcrNaQCzfFMwfnVcM1HLnWhwh/guMXPUQNdOmamDQbS9NAQOf1muMRMYg1R4/yOf08cW6yd2VY1KH+ZM0= ops@desk';
const BCRYPT = '$2b$10$LxRGIGZKfcfwOa/0gWcdeuljrkf92mJRNK.w7iv4my38uFFDJn8Ki';
const SHA512 = '$6$/nLr.gu5tGs8XsTu$sjgEqswj6ZKgZ.eh1LEp1HSzBuy47.F5cIJ1xH52AS6zPjEa9GDnfoVD35P5X1inl4jByyXJOYAhQBygZeE/31';
const YESCRYPT = '$y$j9T$yCMPdHywLP/DOIXy$w6j5lQ8m5dKKohQVJGiRrZJPKKKeZEj3jtY6DifmnC4';

const newUser = (name: string, over: Partial<NewLocalUser> = {}): NewLocalUser => ({
  name, uid: null, gecos: '', shell: null, passwordHash: null, context: null, keys: [], expiresAt: null, ...over,
});

function open(path: string, rules: RowRules = RULES): LocalStore {
  return LocalStore.open(path, { rules: () => rules });
}

/** Log lines while fn runs. */
function captureLogs<T>(fn: () => T): { result: T; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  setLogSink((l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  try {
    return { result: fn(), lines };
  } finally {
    setLogSink((l) => process.stderr.write(l + '\n'));
  }
}

function code(c: LocalStoreError['code']): (e: unknown) => boolean {
  return (e) => e instanceof LocalStoreError && e.code === c;
}

test('open creates its directory 0700 and the file 0600; changes are indexed, notified and survive a reopen', () => {
  const path = fresh();
  const s = open(path);
  assert.equal(statSync(join(path, '..')).mode & 0o777, 0o700);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(new Database(path, { readonly: true }).pragma('user_version', { simple: true }), LOCAL_SCHEMA_VERSION);
  let calls = 0;
  s.onChange = () => { calls++; };
  const g0 = s.generation;
  const a = s.add(newUser('opsuser', { gecos: 'Ops', passwordHash: BCRYPT, context: 'b10', keys: [`  ${KEY1.replace(' ', '   ')}  `] }), RULES);
  assert.equal(a.uid, 9000, 'the lowest free uid of the range');
  assert.deepEqual(a.keys, [KEY1], 'the key is stored in its normal form');
  const b = s.add(newUser('partner', { uid: 9002 }), RULES);
  const c = s.add(newUser('third'), RULES);
  assert.equal(c.uid, 9001, 'the gap below 9002 is used');
  assert.equal(b.uid, 9002);
  assert.equal(calls, 3);
  assert.equal(s.generation, g0 + 3);
  assert.deepEqual(s.list().map((u) => u.name), ['opsuser', 'third', 'partner'], 'ascending uid');
  assert.equal(s.get('partner')?.uid, 9002);
  assert.equal(s.getByUid(9001)?.name, 'third');
  assert.equal(s.get('nobody'), null);
  assert.equal(s.count(), 3);
  s.setDisabled('third', true);
  s.setExpiry('partner', 1_900_000_000_000);
  s.addKey('opsuser', KEY2);
  assert.deepEqual(s.contextCounts(), { b10: 1 });
  s.setPassword('partner', SHA512, null);
  assert.deepEqual(s.contextCounts(), { b10: 1, unknown: 1 });
  s.close();

  const again = open(path);
  assert.equal(again.count(), 3);
  assert.equal(again.get('third')?.disabled, true);
  assert.equal(again.get('partner')?.expiresAt, 1_900_000_000_000);
  assert.deepEqual(again.get('opsuser')?.keys, [KEY1, KEY2]);
  // A key goes by its number, its fingerprint or its line (comment not compared).
  again.removeKey('opsuser', keyFingerprint(KEY2));
  again.addKey('opsuser', KEY2);
  again.removeKey('opsuser', KEY1.replace('ops@laptop', 'other comment'));
  assert.deepEqual(again.get('opsuser')?.keys, [KEY2]);
  again.removeKey('opsuser', 1);
  assert.deepEqual(again.get('opsuser')?.keys, []);
  assert.throws(() => again.removeKey('opsuser', 1), code('not_found'));
  again.remove('third');
  assert.equal(again.get('third'), null);
  assert.equal(again.getByUid(9001), null);
  for (const fn of [() => again.remove('nobody'), () => again.setDisabled('nobody', true), () => again.setPassword('nobody', BCRYPT, 'x'),
    () => again.addKey('nobody', KEY1), () => again.setExpiry('nobody', null), () => again.setHashIf('nobody', BCRYPT, SHA512, 'x')]) {
    assert.throws(fn, code('not_found'));
  }
  again.close();
});

test('add refuses a taken name or uid, a bad row, a duplicate key, a full range and a range of 0 .. 0', () => {
  const s = open(fresh());
  s.add(newUser('opsuser', { keys: [KEY1] }), RULES);
  assert.throws(() => s.add(newUser('opsuser'), RULES), code('exists'));
  assert.throws(() => s.add(newUser('other', { uid: 9000 }), RULES), code('uid_taken'));
  assert.throws(() => s.add(newUser('other', { uid: 8999 }), RULES), (e) => code('invalid')(e) && /outside the local range/.test((e as Error).message));
  assert.throws(() => s.add(newUser('Bad:Name'), RULES), code('invalid'));
  assert.throws(() => s.add(newUser('other', { shell: 'bin/sh' }), RULES), (e) => code('invalid')(e) && /absolute/.test((e as Error).message));
  assert.throws(() => s.add(newUser('other', { gecos: 'a\nb' }), RULES), code('invalid'));
  assert.throws(() => s.add(newUser('other', { passwordHash: 'plaintext!' }), RULES), code('invalid'));
  assert.throws(() => s.add(newUser('other', { keys: ['command="sh" ' + KEY1] }), RULES), code('invalid'));
  assert.throws(() => s.add(newUser('other', { keys: [KEY1, KEY1.replace('ops@laptop', 'x')] }), RULES), code('invalid'));
  assert.throws(() => s.addKey('opsuser', KEY1), code('exists'));
  const none: RowRules = { ...RULES, minUid: 0, maxUid: 0 };
  assert.throws(() => s.add(newUser('other'), none), (e) => code('invalid')(e) && /\[local\] min_uid and max_uid/.test((e as Error).message));
  const tiny: RowRules = { ...RULES, minUid: 9000, maxUid: 9001 };
  s.add(newUser('second'), tiny);
  assert.throws(() => s.add(newUser('third'), tiny), code('range_full'));
  assert.equal(s.count(), 2, 'nothing refused was stored');
  s.close();
});

test('setHashIf is a compare-and-swap: an upgrade never overwrites a password changed meanwhile', () => {
  const s = open(fresh());
  s.add(newUser('opsuser', { passwordHash: SHA512, context: 'old' }), RULES);
  const g = s.generation;
  assert.equal(s.setHashIf('opsuser', SHA512, YESCRYPT, 'y5'), true);
  assert.equal(s.get('opsuser')?.passwordHash, YESCRYPT);
  assert.equal(s.get('opsuser')?.context, 'y5');
  assert.equal(s.generation, g + 1);
  // The admin sets a new password while an upgrade of the old one is in flight.
  s.setPassword('opsuser', BCRYPT, 'b10');
  assert.equal(s.setHashIf('opsuser', YESCRYPT, SHA512, 'old'), false);
  assert.equal(s.get('opsuser')?.passwordHash, BCRYPT);
  assert.equal(s.get('opsuser')?.context, 'b10');
  s.close();
});

test('an unversioned (v0) file with a hand-made users table is migrated and served; its rows keep their values', () => {
  const path = fresh();
  const s0 = open(path);
  s0.close();
  rmSync(path);
  const db = new Database(path);
  db.exec('CREATE TABLE users (name TEXT, uid INTEGER, gecos TEXT, shell TEXT, password_hash TEXT)');
  db.prepare('INSERT INTO users VALUES (?, ?, ?, ?, ?)').run('handmade', 9500, 'By hand', '/bin/sh', SHA512);
  db.close();
  const { result: s, lines } = captureLogs(() => open(path));
  assert.ok(lines.some((l) => l.event === 'local.store_migrated' && l.from_version === 0 && l.to_version === 1), JSON.stringify(lines));
  const u = s.get('handmade');
  assert.ok(u);
  assert.equal(u.uid, 9500);
  assert.equal(u.passwordHash, SHA512);
  assert.equal(u.context, null);
  assert.deepEqual(u.keys, []);
  assert.equal(u.disabled, false);
  assert.equal(s.database.pragma('user_version', { simple: true }), LOCAL_SCHEMA_VERSION);
  // The migrated file takes changes like a new one, and keeps the uid unique.
  assert.throws(() => s.database.prepare("INSERT INTO users (name, uid) VALUES ('dup', 9500)").run(), /UNIQUE/);
  s.addKey('handmade', KEY1);
  s.close();
});

test('a corrupt or newer file is moved aside with its bytes, reported at err, and a new store is made', () => {
  for (const kind of ['corrupt', 'newer', 'foreign'] as const) {
    const path = fresh();
    open(path).close();
    if (kind === 'corrupt') writeFileSync(path, Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(4000, 0x5a)]));
    else if (kind === 'newer') { const db = new Database(path); db.pragma(`user_version = ${LOCAL_SCHEMA_VERSION + 1}`); db.close(); }
    else { rmSync(path); const db = new Database(path); db.exec('CREATE TABLE other (x)'); db.close(); }
    const before = readFileSync(path);
    const { result: s, lines } = captureLogs(() => open(path));
    const err = lines.find((l) => l.event === 'local.store_unusable');
    assert.ok(err && err.level === 'error', `${kind}: ${JSON.stringify(lines)}`);
    const aside = readdirSync(join(path, '..')).filter((f) => f.startsWith('local.db.bad-'));
    assert.equal(aside.length, 1, `${kind}: ${aside.join(',')}`);
    assert.deepEqual(readFileSync(join(path, '..', aside[0]!)), before, `${kind}: the moved file keeps every byte`);
    assert.equal(s.count(), 0);
    s.add(newUser('after'), RULES);
    s.close();
  }
});

test('a symlink is refused, not followed; so is a file another uid owns', () => {
  const path = fresh();
  open(path).close();
  const target = `${path}.real`;
  copyFileSync(path, target);
  rmSync(path);
  symlinkSync(target, path);
  assert.throws(() => open(path), (e) => code('io')(e) && /symbolic link/.test((e as Error).message));
  assert.ok(existsSync(target), 'the target is left alone');
  if (process.getuid?.() === 0) {
    const other = fresh();
    open(other).close();
    chownSync(other, 12345, 12345);
    assert.throws(() => open(other), (e) => code('io')(e) && /owned by uid 12345/.test((e as Error).message));
  }
});

test('rows that fail the rules are skipped (not served) and logged once; the good ones are served', () => {
  const path = fresh();
  const s = open(path);
  s.add(newUser('good', { keys: [KEY1] }), RULES);
  const raw = s.database;
  const ins = raw.prepare('INSERT INTO users (name, uid, gecos, shell, password_hash, keys, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, 1)');
  ins.run('lowuid', 0, '', null, null, '[]');
  ins.run('colon:name', 9100, '', null, null, '[]');
  ins.run('badshell', 9101, '', '/bin/sh\nroot::0:0::/:/bin/sh', null, '[]');
  ins.run('badhash', 9102, '', null, '$99$nonsense', '[]');
  ins.run('badkeys', 9103, '', null, null, 'not json');
  ins.run('optkey', 9104, '', null, null, JSON.stringify([`command="/bin/sh" ${KEY1}`]));
  ins.run('realuid', 9105.5, '', null, null, '[]');
  raw.prepare('UPDATE users SET disabled = 7 WHERE name = ?').run('good');
  raw.prepare("INSERT INTO users (name, uid, keys, created_at, updated_at) VALUES ('ok2', 9200, '[]', 1, 1)").run();
  const { lines } = captureLogs(() => { s.reindex(); s.reindex(); });
  assert.deepEqual(s.list().map((u) => u.name), ['ok2'], 'only the good row is served');
  for (const name of ['lowuid', 'colon:name', 'badshell', 'badhash', 'badkeys', 'optkey', 'realuid', 'good']) {
    assert.equal(s.get(name), null, name);
    assert.equal(lines.filter((l) => l.event === 'local.row_skipped' && l.user === name).length, 1, `${name} logged once: ${JSON.stringify(lines)}`);
  }
  assert.equal(s.getByUid(0), null);
  s.close();
  // At open too.
  const { result: again, lines: atOpen } = captureLogs(() => open(path));
  assert.deepEqual(again.list().map((u) => u.name), ['ok2']);
  assert.ok(atOpen.some((l) => l.event === 'local.row_skipped' && l.user === 'badshell'));
  again.close();
});

/** A valid store file with two users and snapshot facts, made by the store itself. */
function goodSnapshot(): string {
  const path = fresh();
  const s = open(path);
  s.add(newUser('opsuser', { passwordHash: YESCRYPT, context: 'y5', keys: [KEY1] }), RULES);
  s.add(newUser('partner'), RULES);
  s.setMeta({ takenAt: 1_714_564_000_000, takenOn: 'primary.example.org' });
  s.close();
  return path;
}

test('checkSnapshotFile accepts a good file, and refuses an older one unchanged (migrating would run its SQL)', () => {
  const good = goodSnapshot();
  const r = checkSnapshotFile(good, RULES);
  assert.deepEqual(r, { ok: true, info: { takenAt: 1_714_564_000_000, takenOn: 'primary.example.org', users: 2 } });

  const old = join(TMP, `old${++n}.db`);
  const db = new Database(old);
  db.exec('CREATE TABLE users (name TEXT, uid INTEGER)');
  db.prepare('INSERT INTO users VALUES (?, ?)').run('handmade', 9001);
  db.close();
  const before = readFileSync(old);
  const o = checkSnapshotFile(old, RULES);
  assert.equal(o.ok, false);
  assert.match(!o.ok ? o.error : '', /older than this latchkeyd's/);
  assert.deepEqual(readFileSync(old), before, 'the file checked is not changed');
});

test('checkSnapshotFile refuses truncated, corrupt, empty, newer, foreign and hostile files, and never throws', () => {
  const good = goodSnapshot();
  const bytes = readFileSync(good);
  const bad: Array<[string, (p: string) => void, RegExp]> = [
    ['truncated', (p) => writeFileSync(p, bytes.subarray(0, Math.floor(bytes.length / 2))), /./],
    ['one page', (p) => writeFileSync(p, bytes.subarray(0, 4096)), /./],
    ['corrupt', (p) => { const b = Buffer.from(bytes); b.fill(0xa5, 4096 + 100, Math.min(b.length, 4096 * 2)); b.fill(0x5a, 200, 1500); writeFileSync(p, b); }, /./],
    ['empty', (p) => writeFileSync(p, ''), /empty/],
    ['not sqlite', (p) => writeFileSync(p, 'hello\n'.repeat(1000)), /./],
    ['newer', (p) => { copyFileSync(good, p); const d = new Database(p); d.pragma(`user_version = ${LOCAL_SCHEMA_VERSION + 1}`); d.close(); }, /newer/],
    ['foreign', (p) => { const d = new Database(p); d.exec('CREATE TABLE other (x)'); d.close(); }, /older than this latchkeyd|never has/],
    ['no meta', (p) => { copyFileSync(good, p); const d = new Database(p); d.exec('DROP TABLE meta'); d.close(); }, /lacks part of a latchkey store's schema/],
  ];
  const hostile: Array<[string, string]> = [
    ["UPDATE users SET uid = 0 WHERE name = 'partner'", 'outside'],
    ["UPDATE users SET name = 'root:x' WHERE name = 'partner'", 'the name'],
    ["UPDATE users SET shell = '/bin/sh\nevil' WHERE name = 'partner'", 'shell'],
    ["UPDATE users SET gecos = 'x:0:0' WHERE name = 'partner'", 'gecos'],
    ["UPDATE users SET password_hash = '$0$nope' WHERE name = 'partner'", 'hash'],
    [`UPDATE users SET keys = '["from=\\"*\\" ${KEY1}"]' WHERE name = 'partner'`, 'key 1'],
    ["UPDATE users SET keys = '{}' WHERE name = 'partner'", 'keys'],
    ["UPDATE users SET expires_at = 'soon' WHERE name = 'partner'", 'expires_at'],
    ["UPDATE users SET uid = 9001.5 WHERE name = 'partner'", 'uid'],
  ];
  for (const [sql, expect] of hostile) {
    bad.push([`hostile: ${sql}`, (p) => { copyFileSync(good, p); const d = new Database(p); d.exec(sql); d.close(); }, new RegExp(expect)]);
  }
  // Without the unique constraints (a hand-made table), a uid twice is refused by the check itself.
  bad.push(['uid twice', (p) => {
    const d = new Database(p);
    d.exec(`CREATE TABLE users (name TEXT, uid INTEGER, gecos TEXT NOT NULL DEFAULT '', shell TEXT, password_hash TEXT, context TEXT,
      keys TEXT NOT NULL DEFAULT '[]', expires_at INTEGER, disabled INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL DEFAULT 0,
      updated_at INTEGER NOT NULL DEFAULT 0); CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
      INSERT INTO users (name, uid) VALUES ('a', 9001), ('b', 9001);`);
    d.pragma(`user_version = ${LOCAL_SCHEMA_VERSION}`);
    d.close();
  }, /twice|refused unread/]);
  for (const [what, make, expect] of bad) {
    const p = join(TMP, `snap${++n}.db`);
    make(p);
    let r: ReturnType<typeof checkSnapshotFile> | undefined;
    assert.doesNotThrow(() => { r = checkSnapshotFile(p, RULES); }, what);
    assert.equal(r!.ok, false, `${what} was accepted`);
    assert.match((r as { error: string }).error, expect, what);
  }
  assert.equal(checkSnapshotFile(join(TMP, 'missing.db'), RULES).ok, false);
  const link = join(TMP, `link${++n}.db`);
  symlinkSync(good, link);
  assert.match((checkSnapshotFile(link, RULES) as { error: string }).error, /not a regular file/);
  // Rows valid for one range are refused under another (a secondary's range differs).
  assert.equal(checkSnapshotFile(good, { ...RULES, minUid: 5000, maxUid: 5999 }).ok, false);
});

test('rowProblem: the shape of what may be served', () => {
  const row = { name: 'x', uid: 9000, gecos: 'Room 1/2', shell: '/bin/sh', passwordHash: null, context: null, keys: [KEY1], expiresAt: null };
  assert.equal(rowProblem(row, RULES), null);
  assert.match(rowProblem({ ...row, uid: 10000 }, RULES)!, /outside/);
  assert.match(rowProblem({ ...row, expiresAt: 1.5 }, RULES)!, /expires_at/);
  assert.match(rowProblem({ ...row, context: 'has space' }, RULES)!, /context/);
  assert.match(rowProblem({ ...row, passwordHash: '' }, RULES)!, /empty/);
  assert.match(rowProblem(row, { ...RULES, minUid: 0, maxUid: 0 })!, /min_uid and max_uid/);
});

test('a uid picked for a new user skips the uids the host\'s accounts have', () => {
  const s = open(':memory:', { ...RULES, maxUid: 9003 });
  const host = new Set([9000, 9002]);
  assert.equal(s.add(newUser('first'), RULES, (uid) => host.has(uid)).uid, 9001);
  assert.equal(s.add(newUser('second'), RULES, (uid) => host.has(uid)).uid, 9003);
  assert.throws(() => s.add(newUser('third'), { ...RULES, maxUid: 9003 }, (uid) => host.has(uid)), /host's accounts/);
  s.close();
});
