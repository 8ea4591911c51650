// The resolver state machine with a controllable clock and an in-memory user source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UserCache } from '../../src/cache/db.js';
import { Resolver, REFRESH_RETRY_MS, UNREACHABLE_HOLDOFF_MS, DOWN_AFTER_FAILURES } from '../../src/directory/resolver.js';
import { groupEntry, passwdEntry } from '../../src/directory/entries.js';
import { UpstreamError } from '../../src/errors.js';
import { parseIdFile } from '../../src/users/local.js';
import { setLogSink } from '../../src/log.js';
import type { UserSource, FetchResult } from '../../src/upstream/types.js';
import type { UpstreamUser } from '../../src/types.js';
import type { Config } from '../../src/config/types.js';
import { defaultConfig } from '../../src/config/load.js';

/**
 * Test config: a literal, so these tests do not move when the loader's defaults do. The resolver
 * reads only cache, users and homes.
 */
function testConfig(): Config {
  return {
    source: '',
    cache: { dbPath: ':memory:', ttlSec: 100, negativeTtlSec: 10, staleGraceSec: 50, refreshAheadSec: 0 },
    users: { uidShift: 10000, gid: 10000, groupName: 'lega', minUid: 1000, maxUid: 2 ** 31 - 1, nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/, shell: '/bin/bash', denyNames: ['root'], localPasswdFile: '/etc/passwd', localGroupFile: '/etc/group' },
    homes: { base: '/srv/inbox', layout: 'chroot', mode: 0o2750, umask: 0o027, uploadDir: 'upload' },
    upstream: {} as Config['upstream'], pam: {} as Config['pam'], daemon: {} as Config['daemon'], local: defaultConfig().local, events: defaultConfig().events, cleanup: defaultConfig().cleanup, metrics: defaultConfig().metrics, userdb: defaultConfig().userdb,
  };
}

