// UserCache on a real SQLite file: storage, conflicts, negatives, paging, and bad files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, statSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { UserCache, SCHEMA_VERSION } from '../../src/cache/db.js';
import { classify, negativeHolds } from '../../src/cache/policy.js';
import { SingleFlight } from '../../src/cache/singleflight.js';
import { Histogram } from '../../src/cache/stats.js';
import type { CachedUser } from '../../src/types.js';

const dir = (): string => mkdtempSync(join(tmpdir(), 'latchkey-cache-'));
const user = (name: string, uid: number, over: Partial<CachedUser> = {}): CachedUser => ({
  username: name, uid, upstreamUid: uid - 10000, gecos: `${name} gecos`, passwordHash: '$2b$10$abc',
  sshPublicKeys: ['ssh-ed25519 AAAA k1'], fetchedAt: 1000, expiresAt: 5000, accountExpiresAt: null, ...over,
});

test('put and get by name and uid round-trip every field', () => {
  const c = UserCache.open(join(dir(), 'c.db'));
  const u = user('alice', 11001, { passwordHash: null, sshPublicKeys: [] });
  c.put(u);
  assert.deepEqual(c.getByName('alice'), u);
  assert.deepEqual(c.getByUid(11001), u);
  assert.equal(c.getByName('bob'), null);
  assert.equal(c.getByUid(1), null);
  c.close();
});

test('file is 0600 and survives reopen', () => {
  const p = join(dir(), 'c.db');
  const c = UserCache.open(p);
  c.put(user('alice', 11001));
  c.close();
  assert.equal(statSync(p).mode & 0o777, 0o600);
  const again = UserCache.open(p);
  assert.equal(again.getByName('alice')!.uid, 11001);
  again.close();
});

test('a rename or uid reuse upstream never leaves two rows for one uid or name', () => {
  const c = UserCache.open(':memory:');
  c.put(user('alice', 11001));
  c.put(user('alicia', 11001));
  assert.equal(c.getByName('alice'), null);
  assert.equal(c.getByUid(11001)!.username, 'alicia');
  c.put(user('alicia', 11005));
  assert.equal(c.getByUid(11001), null);
  assert.equal(c.all().length, 1);
});

test('negative entries, and storing a user clears its negatives', () => {
  const c = UserCache.open(':memory:');
  c.putNegative('name:bob', 1000, 2000);
  c.putNegative('uid:11002', 1000, 2000);
  assert.equal(c.getNegative('name:bob'), 2000);
  assert.equal(c.negatives().length, 2);
  assert.equal(c.negatives()[0]!.kind, 'name');
  c.put(user('bob', 11002));
  assert.equal(c.getNegative('name:bob'), null);
  assert.equal(c.getNegative('uid:11002'), null);
  c.putNegative('name:x', 0, 10);
  assert.equal(c.purgeNegatives(20), 1);
});

test('listFrom pages in uid order', () => {
  const c = UserCache.open(':memory:');
  for (const uid of [11005, 11001, 11003, 11002, 11004]) c.put(user(`u${uid}`, uid));
  assert.deepEqual(c.listFrom(0, 2).map((u) => u.uid), [11001, 11002]);
  assert.deepEqual(c.listFrom(11003, 10).map((u) => u.uid), [11003, 11004, 11005]);
  assert.deepEqual(c.listFrom(11006, 10), []);
  assert.deepEqual(c.names(), ['u11001', 'u11002', 'u11003', 'u11004', 'u11005']);
});

test('invalidate, flush and counts', () => {
  const c = UserCache.open(':memory:');
  c.put(user('a', 11001, { expiresAt: 10_000 }));
  c.put(user('b', 11002, { expiresAt: 10_000 }));
  c.put(user('c', 11003, { expiresAt: 10_000 }));
  c.putNegative('name:z', 0, 10_000);
  assert.deepEqual(c.counts(5000), { fresh: 3, stale: 0, expired: 0, negative: 1, total: 3 });
  assert.equal(c.invalidate({ name: 'a' }, 5000), 1);
  assert.equal(c.invalidate({ name: 'a' }, 5000), 0, 'already expired');
  assert.equal(c.invalidate({ uid: 11002 }, 5000), 1);
  assert.equal(c.getByName('a')!.expiresAt, 5000);
  assert.deepEqual(c.counts(6000, 10), { fresh: 1, stale: 2, expired: 0, negative: 1, total: 3 });
  assert.deepEqual(c.counts(20_000, 1), { fresh: 0, stale: 0, expired: 3, negative: 0, total: 3 });
  assert.equal(c.invalidate('all', 5000), 1);
  assert.equal(c.flush({ negativeOnly: true }), 1);
  assert.equal(c.all().length, 3);
  assert.equal(c.flush(), 3);
  assert.equal(c.all().length, 0);
});

