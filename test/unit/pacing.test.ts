// Upstream pacing (issue 19): TTL and refresh-ahead jitter (cache/policy.ts), the backwards-clock
// rule, Retry-After (upstream/client.ts), exponential backoff with a half-open probe
// (upstream/backoff.ts) as the resolver uses it, and the warm start (cache/warm.ts). Clocks and
// randomness are injected; the example user service plays the upstream where HTTP matters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserCache } from '../../src/cache/db.js';
import { classify, jitteredMs, jitterUnit, refreshAheadFrom, restartSpreadExpiry, CLOCK_BACK_TOLERANCE_MS } from '../../src/cache/policy.js';
import { WarmStart, RecentFile, WARM_START_SPREAD_MS } from '../../src/cache/warm.js';
import { Resolver, DOWN_AFTER_FAILURES } from '../../src/directory/resolver.js';
import { MapPublisher } from '../../src/fastpath/publisher.js';
import { UpstreamBackoff, BACKOFF_BASE_MS } from '../../src/upstream/backoff.js';
import { parseRetryAfter, RestUserSource, RETRY_AFTER_MAX_MS } from '../../src/upstream/client.js';
import { UpstreamError } from '../../src/errors.js';
import { parseConfig, defaultConfig } from '../../src/config/load.js';
import { setLogSink } from '../../src/log.js';
import { startUserService } from '../../src/example/userservice.js';
import type { MapWriter, MapWriterStats } from '../../src/native/addon.js';
import type { UserSource, FetchResult } from '../../src/upstream/types.js';
import type { UpstreamUser } from '../../src/types.js';
import type { Config } from '../../src/config/types.js';
import { scratchDir } from '../lib/tmp.js';
import { seeded } from '../lib/random.js';

setLogSink(() => undefined);


function testConfig(dir: string, cache: Partial<Config['cache']> = {}, upstream: Partial<Config['upstream']> = {}): Config {
  const passwd = join(dir, 'passwd');
  const group = join(dir, 'group');
  writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\n');
  writeFileSync(group, 'root:x:0:\n');
  const d = defaultConfig();
  return {
    ...d,
    cache: { dbPath: ':memory:', ttlSec: 100, negativeTtlSec: 10, staleGraceSec: 50, refreshAheadSec: 20, ...cache },
    users: { ...d.users, localPasswdFile: passwd, localGroupFile: group },
    homes: { ...d.homes, base: '/srv/inbox' },
    upstream: { ...d.upstream, requestTimeoutMs: 2000, ...upstream },
    daemon: { ...d.daemon, socketDir: dir },
  };
}

class FakeSource implements UserSource {
  users = new Map<string, UpstreamUser>();
  calls: string[] = [];
  /** thrown instead of an answer while set */
  fail: (() => Error) | null = null;
  add(name: string, upstreamUid: number): void {
    this.users.set(name, { username: name, upstreamUid, passwordHash: '$2b$10$x', sshPublicKeys: [], gecos: name });
  }
  private async answer(u: UpstreamUser | undefined, what: string): Promise<FetchResult> {
    this.calls.push(what);
    if (this.fail) throw this.fail();
    return u ? { kind: 'found', user: { ...u, sshPublicKeys: [] } } : { kind: 'notfound' };
  }
  fetchByName(name: string): Promise<FetchResult> { return this.answer(this.users.get(name), name); }
  fetchByUid(uid: number): Promise<FetchResult> { return this.answer([...this.users.values()].find((u) => u.upstreamUid === uid), `uid:${uid}`); }
  lastError(): null { return null; }
  async close(): Promise<void> { /* nothing held */ }
}

function setup(cache: Partial<Config['cache']> = {}, upstream: Partial<Config['upstream']> = {}, random: () => number = seeded(1)) {
  const cfg = testConfig(scratchDir('latchkey-pacing-'), cache, upstream);
  const src = new FakeSource();
  for (let i = 0; i < 50; i++) src.add(`u${i}`, 2000 + i);
  const clock = { t: 1_700_000_000_000 };
  const db = UserCache.open(':memory:');
  const r = new Resolver(db, src, () => cfg, () => clock.t, undefined, random);
  return { r, src, clock, db, cfg };
}

// ---- jitter ----------------------------------------------------------------------------

