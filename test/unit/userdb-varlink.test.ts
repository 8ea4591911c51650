// Property tests (fast-check) of the varlink reader and call parser of userdb.sock (issue 20):
// any local user writes to that socket, so for ANY bytes in ANY chunking the reader must give
// back exactly the NUL-terminated messages sent, never one longer than the cap, and refuse an
// oversized one with its own error; the call parser must never throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_MESSAGE_BYTES, VarlinkFramingError, VarlinkReader, encodeError, encodeReply, parseCall } from '../../src/userdb/varlink.js';

// The conventions of property-fuzz.test.ts: a fixed, printed seed (LK_PROPERTY_SEED) so a failure
// reproduces, and LK_PROPERTY_SCALE to multiply the runs (`make fuzz` sets it).
const SEED = Number(process.env.LK_PROPERTY_SEED ?? 1919);
const RUNS = Math.max(1, Math.round(300 * Number(process.env.LK_PROPERTY_SCALE ?? 1)));
process.stderr.write(`userdb-varlink: fast-check seed ${SEED}, ${RUNS} runs per property\n`);

/** Splits `buf` at the given fractions into consecutive chunks. */
function chunked(buf: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => Math.floor(c * buf.length)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of at) { out.push(buf.subarray(from, c)); from = c; }
  out.push(buf.subarray(from));
  return out;
}

const noNul = (max: number): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a.map((b) => (b === 0 ? 1 : b))));

test('reader: any messages in any chunking come back exactly, in order', () => {
  fc.assert(fc.property(
    fc.array(noNul(300), { maxLength: 20 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 30 }), fc.integer({ min: 1, max: 400 }),
    (msgs, cuts, max) => {
      const r = new VarlinkReader(max);
      const wire = Buffer.concat(msgs.flatMap((m) => [m, Buffer.of(0)]));
      const got: Buffer[] = [];
      let failed = false;
      try {
        for (const c of chunked(wire, cuts)) got.push(...r.push(c));
      } catch (e) {
        assert.ok(e instanceof VarlinkFramingError, `only a framing error may be thrown, got ${String(e)}`);
        failed = true;
      }
      const firstTooLong = msgs.findIndex((m) => m.length > max);
      if (firstTooLong < 0) {
        assert.equal(failed, false);
        assert.deepEqual(got.map((b) => b.toString('hex')), msgs.map((b) => b.toString('hex')));
        assert.equal(r.buffered, 0);
      } else {
        // Everything before the oversized message was delivered (some of it may have been in the
        // chunk that failed, which is dropped with the connection); never the oversized one.
        assert.equal(failed, true);
        assert.ok(got.length <= firstTooLong);
        got.forEach((g, i) => assert.deepEqual(g, msgs[i]));
      }
    },
  ), { numRuns: RUNS, seed: SEED });
});

test('reader: arbitrary bytes never give a message over the cap, nor hold more than it', () => {
  fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 40 }), fc.integer({ min: 1, max: 256 }), (chunks, max) => {
    const r = new VarlinkReader(max);
    for (const c of chunks) {
      let got: Buffer[];
      try { got = r.push(Buffer.from(c)); } catch (e) { assert.ok(e instanceof VarlinkFramingError); return; }
      for (const m of got) { assert.ok(m.length <= max); assert.equal(m.indexOf(0), -1); }
      assert.ok(r.buffered <= max);
    }
  }), { numRuns: RUNS, seed: SEED });
});

test('reader: a message is refused as soon as it passes the cap, before its NUL arrives', () => {
  const r = new VarlinkReader();
  r.push(Buffer.alloc(MAX_MESSAGE_BYTES, 0x20));
  assert.throws(() => r.push(Buffer.from(' ')), VarlinkFramingError);
  // exactly at the cap is a message
  assert.equal(new VarlinkReader().push(Buffer.concat([Buffer.alloc(MAX_MESSAGE_BYTES, 0x20), Buffer.of(0)])).length, 1);
});

test('parseCall: never throws; what it accepts is a well-formed call', () => {
  const anyJsonCall = fc.record({
    method: fc.oneof(fc.string(), fc.constantFrom('io.systemd.UserDatabase.GetUserRecord', 'org.varlink.service.GetInfo', 'a.B'), fc.integer()),
    parameters: fc.oneof(fc.object(), fc.jsonValue()),
    more: fc.oneof(fc.boolean(), fc.jsonValue()),
    oneway: fc.oneof(fc.boolean(), fc.constant(undefined)),
    upgrade: fc.oneof(fc.boolean(), fc.constant(undefined)),
  }, { requiredKeys: [] });
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
    anyJsonCall.map((v) => Buffer.from(JSON.stringify(v))),
  );
  fc.assert(fc.property(input, (buf) => {
    const r = parseCall(buf);
    if (!r.ok) { assert.equal(typeof r.problem, 'string'); return; }
    assert.match(r.call.method, /^[A-Za-z][A-Za-z0-9.-]*\.[A-Z][A-Za-z0-9]*$/);
    assert.equal(typeof r.call.more, 'boolean');
    assert.equal(typeof r.call.oneway, 'boolean');
    assert.ok(!(r.call.more && r.call.oneway));
    assert.equal(typeof r.call.parameters, 'object');
    assert.ok(r.call.parameters !== null && !Array.isArray(r.call.parameters));
  }), { numRuns: RUNS * 3, seed: SEED });
});

test('parseCall: the envelope systemd sends, and what is refused', () => {
  const ok = parseCall(Buffer.from('{"method":"io.systemd.UserDatabase.GetUserRecord","parameters":{"userName":"alice","service":"io.latchkey"},"more":true}'));
  assert.deepEqual(ok, { ok: true, call: { method: 'io.systemd.UserDatabase.GetUserRecord', parameters: { userName: 'alice', service: 'io.latchkey' }, more: true, oneway: false } });
  for (const bad of ['', 'null', '[]', '{"method":"nodots"}', '{"method":"a.b.lower"}', '{"method":"a.B","parameters":[]}', '{"method":"a.B","more":1}', '{"method":"a.B","upgrade":true}', '{"method":"a.B","more":true,"oneway":true}']) {
    assert.equal(parseCall(Buffer.from(bad)).ok, false, bad);
  }
  assert.equal(parseCall(Buffer.from([0xc3, 0x28])).ok, false); // not UTF-8
});

test('replies: one NUL-terminated JSON message each, whatever the strings hold', () => {
  fc.assert(fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.boolean(), (params, continues) => {
    for (const msg of [encodeReply(params, continues), encodeError('io.systemd.UserDatabase.NoRecordFound', params)]) {
      const got = new VarlinkReader(1 << 22).push(msg);
      assert.equal(got.length, 1);
      assert.equal(msg.indexOf(0), msg.length - 1);
      const v = JSON.parse(got[0]!.toString('utf8')) as Record<string, unknown>;
      assert.deepEqual(v.parameters, JSON.parse(JSON.stringify(params)));
    }
  }), { numRuns: RUNS, seed: SEED });
});
