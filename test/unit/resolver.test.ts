// The resolver state machine with a controllable clock and an in-memory user source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UserCache } from '../../src/cache/db.js';
import { Resolver } from '../../src/cache/resolver.js';
import { defaultConfig } from '../../src/config/load.js';
import { UpstreamError } from '../../src/errors.js';
import type { UserSource, FetchResult } from '../../src/upstream/types.js';
import type { UpstreamUser } from '../../src/types.js';
import type { Config } from '../../src/config/types.js';

class FakeSource implements UserSource {
  users = new Map<string, UpstreamUser>();
  calls = 0;
  failing = false;
  delayMs = 0;
  add(name: string, upstreamUid: number): void {
    this.users.set(name, { username: name, upstreamUid, passwordHash: null, sshPublicKeys: [], gecos: name });
  }
  private async answer(u: UpstreamUser | undefined): Promise<FetchResult> {
    this.calls++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failing) throw new UpstreamError('http', 'upstream answered 503');
    return u ? { kind: 'found', user: { ...u } } : { kind: 'notfound' };
  }
  fetchByName(name: string): Promise<FetchResult> { return this.answer(this.users.get(name)); }
  fetchByUid(uid: number): Promise<FetchResult> { return this.answer([...this.users.values()].find((u) => u.upstreamUid === uid)); }
  lastError(): null { return null; }
  async close(): Promise<void> { /* nothing held */ }
}

function setup(cache: Partial<Config['cache']> = {}): { r: Resolver; src: FakeSource; clock: { t: number }; db: UserCache; cfg: Config } {
  const cfg = defaultConfig();
  cfg.cache = { ...cfg.cache, ttlSec: 100, negativeTtlSec: 10, staleGraceSec: 50, refreshAheadSec: 0, ...cache };
  cfg.homes.base = '/srv/inbox';
  const src = new FakeSource();
  src.add('alice', 1001);
  src.add('bob', 1002);
  const clock = { t: 1_000_000 };
  const db = UserCache.open(':memory:');
  return { r: new Resolver(db, src, () => cfg, () => clock.t), src, clock, db, cfg };
}

test('first lookup fetches, second is a hit with no upstream call', async () => {
  const { r, src } = setup();
  const a = await r.byName('alice');
  assert.equal(a.status, 'found');
  assert.equal(a.status === 'found' && a.source, 'upstream');
  assert.equal(a.status === 'found' && a.user.uid, 11001);
  const b = await r.byName('alice');
  assert.equal(b.status === 'found' && b.source, 'cache');
  assert.equal(src.calls, 1);
  const c = await r.byUid(11001);
  assert.equal(c.status === 'found' && c.source, 'cache');
  assert.equal(src.calls, 1);
});

test('by uid applies the shift and refuses uids outside the range without a fetch', async () => {
  const { r, src } = setup();
  const b = await r.byUid(11002);
  assert.equal(b.status === 'found' && b.user.username, 'bob');
  for (const uid of [0, 1, 999, 65534, 2 ** 31]) assert.deepEqual(await r.byUid(uid), { status: 'notfound', source: 'rule' });
  assert.equal(src.calls, 1);
});

test('names failing the rule never reach the cache or upstream', async () => {
  const { r, src } = setup();
  for (const n of ['', 'Alice', 'root:x', 'a/b', 'a\nb', 'x'.repeat(33), '-a', 'é']) {
    assert.deepEqual(await r.byName(n), { status: 'notfound', source: 'rule' }, JSON.stringify(n));
  }
  assert.equal(src.calls, 0);
});

test('expiry refetches and picks up upstream changes', async () => {
  const { r, src, clock } = setup();
  await r.byName('alice');
  src.users.get('alice')!.gecos = 'changed';
  clock.t += 99_000;
  assert.equal((await r.byName('alice')).status === 'found' && src.calls, 1);
  clock.t += 2_000;
  const l = await r.byName('alice');
  assert.equal(l.status === 'found' && l.user.gecos, 'changed');
  assert.equal(src.calls, 2);
});

test('100 concurrent lookups of a cold user make one upstream request', async () => {
  const { r, src } = setup();
  src.delayMs = 20;
  const all = await Promise.all(Array.from({ length: 100 }, () => r.byName('alice')));
  assert.ok(all.every((l) => l.status === 'found'));
  assert.equal(src.calls, 1);
});