test('jitter spreads entry lifetimes over ttl ± j, seeded; 0 % is the exact ttl', async () => {
  const { r, db, clock } = setup({ jitter: 0.1 });
  for (let i = 0; i < 50; i++) await r.byName(`u${i}`);
  const ttls = db.all().map((u) => u.expiresAt - clock.t);
  assert.equal(ttls.length, 50);
  assert.ok(ttls.every((t) => t >= 90_000 && t <= 110_000), String(ttls));
  // spread, not a few values: a fleet's entries fetched together expire apart
  assert.ok(new Set(ttls).size >= 45, `only ${new Set(ttls).size} distinct lifetimes`);
  assert.ok(Math.max(...ttls) - Math.min(...ttls) > 12_000, `spread ${Math.max(...ttls) - Math.min(...ttls)} ms`);
  // negative entries too
  await r.byName('ghost1');
  await r.byName('ghost2');
  const neg = db.negatives().map((n) => n.expiresAt - clock.t);
  assert.ok(neg.every((t) => t >= 9_000 && t <= 11_000) && neg[0] !== neg[1], String(neg));
  const exact = setup({ jitter: 0 });
  await exact.r.byName('u1');
  assert.equal(exact.db.getByName('u1')!.expiresAt - exact.clock.t, 100_000);
  assert.equal(jitteredMs(100, 0.1, () => 0), 90_000);
  assert.equal(jitteredMs(100, 0.9, () => 0), 50_000, 'jitter is capped at 50 %');
});

test('the refresh-ahead window is spread by a hash of the expiry; the map publisher agrees with classify', async () => {
  const cfg = { refreshAheadSec: 20, staleGraceSec: 50, jitter: 0.1, ttlSec: 100 };
  const windows = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const exp = 1_700_000_000_000 + i * 7919;
    const from = refreshAheadFrom(exp, cfg);
    windows.add(exp - from);
    assert.ok(exp - from >= 18_000 && exp - from <= 22_000, String(exp - from));
    assert.equal(classify(exp, from - 1, cfg), 'fresh');
    assert.equal(classify(exp, from, cfg), 'refresh-ahead');
    assert.equal(refreshAheadFrom(exp, cfg), from, 'deterministic');
  }
  assert.ok(windows.size > 150, `only ${windows.size} distinct windows`);
  for (let i = 0; i < 1000; i++) {
    const h = jitterUnit(i * 1_234_567_891);
    assert.ok(h >= -1 && h <= 1);
  }
  // never back to the fetch of the shortest entry: ttl 10 s, refresh_ahead 9 s, jitter 50 %
  const tight = { refreshAheadSec: 9, staleGraceSec: 0, jitter: 0.5, ttlSec: 10 };
  for (let i = 0; i < 100; i++) assert.ok(refreshAheadFrom(1e12 + i, tight) >= 1e12 + i - 4_000);

  // The publisher (fastpath/publisher.ts) publishes each user until exactly the instant the
  // resolver starts a refresh-ahead for it.
  const { r, db, clock } = setup({ jitter: 0.1 });
  const calls: unknown[][] = [];
  const rec = (name: string) => (...a: unknown[]): 0 => { calls.push([name, ...a]); return 0; };
  const writer = {
    putUser: rec('putUser'), putNegName: rec('n'), putNegUid: rec('n'), removeName: rec('r'), removeUid: rec('r'), reset: rec('reset'),
    setGroup: rec('g'), touchGroup: (): void => undefined, close: (): void => undefined,
    stats: (): MapWriterStats => ({ generation: 1, fileSize: 1, slots: 1024, users: 0, negNames: 0, negUids: 0, dataUsed: 0, dataSize: 1, rebuilds: 0, notPublished: 0 }),
  } as unknown as MapWriter;
  const cfgNow = testConfig(scratchDir('latchkey-pacing-'), { jitter: 0.1 });
  const m = new MapPublisher(() => writer, () => cfgNow, r, db, () => clock.t);
  db.listener = m;
  m.start();
  for (let i = 0; i < 20; i++) await r.byName(`u${i}`);
  const puts = calls.filter((c) => c[0] === 'putUser');
  assert.equal(puts.length, 20);
  for (const p of puts) {
    const u = db.getByName(p[1] as string)!;
    const until = p[7] as number;
    assert.equal(classify(u.expiresAt, until - 1, cfgNow.cache, u.fetchedAt), 'fresh', p[1] as string);
    assert.equal(classify(u.expiresAt, until, cfgNow.cache, u.fetchedAt), 'refresh-ahead', p[1] as string);
  }
  m.close(false);
});

