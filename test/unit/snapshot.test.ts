// Snapshot sync on one host (src/localusers/snapshot.ts, sync-pull.ts): the primary's publisher
// writes a complete, checked file by rename only; the secondary's follower takes a good file and
// refuses a truncated, a corrupt, a newer-schema and a hostile one, keeping the old store each
// time and saying why in status(); the real rsync replaces incoming/local.db by rename, never in
// place. Two hosts over ssh are test/integration/local-sync.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  closeSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync, fstatSync, existsSync, readdirSync,
} from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { scratchDir } from '../lib/tmp.js';
import { LocalStore, checkSnapshotFile } from '../../src/localusers/store.js';
import type { RowRules } from '../../src/localusers/rows.js';
import { SnapshotFollower, SnapshotPublisher } from '../../src/localusers/snapshot.js';
import { rsyncArgs, syncPaths, writeSyncStatus, parseSyncStatus, explainFailure } from '../../src/localusers/sync-pull.js';
import { defaultConfig } from '../../src/config/load.js';
import { setLogSink } from '../../src/log.js';

const RULES: RowRules = { users: { nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/ }, minUid: 9000, maxUid: 9999 };

const logs: string[] = [];
setLogSink((l) => logs.push(l));

function openStore(dir: string): LocalStore {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return LocalStore.open(join(dir, 'local.db'), { rules: () => RULES });
}

function addUser(s: LocalStore, name: string, uid: number | null = null): void {
  s.add({ name, uid, gecos: `${name} test`, shell: null, passwordHash: null, context: null, keys: [], expiresAt: null }, RULES);
}

/** A primary with these users, its snapshot published once; returns the snapshot's bytes. */
async function primaryWith(names: string[]): Promise<{ store: LocalStore; pub: SnapshotPublisher; bytes: Buffer }> {
  const store = openStore(join(scratchDir('latchkey-snap-p-'), 'state'));
  for (const n of names) addUser(store, n);
  const pub = new SnapshotPublisher(store, { host: 'primary.test', debounceMs: 20 });
  await pub.start();
  return { store, pub, bytes: readFileSync(pub.paths.snapshotFile) };
}

/** Drops a file in incoming/ as rsync does: a temp name, then rename. */
function deliver(f: SnapshotFollower, bytes: Buffer): void {
  mkdirSync(f.paths.incomingDir, { recursive: true, mode: 0o700 });
  const tmp = join(f.paths.incomingDir, `.local.db.${Math.random().toString(36).slice(2)}`);
  writeFileSync(tmp, bytes, { mode: 0o600 });
  renameSync(tmp, f.paths.incomingFile);
}

function secondary(): { store: LocalStore; f: SnapshotFollower } {
  const store = openStore(join(scratchDir('latchkey-snap-s-'), 'state'));
  addUser(store, 'old', 9500);
  const f = new SnapshotFollower(store, { rules: () => RULES, pollMs: 50 });
  return { store, f };
}

/** Edits a copy of a good snapshot with SQL and returns its bytes. */
function edited(bytes: Buffer, sql: (db: Database.Database) => void): Buffer {
  const p = join(scratchDir('latchkey-snap-e-'), 'x.db');
  writeFileSync(p, bytes);
  const db = new Database(p);
  sql(db);
  db.close();
  return readFileSync(p);
}

