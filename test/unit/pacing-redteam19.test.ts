// Regressions found by red team 19 (issue 19): an expired negative entry must not open the
// unbudgeted known lane; a wall clock stepped back must not keep a negative entry, nor put the
// per-uid token buckets into debt; a cache file that refuses writes must not keep serving a user
// the upstream removed, nor an old name on a uid given to someone else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UserCache } from '../../src/cache/db.js';
import { Resolver } from '../../src/directory/resolver.js';
import { defaultConfig } from '../../src/config/load.js';
import { RequestPacer } from '../../src/server/budget.js';
import { UpstreamScheduler } from '../../src/upstream/scheduler.js';
import { setLogSink } from '../../src/log.js';
import type { Config } from '../../src/config/types.js';
import type { CachedUser, UpstreamUser } from '../../src/types.js';
import type { FetchResult, UserSource } from '../../src/upstream/types.js';

setLogSink(() => undefined);

function setup(): { r: Resolver; db: UserCache; clock: { t: number }; users: Map<string, UpstreamUser>; calls: () => number } {
  const dir = mkdtempSync(join(tmpdir(), 'lk-rt19-'));
  writeFileSync(join(dir, 'passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
  writeFileSync(join(dir, 'group'), 'root:x:0:\n');
  const d = defaultConfig();
  const cfg: Config = {
    ...d, cache: { ...d.cache, dbPath: ':memory:', jitter: 0 },
    users: { ...d.users, localPasswdFile: join(dir, 'passwd'), localGroupFile: join(dir, 'group') },
    daemon: { ...d.daemon, socketDir: dir },
  };
  const users = new Map<string, UpstreamUser>();
  let n = 0;
  const src: UserSource = {
    fetchByName: async (name: string): Promise<FetchResult> => { n++; const u = users.get(name); return u ? { kind: 'found', user: u } : { kind: 'notfound' }; },
    fetchByUid: async (): Promise<FetchResult> => { n++; return { kind: 'notfound' }; },
    lastError: () => null,
    close: async () => undefined,
  };
  const clock = { t: 1_700_000_000_000 };
  const db = UserCache.open(':memory:');
  return { r: new Resolver(db, src, () => cfg, () => clock.t), db, clock, users, calls: () => n };
}

test('expired negative entries do not let one uid past its never-seen budget', async () => {
  const { r, clock, calls } = setup();
  const names = Array.from({ length: 400 }, (_, i) => `bogus${i}`);
  for (let i = 0; i < names.length; i += 20) {
    await Promise.all(names.slice(i, i + 20).map((n) => r.byName(n, 1000)));
    clock.t += 1000;
  }
  clock.t += 61_000; // every negative expired, the sweep not run yet
  const before = calls();
  await Promise.all(names.map((n) => r.byName(n, 1000)));
  assert.ok(calls() - before <= 40, `${calls() - before} upstream requests in one instant from one uid`);
});

test('a negative entry fetched "in the future" (clock stepped back) is not honoured', async () => {
  const { r, clock, users } = setup();
  assert.equal((await r.byName('newhire')).status, 'notfound');
  clock.t -= 6 * 3600_000;
  users.set('newhire', { username: 'newhire', upstreamUid: 5000, passwordHash: '$2b$10$x', sshPublicKeys: [], gecos: 'x' });
  clock.t += 120_000;
  assert.equal((await r.byName('newhire')).status, 'found');
});

test('a wall clock stepped back puts no per-uid bucket into debt', () => {
  const clock = { t: 1_700_000_000_000 };
  const pacer = new RequestPacer(undefined, () => clock.t);
  assert.equal(pacer.delay(1000), 0);
  clock.t -= 3600_000;
  assert.equal(pacer.delay(1000), 0);
  const s = new UpstreamScheduler(() => ({ maxConcurrent: 16, newPerUidPerSec: 20, newPerUidBurst: 40, newPerUidQueued: 8 }), () => clock.t, 10);
  s.admit('new', 0);
  clock.t -= 3600_000;
  assert.doesNotThrow(() => s.admit('new', 0));
});

function cached(name: string, uid: number): CachedUser {
  const now = Date.now();
  return { username: name, uid, upstreamUid: uid - 10_000, gecos: 'g', passwordHash: '$2b$10$x', sshPublicKeys: [], fetchedAt: now, expiresAt: now + 3600_000, accountExpiresAt: null };
}
/** Every statement's run() fails as on a full filesystem (reads still work). */
function fillUp(c: UserCache): void {
  const full = (): never => { throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }); };
  c.db.pragma('query_only = ON');
  const s = (c as unknown as { s: Record<string, { run: unknown }> }).s;
  for (const st of Object.values(s)) if (typeof st.run === 'function') st.run = full;
  (c as unknown as { putTx: unknown }).putTx = full;
}

test('a full cache file: a user removed upstream is not served from the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lk-rt19-'));
  const c = UserCache.open(join(dir, 'cache.db'));
  c.put(cached('fired', 20_001));
  fillUp(c);
  c.remove('fired');
  assert.equal(c.getByName('fired'), null);
  assert.equal(c.getByUid(20_001), null);
  assert.ok(!c.all().some((u) => u.username === 'fired'));
});

test('a full cache file: a uid given to another user no longer resolves to the old name', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lk-rt19-'));
  const c = UserCache.open(join(dir, 'cache.db'));
  c.put(cached('olduser', 20_001));
  fillUp(c);
  c.put(cached('newuser', 20_001));
  assert.equal(c.getByName('olduser'), null);
  assert.equal(c.getByUid(20_001)?.username, 'newuser');
});
