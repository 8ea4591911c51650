// The cache file's faults in src/cache/db.ts (the integration rows are in
// test/integration/fault-matrix.test.ts): a file that refuses writes (SQLITE_FULL, simulated
// with max_page_count), deleted, or overwritten while open; and src/daemon/clock.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, unlinkSync, existsSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { UserCache } from '../../src/cache/db.js';
import { ClockWatch, CLOCK_JUMP_MS } from '../../src/daemon/clock.js';
import { setLogSink } from '../../src/log.js';
import type { CachedUser } from '../../src/types.js';

const lines: Array<Record<string, unknown>> = [];
setLogSink((line) => { lines.push(JSON.parse(line) as Record<string, unknown>); });
const logged = (event: string): number => lines.filter((l) => l.event === event).length;

const NOW = Date.now();
function user(i: number, keys = 0): CachedUser {
  return {
    username: `u${i}`, uid: 20_000 + i, upstreamUid: 10_000 + i, gecos: 'g', passwordHash: null,
    sshPublicKeys: Array.from({ length: keys }, (_, k) => `ssh-ed25519 AAAA${'x'.repeat(60)} k${k}`),
    fetchedAt: NOW, expiresAt: NOW + 3_600_000, accountExpiresAt: null,
  };
}
function namesIn(file: string): string[] {
  const db = new Database(file, { readonly: true });
  try { return db.prepare('SELECT name FROM users ORDER BY uid').pluck().all() as string[]; } finally { db.close(); }
}
function scratch(): { dir: string; file: string; done(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'lk-cache-faults-'));
  return { dir, file: join(dir, 'cache.db'), done: () => rmSync(dir, { recursive: true, force: true }) };
}

test('a full file: users are answered from memory, the error is said once and clears itself, the held users are written', () => {
  const s = scratch();
  const c = UserCache.open(s.file);
  try {
    c.put(user(0));
    const pages = c.db.pragma('page_count', { simple: true }) as number;
    c.db.pragma(`max_page_count = ${pages + 2}`);
    const before = logged('cache.write_failed');
    let i = 1;
    for (; i < 40 && c.fileStatus().write_error === null; i++) c.put(user(i, 40));
    assert.equal(c.fileStatus().write_error?.code, 'SQLITE_FULL');
    for (let k = 0; k < 3; k++, i++) c.put(user(i, 40));
    // served from memory, by name and by uid, listed and counted
    for (let k = 1; k < i; k++) assert.equal(c.getByName(`u${k}`)?.uid, 20_000 + k);
    assert.equal(c.getByUid(20_000 + i - 1)?.username, `u${i - 1}`);
    assert.equal(c.all().length, i);
    assert.equal(c.counts(NOW).total, i);
    assert.ok(c.fileStatus().unsaved >= 3);
    assert.equal(logged('cache.write_failed') - before, 1, 'once per state change');
    // room again: the next write clears it and writes what memory held
    c.db.pragma('max_page_count = 1073741823');
    c.put(user(100));
    assert.equal(c.fileStatus().write_error, null);
    assert.equal(c.fileStatus().unsaved, 0);
    assert.equal(logged('cache.write_recovered'), 1);
    c.close();
    assert.equal(namesIn(s.file).length, i + 1);
  } finally { s.done(); }
});

test('users held in memory follow invalidate, flush and the sweep like rows', () => {
  const s = scratch();
  const c = UserCache.open(s.file);
  try {
    c.put(user(0));
    c.db.pragma(`max_page_count = ${c.db.pragma('page_count', { simple: true }) as number}`);
    for (let i = 1; i < 30 && c.fileStatus().unsaved === 0; i++) c.put(user(i, 40));
    const held = c.all().find((u) => u.username !== 'u0')!;
    assert.ok(c.fileStatus().unsaved > 0);
    c.invalidate({ name: held.username }, NOW);
    assert.equal(c.getByName(held.username)?.expiresAt, NOW);
    assert.ok(c.removeExpiredBefore(NOW) >= 1);
    assert.equal(c.getByName(held.username), null);
    c.flush();
    assert.equal(c.fileStatus().unsaved, 0);
    assert.equal(c.all().length, 0);
  } finally { c.close(); s.done(); }
});

test('the file deleted while open: the next write recreates it with every user, logged once', () => {
  const s = scratch();
  const c = UserCache.open(s.file);
  try {
    for (let i = 0; i < 5; i++) c.put(user(i));
    const before = logged('cache.recreated');
    for (const suffix of ['', '-wal', '-shm']) if (existsSync(s.file + suffix)) unlinkSync(s.file + suffix);
    c.put(user(5));
    assert.equal(logged('cache.recreated') - before, 1);
    assert.match(String(c.fileStatus().recreated?.reason), /deleted/);
    assert.equal(c.fileStatus().recreated?.restored_users, 5);
    c.checkFile();
    assert.equal(logged('cache.recreated') - before, 1, 'the new file is the one open');
    c.close();
    assert.deepEqual(namesIn(s.file), ['u0', 'u1', 'u2', 'u3', 'u4', 'u5']);
  } finally { s.done(); }
});

test('the file overwritten while open: the sweep moves it aside and recreates it', () => {
  const s = scratch();
  const c = UserCache.open(s.file);
  try {
    for (let i = 0; i < 3; i++) c.put(user(i));
    c.db.pragma('wal_checkpoint(TRUNCATE)');
    const fd = openSync(s.file, 'r+');
    writeSync(fd, Buffer.alloc(512, 0x41), 0, 512, 0);
    closeSync(fd);
    c.checkFile();
    assert.match(String(c.fileStatus().recreated?.reason), /overwritten/);
    assert.ok(existsSync(`${s.file}.bad`));
    assert.equal(c.getByName('u2')?.uid, 20_002);
    c.close();
    assert.deepEqual(namesIn(s.file), ['u0', 'u1', 'u2']);
  } finally { s.done(); }
});

test('clock watch: drift is not a jump; a step either way is logged once and kept', () => {
  let wall = 1_000_000;
  let mono = 0;
  const w = new ClockWatch(() => wall, () => mono);
  const before = logged('clock.jump');
  wall += 5_000; mono += 5_000 - 30; // 30 ms of drift
  assert.equal(w.check(), null);
  wall += CLOCK_JUMP_MS; mono += 0; // exactly the threshold: not a jump
  assert.equal(w.check(), null);
  wall += 90_000; mono += 1_000;
  assert.deepEqual(w.check(), { at: wall, delta_ms: 89_000, direction: 'forward' });
  wall -= 3_600_000; mono += 1_000;
  assert.equal(w.check()?.direction, 'back');
  assert.equal(w.status().jumps, 2);
  assert.equal(w.status().last_jump?.delta_ms, -3_601_000);
  assert.equal(logged('clock.jump') - before, 2);
});