test('publisher: snapshot/local.db is a checked copy with taken_at/taken_on, 0640, renamed into place after each change', async () => {
  const { store, pub, bytes } = await primaryWith(['alice', 'bob']);
  try {
    const p = pub.paths;
    const st = statSync(p.snapshotFile);
    assert.equal(st.mode & 0o777, 0o640, 'group-readable for the sync account, nobody else');
    assert.equal(st.gid, process.getegid!());
    assert.equal(statSync(p.snapshotDir).mode & 0o777, 0o750);
    assert.equal(statSync(p.dir).mode & 0o077, 0o010, 'the state dir gets group search only');
    assert.equal(statSync(store.path).mode & 0o777, 0o600, 'the store itself stays private');
    assert.ok(bytes.length > 0);
    const c = checkSnapshotFile(p.snapshotFile, RULES);
    assert.ok(c.ok, JSON.stringify(c));
    assert.equal(c.info.users, 2);
    assert.equal(c.info.takenOn, 'primary.test');
    assert.ok(c.info.takenAt !== null && Math.abs(c.info.takenAt - Date.now()) < 10_000);
    assert.deepEqual(pub.status().snapshot, c.info);
    assert.equal(pub.status().lastSyncError, null);
    assert.ok(!existsSync(p.snapshotTmp), 'no temp file left');
    assert.deepEqual(readdirSync(p.snapshotDir), ['local.db']);

    // A reader (rsync on the sync account) holding the old file keeps reading the whole old file:
    // the new snapshot is a new inode renamed over the name, never a rewrite of the old one.
    const held = openSync(p.snapshotFile, 'r');
    const oldIno = fstatSync(held).ino;
    addUser(store, 'carol');
    store.remove('bob');
    await pub.idle();
    const now = checkSnapshotFile(p.snapshotFile, RULES);
    assert.ok(now.ok);
    assert.equal(now.info.users, 2);
    assert.notEqual(statSync(p.snapshotFile).ino, oldIno, 'a new file, renamed into place');
    const oldCopy = join(scratchDir('latchkey-snap-held-'), 'old.db');
    const buf = Buffer.alloc(fstatSync(held).size);
    readSync(held, buf, 0, buf.length, 0);
    closeSync(held);
    writeFileSync(oldCopy, buf);
    const old = checkSnapshotFile(oldCopy, RULES);
    assert.ok(old.ok, 'the file a reader held is still the complete old snapshot');
    const names = new Database(oldCopy, { readonly: true }).prepare('SELECT name FROM users ORDER BY name').pluck().all();
    assert.deepEqual(names, ['alice', 'bob']);
    const newNames = new Database(p.snapshotFile, { readonly: true }).prepare('SELECT name FROM users ORDER BY name').pluck().all();
    assert.deepEqual(newNames, ['alice', 'carol']);
  } finally {
    await pub.stop();
    store.close();
  }
});

test('publisher: a failed publish is logged once and shown in status; the next change publishes again', async () => {
  const { store, pub } = await primaryWith(['alice']);
  try {
    const p = pub.paths;
    // A directory where the file goes: the rename fails.
    rmSync(p.snapshotFile);
    mkdirSync(join(p.snapshotFile, 'x'), { recursive: true });
    logs.length = 0;
    addUser(store, 'bob');
    await pub.idle();
    addUser(store, 'carol');
    await pub.idle();
    assert.match(pub.status().lastSyncError ?? '', /^cannot publish .*snapshot\/local\.db/);
    assert.equal(logs.filter((l) => l.includes('"local.snapshot_failed"')).length, 1, 'the same failure is logged once');
    assert.ok(!existsSync(p.snapshotTmp), 'no temp file left behind');
    rmSync(p.snapshotFile, { recursive: true });
    addUser(store, 'dave');
    await pub.idle();
    assert.equal(pub.status().lastSyncError, null);
    const c = checkSnapshotFile(p.snapshotFile, RULES);
    assert.ok(c.ok && c.info.users === 4, JSON.stringify(c));
  } finally {
    await pub.stop();
    store.close();
  }
});

test('follower: a good snapshot replaces the store (by rename) and status shows where it came from', async () => {
  const { store: ps, pub, bytes } = await primaryWith(['alice', 'bob']);
  await pub.stop();
  ps.close();
  const { store, f } = secondary();
  try {
    assert.equal(f.check(), 'none');
    assert.equal(f.status().snapshot, null);
    const before = statSync(store.path).ino;
    deliver(f, bytes);
    assert.equal(f.check(), 'taken');
    assert.notEqual(statSync(store.path).ino, before, 'the store was replaced by rename');
    assert.equal(statSync(store.path).mode & 0o777, 0o600);
    assert.ok(store.get('alice') && store.get('bob'));
    assert.equal(store.get('old'), null, 'the secondary is a copy of the primary');
    const s = f.status();
    assert.equal(s.snapshot?.takenOn, 'primary.test');
    assert.equal(s.snapshot?.users, 2);
    assert.equal(s.lastSyncError, null);
    assert.equal(f.check(), 'unchanged');
    // The same snapshot again (an unchanged file re-sent, or a restart): nothing is swapped.
    deliver(f, bytes);
    const ino = statSync(store.path).ino;
    assert.equal(f.check(), 'current');
    assert.equal(statSync(store.path).ino, ino);
    assert.deepEqual(readdirSync(f.paths.dir).sort(), ['incoming', 'local.db'], 'no temp or backup file left');
  } finally {
    f.stop();
    store.close();
  }
});