test('a clock that went back: entries fetched "in the future" are refetched, served only as stale on failure', async () => {
  const { r, src, clock } = setup({ jitter: 0 });
  await r.byName('u1');
  assert.equal(src.calls.length, 1);
  clock.t -= CLOCK_BACK_TOLERANCE_MS; // within tolerance: still a hit
  assert.equal((await r.byName('u1')).status === 'found' && src.calls.length, 1);
  clock.t -= 3_600_000; // an hour back: every entry would look fresh for an hour more
  const l = await r.byName('u1');
  assert.equal(l.status === 'found' && l.source, 'upstream');
  assert.equal(src.calls.length, 2, 'the entry was refetched');
  // and fetched again "in the future", the upstream failing: stale, never "fresh" or "not found"
  clock.t -= 3_600_000;
  src.fail = () => new UpstreamError('connect', 'refused');
  const s = await r.byName('u1');
  assert.equal(s.status === 'found' && s.source, 'stale');
  assert.equal(classify(2e12, 2e12 - 1000, { refreshAheadSec: 0, staleGraceSec: 0 }, 2e12 - 1000 + CLOCK_BACK_TOLERANCE_MS + 1), 'stale-servable');
});

// ---- Retry-After -------------------------------------------------------------------------

test('Retry-After: delta-seconds and HTTP-date, clamped to [1 s, 10 min]; garbage is no header', () => {
  const now = Date.parse('2026-11-30T12:00:00Z');
  assert.equal(parseRetryAfter('30', now), 30_000);
  assert.equal(parseRetryAfter(' 7 ', now), 7_000);
  assert.equal(parseRetryAfter('0', now), 1_000);
  assert.equal(parseRetryAfter('86400', now), RETRY_AFTER_MAX_MS);
  assert.equal(parseRetryAfter('Mon, 30 Nov 2026 12:00:45 GMT', now), 45_000);
  assert.equal(parseRetryAfter('Mon, 30 Nov 2026 11:00:00 GMT', now), 1_000, 'a date in the past');
  assert.equal(parseRetryAfter(['12', '99'], now), 12_000);
  for (const g of [undefined, '', 'soon', '-5', '1.5', '30s', '0x10', 'Mon, 30 Nov 2026 12:00:45', '9'.repeat(80), 'Mon, 99 Foo 2026 12:00:45 GMT']) {
    assert.equal(parseRetryAfter(g, now), null, JSON.stringify(g));
  }
});

test('the client turns 429 and 503 with Retry-After into an UpstreamError carrying retryAfterMs', async () => {
  for (const [fault, status] of [['429', 429], ['503', 503]] as const) {
    const svc = await startUserService({ host: '127.0.0.1', port: 0, users: [], retryAfterS: 7 });
    try {
      const cfg = testConfig(scratchDir('latchkey-pacing-'), {}, { byNameUrl: `${svc.url}/username/`, byUidUrl: `${svc.url}/user-id/`, insecureHttp: true, connectTimeoutMs: 1000 });
      const c = new RestUserSource(cfg.upstream, cfg.users);
      svc.setFault(fault);
      const e = await c.fetchByName('alice').then(() => null, (x: unknown) => x);
      assert.ok(e instanceof UpstreamError, String(e));
      assert.equal(e.kind, 'http');
      assert.deepEqual(e.http, { status, retryAfterMs: 7_000 });
      assert.match(e.message, new RegExp(`HTTP ${status}.*Retry-After 7 s`));
      svc.setFault('5xx'); // a 503 without the header: no retryAfterMs, the backoff decides
      const f = await c.fetchByName('alice').then(() => null, (x: unknown) => x);
      assert.ok(f instanceof UpstreamError);
      assert.deepEqual(f.http, { status: 503 });
      await c.close();
    } finally {
      await svc.close();
    }
  }
});

// ---- backoff ---------------------------------------------------------------------------

