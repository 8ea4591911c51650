// Login throttling (src/verify/throttle.ts) with a fake clock, and checkPassword's use of it
// (src/verify/login.ts) with a real bcrypt hash and many attempts in flight at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import bcrypt from 'bcrypt';
import { Throttle, REPORT_EVERY_MS, type Admission, type Lockout, type Ticket } from '../../src/verify/throttle.js';
import { checkPassword, type LoginOutcome } from '../../src/verify/login.js';
import type { Resolver } from '../../src/directory/resolver.js';
import type { Lookup } from '../../src/cache/types.js';
import type { CachedUser } from '../../src/types.js';
import type { PamConfig } from '../../src/config/types.js';

function pam(over: Partial<PamConfig> = {}): PamConfig {
  return {
    prompt: 'Password: ', chrootSessions: true, maxFailures: 3, throttleWindowSec: 60,
    throttleLockoutSec: 300, maxSessionsPerUser: 0, maxSessionAgeSec: 0, hostMaxFailures: 12,
    sessionLimit: 'per-user', onLimit: 'refuse', sessionRenewal: 'off', privilegedGroups: [], privilegedUsers: [],
    maxBcryptCost: 13, maxShaRounds: 1_000_000, maxYescryptMemory: 64 * 1024 * 1024, ...over,
  };
}

function clock(start = 1_000_000): { now: () => number; advance(sec: number): void } {
  let t = start;
  return { now: () => t, advance: (sec) => { t += sec * 1000; } };
}

function ticketOf(a: Admission): Ticket {
  assert.equal(a.allowed, true, a.allowed ? '' : `refused: ${JSON.stringify(a.refusal)}`);
  return (a as { ticket: Ticket }).ticket;
}

/** One whole attempt that turns out wrong. */
async function failOnce(th: Throttle, user: string, rhost: string): Promise<Lockout[]> {
  return ticketOf(await th.admit(user, rhost)).fail();
}

/** Allowed, and gives the slot straight back (the question "would it be let in now?"). */
async function allowed(th: Throttle, user: string, rhost: string): Promise<boolean> {
  const a = await th.admit(user, rhost);
  if (a.allowed) a.ticket.release();
  return a.allowed;
}

test('throttle: maxFailures within the window locks the user out for the lockout time', async () => {
  const c = clock();
  const th = new Throttle(() => pam(), c.now);
  for (let i = 0; i < 2; i++) assert.deepEqual(await failOnce(th, 'alice', ''), []);
  assert.equal(await allowed(th, 'alice', ''), true);
  assert.deepEqual(await failOnce(th, 'alice', ''), [{ scope: 'user', key: 'alice', failures: 3, limit: 3, retryAfterSec: 300 }]);
  const a = await th.admit('alice', '');
  assert.equal(a.allowed, false);
  assert.deepEqual(a.allowed ? null : { ...a.refusal }, { scope: 'user', key: 'alice', reason: 'locked', report: 1, failures: 3, limit: 3, retryAfterSec: 300 });
  assert.equal(await allowed(th, 'bob', ''), true, 'other users unaffected');
  c.advance(299.5);
  assert.deepEqual(th.peek('alice'), { allowed: false, retryAfterSec: 1 });
  c.advance(0.5);
  assert.equal(await allowed(th, 'alice', ''), true);
  await failOnce(th, 'alice', '');
  assert.equal(await allowed(th, 'alice', ''), true, 'count restarts after a lockout');
});

test('throttle: failures spread wider than the window never lock', async () => {
  const c = clock();
  const th = new Throttle(() => pam(), c.now);
  for (let i = 0; i < 10; i++) {
    await failOnce(th, 'alice', '10.0.0.1');
    await failOnce(th, 'alice', '10.0.0.1');
    assert.equal(await allowed(th, 'alice', '10.0.0.1'), true, `round ${i}`);
    c.advance(61);
  }
});