test('follower: an older snapshot than the one in use (a replay) is refused, the newer store kept', async () => {
  const { store: ps, pub, bytes: first } = await primaryWith(['alice', 'bob']);
  ps.remove('bob');
  await new Promise((r) => setTimeout(r, 5));
  pub.changed();
  await pub.idle();
  const second = readFileSync(pub.paths.snapshotFile);
  await pub.stop();
  ps.close();
  const { store, f } = secondary();
  try {
    deliver(f, second);
    assert.equal(f.check(), 'taken');
    assert.equal(store.get('bob'), null);
    deliver(f, first);
    assert.equal(f.check(), 'rejected');
    assert.equal(store.get('bob'), null, 'a user removed on the primary does not come back');
    assert.match(f.status().lastSyncError ?? '', /before the one in use/);
  } finally {
    f.stop();
    store.close();
  }
});

test('follower: truncated, corrupt, newer-schema and hostile snapshots are refused, the old store kept, status says why', async () => {
  const { store: ps, pub, bytes } = await primaryWith(['alice']);
  await pub.stop();
  ps.close();
  const corrupt = Buffer.from(bytes);
  // Page 2 onward (the users table's pages) overwritten: the header still says SQLite.
  corrupt.fill(0xa5, 4096, Math.min(corrupt.length, 4096 * 2));
  const bad: Array<[string, Buffer, RegExp]> = [
    ['truncated', bytes.subarray(0, Math.floor(bytes.length / 2)), /refused/],
    ['corrupt', corrupt, /refused/],
    ['newer schema', edited(bytes, (db) => db.pragma('user_version = 99')), /newer/],
    ['uid 0', edited(bytes, (db) => db.prepare("INSERT INTO users (name, uid, keys) VALUES ('evil', 0, '[]')").run()), /uid 0|range/],
    ['a name that breaks passwd', edited(bytes, (db) => db.prepare("INSERT INTO users (name, uid, keys) VALUES ('x:0:0', 9001, '[]')").run()), /name/],
    ['a shell with a newline', edited(bytes, (db) => db.prepare("UPDATE users SET shell = '/bin/sh\nroot::0:0::/:/bin/sh'").run()), /shell/],
    ['empty', Buffer.alloc(0), /empty/],
  ];
  const { store, f } = secondary();
  try {
    for (const [what, b, why] of bad) {
      logs.length = 0;
      const before = statSync(store.path).ino;
      deliver(f, b);
      assert.equal(f.check(), 'rejected', what);
      assert.equal(statSync(store.path).ino, before, `${what}: the store file is untouched`);
      assert.ok(store.get('old'), `${what}: the old users are still served`);
      assert.equal(store.get('alice'), null, what);
      const s = f.status();
      assert.match(s.lastSyncError ?? '', /was refused: .*previous local users stay in use/, what);
      assert.match(s.lastSyncError ?? '', why, what);
      const lines = logs.filter((l) => l.includes('local.snapshot_rejected'));
      assert.equal(lines.length, 1, `${what}: logged at err once`);
      assert.match(lines[0]!, /"level":"error"/);
      assert.match(lines[0]!, /"fix":/);
      // The poll sees the same file again: no second line.
      assert.equal(f.check(), 'unchanged');
      assert.equal(logs.filter((l) => l.includes('local.snapshot_rejected')).length, 1, `${what}: once per file`);
      assert.deepEqual(readdirSync(f.paths.dir).sort(), ['incoming', 'local.db'], `${what}: no temp file left`);
    }
    // The next good file is taken and the error clears.
    deliver(f, bytes);
    assert.equal(f.check(), 'taken');
    assert.ok(store.get('alice'));
    assert.equal(f.status().lastSyncError, null);
  } finally {
    f.stop();
    store.close();
  }
});