test('backoff: held after DOWN_AFTER failures, doubles with ±20 % jitter, caps at backoff_max, one probe when it ends, success resets', () => {
  const clock = { t: 0 };
  const max = { ms: 30_000 };
  const b = new UpstreamBackoff({ now: () => clock.t, wall: () => clock.t, random: seeded(7), downAfter: 3, maxMs: () => max.ms, probeLimitMs: () => 5_000 });
  const fail = { kind: 'failure', detail: 'refused' } as const;
  assert.equal(b.report(fail), null);
  assert.equal(b.report(fail), null);
  assert.equal(b.gate(), 'open');
  const first = b.report(fail)!;
  assert.ok(first.until >= 800 && first.until <= 1_200, String(first.until));
  assert.equal(b.gate(), 'held');
  const waits: number[] = [];
  for (let k = 0; k < 8; k++) {
    clock.t = b.view()!.until;
    assert.equal(b.gate(), 'probe', 'the hold-off ended: one probe');
    assert.equal(b.gate(), 'held', 'only one');
    assert.equal(b.wouldSend(), false);
    const h = b.report(fail)!;
    waits.push(h.until - clock.t);
  }
  // 2, 4, 8, 16, then capped at 30 s, each within ±20 %
  const nominal = [2, 4, 8, 16, 30, 30, 30, 30].map((s) => s * 1000);
  waits.forEach((w, i) => assert.ok(w >= nominal[i]! * 0.8 && w <= nominal[i]! * 1.2, `hold-off ${i + 1}: ${w} ms, nominal ${nominal[i]}`));
  assert.ok(new Set(waits.slice(4)).size > 1, 'capped hold-offs are still jittered');
  clock.t = b.view()!.until;
  assert.equal(b.gate(), 'probe');
  assert.equal(b.report({ kind: 'success' }), null);
  assert.equal(b.view(), null);
  assert.equal(b.gate(), 'open');
  // reset: the next run of failures starts at the base again
  for (let i = 0; i < 3; i++) b.report(fail);
  assert.ok(b.view()!.until - clock.t <= BACKOFF_BASE_MS * 1.2);
});

test('backoff: a probe that never got a slot, or hangs past its limit, lets another one go; a reply of another kind ends the hold-off', () => {
  const clock = { t: 0 };
  const b = new UpstreamBackoff({ now: () => clock.t, wall: () => clock.t, random: () => 0.5, downAfter: 1, maxMs: () => 30_000, probeLimitMs: () => 5_000 });
  b.report({ kind: 'failure', detail: 'x' });
  clock.t = 1_000;
  assert.equal(b.gate(), 'probe');
  b.probeAbandoned();
  assert.equal(b.gate(), 'probe');
  clock.t += 4_999;
  assert.equal(b.gate(), 'held');
  clock.t += 1;
  assert.equal(b.gate(), 'probe', 'a probe out past its limit has failed');
  b.report({ kind: 'answered' });
  assert.equal(b.gate(), 'open');
});

test('backoff: hold-offs run on the monotonic clock; a wall clock stepped back an hour neither prolongs one nor shows a wrong end', () => {
  const mono = { t: 0 };
  const wall = { t: 1_800_000_000_000 };
  const b = new UpstreamBackoff({ now: () => mono.t, wall: () => wall.t, random: () => 0.5, downAfter: 1, maxMs: () => 30_000, probeLimitMs: () => 5_000 });
  b.report({ kind: 'failure', detail: 'refused' });
  assert.equal(b.view()!.until, wall.t + BACKOFF_BASE_MS);
  wall.t -= 3_600_000; // an admin or NTP steps the clock back
  mono.t += BACKOFF_BASE_MS - 1;
  assert.equal(b.gate(), 'held');
  assert.equal(b.view()!.until, wall.t + 1, 'the end is shown by the clock of now');
  mono.t += 1;
  wall.t += BACKOFF_BASE_MS;
  assert.equal(b.gate(), 'probe', 'the hold-off ends after its duration, not an hour later');
});