/** Log lines of one test, parsed; the default sink comes back afterwards. */
function captureLog(): { lines: Array<Record<string, unknown>>; restore: () => void } {
  const lines: Array<Record<string, unknown>> = [];
  setLogSink((l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  return { lines, restore: () => setLogSink((l) => process.stderr.write(l + '\n')) };
}

const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

class FakeSource implements UserSource {
  users = new Map<string, UpstreamUser>();
  calls = 0;
  failing = false;
  /** the kind of UpstreamError thrown while failing */
  failKind: UpstreamError['kind'] = 'http';
  delayMs = 0;
  /** names whose lookups fail (failKind) while the others work */
  failFor = new Set<string>();
  /** replaces the record returned, to play a confused or hostile upstream */
  tamper: ((u: UpstreamUser) => UpstreamUser) | null = null;
  add(name: string, upstreamUid: number): void {
    this.users.set(name, { username: name, upstreamUid, passwordHash: '$2b$10$secretsecretsecretsecretsecretsecretsecretsecretsecre', sshPublicKeys: [], gecos: name });
  }
  private async answer(u: UpstreamUser | undefined, name = ''): Promise<FetchResult> {
    this.calls++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failing || this.failFor.has(name)) throw new UpstreamError(this.failKind, `upstream failed (${this.failKind})`);
    if (!u) return { kind: 'notfound' };
    const copy = { ...u, sshPublicKeys: [...u.sshPublicKeys] };
    return { kind: 'found', user: this.tamper ? this.tamper(copy) : copy };
  }
  fetchByName(name: string): Promise<FetchResult> { return this.answer(this.users.get(name), name); }
  fetchByUid(uid: number): Promise<FetchResult> { return this.answer([...this.users.values()].find((u) => u.upstreamUid === uid)); }
  lastError(): null { return null; }
  async close(): Promise<void> { /* nothing held */ }
}

function setup(cache: Partial<Config['cache']> = {}): { r: Resolver; src: FakeSource; clock: { t: number }; db: UserCache; cfg: Config } {
  const cfg = testConfig();
  cfg.cache = { ...cfg.cache, ...cache };
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
  const { r, src, cfg } = setup();
  for (const n of ['', 'Alice', 'root:x', 'a/b', 'a\nb', 'x'.repeat(33), '-a', 'é']) {
    assert.deepEqual(await r.byName(n), { status: 'notfound', source: 'rule' }, JSON.stringify(n));
  }
  assert.equal(src.calls, 0);
  cfg.users.nameRegex = /^[a-z]+$/g; // a /g regex remembers lastIndex between test() calls
  for (let i = 0; i < 4; i++) assert.equal((await r.byName('alice')).status, 'found');
  assert.equal(src.calls, 1);
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

test('refreshByName always asks upstream; if it fails, a fresh entry still answers from cache', async () => {
  const { r, src } = setup();
  await r.byName('alice');
  await r.refreshByName('alice');
  assert.equal(src.calls, 2);
  src.failing = true;
  const l = await r.refreshByName('alice');
  assert.equal(l.status === 'found' && l.source, 'cache');
  assert.equal(src.calls, 3);
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

test('100 concurrent lookups by uid of a cold user make one upstream request, with the shift', async () => {
  const { r, src } = setup();
  src.delayMs = 10;
  const asked: number[] = [];
  const orig = src.fetchByUid.bind(src);
  src.fetchByUid = (uid) => { asked.push(uid); return orig(uid); };
  const all = await Promise.all(Array.from({ length: 100 }, () => r.byUid(11002)));
  assert.ok(all.every((l) => l.status === 'found' && l.user.username === 'bob'));
  assert.deepEqual(asked, [1002]);
  assert.equal(src.calls, 1);
});

test('a negative entry by uid, and uids whose upstream uid would be negative, by rule', async () => {
  const { r, src, cfg } = setup();
  assert.deepEqual(await r.byUid(19999), { status: 'notfound', source: 'upstream' });
  assert.deepEqual(await r.byUid(19999), { status: 'notfound', source: 'cache' });
  assert.equal(src.calls, 1);
  cfg.users.minUid = 500; // below the shift: local 5000 would be upstream -5000
  assert.deepEqual(await r.byUid(5000), { status: 'notfound', source: 'rule' });
  assert.equal(src.calls, 1);
});

test('a user renamed upstream (same uid) leaves no second row behind', async () => {
  const { r, src, clock, db } = setup();
  await r.byName('alice');
  src.users.delete('alice');
  src.add('alicia', 1001);
  clock.t += 101_000;
  const l = await r.byUid(11001);
  assert.equal(l.status === 'found' && l.user.username, 'alicia');
  assert.equal(db.getByName('alice'), null);
  assert.deepEqual(db.names(), ['alicia']);
});

test('an upstream answer for another name or uid, or outside the rules, is an error, never stored', async () => {
  const { r, src, db } = setup();
  const log = captureLog();
  try {
    src.tamper = (u) => ({ ...u, username: 'mallory' });
    assert.equal((await r.byName('alice')).status, 'unavail');
    src.tamper = (u) => ({ ...u, upstreamUid: 1 });
    assert.equal((await r.byUid(11002)).status, 'unavail');
    src.tamper = (u) => ({ ...u, upstreamUid: -9999 }); // local uid 1: below minUid
    assert.equal((await r.byName('bob')).status, 'unavail');
  } finally { log.restore(); }
  assert.equal(db.all().length, 0);
  assert.equal(db.getNegative('name:alice'), null, 'an error is not "no such user"');
  assert.deepEqual(log.lines.map((l) => [l.event, l.outcome]), Array(3).fill(['resolver.fetch', 'error']));
});

test('stale is served by uid as well, and unavailable is never notfound', async () => {
  const { r, src, clock } = setup();
  await r.byUid(11001);
  src.failing = true;
  clock.t += 149_999;
  const l = await r.byUid(11001);
  assert.equal(l.status === 'found' && l.source, 'stale');
  clock.t += 1;
  const u = await r.byUid(11001);
  assert.equal(u.status, 'unavail');
  assert.match(u.status === 'unavail' ? u.reason : '', /503|failed/);
});

test('one timeout is that name\'s problem; after DOWN_AFTER_FAILURES in a row, lookups answer from cache at once for a moment', async () => {
  const { r, src, clock } = setup();
  await r.byName('alice');
  clock.t += 120_000; // alice is stale-servable
  src.failing = true;
  src.failKind = 'timeout';
  assert.equal((await r.byName('alice')).status === 'found' && src.calls, 2);
  // one timeout: the next uncached lookup still asks (it may be that one name the service chokes on)
  assert.equal((await r.byName('bob')).status, 'unavail');
  assert.equal(src.calls, 3, 'a single timeout put the whole upstream on hold');
  for (let i = src.calls; i < 1 + DOWN_AFTER_FAILURES; i++) await r.byName(`x${i}`);
  const calls = src.calls;
  const quick = await r.byName('alice');
  assert.equal(quick.status === 'found' && quick.source, 'stale');
  assert.equal((await r.byName('bob')).status, 'unavail');
  assert.equal(src.calls, calls, 'nobody asked upstream during the hold-off');
  assert.equal((await r.refreshByName('bob')).status, 'unavail');
  assert.equal(src.calls, calls + 1, 'an explicit refresh always asks');
  clock.t += UNREACHABLE_HOLDOFF_MS;
  src.failing = false;
  const back = await r.byName('alice');
  assert.equal(back.status === 'found' && back.source, 'upstream');
});

test('a success between failures resets the count: failing names interleaved with good ones never take the upstream down', async () => {
  const { r, src } = setup();
  src.add('carol', 1003);
  src.failFor = new Set(['poison']);
  src.failKind = 'timeout';
  for (let i = 0; i < 10; i++) {
    assert.equal((await r.byName('poison')).status, 'unavail');
    await r.refreshByName(i % 2 ? 'bob' : 'carol');
  }
  assert.equal((await r.byName('alice')).status, 'found');
});

test('a failing background refresh is logged, never thrown, and retried only after a pause', async () => {
  const { r, src, clock } = setup({ refreshAheadSec: 20 });
  await r.byName('alice');
  clock.t += 85_000;
  src.failing = true;
  const log = captureLog();
  try {
    for (let i = 0; i < 20; i++) {
      const l = await r.byName('alice');
      assert.equal(l.status === 'found' && l.source, 'cache');
      await tick();
    }
    assert.equal(src.calls, 2, 'one background try, then a pause');
    clock.t += REFRESH_RETRY_MS;
    await r.byName('alice');
    await tick();
    assert.equal(src.calls, 3);
    src.failing = false;
    clock.t += REFRESH_RETRY_MS;
    await r.byName('alice');
    await tick();
    assert.equal(src.calls, 4);
    const l = await r.byName('alice');
    assert.equal(l.status === 'found' && l.user.expiresAt, clock.t + 100_000);
  } finally { log.restore(); }
  assert.equal(log.lines.filter((l) => l.outcome === 'error').length, 2);
  assert.equal(r.stats.upstream.background_refresh, 3);
});

test('home is always base/name from config, whatever upstream sends or the base looks like', async () => {
  const { r, src, cfg } = setup();
  src.tamper = (u) => ({ ...u, home: '/root', dir: '/', shell: '/bin/evil' } as UpstreamUser);
  const l = await r.byName('alice');
  assert.ok(l.status === 'found');
  cfg.homes.base = '/srv/inbox/';
  cfg.users.shell = '/sbin/nologin';
  const p = passwdEntry(cfg, l.user);
  assert.equal(p.dir, '/srv/inbox/alice');
  assert.equal(p.shell, '/sbin/nologin');
  assert.deepEqual(Object.keys(p).sort(), ['dir', 'gecos', 'gid', 'name', 'shell', 'uid']);
  assert.deepEqual(groupEntry(cfg.users, r.local), { name: 'lega', gid: 10000, members: [] });
});

test('a config reload applies at once: new rules hide cached users, new TTLs apply', async () => {
  const { r, src, cfg } = setup();
  await r.byName('alice');
  cfg.users.minUid = 11002;
  assert.equal((await r.byUid(11001)).status === 'notfound', true);
  assert.equal((await r.byName('alice')).status, 'unavail', 'upstream still maps alice below the minimum');
  assert.deepEqual(r.list(0, 10).map((u) => u.username), []);
  cfg.users.minUid = 1000;
  cfg.cache.ttlSec = 5;
  const l = await r.byName('bob');
  assert.equal(l.status === 'found' && l.user.expiresAt - l.user.fetchedAt, 5000);
  assert.equal(src.calls, 3);
});

test('enumeration pages skip dead entries without ending early', async () => {
  const { r, src, clock } = setup();
  for (let i = 0; i < 10; i++) src.add(`old${i}`, 2000 + i);
  for (let i = 0; i < 10; i++) await r.byName(`old${i}`);
  clock.t += 60_000;
  for (let i = 0; i < 3; i++) { src.add(`new${i}`, 3000 + i); await r.byName(`new${i}`); }
  clock.t += 100_000; // the old ones are dead, the new ones stale-servable
  assert.deepEqual(r.list(0, 2).map((u) => u.username), ['new0', 'new1']);
  assert.deepEqual(r.list(13001, 2).map((u) => u.username), ['new1', 'new2']);
  assert.deepEqual(r.list(13003, 2), []);
});

test('every lookup counts exactly one result; the snapshot carries the latency histogram', async () => {
  const { r, src, clock } = setup();
  await r.byName('alice'); // miss
  await r.byName('alice'); // hit
  await r.byName('ghost'); // miss (notfound)
  await r.byName('ghost'); // negative
  await r.byUid(1); // rule
  src.failing = true;
  clock.t += 120_000;
  await r.byName('alice'); // stale
  await r.byName('carol'); // unavail
  const s = r.stats.snapshot();
  assert.deepEqual(s.lookups, { hit: 1, negative: 1, rule: 1, miss: 2, stale: 1, unavail: 1, local: 0, local_notfound: 0, notfound: 1 });
  assert.equal(s.hit_ratio, 0.3333);
  assert.deepEqual(s.upstream, { found: 1, notfound: 1, error: 2, background_refresh: 0, busy: 0, late: 0, held_off: 0, rate_limited: 0 });
  assert.equal(s.upstream_latency.count, 4);
  assert.equal(Object.values(s.upstream_latency.buckets).reduce((a, b) => a + b, 0), 4);
});

test('one log line per upstream fetch found or failed (not-found at debug), without password hashes', async () => {
  const { r, src } = setup();
  const log = captureLog();
  try {
    await r.byName('alice');
    await r.byName('alice');
    await r.byName('ghost');
    src.failing = true;
    await r.refreshByName('alice');
  } finally { log.restore(); }
  assert.deepEqual(log.lines.map((l) => [l.event, l.key, l.outcome]), [
    // "no such user" is logged at debug: any local user can ask for never-seen names in bulk
    ['resolver.fetch', 'name:alice', 'found'], ['resolver.fetch', 'name:alice', 'error'],
  ]);
  assert.ok(log.lines.every((l) => typeof l.ms === 'number'));
  assert.ok(!JSON.stringify(log.lines).includes('$2b$'), 'no hash in the log');
});

test('sweep writes last_used for the users served, in one batch', async () => {
  const { r, clock, db } = setup();
  await r.byName('alice');
  await r.byName('bob');
  clock.t += 1000;
  r.sweep();
  const lastUsed = db.db.prepare('SELECT name, last_used FROM users ORDER BY name').all();
  assert.deepEqual(lastUsed, [{ name: 'alice', last_used: clock.t }, { name: 'bob', last_used: clock.t }]);
});

test('parseIdFile: names and ids of passwd/group lines; comments, NIS compat and broken lines add nothing', () => {
  const ids = parseIdFile('root:x:0:0:root:/root:/bin/bash\n# comment\n+@nisgroup::::::\n-baduser\n\nsvc:x:1500:1500::/:/bin/false\nbroken\n:x:7:7::/:\nodd:x:notanumber:1::/:\n');
  assert.deepEqual([...ids.names].sort(), ['odd', 'root', 'svc']);
  assert.deepEqual([...ids.ids].sort((a, b) => a[0] - b[0]), [[0, 'root'], [1500, 'svc']]);
});

test('local names, local uids and deny-list names are refused by rule, never asked upstream', async () => {
  const { r, src, cfg } = setup();
  src.add('root', 1);
  src.add('daemon', 1099);
  cfg.users.denyNames = ['alice'];
  assert.deepEqual(await r.byName('root'), { status: 'notfound', source: 'rule' }); // /etc/passwd has root
  assert.deepEqual(await r.byName('alice'), { status: 'notfound', source: 'rule' }); // deny list
  assert.equal(src.calls, 0);
  cfg.users.denyNames = [];
  assert.equal((await r.byName('alice')).status, 'found');
});

test('accountChanged: told when an answer says a cached account was removed, disabled, expired, or lost its uid to another name', async () => {
  const { r, src, clock, db } = setup();
  const told: Array<[string, number, string]> = [];
  r.accountChanged = (c) => told.push([c.name, c.uid, c.state]);
  await r.byName('alice');
  await r.byName('bob');
  assert.deepEqual(told, [], 'a found, active account is no change');
  // disabled and expired upstream, learned at the refresh of an expired entry
  src.users.set('alice', { ...src.users.get('alice')!, accountExpiresAt: 0 });
  db.invalidate({ name: 'alice' }, clock.t);
  await r.byName('alice');
  await tick(5);
  assert.deepEqual(told.pop(), ['alice', 11001, 'disabled']);
  src.users.set('alice', { ...src.users.get('alice')!, accountExpiresAt: clock.t - 1000 });
  db.invalidate({ name: 'alice' }, clock.t);
  await r.byName('alice');
  await tick(5);
  assert.deepEqual(told.pop(), ['alice', 11001, 'expired']);
  // removed: cached, then "no such user"
  src.users.delete('alice');
  db.invalidate({ name: 'alice' }, clock.t);
  await r.byName('alice');
  await tick(5);
  assert.deepEqual(told.pop(), ['alice', 11001, 'removed']);
  // bob's uid given to carol: bob's row goes, and bob is told as removed (with his uid)
  src.users.delete('bob');
  src.add('carol', 1002);
  await r.byName('carol');
  await tick(5);
  assert.deepEqual(told.pop(), ['bob', 11002, 'removed']);
  assert.deepEqual(told, []);
  // a listener that throws costs the lookup nothing
  r.accountChanged = () => { throw new Error('listener broke'); };
  src.add('dave', 1004);
  src.users.set('dave', { ...src.users.get('dave')!, accountExpiresAt: 0 });
  const log = captureLog();
  try {
    assert.equal((await r.byName('dave')).status, 'found');
    assert.ok(log.lines.some((l) => l.event === 'resolver.account_change_failed'));
  } finally {
    log.restore();
  }
});