test('follower: started, it notices a file rsync renamed into incoming/ by itself', async () => {
  const { store: ps, pub, bytes } = await primaryWith(['dora']);
  await pub.stop();
  ps.close();
  const { store, f } = secondary();
  try {
    f.start();
    deliver(f, bytes);
    const deadline = Date.now() + 5000;
    while (!store.get('dora') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(store.get('dora'), 'taken without an explicit check()');
  } finally {
    f.stop();
    store.close();
  }
});

test("follower status: latchkey-sync's last result from incoming/sync-status.json", () => {
  const { store, f } = secondary();
  try {
    mkdirSync(f.paths.incomingDir, { recursive: true });
    assert.deepEqual(f.status(), { snapshot: null, lastSyncAt: null, lastSyncError: null });
    writeSyncStatus(f.paths, { at: 1_700_000_000_000, ok: false, error: 'rsync exited 255: the primary refused the key' });
    assert.deepEqual(f.status(), { snapshot: null, lastSyncAt: 1_700_000_000_000, lastSyncError: 'latchkey-sync failed: rsync exited 255: the primary refused the key' });
    writeSyncStatus(f.paths, { at: 1_700_000_100_000, ok: true, error: null });
    assert.deepEqual(f.status(), { snapshot: null, lastSyncAt: 1_700_000_100_000, lastSyncError: null });
    writeFileSync(f.paths.statusFile, '{"at": "yesterday"}');
    assert.match(f.status().lastSyncError ?? '', /not a latchkey-sync status file/);
    assert.equal(parseSyncStatus('{"at":1,"ok":true,"error":null}')?.ok, true);
    assert.equal(parseSyncStatus('[]'), null);
  } finally {
    store.close();
  }
});

test('latchkey-sync: the rsync command pins the host key, the key and the port, and never writes in place', () => {
  const l = { ...defaultConfig().local, role: 'secondary' as const, primary: 'latchkey-sync@primary.example.org', syncPort: 2222 };
  const paths = syncPaths('/var/lib/latchkey/local.db');
  assert.equal(paths.incomingFile, '/var/lib/latchkey/incoming/local.db');
  assert.equal(paths.snapshotFile, '/var/lib/latchkey/snapshot/local.db');
  const args = rsyncArgs(l, paths);
  assert.deepEqual(args.slice(-2), ['latchkey-sync@primary.example.org:local.db', '/var/lib/latchkey/incoming/local.db']);
  assert.ok(!args.some((a) => /^--(inplace|partial|append)/.test(a)), 'rsync must write a temp file and rename it');
  const e = args[args.indexOf('-e') + 1]!;
  for (const want of ['-F none', "-i '/etc/latchkey/sync_ed25519'", '-p 2222', 'BatchMode=yes', 'StrictHostKeyChecking=yes',
    "UserKnownHostsFile='/etc/latchkey/sync_known_hosts'", 'GlobalKnownHostsFile=none']) {
    assert.ok(e.includes(want), `${want} in ${e}`);
  }
  assert.throws(() => rsyncArgs({ ...l, syncKey: "/etc/it's" }, paths), /quote/);
  assert.throws(() => rsyncArgs({ ...l, primary: null }, paths), /primary/);
  assert.match(explainFailure(255, 'Host key verification failed.\r\n', l), /sync_known_hosts; add it/);
  assert.match(explainFailure(255, 'latchkey-sync@primary.example.org: Permission denied (publickey).', l), /refused the key/);
});

test('the real rsync with these options replaces incoming/local.db by rename: a reader never sees a partial file', () => {
  const dir = scratchDir('latchkey-snap-rsync-');
  const paths = syncPaths(join(dir, 'local.db'));
  mkdirSync(paths.incomingDir, { recursive: true });
  const src = join(dir, 'src.db');
  writeFileSync(src, Buffer.alloc(3 << 20, 1));
  // The options latchkey-sync passes, with a local source instead of "-e ssh PRIMARY:".
  const local = (): string[] => {
    const a = rsyncArgs({ ...defaultConfig().local, primary: 'x@y' }, paths);
    const i = a.indexOf('-e');
    a.splice(i, 2);
    a.splice(a.length - 2, 1, src);
    return a;
  };
  let r = spawnSync('rsync', local(), { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const held = openSync(paths.incomingFile, 'r');
  const first = fstatSync(held);
  writeFileSync(src, Buffer.alloc(3 << 20, 2));
  r = spawnSync('rsync', local(), { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const after = statSync(paths.incomingFile);
  assert.notEqual(after.ino, first.ino, 'a new inode: written under a temp name and renamed');
  const b = Buffer.alloc(16);
  readSync(held, b, 0, 16, (3 << 20) - 16);
  closeSync(held);
  assert.deepEqual([...b], new Array(16).fill(1), 'the file a reader had open was never rewritten');
  assert.equal(readFileSync(paths.incomingFile)[0], 2);
});
