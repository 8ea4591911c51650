// Password verification against hashes made by independent tools (test/fixtures/hashes.json),
// the dummy path's cost, hash classification, and the throttle with a fake clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hashKind, hashInfo, type HashKind } from '../../src/verify/hash.js';
import { verifyPassword, dummyVerify } from '../../src/verify/password.js';
import { Throttle } from '../../src/verify/throttle.js';
import { crypt } from '../../src/native/addon.js';
import type { PamConfig } from '../../src/config/types.js';
import { ROOT } from '../lib/paths.js';

interface Fixture { kind: HashKind; tool: string; password: string; hash: string }
const fixtures = (JSON.parse(readFileSync(join(ROOT, 'test/fixtures/hashes.json'), 'utf8')) as { hashes: Fixture[] }).hashes;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

test('fixtures cover every hash kind and both PHP and OpenBSD bcrypt spellings', () => {
  const kinds = new Set(fixtures.map((f) => f.kind));
  for (const k of ['bcrypt', 'md5crypt', 'sha256crypt', 'sha512crypt', 'yescrypt', 'des']) assert.ok(kinds.has(k as HashKind), k);
  for (const p of ['$2a$', '$2b$', '$2y$']) assert.ok(fixtures.some((f) => f.hash.startsWith(p)), p);
});

for (const f of fixtures) {
  test(`${f.kind} (${f.hash.slice(0, 4)}, ${f.tool}): right password passes, wrong ones fail`, async () => {
    assert.equal(hashKind(f.hash), f.kind);
    assert.equal(await verifyPassword(f.password, f.hash), true);
    const last = f.password.slice(-1);
    assert.equal(await verifyPassword(f.password.slice(0, -1) + (last === 'z' ? 'y' : 'z'), f.hash), false);
    // DES crypt(3) reads only the first 8 characters: an appended character is the same password.
    if (f.kind !== 'des') assert.equal(await verifyPassword(f.password + 'x', f.hash), false);
    assert.equal(await verifyPassword('', f.hash), false);
    assert.equal(await verifyPassword(f.password.toUpperCase(), f.hash), false);
    // crypt(3) would stop at the NUL and see the right password.
    assert.equal(await verifyPassword(f.password + '\0junk', f.hash), false);
  });
}

test('no hash, locked or garbage hashes are false, never a throw', async () => {
  const bad = [null, '', '!', '*', '!$6$abc$def', '*0', 'garbage', '$2b$10$short', '$2b$99$' + 'a'.repeat(53),
    '$6$salt$tooShort', '$y$$$', '$1$$', '$7$whatever', 'x'.repeat(5000), '$2y$10$' + '!'.repeat(53)];
  for (const h of bad) assert.equal(await verifyPassword('password', h), false, String(h));
  assert.equal(await verifyPassword('x'.repeat(2000), fixtures[0]!.hash), false);
});

test('hashInfo reports kind and cost, never the hash', () => {
  const byKind = (k: string) => fixtures.find((f) => f.kind === k && !f.hash.includes('rounds='))!.hash;
  assert.deepEqual(hashInfo(byKind('bcrypt')), { kind: 'bcrypt', cost: 10, costName: 'cost' });
  assert.deepEqual(hashInfo(byKind('sha512crypt')), { kind: 'sha512crypt', cost: 5000, costName: 'rounds' });
  assert.deepEqual(hashInfo(fixtures.find((f) => f.hash.includes('rounds='))!.hash), { kind: 'sha512crypt', cost: 20000, costName: 'rounds' });
  assert.deepEqual(hashInfo(byKind('yescrypt')), { kind: 'yescrypt', cost: 12, costName: 'N_log2' });
  assert.equal(hashInfo(byKind('md5crypt')).kind, 'md5crypt');
  assert.equal(hashInfo(byKind('des')).kind, 'des');
  assert.deepEqual(hashInfo(null), { kind: 'none', cost: null, costName: null });
  assert.equal(hashKind('garbage'), 'unknown');
  assert.equal(hashKind('$2b$03$' + 'a'.repeat(53)), 'unknown');
});

test('the dummy path costs about as much as a real bcrypt verification', async () => {
  const real = fixtures.find((f) => f.hash.startsWith('$2b$10$'))!;
  await verifyPassword('warm-up', real.hash);
  const realMs = Math.min(await timed(() => verifyPassword('wrong', real.hash)), await timed(() => verifyPassword('wrong', real.hash)));
  const dummyMs = Math.min(await timed(() => dummyVerify()), await timed(() => dummyVerify()));
  const nullMs = await timed(() => verifyPassword('pw', null));
  const garbageMs = await timed(() => verifyPassword('pw', 'garbage'));
  // Cheap legacy kinds are padded with a dummy verification so they do not stand out either.
  const des = fixtures.find((f) => f.kind === 'des')!;
  const md5 = fixtures.find((f) => f.kind === 'md5crypt')!;
  const desMs = await timed(() => verifyPassword(des.password, des.hash));
  const md5Ms = await timed(() => verifyPassword('wrong', md5.hash));
  const msg = `real ${realMs.toFixed(1)} dummy ${dummyMs.toFixed(1)} null ${nullMs.toFixed(1)} garbage ${garbageMs.toFixed(1)} `
    + `des ${desMs.toFixed(1)} md5 ${md5Ms.toFixed(1)} ms`;
  for (const ms of [dummyMs, nullMs, garbageMs, desMs, md5Ms]) assert.ok(ms >= realMs * 0.3, msg);
});