test('a corrupt file is moved aside and recreated, never a crash', () => {
  const d = dir();
  const p = join(d, 'c.db');
  writeFileSync(p, Buffer.alloc(8192, 0x5a));
  const c = UserCache.open(p);
  c.put(user('alice', 11001));
  assert.equal(c.getByName('alice')!.uid, 11001);
  c.close();
  assert.ok(readdirSync(d).some((f) => f.startsWith('c.db.bad-')));
});

test('a file from an older schema is recreated', () => {
  const d = dir();
  const p = join(d, 'c.db');
  const old = new Database(p);
  old.exec('CREATE TABLE users (name TEXT, uid INTEGER)');
  old.pragma(`user_version = ${SCHEMA_VERSION - 1}`);
  old.close();
  const c = UserCache.open(p);
  c.put(user('alice', 11001));
  assert.equal(c.getByUid(11001)!.username, 'alice');
  c.close();
});

test('a missing directory is created', () => {
  const p = join(dir(), 'deep', 'er', 'c.db');
  const c = UserCache.open(p);
  assert.ok(c.fileSize() > 0);
  c.close();
});

test('freshness policy at its boundaries', () => {
  const cfg = { refreshAheadSec: 10, staleGraceSec: 100 };
  const exp = 1_000_000;
  assert.equal(classify(exp, exp - 10_001, cfg), 'fresh');
  assert.equal(classify(exp, exp - 10_000, cfg), 'refresh-ahead');
  assert.equal(classify(exp, exp - 1, cfg), 'refresh-ahead');
  assert.equal(classify(exp, exp, cfg), 'stale-servable');
  assert.equal(classify(exp, exp + 99_999, cfg), 'stale-servable');
  assert.equal(classify(exp, exp + 100_000, cfg), 'dead');
  assert.equal(classify(exp, exp - 1, { refreshAheadSec: 0, staleGraceSec: 0 }), 'fresh');
  assert.equal(classify(exp, exp, { refreshAheadSec: 0, staleGraceSec: 0 }), 'dead');
  assert.equal(negativeHolds(null, 0), false);
  assert.equal(negativeHolds(10, 9), true);
  assert.equal(negativeHolds(10, 10), false);
});

test('single-flight shares one call among concurrent askers and forgets it afterwards', async () => {
  const sf = new SingleFlight<string, number>();
  let calls = 0;
  const fn = async (): Promise<number> => { calls++; await new Promise((r) => setTimeout(r, 20)); return calls; };
  const rs = await Promise.all(Array.from({ length: 100 }, () => sf.do('k', fn)));
  assert.equal(calls, 1);
  assert.ok(rs.every((r) => r === 1));
  assert.equal(sf.size, 0);
  assert.equal(await sf.do('k', fn), 2);
});

test('histogram quantiles come from the right bucket', () => {
  const h = new Histogram();
  assert.equal(h.quantile(0.5), null);
  for (let i = 0; i < 98; i++) h.record(0.5);
  h.record(30);
  h.record(7000);
  const s = h.snapshot();
  assert.equal(s.count, 100);
  assert.equal(s.p50_ms, 1);
  assert.equal(s.p99_ms, 50);
  assert.equal(s.max_ms, 7000);
  assert.equal(h.quantile(1), 7000);
});

test('cache hit cost (reported, not asserted)', () => {
  const c = UserCache.open(join(dir(), 'c.db'));
  for (let i = 0; i < 10_000; i++) c.put(user(`user${i}`, 20_000 + i));
  const n = 100_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) c.getByName(`user${i % 10_000}`);
  const us = Number(process.hrtime.bigint() - t0) / 1e3 / n;
  process.stdout.write(`# getByName: ${us.toFixed(2)} µs per call over 10k users\n`);
  c.close();
});

test('account expiry is stored and read back', () => {
  const c = UserCache.open(':memory:');
  c.put(user('alice', 11001, { accountExpiresAt: 123_000 }));
  assert.equal(c.getByName('alice')!.accountExpiresAt, 123_000);
});