test('throttle: reservations in flight count towards the limit; 40 at once admit exactly maxFailures', async () => {
  const th = new Throttle(() => pam({ maxFailures: 5, hostMaxFailures: 20 }), clock().now);
  // Every attempt asks before any of them settles: the old gate let all 40 through.
  const pending = Array.from({ length: 40 }, (_, i) => th.admit('alice', `198.51.100.${i}`));
  const first = await Promise.race([Promise.all(pending.slice(0, 5)), new Promise((r) => setTimeout(() => r('stuck'), 2000))]);
  assert.notEqual(first, 'stuck', 'the first five are admitted at once');
  const tickets = (first as Admission[]).map(ticketOf);
  assert.equal(th.snapshot().inFlight, 10, 'five user slots and five host slots');
  // All five turn out wrong: the user locks, and every waiting attempt is refused unchecked.
  const lockouts = tickets.flatMap((t) => t.fail());
  assert.deepEqual(lockouts.map((l) => l.scope), ['user']);
  const rest = await Promise.all(pending.slice(5));
  assert.equal(rest.filter((a) => a.allowed).length, 0);
  for (const a of rest) if (!a.allowed) assert.equal(a.refusal.reason, 'locked');
  const s = th.snapshot();
  assert.equal(s.failures, 5);
  assert.equal(s.refused, 35);
  assert.equal(s.inFlight, 0);
  // Log lines: the first refusal of the lockout is reported, the other 34 wait for the summary.
  assert.equal(rest.filter((a) => !a.allowed && a.refusal.report > 0).length, 1);
});

test('throttle: a waiting attempt proceeds when the slots in flight are given back', async () => {
  const th = new Throttle(() => pam({ maxFailures: 2, hostMaxFailures: 2 }), clock().now);
  const a = ticketOf(await th.admit('alice', 'h'));
  const b = ticketOf(await th.admit('bob', 'h'));
  let third: Admission | null = null;
  const p = th.admit('carol', 'h').then((x) => { third = x; return x; });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(third, null, 'the host budget is full of slots in flight: carol waits');
  a.release();
  ticketOf(await p).release();
  b.fail();
  assert.equal(await allowed(th, 'dave', 'h'), true, 'one failure of two: room for one more');
});

test('throttle: a wait is bounded; then refused as busy, not as locked', async () => {
  const th = new Throttle(() => pam({ maxFailures: 1 }), clock().now, 100_000, 50);
  const held = ticketOf(await th.admit('alice', ''));
  const t0 = Date.now();
  const a = await th.admit('alice', '');
  assert.ok(Date.now() - t0 >= 45);
  assert.equal(a.allowed, false);
  if (!a.allowed) assert.deepEqual([a.refusal.reason, a.refusal.scope, a.refusal.retryAfterSec], ['busy', 'user', 1]);
  held.release();
  assert.equal(await allowed(th, 'alice', ''), true);
});

test('throttle: a right password releases only its own slot; it never clears the window', async () => {
  const c = clock();
  const th = new Throttle(() => pam(), c.now);
  await failOnce(th, 'carol', '198.51.100.1');
  await failOnce(th, 'carol', '198.51.100.2');
  ticketOf(await th.admit('carol', '198.51.100.3')).release(); // the right password
  assert.equal(th.list(10).entries.find((e) => e.key === 'carol')?.failures, 2, 'still two failures');
  assert.equal((await failOnce(th, 'carol', '198.51.100.4')).length, 1, 'the third failure locks');
  assert.equal(await allowed(th, 'carol', '198.51.100.9'), false);
  // Settling twice (fail, then release in a finally) counts once.
  const t = ticketOf(await th.admit('dave', ''));
  t.fail(); t.release(); t.fail();
  assert.equal(th.list(10).entries.find((e) => e.key === 'dave')?.failures, 1);
  // A right password with nothing else recorded leaves no entry behind.
  ticketOf(await th.admit('erin', '')).release();
  assert.equal(th.list(10).entries.some((e) => e.key === 'erin'), false);
});

test('throttle: per remote host across users, with its own budget; the refusal says which', async () => {
  const c = clock();
  const th = new Throttle(() => pam({ maxFailures: 3, hostMaxFailures: 4 }), c.now);
  for (const u of ['u1', 'u2', 'u3']) assert.deepEqual(await failOnce(th, u, '192.0.2.7'), []);
  assert.deepEqual(await failOnce(th, 'u4', '192.0.2.7'), [{ scope: 'host', key: '192.0.2.7', failures: 4, limit: 4, retryAfterSec: 300 }]);
  const d = await th.admit('u5', '192.0.2.7');
  assert.equal(d.allowed, false, 'host locked for every user');
  if (!d.allowed) assert.deepEqual([d.refusal.scope, d.refusal.key, d.refusal.failures, d.refusal.limit], ['host', '192.0.2.7', 4, 4]);
  assert.equal(await allowed(th, 'u5', '192.0.2.8'), true, 'other addresses unaffected');
  assert.equal(await allowed(th, 'u1', ''), true, 'the users themselves are not locked');
  // Both locked: the user budget is named (it is checked first).
  for (let i = 0; i < 3; i++) await failOnce(th, 'v', '203.0.113.1');
  await failOnce(th, 'w', '203.0.113.1');
  const both = await th.admit('v', '203.0.113.1');
  assert.equal(!both.allowed && both.refusal.scope, 'user');
  const s = th.snapshot();
  assert.deepEqual(s.lockedHosts.map((h) => h.rhost).sort(), ['192.0.2.7', '203.0.113.1']);
  assert.deepEqual(s.lockedUsers.map((u) => u.user), ['v']);
});

