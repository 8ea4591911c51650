// The TS side of the wire contract: generated files are current, golden vectors decode to what
// the spec says, and malformed frames are rejected with a ProtocolError, never a crash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  encodeRequest, encodeReply, decodeReply, decodeRequestPayload, splitRequest, FrameReader,
  messageByName, type Fields,
} from '../../src/protocol/codec.js';
import { Op, Status, MAX_REQUEST, PROTO_VERSION, Messages, SSH_KEY_TYPES, DAEMON_VERSION } from '../../src/protocol/generated.js';
import { checkSshPublicKey } from '../../src/upstream/sshkeys.js';
import { ProtocolError } from '../../src/errors.js';
import {
  encodeRootdRequest, decodeRootdReply, ROOTD_REQUEST_SIZE, ROOTD_REPLY_SIZE, ROOTD_IO_TIMEOUT_MS, type RootdRequest,
} from '../../src/protocol/rootd.js';
import { ROOT } from '../lib/paths.js';

test('generated C header and TS tables match spec.json', () => {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/gen-protocol.mjs'), '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test('C header carries every opcode and status of the spec', () => {
  const spec = JSON.parse(readFileSync(join(ROOT, 'src/protocol/spec.json'), 'utf8'));
  const h = readFileSync(join(ROOT, 'native/common/latchkey_proto.h'), 'utf8');
  for (const m of spec.messages) assert.match(h, new RegExp(`LK_OP_${m.name} = ${m.opcode},`));
  for (const s of spec.status) assert.match(h, new RegExp(`LK_STATUS_${s.name} = ${s.code},`));
});

interface Vector {
  name: string; kind: 'request' | 'reply' | 'bad-reply' | 'bad-request'; hex: string;
  decoded?: { version: number; opcode: number; status?: number; fields?: Fields; detail?: string };
  keys_ok?: boolean[];
}

const loadVectors = (): Vector[] => JSON.parse(readFileSync(join(ROOT, 'test/golden/vectors.json'), 'utf8'), (_k, v: unknown) =>
  v && typeof v === 'object' && 'blob_hex' in v ? Buffer.from((v as { blob_hex: string }).blob_hex, 'hex') : v) as Vector[];
const nameOf = (opcode: number): string => Object.entries(Op).find(([, c]) => c === opcode)![0];

function normalise(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return { blob_hex: v.toString('hex') };
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(normalise);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalise(x)]));
  return v;
}

test('generated files carry the package.json version', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(DAEMON_VERSION, pkg.version);
  assert.match(readFileSync(join(ROOT, 'native/common/latchkey_proto.h'), 'utf8'), new RegExp(`#define LK_DAEMON_VERSION "${pkg.version.replace(/\./g, '\\.')}"`));
});

test('golden vectors hold a request and an OK reply of every message, nss.sock and priv.sock', () => {
  const vectors = loadVectors();
  for (const m of Messages) {
    assert.ok(vectors.some((v) => v.kind === 'request' && v.decoded!.opcode === m.opcode), `${m.name}: no request vector`);
    assert.ok(vectors.some((v) => v.kind === 'reply' && v.decoded!.opcode === m.opcode && v.decoded!.status === Status.OK), `${m.name}: no OK reply vector`);
  }
});

test('golden vectors re-encode to their bytes', () => {
  for (const v of loadVectors()) {
    if (v.kind === 'request') {
      assert.equal(encodeRequest(nameOf(v.decoded!.opcode), v.decoded!.fields ?? {}).toString('hex'), v.hex, v.name);
    } else if (v.kind === 'reply') {
      const d = v.decoded!;
      assert.equal(encodeReply(d.opcode, d.status!, d.status === Status.OK ? d.fields ?? {} : null, d.detail ?? '').toString('hex'), v.hex, v.name);
    }
  }
});

test('SSH key types: the daemon accepts exactly the spec list, ssh-dss refused like any unsupported type, as the C helper does', () => {
  const keyVectors = loadVectors().filter((v) => v.keys_ok);
  assert.ok(keyVectors.length > 0, 'a keys vector records which keys the daemon accepts');
  let dss = 0;
  const accepted = new Set<string>();
  for (const v of keyVectors) {
    const keys = decodeReply(Buffer.from(v.hex, 'hex').subarray(4)).fields!.keys as string[];
    // vectors.txt carries the same verdicts: test/c/test_golden.c checks the C helper agrees
    assert.deepEqual(keys.map((k) => checkSshPublicKey(k).ok), v.keys_ok, v.name);
    for (const k of keys) {
      const type = k.split(' ')[0]!;
      const c = checkSshPublicKey(k);
      assert.equal(c.ok, SSH_KEY_TYPES.includes(type), `${type} accepted iff in spec.json ssh_key_types`);
      if (c.ok) accepted.add(type);
      else assert.equal(c.reason, `unsupported key type "${type}"`);
      if (type === 'ssh-dss') dss++;
    }
  }
  assert.deepEqual([...accepted].sort(), [...SSH_KEY_TYPES].sort(), 'a key of every spec type, each accepted');
  assert.ok(dss > 0, 'the vectors include a DSA key');
});

