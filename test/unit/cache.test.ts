// UserCache on a real SQLite file: storage, conflicts, negatives, paging, and bad files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync, statSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { scratchDir } from '../lib/tmp.js';
import { UserCache, SCHEMA_VERSION } from '../../src/cache/db.js';
import { classify, negativeHolds, servableOnUpstreamError, servableWithoutFetch } from '../../src/cache/policy.js';
import { SingleFlight } from '../../src/cache/singleflight.js';
import { Histogram } from '../../src/cache/stats.js';
import type { CachedUser } from '../../src/types.js';
import { setLogSink } from '../../src/log.js';

const dir = (): string => scratchDir('latchkey-cache-');
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
  assert.ok(readdirSync(d).includes('c.db.bad'), 'one copy kept aside');
  writeFileSync(p, 'garbage again, and again');
  UserCache.open(p).close();
  assert.deepEqual(readdirSync(d).filter((f) => f.startsWith('c.db.bad')), ['c.db.bad'], 'never more than one');
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
  assert.equal(classify(exp, exp - 1, { refreshAheadSec: 3600, staleGraceSec: 0 }), 'refresh-ahead');
  assert.equal(classify(exp, exp + 1, { refreshAheadSec: 0, staleGraceSec: 0.001 }), 'dead', 'grace end is exclusive');
  assert.equal(classify(exp, exp, { refreshAheadSec: 0, staleGraceSec: 0.001 }), 'stale-servable');
  assert.deepEqual(['fresh', 'refresh-ahead', 'stale-servable', 'dead'].map((f) => servableWithoutFetch(f as never)), [true, true, false, false]);
  assert.deepEqual(['fresh', 'refresh-ahead', 'stale-servable', 'dead'].map((f) => servableOnUpstreamError(f as never)), [true, true, true, false]);
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
  // The shape src/cli/cmd-status.ts draws (asHistogram): le_Nms keys in order, then +inf.
  assert.deepEqual(Object.keys(s.buckets), ['le_1ms', 'le_2ms', 'le_5ms', 'le_10ms', 'le_25ms', 'le_50ms', 'le_100ms', 'le_250ms', 'le_500ms', 'le_1000ms', 'le_2500ms', 'le_5000ms', '+inf']);
  assert.equal(s.buckets.le_1ms, 98);
  assert.equal(s.buckets['+inf'], 1);
  assert.equal(Object.values(s.buckets).reduce((a, b) => a + b, 0), 100);
  assert.equal(s.sum_ms, 98 * 0.5 + 30 + 7000);
});

test('a cache hit is the right user, served from the memo, not a SQLite step', () => {
  const p = join(dir(), 'c.db');
  const w = UserCache.open(p);
  for (let i = 0; i < 10_000; i++) w.put(user(`user${i}`, 20_000 + i));
  w.close();
  // Reopened, the memo is empty: the first round reads SQLite, the next ones should not.
  const c = UserCache.open(p);
  assert.deepEqual(c.getByName('user42'), user('user42', 20_042));
  // A memo hit hands back the decoded object itself; a SQLite step would build a new one each
  // time. Identity, not a stopwatch, so a noisy machine cannot make this pass or fail.
  const first = c.getByName('user42');
  assert.ok(first === c.getByName('user42'), 'a second hit by name was decoded again: hits no longer come from the memo');
  assert.ok(first === c.getByUid(20_042), 'a hit by uid is not the memo entry filled by the name lookup');
  let wrong = 0;
  for (let i = 0; i < 20_000; i++) if (c.getByName(`user${i % 10_000}`)?.uid !== 20_000 + (i % 10_000)) wrong++;
  assert.equal(wrong, 0);
  c.close();
});

test('account expiry is stored and read back', () => {
  const c = UserCache.open(':memory:');
  c.put(user('alice', 11001, { accountExpiresAt: 123_000 }));
  assert.equal(c.getByName('alice')!.accountExpiresAt, 123_000);
});