test('throttle: refusals are reported once per key per minute, with the count since the last line', async () => {
  const c = clock();
  const th = new Throttle(() => pam({ maxFailures: 1, throttleLockoutSec: 600 }), c.now);
  await failOnce(th, 'alice', '');
  const reports: number[] = [];
  for (let i = 0; i < 10; i++) {
    const a = await th.admit('alice', '');
    reports.push(a.allowed ? -1 : a.refusal.report);
    c.advance(10);
  }
  // t=0 reported (1), t=10..50 suppressed, t=60 reports those 5 and itself.
  assert.deepEqual(reports, [1, 0, 0, 0, 0, 0, 6, 0, 0, 0]);
  assert.equal(REPORT_EVERY_MS, 60_000);
  assert.equal(th.list(10).entries[0]!.refused, 10);
});

test('throttle: reset by user, by host, all; reservations in flight survive a reset', async () => {
  const c = clock();
  const th = new Throttle(() => pam({ maxFailures: 2, hostMaxFailures: 4 }), c.now);
  for (let i = 0; i < 2; i++) await failOnce(th, 'alice', '192.0.2.1');
  for (let i = 0; i < 2; i++) await failOnce(th, 'bob', '192.0.2.1');
  assert.equal(await allowed(th, 'alice', ''), false);
  assert.equal(await allowed(th, 'carol', '192.0.2.1'), false);
  assert.deepEqual(th.reset({ user: 'alice' }), { users: 1, hosts: 0 });
  assert.equal(await allowed(th, 'alice', ''), true);
  assert.deepEqual(th.reset({ user: 'alice' }), { users: 0, hosts: 0 }, 'nothing left to clear');
  assert.deepEqual(th.reset({ host: '192.0.2.1' }), { users: 0, hosts: 1 });
  assert.equal(await allowed(th, 'carol', '192.0.2.1'), true);
  assert.equal(await allowed(th, 'bob', '192.0.2.1'), false, 'a host reset leaves the user lockout');
  const held = ticketOf(await th.admit('dave', ''));
  await failOnce(th, 'dave', '');
  assert.deepEqual(th.reset({ all: true }), { users: 2, hosts: 0 });
  assert.equal(th.list(10).entries.find((e) => e.key === 'dave')?.inFlight, 1, 'the slot in flight is still counted');
  assert.equal((await failOnce(th, 'dave', '')).length, 0);
  assert.equal(held.fail().length, 1, 'it counts when it settles');
  assert.equal(th.snapshot().lockedUsers.length, 1);
});

test('throttle: list shows locked entries first, with limits, windows and refusals', async () => {
  const c = clock();
  const th = new Throttle(() => pam({ maxFailures: 2, hostMaxFailures: 5 }), c.now);
  await failOnce(th, 'alice', '192.0.2.1');
  await failOnce(th, 'bob', '192.0.2.1');
  await failOnce(th, 'bob', '192.0.2.1');
  await th.admit('bob', '192.0.2.1');
  const held = ticketOf(await th.admit('carol', ''));
  const { entries, total } = th.list(10);
  assert.equal(total, 4);
  assert.deepEqual(entries.map((e) => [e.scope, e.key, e.failures, e.limit, e.inFlight]), [
    ['user', 'bob', 2, 2, 0], ['host', '192.0.2.1', 3, 5, 0], ['user', 'alice', 1, 2, 0], ['user', 'carol', 0, 2, 1],
  ]);
  assert.equal(entries[0]!.lockedUntil, c.now() + 300_000);
  assert.equal(entries[0]!.refused, 1);
  assert.equal(entries[2]!.windowStartedAt, c.now());
  assert.equal(entries[3]!.windowStartedAt, null);
  assert.equal(th.list(1).entries.length, 1);
  held.release();
  c.advance(61);
  assert.deepEqual(th.list(10).entries.map((e) => e.key), ['bob'], 'window ended for the others');
});

