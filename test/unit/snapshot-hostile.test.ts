// A snapshot is what a primary (or anyone who took its place) hands a secondary: a SQLite file
// whose schema is the sender's. These files make a value of gigabytes out of a few bytes, or run
// the sender's SQL for seconds per row, the moment a check evaluates them; checkSnapshotFile must
// refuse each one from sqlite_master alone (the schema must be the store's, byte for byte),
// quickly and without growing the process.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { checkSnapshotFile, LocalStore, LOCAL_SCHEMA_VERSION } from '../../src/localusers/store.js';
import type { RowRules } from '../../src/localusers/rows.js';

const dir = mkdtempSync(join(tmpdir(), 'latchkey-hostile-snap-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const rules: RowRules = { users: { nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/ }, minUid: 9000, maxUid: 9999 };

const COLUMNS = `name TEXT PRIMARY KEY, uid INTEGER NOT NULL UNIQUE, shell TEXT, password_hash TEXT, context TEXT,
  keys TEXT NOT NULL DEFAULT '[]', expires_at INTEGER, disabled INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL DEFAULT 0`;
/** A gigabyte-sized value on every read, from a few bytes on disk. */
const BOMB = "printf('%.*c', 400000000, 'x')";

function file(name: string, sql: string): string {
  const p = join(dir, name);
  const db = new Database(p);
  db.exec(`${sql}; CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);`);
  db.exec("INSERT INTO users (name, uid) VALUES ('u1', 9001), ('u2', 9002), ('u3', 9003)");
  db.pragma(`user_version = ${LOCAL_SCHEMA_VERSION}`);
  db.close();
  return p;
}

const CASES: Array<[string, string, RegExp]> = [
  ['generated column', `CREATE TABLE users (${COLUMNS}, gecos TEXT GENERATED ALWAYS AS (${BOMB}) VIRTUAL)`, /not defined as a latchkey store defines it/],
  ['stored generated column', `CREATE TABLE users (${COLUMNS}, gecos TEXT NOT NULL DEFAULT '', extra TEXT GENERATED ALWAYS AS (upper(name)) STORED)`, /not defined as a latchkey store defines it/],
  // integrity_check evaluates CHECK constraints on every row (seconds each), even with trusted_schema off.
  ['CHECK constraint', `CREATE TABLE users (${COLUMNS}, gecos TEXT NOT NULL DEFAULT '' CHECK (length(replace(${BOMB.replace('400000000', '20000000')}, 'x', 'xx')) > 0))`, /not defined as a latchkey store defines it/],
  // A DEFAULT fills rows written before its column was added, on every read.
  ['DEFAULT expression', `CREATE TABLE users (${COLUMNS}, gecos TEXT NOT NULL DEFAULT '${'d'.repeat(200_000)}')`, /not defined as a latchkey store defines it/],
  ['expression index', `CREATE TABLE users (${COLUMNS}, gecos TEXT NOT NULL DEFAULT ''); CREATE INDEX bomb ON users (${BOMB.replace('400000000', 'uid * 100000')})`, /refused unread/],
  ['trigger', `CREATE TABLE users (${COLUMNS}, gecos TEXT NOT NULL DEFAULT ''); CREATE TRIGGER t AFTER UPDATE ON users BEGIN DELETE FROM users; END`, /refused unread/],
  ['view', `CREATE TABLE users (${COLUMNS}, gecos TEXT NOT NULL DEFAULT ''); CREATE VIEW v AS SELECT ${BOMB} AS x`, /refused unread/],
  ['another table', `CREATE TABLE users (${COLUMNS}, gecos TEXT NOT NULL DEFAULT ''); CREATE TABLE extra (x)`, /refused unread/],
  ['an unknown column', `CREATE TABLE users (${COLUMNS}, gecos TEXT NOT NULL DEFAULT '', evil TEXT)`, /not defined as a latchkey store defines it/],
];

for (const [what, sql, why] of CASES) {
  test(`a snapshot with a ${what} is refused unread`, () => {
    const p = file(`${what.replace(/\W/g, '_')}.db`, sql);
    const rss = process.memoryUsage().rss;
    const t0 = performance.now();
    const r = checkSnapshotFile(p, rules);
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.error : '', why);
    assert.ok(performance.now() - t0 < 2000, 'refused without evaluating anything');
    assert.ok(process.memoryUsage().rss - rss < 64 * 1024 * 1024, 'no value was built');
  });
}

/** A snapshot as a primary's store makes it, with three users. */
function storeFile(name: string): string {
  const p = join(dir, name);
  const st = LocalStore.open(p, { rules: () => rules });
  for (const [n, uid] of [['u1', 9001], ['u2', 9002], ['u3', 9003]] as const) {
    st.add({ name: n, uid, gecos: '', shell: null, passwordHash: null, context: null, keys: [], expiresAt: null }, rules);
  }
  st.close();
  return p;
}

test('a plain row holding a huge value is refused before any row is read', () => {
  const p = storeFile('huge.db');
  const db = new Database(p);
  db.prepare('UPDATE users SET gecos = ? WHERE name = ?').run('g'.repeat(300 * 1024), 'u2');
  db.close();
  const r = checkSnapshotFile(p, rules);
  assert.equal(r.ok, false);
  assert.match(!r.ok ? r.error : '', /longer than/);
});

test('a uid outside this host\'s range is refused before any row is read', () => {
  const p = storeFile('outside.db');
  const db = new Database(p);
  db.prepare('UPDATE users SET uid = 0 WHERE name = ?').run('u3');
  db.close();
  const r = checkSnapshotFile(p, rules);
  assert.match(!r.ok ? r.error : '', /uid 0 is outside/);
});

test('a store\'s own file passes', () => {
  const r = checkSnapshotFile(storeFile('plain.db'), rules);
  assert.equal(r.ok, true, !r.ok ? r.error : '');
  assert.equal(r.ok && r.info.users, 3);
});