test('a file that opens but fails quick_check is recreated', () => {
  const d = dir();
  const p = join(d, 'c.db');
  const c = UserCache.open(p);
  for (let i = 0; i < 2000; i++) c.put(user(`user${i}`, 20_000 + i));
  c.close();
  // Keep the header page (so it still opens as a database at this schema) and scribble on the rest.
  const bytes = readFileSync(p);
  assert.ok(bytes.length > 16 * 4096);
  for (let off = 4096 * 2; off < bytes.length; off += 4096) bytes.fill(0xa5, off + 8, off + 400);
  writeFileSync(p, bytes);
  const lines: string[] = [];
  setLogSink((l) => lines.push(l));
  try {
    const again = UserCache.open(p);
    assert.equal(again.getByName('user1'), null, 'a fresh, empty cache');
    again.put(user('alice', 11001));
    assert.equal(again.getByUid(11001)!.username, 'alice');
    again.close();
  } finally {
    setLogSink((l) => process.stderr.write(l + '\n'));
  }
  assert.ok(lines.some((l) => JSON.parse(l).event === 'cache.recreated'), lines.join('\n'));
});

test('the directory is created world-searchable (nss.sock lives there), the file stays 0600', () => {
  const d = join(dir(), 'run');
  const c = UserCache.open(join(d, 'c.db'));
  c.put(user('alice', 11001));
  assert.equal(statSync(d).mode & 0o777, 0o755 & ~process.umask());
  assert.equal(statSync(join(d, 'c.db')).mode & 0o777, 0o600);
  for (const f of readdirSync(d)) assert.equal(statSync(join(d, f)).mode & 0o077, 0, `${f} is private`);
  c.close();
});

test('reads after every kind of write see the write (no stale decoded copy survives)', () => {
  const c = UserCache.open(':memory:');
  c.put(user('alice', 11001, { expiresAt: 10_000 }));
  assert.equal(c.getByName('alice')!.expiresAt, 10_000);
  c.invalidate({ uid: 11001 }, 5000);
  assert.equal(c.getByName('alice')!.expiresAt, 5000);
  assert.equal(c.getByUid(11001)!.expiresAt, 5000);
  c.put(user('alice', 11001, { gecos: 'new' }));
  assert.equal(c.getByUid(11001)!.gecos, 'new');
  assert.equal(c.remove('alice'), true);
  assert.equal(c.getByName('alice'), null);
  assert.equal(c.getByUid(11001), null);
  c.put(user('bob', 11002));
  assert.ok(c.getByName('bob'));
  c.flush();
  assert.equal(c.getByName('bob'), null);
  assert.equal(c.getByUid(11002), null);
  assert.equal(c.remove('bob'), false);
});

test('touch and deleteNegative', () => {
  const c = UserCache.open(':memory:');
  c.put(user('alice', 11001));
  c.touch('alice', 4242);
  assert.equal((c.db.prepare('SELECT last_used FROM users WHERE name = ?').pluck().get('alice')), 4242);
  c.putNegative('name:bob', 1, 100);
  c.deleteNegative('name:bob');
  assert.equal(c.getNegative('name:bob'), null);
});

test('more users than the in-memory memo holds: every read still right, and quick', () => {
  const c = UserCache.open(':memory:');
  const n = 20_500;
  c.db.transaction(() => { for (let i = 0; i < n; i++) c.put(user(`user${i}`, 20_000 + i)); })();
  for (let i = 0; i < n; i += 1) assert.equal(c.getByName(`user${i}`)!.uid, 20_000 + i);
  c.put(user('user7', 20_007, { gecos: 'changed' }));
  assert.equal(c.getByUid(20_007)!.gecos, 'changed');
  const t0 = process.hrtime.bigint();
  for (let round = 0; round < 3; round++) for (let i = 0; i < n; i++) c.getByUid(20_000 + i);
  const us = Number(process.hrtime.bigint() - t0) / 1e3 / (3 * n);
  assert.ok(us < 50, `${us.toFixed(1)} µs per lookup while cycling past the memo size`);
});