test('throttle: config is read live', async () => {
  // max_failures is at least 1 (config/keys.ts): throttling cannot be turned off.
  let cfg = pam({ maxFailures: 1, throttleLockoutSec: 10 });
  const th = new Throttle(() => cfg, clock().now);
  await failOnce(th, 'alice', 'h');
  const a = await th.admit('alice', 'h');
  assert.equal(!a.allowed && a.refusal.retryAfterSec, 10);
  // A limit lowered below the failures already counted locks at the next attempt.
  cfg = pam({ maxFailures: 3 });
  await failOnce(th, 'bob', '');
  await failOnce(th, 'bob', '');
  cfg = pam({ maxFailures: 2 });
  assert.equal(await allowed(th, 'bob', ''), false);
  // throttle_lockout = 0: no lockout, the count restarts.
  cfg = pam({ maxFailures: 1, throttleLockoutSec: 0 });
  assert.deepEqual(await failOnce(th, 'carol', ''), []);
  assert.equal(await allowed(th, 'carol', ''), true);
});

test('throttle: memory is bounded, the stalest keys are evicted first, never one in flight', async () => {
  const c = clock();
  const th = new Throttle(() => pam({ maxFailures: 2, hostMaxFailures: 2 }), c.now, 1000);
  await failOnce(th, 'victim', '');
  await failOnce(th, 'victim', '');
  const held = ticketOf(await th.admit('holder', ''));
  for (let i = 0; i < 998; i++) await failOnce(th, `spray${i}`, `203.0.113.${i % 250}/${i}`);
  assert.equal(await allowed(th, 'victim', ''), false, 'still there at the cap');
  await failOnce(th, 'one-more', '');
  const s = th.snapshot();
  assert.equal(s.trackedUsers, 1000);
  assert.ok(s.trackedHosts <= 1000);
  assert.ok(s.evictions >= 1);
  assert.equal(await allowed(th, 'victim', ''), true, 'the oldest entry went first');
  for (let i = 0; i < 5000; i++) await failOnce(th, `n${i}`, `h${i}`);
  assert.equal(th.snapshot().trackedUsers, 1000);
  assert.equal(th.snapshot().trackedHosts, 1000);
  assert.equal(th.list(2000).entries.find((e) => e.key === 'holder')?.inFlight, 1, 'the reservation was not evicted');
  held.fail();
  assert.equal(th.list(2000).entries.find((e) => e.key === 'holder')?.failures, 1);
});

test('throttle: huge user/rhost strings do not become huge map keys', async () => {
  const th = new Throttle(() => pam({ maxFailures: 3, throttleLockoutSec: 60 }), () => 1000);
  const prefix = 'u'.repeat(300);
  for (let i = 0; i < 3; i++) await failOnce(th, prefix + String(i), 'h'.repeat(5000));
  const snap = th.snapshot();
  assert.equal(snap.trackedUsers, 1, 'names beyond the cap share one counter');
  assert.equal(snap.trackedHosts, 1);
  assert.equal(snap.lockedUsers.length, 1);
  for (const u of snap.lockedUsers) assert.ok(u.user.length <= 256);
  for (const h of snap.lockedHosts) assert.ok(h.rhost.length <= 256);
  // The host has 3 of its 12 failures, so it is listed but not locked: its key is checked here.
  const hosts = th.list(10).entries.filter((e) => e.scope === 'host');
  assert.equal(hosts.length, 1);
  assert.ok(hosts[0]!.key.length <= 256, `host key of ${hosts[0]!.key.length} characters`);
  assert.equal(await allowed(th, prefix + 'x', ''), false);
  assert.deepEqual(th.reset({ user: prefix + 'y' }), { users: 1, hosts: 0 });
});

// ---- checkPassword: the reservation around lookup and verification

const RIGHT = 'correct horse';
const HASH = bcrypt.hashSync(RIGHT, 4);

function fakeResolver(answer: () => Promise<Lookup> | Lookup): Resolver {
  return { byName: async () => answer() } as unknown as Resolver;
}
const alice: CachedUser = { username: 'alice', uid: 11001, passwordHash: HASH } as CachedUser;
const found = fakeResolver(async () => { await new Promise((r) => setTimeout(r, 2)); return { status: 'found', user: alice, source: 'cache' }; });

function tally(rs: LoginOutcome[]): Record<string, number> {
  const t: Record<string, number> = {};
  for (const r of rs) t[r.result] = (t[r.result] ?? 0) + 1;
  return t;
}