test('verification time per hash kind (informational)', async () => {
  const rows: string[] = [];
  for (const f of fixtures) {
    await verifyPassword(f.password, f.hash);
    const ms = Math.min(await timed(() => verifyPassword(f.password, f.hash)), await timed(() => verifyPassword('wrong', f.hash)));
    rows.push(`${f.kind} ${f.hash.slice(0, f.hash.includes('rounds=') ? 16 : 7)}: ${ms.toFixed(2)} ms`);
  }
  rows.push(`dummy: ${(await timed(() => dummyVerify())).toFixed(2)} ms`);
  rows.push(`raw crypt (no padding): ${await rawCryptTimes()}`);
  console.log('# ' + rows.join('\n# '));
});

async function rawCryptTimes(): Promise<string> {
  const out: string[] = [];
  for (const f of fixtures.filter((x) => x.kind !== 'bcrypt' && x.kind !== 'des')) {
    await crypt(f.password, f.hash);
    out.push(`${f.kind}${f.hash.includes('rounds=') ? '(20000)' : ''} ${(await timed(() => crypt(f.password, f.hash))).toFixed(2)}`);
  }
  return out.join(', ') + ' ms';
}

function pam(over: Partial<PamConfig> = {}): PamConfig {
  return {
    prompt: 'Password: ', chrootSessions: true, maxFailures: 3, throttleWindowSec: 60,
    throttleLockoutSec: 300, maxSessionsPerUser: 0, maxSessionAgeSec: 0, hostMaxFailures: 12,
    maxBcryptCost: 13, maxShaRounds: 1_000_000, maxYescryptMemory: 64 * 1024 * 1024, ...over,
  };
}

function clock(start = 1_000_000): { now: () => number; advance(sec: number): void } {
  let t = start;
  return { now: () => t, advance: (sec) => { t += sec * 1000; } };
}

test('throttle: maxFailures within the window locks the user out for the lockout time', () => {
  const c = clock();
  const th = new Throttle(() => pam(), c.now);
  for (let i = 0; i < 2; i++) th.recordFailure('alice', '');
  assert.equal(th.check('alice', '').allowed, true);
  th.recordFailure('alice', '');
  assert.deepEqual(th.check('alice', ''), { allowed: false, retryAfterSec: 300 });
  assert.equal(th.check('bob', '').allowed, true, 'other users unaffected');
  c.advance(299.5);
  assert.deepEqual(th.check('alice', ''), { allowed: false, retryAfterSec: 1 });
  c.advance(0.5);
  assert.equal(th.check('alice', '').allowed, true);
  th.recordFailure('alice', '');
  assert.equal(th.check('alice', '').allowed, true, 'count restarts after a lockout');
});

test('throttle: failures spread wider than the window never lock', () => {
  const c = clock();
  const th = new Throttle(() => pam(), c.now);
  for (let i = 0; i < 10; i++) {
    th.recordFailure('alice', '10.0.0.1');
    th.recordFailure('alice', '10.0.0.1');
    assert.equal(th.check('alice', '10.0.0.1').allowed, true, `round ${i}`);
    c.advance(61);
  }
});

test('throttle: per remote host across users, and success clears only the user', () => {
  const c = clock();
  const th = new Throttle(() => pam(), c.now);
  th.recordFailure('u1', '192.0.2.7');
  th.recordFailure('u2', '192.0.2.7');
  th.recordFailure('u3', '192.0.2.7');
  const d = th.check('u4', '192.0.2.7');
  assert.equal(d.allowed, false, 'host locked for every user');
  assert.equal(th.check('u4', '192.0.2.8').allowed, true);
  th.recordSuccess('u1');
  assert.equal(th.check('u1', '192.0.2.7').allowed, false, 'a success does not unlock the host');
  th.recordFailure('carol', '198.51.100.1');
  th.recordFailure('carol', '198.51.100.2');
  th.recordSuccess('carol');
  th.recordFailure('carol', '198.51.100.3');
  th.recordFailure('carol', '198.51.100.4');
  assert.equal(th.check('carol', '198.51.100.9').allowed, true, 'success reset the user count');
  const s = th.snapshot();
  assert.equal(s.lockedHosts.length, 1);
  assert.equal(s.lockedHosts[0]!.rhost, '192.0.2.7');
  assert.equal(s.lockouts, 1);
  assert.ok(s.refused >= 2);
});

test('throttle: config is read live, and maxFailures 0 disables it', () => {
  let cfg = pam({ maxFailures: 0 });
  const th = new Throttle(() => cfg, clock().now);
  for (let i = 0; i < 50; i++) th.recordFailure('alice', 'h');
  assert.equal(th.check('alice', 'h').allowed, true);
  cfg = pam({ maxFailures: 1, throttleLockoutSec: 10 });
  th.recordFailure('alice', 'h');
  assert.deepEqual(th.check('alice', 'h'), { allowed: false, retryAfterSec: 10 });
});

test('throttle: memory is bounded, the stalest keys are evicted first', () => {
  const c = clock();
  const th = new Throttle(() => pam({ maxFailures: 2 }), c.now, 1000);
  th.recordFailure('victim', '');
  th.recordFailure('victim', '');
  for (let i = 0; i < 999; i++) th.recordFailure(`spray${i}`, `203.0.113.${i % 250}/${i}`);
  assert.equal(th.check('victim', '').allowed, false, 'still there at the cap');
  th.recordFailure('one-more', '');
  const s = th.snapshot();
  assert.equal(s.trackedUsers, 1000);
  assert.ok(s.trackedHosts <= 1000);
  assert.ok(s.evictions >= 1);
  assert.equal(th.check('victim', '').allowed, true, 'the oldest entry went first');
  for (let i = 0; i < 5000; i++) th.recordFailure(`n${i}`, `h${i}`);
  assert.equal(th.snapshot().trackedUsers, 1000);
  assert.equal(th.snapshot().trackedHosts, 1000);
});
