// Password checks wait at most HASH_WAIT_MS for a hash slot; past it
// the login is "unavailable" (try again), never queued without bound behind a burst.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import bcrypt from 'bcrypt';
import { verifyPassword, HashBusy, HASH_WAIT_MS, MAX_PASSWORD_BYTES } from '../../src/verify/password.js';
import { setLogSink } from '../../src/log.js';

setLogSink(() => { /* quiet */ });
const CEILINGS = { maxBcryptCost: 13, maxShaRounds: 1_000_000, maxYescryptMemory: 64 * 1024 * 1024 };

test('a burst longer than HASH_WAIT_MS: the late ones are told "busy" at the deadline, the rest verify', { timeout: 60_000 }, async () => {
  const hash = await bcrypt.hash('right', 13);
  const t0 = Date.now();
  // one verification alone, to size the burst so that it cannot fit in HASH_WAIT_MS
  assert.equal(await verifyPassword('right', hash, CEILINGS), true);
  const one = Date.now() - t0;
  const n = Math.ceil((2 * HASH_WAIT_MS) / Math.max(one, 50)) + 4;
  const started = Date.now();
  const results = await Promise.allSettled(Array.from({ length: n }, () => verifyPassword('right', hash, CEILINGS)
    .then((ok) => ({ ok, ms: Date.now() - started }))
    .catch((e: unknown) => { throw Object.assign(e as Error, { ms: Date.now() - started }); })));
  const busy = results.filter((r) => r.status === 'rejected');
  const done = results.filter((r) => r.status === 'fulfilled') as PromiseFulfilledResult<{ ok: boolean; ms: number }>[];
  process.stdout.write(`# one bcrypt-13 verification ${one} ms; burst of ${n}: ${done.length} verified, ${busy.length} busy\n`);
  assert.ok(busy.length > 0, 'nobody was told busy');
  for (const b of busy) {
    assert.ok(b.reason instanceof HashBusy, String(b.reason));
    // told at the deadline, not after the whole queue drained
    assert.ok((b.reason as unknown as { ms: number }).ms < HASH_WAIT_MS + 2 * one + 1000, `busy after ${(b.reason as unknown as { ms: number }).ms} ms`);
  }
  assert.ok(done.every((d) => d.value.ok), 'every verification that ran is right');
});

test('passwords over MAX_PASSWORD_BYTES (UTF-8) are refused before any hash, even when right', async () => {
  const long = 'é'.repeat(MAX_PASSWORD_BYTES / 2 + 1); // 258 bytes, 129 UTF-16 units
  const hash = await bcrypt.hash(long, 4);
  assert.equal(await verifyPassword(long, hash, CEILINGS), false);
  const fits = 'é'.repeat(MAX_PASSWORD_BYTES / 2 - 10);
  assert.equal(await verifyPassword(fits, await bcrypt.hash(fits, 4), CEILINGS), true);
});