test('checkPassword: 40 parallel wrong passwords check at most maxFailures; the rest are refused unchecked', async () => {
  const th = new Throttle(() => pam({ maxFailures: 5, hostMaxFailures: 20 }));
  const rs = await Promise.all(Array.from({ length: 40 }, (_, i) =>
    checkPassword(found, th, { user: 'alice', password: `guess ${i}`, rhost: `192.0.2.${i % 3}` }, 'login')));
  assert.deepEqual(tally(rs), { wrong_password: 5, throttled: 35 });
  assert.equal(rs.flatMap((r) => r.lockouts).length, 1, 'one lockout start');
  for (const r of rs.filter((x) => x.result === 'throttled')) {
    assert.equal(r.refusal?.scope, 'user');
    assert.match(r.reason, /too many recent failures for alice \(5 of 5\)/);
  }
  assert.equal(th.snapshot().inFlight, 0);
});

test('checkPassword: a right password in the burst does not reset the count', async () => {
  const th = new Throttle(() => pam({ maxFailures: 5, hostMaxFailures: 20 }));
  const rs = await Promise.all(Array.from({ length: 30 }, (_, i) =>
    checkPassword(found, th, { user: 'alice', password: i === 2 || i === 20 ? RIGHT : `guess ${i}`, rhost: '' }, 'login')));
  const t = tally(rs);
  assert.equal(t.wrong_password, 5, JSON.stringify(t));
  assert.equal(rs[2]!.result, 'ok', 'admitted early, and right');
  assert.equal(rs[20]!.result, 'throttled', 'after the lockout even the right password is refused');
  assert.equal((await checkPassword(found, th, { user: 'alice', password: RIGHT, rhost: '' }, 'login')).result, 'throttled');
});

test('checkPassword: unavailable upstream and throwing lookups release the slot, count nothing', async () => {
  const th = new Throttle(() => pam({ maxFailures: 1 }));
  const down = fakeResolver(() => ({ status: 'unavail', reason: 'upstream timeout' }));
  for (let i = 0; i < 5; i++) {
    assert.equal((await checkPassword(down, th, { user: 'alice', password: 'x', rhost: 'h' }, 'login')).result, 'unavailable');
  }
  const broken = fakeResolver(() => { throw new Error('boom'); });
  await assert.rejects(checkPassword(broken, th, { user: 'alice', password: 'x', rhost: 'h' }, 'login'), /boom/);
  assert.deepEqual([th.snapshot().inFlight, th.snapshot().failures], [0, 0]);
  assert.equal((await checkPassword(found, th, { user: 'alice', password: RIGHT, rhost: 'h' }, 'login')).result, 'ok');
});

test('checkPassword: unknown users and users without a password count as failures', async () => {
  const th = new Throttle(() => pam({ maxFailures: 2, hostMaxFailures: 2 }));
  const none = fakeResolver(() => ({ status: 'notfound', source: 'upstream' }));
  assert.equal((await checkPassword(none, th, { user: 'ghost', password: 'x', rhost: 'h' }, 'login')).result, 'unknown_user');
  const nopw = fakeResolver(() => ({ status: 'found', user: { ...alice, username: 'ivan', passwordHash: null }, source: 'cache' }));
  const o = await checkPassword(nopw, th, { user: 'ivan', password: 'x', rhost: 'h' }, 'login');
  assert.equal(o.result, 'no_password');
  assert.deepEqual(o.lockouts.map((l) => [l.scope, l.key]), [['host', 'h']]);
  const r = await checkPassword(found, th, { user: 'alice', password: RIGHT, rhost: 'h' }, 'login');
  assert.equal(r.result, 'throttled');
  assert.match(r.reason, /from h \(all users\)/);
});

test('checkPassword: a dry run neither reserves nor counts, and reports a lockout', async () => {
  const th = new Throttle(() => pam({ maxFailures: 1 }));
  for (let i = 0; i < 5; i++) assert.equal((await checkPassword(found, th, { user: 'alice', password: 'bad', rhost: '' }, 'dry-run')).result, 'wrong_password');
  assert.equal(th.snapshot().failures, 0);
  await checkPassword(found, th, { user: 'alice', password: 'bad', rhost: '' }, 'login');
  const d = await checkPassword(found, th, { user: 'alice', password: RIGHT, rhost: '' }, 'dry-run');
  assert.equal(d.result, 'throttled');
  assert.equal(th.snapshot().refused, 0, 'a peek is not a refusal');
});
