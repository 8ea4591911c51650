// Password verification against hashes made by independent tools (test/fixtures/hashes.json),
// the dummy path's cost and hash classification (the throttle: throttle.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hashKind, hashInfo, type HashKind } from '../../src/verify/hash.js';
import { verifyPassword, dummyVerify } from '../../src/verify/password.js';
import { crypt } from '../../src/native/addon.js';
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

test('no hash kind answers faster than the dummy, right or wrong password (times reported)', async () => {
  const rows: string[] = [];
  const times: [string, number][] = [];
  for (const f of fixtures) {
    await verifyPassword(f.password, f.hash);
    const ms = Math.min(await timed(() => verifyPassword(f.password, f.hash)), await timed(() => verifyPassword('wrong', f.hash)));
    const label = `${f.kind} ${f.hash.slice(0, f.hash.includes('rounds=') ? 16 : 7)}`;
    times.push([label, ms]);
    rows.push(`${label}: ${ms.toFixed(2)} ms`);
  }
  // Every fixture is served now, so the dummy follows one of their settings (the most common).
  const dummyMs = Math.min(await timed(() => dummyVerify()), await timed(() => dummyVerify()));
  rows.push(`dummy: ${dummyMs.toFixed(2)} ms`);
  rows.push(`raw crypt (no padding): ${await rawCryptTimes()}`);
  console.log('# ' + rows.join('\n# '));
  assert.equal(times.length, fixtures.length);
  // The same 0.3 margin as above: scheduling noise, not a kind that skips the padding.
  for (const [label, ms] of times) assert.ok(ms >= dummyMs * 0.3, `${label} ${ms.toFixed(2)} ms, dummy ${dummyMs.toFixed(2)} ms`);
});

async function rawCryptTimes(): Promise<string> {
  const out: string[] = [];
  for (const f of fixtures.filter((x) => x.kind !== 'bcrypt' && x.kind !== 'des')) {
    await crypt(f.password, f.hash);
    out.push(`${f.kind}${f.hash.includes('rounds=') ? '(20000)' : ''} ${(await timed(() => crypt(f.password, f.hash))).toFixed(2)}`);
  }
  return out.join(', ') + ' ms';
}