test('negative entries are cached for their own TTL', async () => {
  const { r, src, clock } = setup();
  assert.deepEqual(await r.byName('nobody1'), { status: 'notfound', source: 'upstream' });
  assert.deepEqual(await r.byName('nobody1'), { status: 'notfound', source: 'cache' });
  assert.equal(src.calls, 1);
  clock.t += 10_000;
  src.add('nobody1', 1050);
  const l = await r.byName('nobody1');
  assert.equal(l.status, 'found');
  assert.equal(src.calls, 2);
});

test('a user removed upstream disappears once the entry expires', async () => {
  const { r, src, clock, db } = setup();
  await r.byName('alice');
  src.users.delete('alice');
  clock.t += 101_000;
  assert.deepEqual(await r.byName('alice'), { status: 'notfound', source: 'upstream' });
  assert.equal(db.getByName('alice'), null);
  assert.deepEqual(await r.byUid(11001), { status: 'notfound', source: 'upstream' });
});

test('upstream failure: stale within grace, unavailable beyond it, never notfound', async () => {
  const { r, src, clock } = setup();
  await r.byName('alice');
  src.failing = true;
  clock.t += 120_000;
  const stale = await r.byName('alice');
  assert.equal(stale.status === 'found' && stale.source, 'stale');
  clock.t += 40_000; // 160 s after fetch: past ttl 100 + grace 50
  assert.equal((await r.byName('alice')).status, 'unavail');
  assert.equal((await r.byName('carol')).status, 'unavail');
  assert.equal((await r.refreshByName('bob')).status, 'unavail');
  src.failing = false;
  assert.equal((await r.byName('alice')).status, 'found');
});

test('refresh-ahead serves from cache and refreshes exactly once in the background', async () => {
  const { r, src, clock } = setup({ refreshAheadSec: 20 });
  await r.byName('alice');
  clock.t += 85_000;
  src.delayMs = 10;
  const [a, b, c] = await Promise.all([r.byName('alice'), r.byName('alice'), r.byName('alice')]);
  for (const l of [a, b, c]) assert.equal(l!.status === 'found' && l!.source, 'cache');
  await new Promise((res) => setTimeout(res, 30));
  assert.equal(src.calls, 2);
  assert.equal(r.stats.snapshot().upstream && (r.stats.upstream.background_refresh > 0), true);
  clock.t += 20_000; // past the old expiry, within the refreshed one
  const d = await r.byName('alice');
  assert.equal(d.status === 'found' && d.source, 'cache');
  assert.equal(src.calls, 2);
});

test('refreshByName always asks upstream', async () => {
  const { r, src } = setup();
  await r.byName('alice');
  await r.refreshByName('alice');
  assert.equal(src.calls, 2);
});

test('passwd fields: home and shell from config, never from upstream', async () => {
  const { r, cfg } = setup();
  const l = await r.byName('alice');
  assert.ok(l.status === 'found');
  assert.deepEqual(r.toPasswd(l.user), { name: 'alice', uid: 11001, gid: cfg.users.gid, gecos: 'alice', dir: '/srv/inbox/alice', shell: cfg.users.shell });
  await r.byName('bob');
  assert.deepEqual(r.group().members, ['alice', 'bob']);
});

test('enumeration hides dead entries and sweep drops them', async () => {
  const { r, clock, db } = setup();
  await r.byName('alice');
  clock.t += 60_000;
  await r.byName('bob');
  assert.deepEqual(r.list(0, 10).map((u) => u.username), ['alice', 'bob']);
  clock.t += 100_000; // alice: 160 s old → dead; bob: 100 s → stale-servable
  assert.deepEqual(r.list(0, 10).map((u) => u.username), ['bob']);
  assert.equal(r.sweep(), 1);
  assert.equal(db.getByName('alice'), null);
});

test('stats count hits, misses, negatives, rule rejections and the hit ratio', async () => {
  const { r } = setup();
  await r.byName('alice');
  await r.byName('alice');
  await r.byName('zed');
  await r.byName('zed');
  await r.byName('BAD');
  const s = r.stats.snapshot() as { lookups: Record<string, number>; hit_ratio: number };
  assert.equal(s.lookups.hit, 1);
  assert.equal(s.lookups.miss, 2);
  assert.equal(s.lookups.negative, 1);
  assert.equal(s.lookups.rule, 1);
  assert.equal(s.hit_ratio, 0.5);
});