test('Retry-After holds at least as asked (up to 20 % more, so a fleet does not come back at once), not shortened by an older request, then one probe', () => {
  const never = new UpstreamBackoff({ now: () => 0, wall: () => 0, random: () => 0, downAfter: 3, maxMs: () => 30_000, probeLimitMs: () => 5_000 });
  assert.equal(never.report({ kind: 'retry_after', status: 429, ms: 30_000, detail: 'x' })!.until, 30_000, 'never shorter than asked');
  const clock = { t: 0 };
  const b = new UpstreamBackoff({ now: () => clock.t, wall: () => clock.t, random: () => 0.5, downAfter: 3, maxMs: () => 30_000, probeLimitMs: () => 5_000 });
  const h = b.report({ kind: 'retry_after', status: 429, ms: 30_000, detail: 'x' })!;
  assert.equal(h.until, 33_000, 'asked 30 s, spread by 10 % here');
  assert.match(h.reason, /HTTP 429/);
  assert.equal(b.retryAfterHeld(), true);
  clock.t = 10_000;
  assert.equal(b.report({ kind: 'retry_after', status: 503, ms: 5_000, detail: 'y' }), null, 'logged once per hold-off');
  assert.equal(b.view()!.until, 33_000, 'not shortened');
  assert.equal(b.report({ kind: 'failure', detail: 'z' }), null);
  assert.equal(b.view()!.until, 33_000);
  assert.match(b.heldDetail(), /asked to wait 23 s \(HTTP 503\)/);
  clock.t = 32_999;
  assert.equal(b.gate(), 'held');
  clock.t = 33_000;
  assert.equal(b.gate(), 'probe');
  assert.equal(b.gate(), 'held');
});

test('resolver: a 429 with Retry-After sends nothing upstream until then; cached users answer, stale within grace, unknown ones "unavailable"', async () => {
  const { r, src, clock } = setup({ jitter: 0 }, {}, () => 0); // no spread of the Retry-After here
  await r.byName('u1');
  await r.byName('u2');
  clock.t += 120_000; // both stale-servable (ttl 100 s, grace 50 s)
  src.fail = () => new UpstreamError('http', 'HTTP 429 from upstream: too many requests', { status: 429, retryAfterMs: 20_000 });
  assert.equal((await r.byName('u1')).status === 'found' && src.calls.length, 3);
  const before = src.calls.length;
  const stale = await r.byName('u2');
  assert.equal(stale.status === 'found' && stale.source, 'stale');
  const unknown = await r.byName('u9');
  assert.equal(unknown.status, 'unavail');
  assert.match(unknown.status === 'unavail' ? unknown.reason : '', /asked to wait 20 s \(HTTP 429\)/);
  assert.equal((await r.refreshByName('u9')).status, 'unavail', 'not even an explicit refresh');
  assert.equal(await r.warm('u9'), 'held');
  assert.equal(src.calls.length, before, 'nothing was sent during the hold-off');
  assert.equal(r.stats.upstream.rate_limited, 1);
  assert.ok(r.stats.upstream.held_off >= 3);
  assert.equal(r.holdoff()!.until, clock.t + 20_000);
  clock.t += 20_000;
  src.fail = null;
  // one probe; the others wait for it (concurrent lookups of two unknown names)
  const [a, b2] = await Promise.all([r.byName('u9'), r.byName('u8')]);
  assert.equal(a.status, 'found');
  assert.equal(b2.status, 'unavail', 'only one probe while half-open');
  assert.equal(src.calls.length, before + 1);
  assert.equal(r.holdoff(), null);
  assert.equal((await r.byName('u8')).status, 'found');
});