test('golden vectors decode as recorded, and bad ones are rejected', () => {
  const vectors = loadVectors();
  assert.ok(vectors.length >= 8, 'expected a real set of golden vectors');
  let good = 0;
  let bad = 0;
  for (const v of vectors) {
    const buf = Buffer.from(v.hex, 'hex');
    if (v.kind === 'request') {
      assert.equal(buf.readUInt32BE(0), buf.length - 4, v.name);
      const req = splitRequest(buf.subarray(4));
      assert.equal(req.version, v.decoded!.version, v.name);
      assert.equal(req.opcode, v.decoded!.opcode, v.name);
      const m = Object.values(Op).includes(req.opcode as never) ? messageByName(nameOf(req.opcode)) : null;
      assert.ok(m, v.name);
      assert.deepEqual(normalise(decodeRequestPayload(m, req.payload)), normalise(v.decoded!.fields ?? {}), v.name);
      good++;
    } else if (v.kind === 'reply') {
      assert.equal(buf.readUInt32BE(0), buf.length - 4, v.name);
      const r = decodeReply(buf.subarray(4));
      assert.equal(r.version, v.decoded!.version, v.name);
      assert.equal(r.opcode, v.decoded!.opcode, v.name);
      assert.equal(r.status, v.decoded!.status, v.name);
      if (r.status === Status.OK) assert.deepEqual(normalise(r.fields), normalise(v.decoded!.fields), v.name);
      else assert.equal(r.detail, v.decoded!.detail ?? '', v.name);
      good++;
    } else {
      assert.throws(() => {
        const fr = new FrameReader(v.kind === 'bad-reply' ? 262144 : MAX_REQUEST);
        const frames = fr.push(buf);
        if (frames.length === 0) throw new ProtocolError(`incomplete frame (${fr.buffered} bytes buffered)`);
        const r = decodeReply(frames[0]!);
        // a reply to another message than the one asked is the caller's to refuse (lk_reply_open in C)
        if (r.opcode !== v.decoded!.opcode) throw new ProtocolError(`reply for opcode ${r.opcode}`);
      }, ProtocolError, v.name);
      bad++;
    }
  }
  assert.ok(good > 0 && bad > 0);
});

test('request round trip for every message with sample values', () => {
  const sample = (t: string): unknown => ({ u8: 1, u16: 2, u32: 3, u64: 4n, str: 'x', blob: Buffer.from('{}'), strlist: ['a', 'b'] } as Record<string, unknown>)[t];
  for (const name of Object.keys(Op)) {
    const m = messageByName(name);
    const fields: Fields = {};
    for (const [f, t] of m.request) fields[f] = sample(t) as Fields[string];
    const buf = encodeRequest(name, fields);
    const req = splitRequest(buf.subarray(4));
    assert.equal(req.version, PROTO_VERSION);
    assert.deepEqual(normalise(decodeRequestPayload(m, req.payload)), normalise(fields), name);
  }
});

test('reply round trip with nested records and error details', () => {
  const entry = { name: 'alice', uid: 11001, gid: 10000, gecos: 'Alice', dir: '/ega/inbox/alice', shell: '/bin/bash' };
  const buf = encodeReply(Op.PW_LIST, Status.OK, { next_uid: 11002, entries: [entry, { ...entry, name: 'bob', uid: 11002 }] });
  const r = decodeReply(buf.subarray(4));
  assert.equal(r.status, Status.OK);
  assert.equal((r.fields!.entries as Fields[]).length, 2);
  const e = decodeReply(encodeReply(Op.PW_BY_NAME, Status.UNAVAIL, null, 'upstream down').subarray(4));
  assert.equal(e.status, Status.UNAVAIL);
  assert.equal(e.detail, 'upstream down');
  assert.equal(e.fields, null);
});