test('resolver: 5xx and timeouts in a row back off exponentially; the half-open probe is one request; success resets', async () => {
  const { r, src, clock } = setup({ jitter: 0 }, { backoffMaxMs: 8_000 });
  src.fail = () => new UpstreamError('http', 'HTTP 502 from upstream', { status: 502 });
  for (let i = 0; i < DOWN_AFTER_FAILURES; i++) assert.equal((await r.byName(`u${i}`)).status, 'unavail');
  const held = r.holdoff()!;
  assert.ok(held.until > clock.t && held.failures === DOWN_AFTER_FAILURES);
  let sent = src.calls.length;
  for (let i = 10; i < 20; i++) await r.byName(`u${i}`);
  assert.equal(src.calls.length, sent, 'held: nothing sent');
  const lengths: number[] = [];
  src.fail = () => new UpstreamError('timeout', 'no reply');
  for (let k = 0; k < 5; k++) {
    clock.t = r.holdoff()!.until;
    sent = src.calls.length;
    await Promise.all([r.byName('u30'), r.byName('u31'), r.byName('u32')]);
    assert.equal(src.calls.length, sent + 1, 'one probe');
    lengths.push(r.holdoff()!.until - clock.t);
  }
  [2, 4, 8, 8, 8].forEach((s, i) => assert.ok(lengths[i]! >= s * 800 && lengths[i]! <= s * 1200, `${i}: ${lengths[i]}`));
  clock.t = r.holdoff()!.until;
  src.fail = null;
  assert.equal((await r.byName('u30')).status, 'found');
  assert.equal(r.holdoff(), null);
  // a 404-answering, 401-answering or 400-answering service is not "down"
  src.fail = () => new UpstreamError('http', 'HTTP 400', { status: 400 });
  for (let i = 0; i < 5; i++) await r.byName(`u4${i}`);
  assert.equal(r.holdoff(), null);
});

// ---- warm start ------------------------------------------------------------------------

test('warm start refreshes the most recently used first, skips entries the cache can still serve (fresh or stale within grace), keeps to the rate, and stops cleanly', async () => {
  const { r, src, clock, db, cfg } = setup({ jitter: 0, warmStart: 4, warmStartRate: 50 });
  for (let i = 0; i < 8; i++) await r.byName(`u${i}`);
  // last_used: u5 most recent, then u3, u1, u6, u7; u3 stays fresh
  db.touchAll(['u7'], clock.t + 1);
  db.touchAll(['u6'], clock.t + 2);
  db.touchAll(['u1'], clock.t + 3);
  db.touchAll(['u3'], clock.t + 4);
  db.touchAll(['u5'], clock.t + 5);
  clock.t += 160_000; // all past their grace (ttl 100 s, grace 50 s)...
  db.put({ ...db.getByName('u3')!, fetchedAt: clock.t, expiresAt: clock.t + 100_000 }); // ...but u3, fresh,
  db.put({ ...db.getByName('u1')!, fetchedAt: clock.t - 110_000, expiresAt: clock.t - 10_000 }); // and u1, stale within grace
  src.calls = [];
  const times: number[] = [];
  const real = src.fetchByName.bind(src);
  src.fetchByName = (n: string) => { times.push(performance.now()); return real(n); };
  const w = new WarmStart({
    names: (limit) => db.recentNames(limit), refresh: (n) => r.warm(n),
    limit: () => cfg.cache.warmStart!, rate: () => cfg.cache.warmStartRate!, random: () => 0, // no spread delay here
  });
  w.start();
  assert.equal(w.status().state, 'waiting');
  for (let i = 0; i < 100 && w.status().state !== 'done'; i++) await new Promise((res) => setTimeout(res, 10));
  assert.deepEqual(w.status(), { state: 'done', total: 4, done: 4, refreshed: 2, failed: 0 });
  assert.deepEqual(src.calls, ['u5', 'u6'], 'most recent first, the fresh u3 and the stale u1 skipped, only the 4 most recent');
  for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! >= 15, `requests ${times[i]! - times[i - 1]!} ms apart at 50/s`);

  // stop(): no timer left behind, nothing sent after it
  const w2 = new WarmStart({ names: () => ['u0', 'u2'], refresh: (n) => r.warm(n), limit: () => 4, rate: () => 1, random: () => 0.999 });
  w2.start();
  const sent = src.calls.length;
  w2.stop();
  await new Promise((res) => setTimeout(res, 50));
  assert.equal(w2.status().state, 'stopped');
  assert.equal(src.calls.length, sent);
  // the spread delay is at most 5 s
  assert.ok(WARM_START_SPREAD_MS <= 5_000);
});

test('warm start waits out a hold-off instead of counting its names as failed', async () => {
  const { r, src, clock } = setup({ jitter: 0 });
  await r.byName('u1');
  clock.t += 200_000;
  src.fail = () => new UpstreamError('http', '429', { status: 429, retryAfterMs: 60_000 });
  await r.byName('u2');
  src.fail = null;
  const results: string[] = [];
  const w = new WarmStart({ names: () => ['u1'], refresh: async (n) => { const x = await r.warm(n); results.push(x); return x; }, limit: () => 1, rate: () => 100, random: () => 0 });
  w.start();
  await new Promise((res) => setTimeout(res, 50));
  assert.deepEqual(results, ['held']);
  assert.equal(w.status().failed, 0);
  assert.equal(w.status().state, 'running');
  w.stop();
});

test('recent_file: names only, 0600, rewritten only when changed; read back in order through the name rule; a foreign or group-readable file is refused', () => {
  const dir = scratchDir('latchkey-recent-');
  const path = join(dir, 'recent-users');
  const f = new RecentFile(() => path);
  f.write(['carol', 'alice', 'bob']);
  assert.equal(readFileSync(path, 'utf8'), 'carol\nalice\nbob\n');
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const m1 = statSync(path).mtimeMs;
  const ino = statSync(path).ino;
  f.write(['carol', 'alice', 'bob']);
  assert.equal(statSync(path).ino, ino, 'unchanged: not rewritten');
  assert.equal(statSync(path).mtimeMs, m1);
  writeFileSync(path, 'dave\nBAD NAME\n../etc\ndave\nerin\nfrank\n', { mode: 0o600 });
  const ok = (n: string): boolean => /^[a-z_][a-z0-9_.-]{0,31}$/.test(n);
  assert.deepEqual(f.read(10, ok), ['dave', 'erin', 'frank']);
  assert.deepEqual(f.read(2, ok), ['dave', 'erin']);
  chmodSync(path, 0o644);
  assert.deepEqual(f.read(10, ok), [], 'group/other-readable: refused');
  assert.deepEqual(new RecentFile(() => join(dir, 'missing')).read(10, ok), []);
  assert.deepEqual(new RecentFile(() => null).read(10, ok), []);
});

test('resolver: after a "reboot" (empty cache) the warm start goes by the recent file; the sweep keeps its names', async () => {
  const dir = scratchDir('latchkey-recent-');
  const recentFile = join(dir, 'recent-users');
  const a = setup({ jitter: 0, warmStart: 3, recentFile });
  for (const n of ['u1', 'u2', 'u3', 'u4']) { await a.r.byName(n); a.clock.t += 10; a.r.sweep(); }
  assert.equal(readFileSync(recentFile, 'utf8'), 'u4\nu3\nu2\n');
  const b = setup({ jitter: 0, warmStart: 4, warmStartRate: 1000, recentFile }, {}, () => 0); // no spread delay
  b.src.users.delete('u2'); // removed upstream meanwhile
  b.r.warmStart.start();
  for (let i = 0; i < 100 && b.r.warmStart.status().state !== 'done'; i++) await new Promise((res) => setTimeout(res, 20));
  assert.deepEqual(b.src.calls, ['u4', 'u3', 'u2']);
  // The cache of the rebooted host holds little so far (here: only u9); the list keeps the names
  // the file had behind it, but not u2, which the upstream no longer has.
  b.db.flush();
  await b.r.byName('u9');
  b.r.sweep();
  assert.equal(readFileSync(recentFile, 'utf8'), 'u9\nu4\nu3\n');
});

test('config: [cache] jitter is a percentage 0 .. 50 %; the pacing keys have their defaults', () => {
  const URLS = '[upstream]\nby_name_url = https://u.example/n/%s\nby_uid_url = https://u.example/u/%u\n';
  const c = parseConfig(URLS, 'x.conf');
  assert.equal(c.cache.jitter, 0.1);
  assert.equal(c.cache.warmStart, 500);
  assert.equal(c.cache.warmStartRate, 20);
  assert.equal(c.cache.recentFile, '/var/lib/latchkey/recent-users');
  assert.equal(c.upstream.backoffMaxMs, 30_000);
  const j = (v: string): number | undefined => parseConfig(`${URLS}[cache]\njitter = ${v}\n`, 'x.conf').cache.jitter;
  assert.equal(j('0%'), 0);
  assert.equal(j('25%'), 0.25);
  assert.equal(j('12.5%'), 0.125);
  for (const bad of ['0.1', '10', '51%', '-5%', 'ten%']) assert.throws(() => j(bad), /jitter/, bad);
  assert.equal(parseConfig(`${URLS}[cache]\nrecent_file = none\nwarm_start = 0\n`, 'x.conf').cache.recentFile, null);
  assert.throws(() => parseConfig(`${URLS}[upstream]\nbackoff_max = 10ms\n`, 'x.conf'), /backoff_max/);
});