test('truncated, oversized, trailing and lying payloads are rejected', () => {
  const m = messageByName('PW_BY_NAME');
  const good = encodeRequest('PW_BY_NAME', { name: 'alice' });
  const payload = splitRequest(good.subarray(4)).payload;
  for (let cut = 0; cut < payload.length; cut++) {
    assert.throws(() => decodeRequestPayload(m, payload.subarray(0, cut)), ProtocolError, `cut at ${cut}`);
  }
  assert.throws(() => decodeRequestPayload(m, Buffer.concat([payload, Buffer.from([0])])), ProtocolError);
  const lying = Buffer.from(payload); lying.writeUInt16BE(60000, 0);
  assert.throws(() => decodeRequestPayload(m, lying), ProtocolError);
  const nul = Buffer.from([0, 3, 0x61, 0, 0x62]);
  assert.throws(() => decodeRequestPayload(m, nul), ProtocolError);
  assert.throws(() => new FrameReader(MAX_REQUEST).push(Buffer.from([0, 1, 0, 0])), ProtocolError);
  assert.throws(() => encodeRequest('PW_BY_NAME', { name: 'a\0b' }), ProtocolError);
  assert.throws(() => encodeRequest('PW_BY_NAME', { name: 'x'.repeat(MAX_REQUEST) }), ProtocolError);
});

test('FrameReader reassembles frames split at every byte and packed together', () => {
  const a = encodeRequest('PW_BY_NAME', { name: 'alice' });
  const b = encodeRequest('PW_BY_UID', { uid: 11001 });
  const all = Buffer.concat([a, b]);
  for (let i = 0; i <= all.length; i++) {
    const fr = new FrameReader(MAX_REQUEST);
    const got = [...fr.push(all.subarray(0, i)), ...fr.push(all.subarray(i))];
    assert.equal(got.length, 2);
    assert.deepEqual(got[0], a.subarray(4));
    assert.deepEqual(got[1], b.subarray(4));
  }
});

test('random garbage never throws anything but ProtocolError', () => {
  let seed = 12345;
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
  for (let i = 0; i < 5000; i++) {
    const len = rnd() % 64;
    const buf = Buffer.alloc(len);
    for (let j = 0; j < len; j++) buf[j] = rnd() & 0xff;
    if (len >= 6) { buf.writeUInt16BE(1, 0); buf.writeUInt16BE([16, 17, 18, 32, 33, 34, 48, 1][rnd() % 8]!, 2); buf.writeUInt16BE(rnd() % 2, 4); }
    try { decodeReply(buf); } catch (e) { assert.ok(e instanceof ProtocolError, String(e)); }
  }
});

// ---- latchkey-rootd frames (spec.json "rootd"; the C side: test/c/test_rootd_golden.c) ----

interface RootdVector {
  name: string; kind: 'request' | 'reply' | 'bad-request' | 'bad-reply'; hex: string;
  request?: Omit<RootdRequest, 'pidStart'> & { pidStart?: string };
  decoded?: unknown; why?: string;
}
const rootdVectors = (): RootdVector[] => JSON.parse(readFileSync(join(ROOT, 'test/golden/rootd-vectors.json'), 'utf8')) as RootdVector[];

test('rootd: the C header and the TS constants come from spec.json "rootd"', () => {
  const spec = JSON.parse(readFileSync(join(ROOT, 'src/protocol/spec.json'), 'utf8'));
  const h = readFileSync(join(ROOT, 'native/rootd/rootd_proto.h'), 'utf8');
  assert.match(h, /^\/\* GENERATED by scripts\/gen-protocol\.mjs/);
  assert.equal(ROOTD_REQUEST_SIZE, spec.rootd.request_size);
  assert.equal(ROOTD_REPLY_SIZE, spec.rootd.reply_size);
  assert.equal(ROOTD_IO_TIMEOUT_MS, spec.rootd.io_timeout_ms.value);
  assert.match(h, new RegExp(`#define ROOTD_REQ_SIZE ${spec.rootd.request_size}u`));
  assert.match(h, new RegExp(`#define ROOTD_IO_TIMEOUT_MS ${spec.rootd.io_timeout_ms.value}u`));
  for (const op of spec.rootd.opcodes) assert.match(h, new RegExp(`ROOTD_OP_${op.name} = ${op.code},`));
  for (const s of spec.rootd.status) assert.match(h, new RegExp(`ROOTD_${s.name} = ${s.code},`));
  for (const f of spec.rootd.request) assert.match(h, new RegExp(`#define ROOTD_REQ_${f.name.toUpperCase()} ${f.offset}u`));
  for (const f of spec.rootd.reply) assert.match(h, new RegExp(`#define ROOTD_REPLY_${f.name.toUpperCase()} ${f.offset}u`));
});