// ---- the refreshes a restart put off ---------------------------------------------------

test('after a restart, what expired while the daemon was down is refetched spread over ttl × jitter, not at once', async () => {
  const a = setup({ jitter: 0.1 });
  for (let i = 0; i < 40; i++) await a.r.byName(`u${i}`);
  // The daemon stops for 5 s, across the expiry of part of its entries (ttl 100 s ± 10 %).
  const mid = Math.min(...a.db.all().map((u) => u.expiresAt)) + 2_000;
  const due = a.db.all().filter((u) => u.expiresAt > mid - 5_000 && u.expiresAt <= mid).map((u) => u.username);
  assert.ok(due.length >= 3, `entries expiring during the downtime: ${due.length}`);
  // The new daemon: a new resolver over the same cache file.
  const clock = { t: mid };
  const r = new Resolver(a.db, a.src, () => a.cfg, () => clock.t, undefined, seeded(2));
  a.src.calls = [];
  for (const n of due) assert.equal((await r.byName(n)).status, 'found');
  assert.ok(a.src.calls.length <= 1, `refetched at once after the start: ${a.src.calls.join(' ')}`);
  // Over the window (the downtime here, ~90 s since the fetches, capped at four times ttl ×
  // jitter: 40 s) each comes due at its own instant, so the refetches spread over it: not more
  // than half in any one second.
  const perSecond: number[] = [];
  for (let s = 1; s <= 40; s++) {
    clock.t = mid + s * 1_000;
    const before = a.src.calls.length;
    for (const n of due) await r.byName(n);
    perSecond.push(a.src.calls.length - before);
  }
  assert.deepEqual([...new Set(a.src.calls)].sort(), [...due].sort(), 'each refetched by the end of the window');
  assert.ok(Math.max(...perSecond) <= Math.ceil(due.length / 2), `refetches per second: ${perSecond}`);
});

test('the restart spread: never for an invalidated entry, one that expired long before the start, or past the grace; off at jitter 0 %', () => {
  const cfg = { jitter: 0.1, ttlSec: 100, staleGraceSec: 50 };
  const start = 1_700_000_000_000;
  const natural = { fetchedAt: start - 100_000, expiresAt: start - 2_000 };
  const e = restartSpreadExpiry(natural, start, cfg);
  assert.ok(e >= start && e <= start + 20_000, String(e - start));
  assert.equal(restartSpreadExpiry({ fetchedAt: start - 30_000, expiresAt: start - 2_000 }, start, cfg), start - 2_000, 'invalidated: expired early');
  assert.equal(restartSpreadExpiry({ fetchedAt: start - 200_000, expiresAt: start - 30_000 }, start, cfg), start - 30_000, 'expired long before the start');
  assert.equal(restartSpreadExpiry({ fetchedAt: start - 90_000, expiresAt: start + 1_000 }, start, cfg), start + 1_000, 'still fresh at the start');
  assert.equal(restartSpreadExpiry(natural, start, { ...cfg, jitter: 0 }), natural.expiresAt);
  assert.ok(restartSpreadExpiry(natural, start, { ...cfg, staleGraceSec: 3 }) <= natural.expiresAt + 3_000, 'never past the grace');
  // The window is twice ttl × jitter (20 s here); a longer downtime widens it to that, up to 40 s.
  const early = { fetchedAt: start - 125_000, expiresAt: start - 25_000 };
  assert.equal(restartSpreadExpiry(early, start, cfg), early.expiresAt, 'down 0 s: outside the 20 s window');
  const e30 = restartSpreadExpiry(early, start, cfg, 30_000);
  assert.ok(e30 >= start && e30 <= start + 30_000, `down 30 s: spread over 30 s (${e30 - start})`);
  assert.equal(restartSpreadExpiry({ fetchedAt: start - 145_000, expiresAt: start - 45_000 }, start, { ...cfg, staleGraceSec: 100 }, 3_600_000), start - 45_000, 'never wider than 40 s');
});