test('rootd golden vectors: requests encode to their bytes, replies decode as recorded, bad replies throw', () => {
  const seen = { request: 0, reply: 0, 'bad-reply': 0, 'bad-request': 0 };
  for (const v of rootdVectors()) {
    seen[v.kind]++;
    const buf = Buffer.from(v.hex, 'hex');
    if (v.kind === 'request') {
      const r = v.request!;
      const req: RootdRequest = { ...r, ...(r.pidStart !== undefined ? { pidStart: BigInt(r.pidStart) } : {}) } as RootdRequest;
      assert.equal(encodeRootdRequest(req).toString('hex'), v.hex, v.name);
    } else if (v.kind === 'reply') {
      assert.deepEqual(decodeRootdReply(buf), v.decoded, v.name);
    } else if (v.kind === 'bad-reply') {
      assert.throws(() => decodeRootdReply(buf), ProtocolError, v.name);
    } else {
      // rootd's to refuse: test/c/test_rootd_golden.c checks it answers MALFORMED with this reason
      assert.ok(typeof v.why === 'string' && v.why.length > 0, v.name);
    }
  }
  for (const [kind, n] of Object.entries(seen)) assert.ok(n > 0, `no ${kind} vectors`);
  const gen = spawnSync(process.execPath, [join(ROOT, 'test/golden/make-rootd-vectors.mjs'), '--check'], { encoding: 'utf8' });
  assert.equal(gen.status, 0, `rootd vectors out of date with the encoder: ${gen.stderr}`);
});

test('rootd requests: what the frame cannot carry is a RangeError naming the field', () => {
  const cases: [string, RootdRequest, RegExp][] = [
    ['an unknown op', { op: 'format_disk' as RootdRequest['op'] }, /unknown op/],
    ['a 33-byte name', { op: 'create_home', name: 'a'.repeat(33), uid: 20001, gid: 10000 }, /name is 33 bytes/],
    ['a 17-character name of 34 bytes', { op: 'create_home', name: '\u00e9'.repeat(17), uid: 20001, gid: 10000 }, /name is 34 bytes/],
    ['NUL in the name', { op: 'create_home', name: 'a\0b', uid: 20001, gid: 10000 }, /NUL/],
    ['a negative uid', { op: 'create_home', name: 'a', uid: -1, gid: 10000 }, /uid -1 is not a u32/],
    ['a uid above 2^32-1', { op: 'create_home', name: 'a', uid: 2 ** 32, gid: 10000 }, /uid 4294967296/],
    ['a fractional gid', { op: 'create_home', name: 'a', uid: 1, gid: 1.5 }, /gid 1.5/],
    ['a negative start time', { op: 'end_session', uid: 20001, pid: 5, pidStart: -1n }, /pidStart -1/],
    ['a start time above 2^64-1', { op: 'end_session', uid: 20001, pid: 5, pidStart: 1n << 64n }, /pidStart/],
    ['create_home with a pid', { op: 'create_home', name: 'a', uid: 20001, gid: 10000, pid: 5 }, /create_home does not take pid/],
    ['end_session with a gid', { op: 'end_session', uid: 20001, gid: 10000, pid: 5, pidStart: 1n }, /end_session does not take gid/],
    ['reload with a name', { op: 'reload', name: 'alice' }, /reload does not take name/],
  ];
  for (const [what, req, why] of cases) assert.throws(() => encodeRootdRequest(req), (e: unknown) => e instanceof RangeError && why.test(e.message), what);
  // Zero and absent are the same for an unused field: one frame, one meaning.
  assert.deepEqual(encodeRootdRequest({ op: 'reload', uid: 0, pidStart: 0n, name: '' }), encodeRootdRequest({ op: 'reload' }));
});

test('rootd replies: every size but 256 and random bytes throw ProtocolError, never anything else', () => {
  for (const len of [0, 1, 8, ROOTD_REPLY_SIZE - 1, ROOTD_REPLY_SIZE + 1]) {
    assert.throws(() => decodeRootdReply(Buffer.alloc(len)), ProtocolError, String(len));
  }
  let seed = 4242;
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.alloc(ROOTD_REPLY_SIZE);
    b.writeUInt16BE(1, 0);
    b.writeUInt16BE(rnd() % 8, 2);
    b.writeUInt16BE(rnd() % 5, 4);
    const len = rnd() % 260;
    b.writeUInt16BE(len, 6);
    for (let j = 8; j < 8 + Math.min(len, 248); j++) b[j] = rnd() & 0xff;
    if (rnd() % 4 === 0) b[8 + (rnd() % 248)] = rnd() & 0xff;
    try { decodeRootdReply(b); } catch (e) { assert.ok(e instanceof ProtocolError, String(e)); }
  }
});
