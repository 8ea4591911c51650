// Property tests (fast-check) over every TS parser of untrusted input: the frame codec (any bytes
// a peer sends), upstream user replies (validate.ts, and the REST client reading a real HTTP
// body), the config reader (any bytes in latchkey.conf) and token_url replies (token.ts). Each
// check takes raw bytes, so a failing input saved under test/fuzz/regressions/<target>/ is
// replayed as it is on every run. The seed is fixed (LK_PROPERTY_SEED, default 1919) and
// printed, so a failure reproduces; LK_PROPERTY_SCALE multiplies the runs (`make fuzz` sets it).
// A failing input is also written to build/fuzz-found/<target>-<hash> to be copied there.
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { decodeReply, decodeRequestPayload, encodeReply, encodeRequest, FrameReader, messageByOpcode, splitRequest, type Fields, type Value } from '../../src/protocol/codec.js';
import { Messages, Status, Types, PROTO_VERSION } from '../../src/protocol/generated.js';
import { ConfigError, configErrorList, ProtocolError, UpstreamError } from '../../src/errors.js';
import { defaultConfig, parseConfig } from '../../src/config/load.js';
import { KEYS, SECTIONS } from '../../src/config/keys.js';
import { setLogSink } from '../../src/log.js';
import { parseUserReplyDetailed, MAX_GECOS_LENGTH, MAX_HASH_LENGTH, MAX_KEYS_PER_USER, type ParseOptions } from '../../src/upstream/validate.js';
import { checkSshPublicKey } from '../../src/upstream/sshkeys.js';
import { parseRetryAfter, RestUserSource, RETRY_AFTER_MAX_MS, RETRY_AFTER_MIN_MS } from '../../src/upstream/client.js';
import { MAX_LIFETIME_MS, MAX_TOKEN_CHARS, MIN_LIFETIME_MS, parseTokenReply } from '../../src/upstream/token.js';
import { FORBIDDEN_IN_FIELD, nameProblem, upstreamUidProblem } from '../../src/users/rules.js';
import { ROOT } from '../lib/paths.js';

const SEED = Number(process.env.LK_PROPERTY_SEED ?? 1919);
const SCALE = Number(process.env.LK_PROPERTY_SCALE ?? 1);
const runs = (n: number): number => Math.max(1, Math.round(n * SCALE));
const REGRESSIONS = join(ROOT, 'test/fuzz/regressions');
const NOW = 1_800_000_000_000;
const FOUND = join(ROOT, 'build/fuzz-found');

setLogSink(() => {}); // dropped keys and refusals log; their lines are not what is tested here

/** Runs a property over bytes with the fixed seed; a counterexample is saved for test/fuzz/regressions. */
async function check(t: TestContext, target: string, arb: fc.Arbitrary<Buffer>, prop: (b: Buffer) => void | Promise<void>, numRuns: number): Promise<void> {
  t.diagnostic(`${target}: seed ${SEED}, ${numRuns} runs`);
  const out = await fc.check(fc.asyncProperty(arb, async (b) => { await prop(b); }), { seed: SEED, numRuns });
  if (out.failed && out.counterexample) {
    const bytes = out.counterexample[0];
    const name = `${target}-${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}`;
    mkdirSync(FOUND, { recursive: true });
    writeFileSync(join(FOUND, name), bytes);
    assert.fail(`${fc.defaultReportMessage(out)}\ninput saved as build/fuzz-found/${name}; copy it into test/fuzz/regressions/${target}/ once fixed`);
  }
}

/** The saved inputs of one target, each checked once. */
async function replay(target: string, prop: (b: Buffer) => void | Promise<void>): Promise<number> {
  const dir = join(REGRESSIONS, target);
  if (!existsSync(dir)) return 0;
  const files = readdirSync(dir).filter((f) => !f.startsWith('.') && f !== 'README.md').sort();
  for (const f of files) {
    try {
      await prop(readFileSync(join(dir, f)));
    } catch (e) {
      throw new Error(`test/fuzz/regressions/${target}/${f}: ${(e as Error).stack ?? String(e)}`);
    }
  }
  return files.length;
}

/** Bytes: random ones, and valid ones (from `valid`) truncated, extended or with a byte changed. */
function mutated(valid: fc.Arbitrary<Buffer>, maxLength = 600): fc.Arbitrary<Buffer> {
  // The byte written: the ones parsers treat specially (NUL, ':', '/', newline, UTF-8 lead and
  // continuation bytes, a huge length's high byte) as often as any other.
  const byte = fc.oneof(fc.constantFrom(0, 0x3a, 0x2f, 0x0a, 0x80, 0xc3, 0xff), fc.integer({ min: 0, max: 255 }));
  const op = fc.tuple(fc.nat({ max: 4095 }), byte, fc.constantFrom('flip', 'flip', 'cut', 'append'));
  const edit = fc.tuple(valid, fc.array(op, { minLength: 1, maxLength: 3 })).map(([b, ops]) => {
    let c = Buffer.from(b);
    for (const [at, v, how] of ops) {
      if (c.length === 0) break;
      const i = at % c.length;
      if (how === 'cut') c = c.subarray(0, i);
      else if (how === 'append') c = Buffer.concat([c, Buffer.from([v])]);
      else c[i] = v;
    }
    return c;
  });
  return fc.oneof(fc.uint8Array({ maxLength }).map((u) => Buffer.from(u)), valid, { arbitrary: edit, weight: 4 });
}

// Strings as a peer or an upstream sends them: valid Unicode (the codec refuses the rest), no NUL.
const text = (maxLength = 24) => fc.string({ unit: 'grapheme', maxLength }).filter((s) => !s.includes('\0'));

/** Values for one spec field type. */
function fieldValue(type: string): fc.Arbitrary<Value> {
  switch (type) {
    case 'u8': return fc.integer({ min: 0, max: 0xff });
    case 'u16': return fc.integer({ min: 0, max: 0xffff });
    case 'u32': return fc.integer({ min: 0, max: 0xffffffff });
    case 'u64': return fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
    case 'str': return text();
    case 'blob': return fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u));
    case 'strlist': return fc.array(text(12), { maxLength: 5 });
    default: {
      const rec = Types[type.endsWith('[]') ? type.slice(0, -2) : type]!;
      const one = fieldsOf(rec);
      return type.endsWith('[]') ? fc.array(one, { maxLength: 4 }) : one;
    }
  }
}
function fieldsOf(list: readonly (readonly [string, string])[]): fc.Arbitrary<Fields> {
  return fc.record(Object.fromEntries(list.map(([n, t]) => [n, fieldValue(t)]))) as fc.Arbitrary<Fields>;
}

const validReply = fc.oneof(
  ...Messages.map((m) => fieldsOf(m.reply).map((f) => encodeReply(m.opcode, Status.OK, f).subarray(4))),
  fc.tuple(fc.constantFrom(...Messages.map((m) => m.opcode)), fc.integer({ min: 1, max: 12 }), text(60)).map(([op, st, d]) => encodeReply(op, st, null, d).subarray(4)),
);
const validRequest = fc.oneof(...Messages.map((m) => fieldsOf(m.request).map((f) => encodeRequest(m.name, f).subarray(4))));

const only = (e: unknown, type: new (...a: never[]) => Error, what: string): void => {
  if (!(e instanceof type)) throw new Error(`${what} threw ${(e as Error)?.name ?? typeof e} instead of ${type.name}: ${(e as Error)?.stack ?? String(e)}`);
};

// ---- frame codec -------------------------------------------------------------------------------
/** A reply body: decodes or throws ProtocolError; what decodes encodes back to the same bytes. */
function replyProp(b: Buffer): void {
  let d: ReturnType<typeof decodeReply>;
  try { d = decodeReply(b); } catch (e) { only(e, ProtocolError, 'decodeReply'); return; }
  if (d.version !== PROTO_VERSION) return; // encodeReply writes only the current version
  assert.deepEqual(encodeReply(d.opcode, d.status, d.fields, d.detail).subarray(4), b);
}

/** A request body: splits and decodes or throws ProtocolError; what decodes encodes back the same. */
function requestProp(b: Buffer): void {
  try {
    const r = splitRequest(b);
    const m = messageByOpcode(r.opcode);
    if (!m) return;
    const f = decodeRequestPayload(m, r.payload);
    assert.deepEqual(encodeRequest(m.name, f, r.version).subarray(4), b);
  } catch (e) { only(e, ProtocolError, 'request decoding'); }
}

/** A byte stream cut into chunks (sizes from the first byte) yields the frames it yields whole. */
function framesProp(b: Buffer): void {
  const run = (chunks: Buffer[]): Buffer[] | 'refused' => {
    const r = new FrameReader(48);
    const out: Buffer[] = [];
    try { for (const c of chunks) out.push(...r.push(c)); } catch (e) { only(e, ProtocolError, 'FrameReader'); return 'refused'; }
    for (const f of out) assert.ok(f.length <= 48);
    return out;
  };
  const step = 1 + ((b[0] ?? 0) % 7);
  const chunks: Buffer[] = [];
  for (let i = 0; i < b.length; i += step) chunks.push(b.subarray(i, i + step));
  const whole = run([b]);
  const cut = run(chunks);
  // A refusal may come later in the cut stream only if the whole one refused too.
  if (whole === 'refused' || cut === 'refused') assert.equal(cut, whole);
  else assert.deepEqual(cut.map((f) => f.toString('hex')), whole.map((f) => f.toString('hex')));
}

const framed = fc.array(fc.oneof(validRequest, fc.uint8Array({ maxLength: 60 }).map((u) => Buffer.from(u))), { maxLength: 4 })
  .map((bodies) => Buffer.concat(bodies.map((x) => { const h = Buffer.alloc(4); h.writeUInt32BE(x.length); return Buffer.concat([h, x]); })));

test('property: codec reply decoding never throws but ProtocolError, and round trips', async (t) => {
  t.diagnostic(`replayed ${await replay('codec-reply', replyProp)} saved inputs`);
  await check(t, 'codec-reply', mutated(validReply), replyProp, runs(3000));
});

test('property: codec request decoding never throws but ProtocolError, and round trips', async (t) => {
  t.diagnostic(`replayed ${await replay('codec-request', requestProp)} saved inputs`);
  await check(t, 'codec-request', mutated(validRequest), requestProp, runs(3000));
});

test('property: FrameReader gives the same frames however the stream is cut', async (t) => {
  t.diagnostic(`replayed ${await replay('codec-frames', framesProp)} saved inputs`);
  await check(t, 'codec-frames', mutated(framed, 200), framesProp, runs(2000));
});

// ---- upstream user replies -----------------------------------------------------------------------
const USERS = defaultConfig().users;
const HASH_MARK = /\$6\$SECRETHASH[A-Z]{8}/;

/** Every string in a JSON document but the passwordHash values: what an error may quote. */
function otherStrings(doc: unknown, out: string[] = [], key = ''): string[] {
  if (typeof doc === 'string') { if (key !== 'passwordHash') out.push(doc); }
  else if (Array.isArray(doc)) for (const v of doc) otherStrings(v, out, key);
  else if (doc && typeof doc === 'object') for (const [k, v] of Object.entries(doc)) { out.push(k); otherStrings(v, out, k); }
  return out;
}
function hashesIn(doc: unknown, out: string[] = []): string[] {
  if (Array.isArray(doc)) for (const v of doc) hashesIn(v, out);
  else if (doc && typeof doc === 'object') for (const [k, v] of Object.entries(doc)) { if (k === 'passwordHash' && typeof v === 'string') out.push(v); else hashesIn(v, out); }
  return out;
}
/** An error message may not quote a password hash of the reply (unless the same text is elsewhere). */
function noHashIn(message: string, body: Buffer): void {
  let doc: unknown;
  try { doc = JSON.parse(body.toString('utf8')); } catch { return; }
  const others = otherStrings(doc);
  for (const h of hashesIn(doc)) {
    if (h.length < 8 || others.some((s) => s.includes(h))) continue;
    assert.ok(!message.includes(h), `error quotes the password hash: ${message}`);
  }
}

const ASKED: ParseOptions[] = [
  { jsonPrefix: '', users: USERS },
  { jsonPrefix: 'response.result', users: USERS },
  { jsonPrefix: '', users: USERS, askedName: 'alice' },
  { jsonPrefix: '', users: USERS, askedUpstreamUid: 1001 },
];

/** A user reply body: refused with UpstreamError json/invalid, or a record that passes every rule. */
function upstreamProp(b: Buffer): void {
  for (const opts of ASKED) {
    let got: ReturnType<typeof parseUserReplyDetailed>;
    try { got = parseUserReplyDetailed(b, opts); } catch (e) {
      only(e, UpstreamError, 'parseUserReply');
      assert.ok(['json', 'invalid'].includes((e as UpstreamError).kind), (e as Error).message);
      noHashIn((e as Error).message, b);
      continue;
    }
    userOk(got.user, opts);
  }
}

function userOk(u: ReturnType<typeof parseUserReplyDetailed>['user'], opts: ParseOptions): void {
  if (opts.askedName !== undefined) assert.equal(u.username, opts.askedName);
  else assert.equal(nameProblem(u.username, USERS), null, u.username);
  if (opts.askedUpstreamUid !== undefined) assert.equal(u.upstreamUid, opts.askedUpstreamUid);
  assert.ok(Number.isSafeInteger(u.upstreamUid) && u.upstreamUid >= 0);
  assert.equal(upstreamUidProblem(u.upstreamUid, USERS), null);
  if (u.passwordHash !== null) assert.match(u.passwordHash, /^[\x21-\x39\x3b-\x7e]{1,512}$/);
  assert.ok(u.passwordHash === null || u.passwordHash.length <= MAX_HASH_LENGTH);
  assert.ok(u.gecos.length <= MAX_GECOS_LENGTH && !FORBIDDEN_IN_FIELD.test(u.gecos), u.gecos);
  assert.ok(u.sshPublicKeys.length <= MAX_KEYS_PER_USER);
  for (const k of u.sshPublicKeys) assert.ok(checkSshPublicKey(k).ok, k);
  if (u.accountExpiresAt !== undefined) assert.ok(Number.isFinite(u.accountExpiresAt));
}

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example';
// Mostly a record that passes the name and uid rules, so the later fields' checks are reached.
const nameArb = fc.oneof({ arbitrary: fc.constant('alice'), weight: 5 },
  fc.constantFrom('bob', 'root', '', 'a'.repeat(33), 'Alice', '-x', 'al ice', 'al:ice'), text(40));
const uidArb = fc.oneof({ arbitrary: fc.constant(1001), weight: 5 },
  fc.constantFrom(0, -1, 1.5, 2 ** 53, 4294967295, 2147483647, 65534, 999, '1001', null), fc.integer(), fc.double());
// Field text with the characters the rules forbid mixed in.
const fieldText = (n: number) => fc.oneof(text(n), fc.array(fc.constantFrom('a', 'Z', ' ', ':', '/', '\n', '\t', '\u007f', '\u0000', '\u00e9', '\u202e', '\u2028'), { maxLength: n }).map((a) => a.join('')));
const hashArb = fc.oneof(
  fc.stringMatching(HASH_MARK),
  fc.constantFrom(null, '', '$2b$10$abcdefghijklmnopqrstuv', 'x'.repeat(513), 'x'.repeat(512), 'a b', 'a:b', '\u00e9'),
  fieldText(30),
);
const keysArb = fc.oneof(fc.constant(undefined), fc.constant(null), fc.array(fc.oneof(fc.constant(KEY), fc.constant(`${KEY}\nssh-rsa AAAA`), fieldText(80), fc.integer()), { maxLength: 4 }), fc.array(fc.constant(KEY), { minLength: 99, maxLength: 102 }), fieldText(40));
const recordArb = fc.record({
  username: nameArb, uid: uidArb, passwordHash: hashArb, gecos: fc.oneof(fieldText(40), fc.constantFrom(null, 'a:b', 'x'.repeat(1025), 'x'.repeat(1024), 7)),
  sshPublicKeys: keysArb, expiresAt: fc.oneof(fc.constant(undefined), fc.constantFrom('2030-01-01', 'soon', -5, 1e300), fc.integer()),
  enabled: fc.oneof(fc.constant(undefined), fc.boolean(), fc.constantFrom('no', 0)),
}, { requiredKeys: [] });
const docArb = fc.oneof(
  recordArb,
  recordArb.map((r) => ({ header: {}, response: { numTotalResults: 1, result: [r] } })),
  recordArb.map((r) => [r, r]),
  fc.jsonValue(),
);
const upstreamBodies = fc.oneof(
  docArb.map((d) => Buffer.from(JSON.stringify(d) ?? 'null')),
  mutated(docArb.map((d) => Buffer.from(JSON.stringify(d) ?? 'null')), 300),
);

test('property: upstream user replies are refused with UpstreamError or pass every rule', async (t) => {
  t.diagnostic(`replayed ${await replay('upstream-json', upstreamProp)} saved inputs`);
  await check(t, 'upstream-json', upstreamBodies, upstreamProp, runs(2500));
});

// The REST client over real HTTP: any 200 body within or past max_body_bytes.
let server: http.Server;
let body: Buffer = Buffer.alloc(0);
let chunked = false;
let source: RestUserSource;
const MAX_BODY = 2048;
before(async () => {
  server = http.createServer((_req, res) => {
    if (chunked) { res.writeHead(200, { 'content-type': 'application/json' }); res.write(body.subarray(0, 1)); res.end(body.subarray(1)); }
    else { res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }); res.end(body); }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const up = defaultConfig().upstream;
  source = new RestUserSource({ ...up, byNameUrl: `${url}/username/`, byUidUrl: `${url}/user-id/`, insecureHttp: true, basicAuth: null, bearerToken: null, tokenUrl: null, apiKey: null, jsonPrefix: '', maxBodyBytes: MAX_BODY, healthUrl: null }, USERS);
});
after(async () => { await source?.close(); server?.close(); });

async function clientProp(b: Buffer): Promise<void> {
  body = b;
  chunked = (b[0] ?? 0) % 2 === 1;
  try {
    const r = await source.fetchByName('alice');
    assert.equal(r.kind, 'found', 'a 200 reply is never "not found"');
    if (r.kind === 'found') userOk(r.user, { jsonPrefix: '', users: USERS, askedName: 'alice' });
    assert.ok(b.length <= MAX_BODY, 'a body over max_body_bytes was accepted');
  } catch (e) {
    only(e, UpstreamError, 'RestUserSource.fetchByName');
    assert.ok(['json', 'invalid', 'too_large'].includes((e as UpstreamError).kind), `${(e as UpstreamError).kind}: ${(e as Error).message}`);
    noHashIn((e as Error).message, b);
  }
}
const clientBodies = fc.oneof(
  recordArb.map((r) => Buffer.from(JSON.stringify({ ...r, username: 'alice', uid: 1001 }))),
  upstreamBodies,
  fc.tuple(recordArb, fc.integer({ min: 1, max: 3 * MAX_BODY })).map(([r, pad]) => Buffer.from(JSON.stringify({ ...r, username: 'alice', uid: 1001, gecos: 'x'.repeat(pad) }))),
);

test('property: the REST client answers any 200 body with a valid user or an UpstreamError', async (t) => {
  t.diagnostic(`replayed ${await replay('upstream-client', clientProp)} saved inputs`);
  await check(t, 'upstream-client', clientBodies, clientProp, runs(150));
});

// Retry-After of a 429/503 (client.ts): any header is ignored (null) or a wait inside the clamp.
function retryAfterProp(b: Buffer): void {
  const header = b.toString('latin1');
  for (const h of [header, [header, '5'], header.split(',')]) {
    const ms = parseRetryAfter(h, NOW);
    if (ms !== null) assert.ok(Number.isFinite(ms) && ms >= RETRY_AFTER_MIN_MS && ms <= RETRY_AFTER_MAX_MS, `${JSON.stringify(h)} -> ${ms}`);
  }
}
const retryAfterArb = fc.oneof(
  fc.integer({ min: 0, max: 10 ** 7 }).map(String), fc.stringMatching(/^[0-9]{10,40}$/),
  fc.date({ min: new Date(0), max: new Date(8.64e15), noInvalidDate: true }).map((d) => d.toUTCString()),
  fc.constantFrom('Fri, 31 Dec 9999 23:59:59 GMT', 'Mon, 99 Foo 0000 99:99:99 GMT', '-1', '1.5', ' 30 ', '', '0x10', '1e3'),
  text(40),
).map((x) => Buffer.from(x, 'latin1'));

test('property: Retry-After headers give null or a wait inside [1 s, 10 min]', async (t) => {
  t.diagnostic(`replayed ${await replay('retry-after', retryAfterProp)} saved inputs`);
  await check(t, 'retry-after', mutated(retryAfterArb, 80), retryAfterProp, runs(2000));
});

// ---- config reader -------------------------------------------------------------------------------
const FILE = '/etc/latchkey/latchkey.conf';
const SECRET_KEYS = new Set(KEYS.filter((k) => k.secret).flatMap((k) => [k.key, k.legacy].filter((x): x is string => x !== null)));

/** Values written after a secret key (raw and without quotes), where no other line has them. */
function secretsIn(text: string): string[] {
  const lines = text.split(/\r?\n/);
  const out: string[] = [];
  for (const [i, line] of lines.entries()) {
    const m = /^\s*([^=\s]+)\s*=(.*)$/.exec(line);
    if (!m || !SECRET_KEYS.has(m[1]!)) continue;
    const raw = m[2]!.trim();
    for (const v of [raw, raw.replace(/^["']|["']$/g, ''), ...raw.split(':')]) {
      if (v.length >= 8 && !lines.some((l, j) => j !== i && l.includes(v)) && !SECRET_KEYS.has(v)) out.push(v);
    }
  }
  return out;
}

/** Config text: a Config, or ConfigError(s) each naming the file (and line), never quoting a secret. */
function configProp(b: Buffer): void {
  const src = b.toString('utf8');
  try {
    parseConfig(src, FILE);
  } catch (e) {
    only(e, ConfigError, 'parseConfig');
    const secrets = secretsIn(src);
    for (const one of configErrorList(e as ConfigError)) {
      assert.ok(one.message.startsWith(FILE), one.message);
      assert.ok(Number.isInteger(one.line) && one.line >= 0, one.message);
      for (const s of secrets) assert.ok(!one.message.includes(s), `error quotes a secret value: ${one.message}`);
    }
  }
}

const keyNames = [...new Set(KEYS.flatMap((k) => [k.key, k.legacy, ...k.olderLegacy].filter((x): x is string => x !== null)))];
const valueArb = fc.oneof(
  fc.constantFrom('yes', 'no', 'true', '0', '1', '10s', '5m', '-1', '10%', '0.1', '/etc/passwd', 'relative/path', 'http://h/u/%s', 'https://h/u/%u', '"quoted"', "'q'", '', ' ', '# c', 'a ; b', '[x]', '1e309', '4294967295'),
  fc.stringMatching(/^SECRET-[A-Za-z0-9]{12}$/),
  text(30),
);
const lineArb = fc.oneof(
  fc.constantFrom(...SECTIONS).map((s) => `[${s}]`),
  fc.constantFrom('[nope]', '[', '[]', '; comment', '# comment', '', 'no equals sign', '=value', ' indented = x'),
  fc.tuple(fc.constantFrom(...keyNames), valueArb).map(([k, v]) => `${k} = ${v}`),
  fc.tuple(fc.constantFrom(...SECRET_KEYS), fc.stringMatching(/^SECRET-[A-Za-z0-9]{12}(:SECRET-[A-Za-z0-9]{12})?$/)).map(([k, v]) => `${k} = ${v}`),
  text(40),
);
// Half of them start from a config that loads, so what follows can also leave a valid one.
const BASE = ['[upstream]', 'by_name_url = https://users.example/u/%s', 'by_uid_url = https://users.example/id/%u'];
const configArb = fc.oneof(
  fc.array(lineArb, { maxLength: 25 }).map((ls) => Buffer.from(ls.join('\n'))),
  fc.array(lineArb, { maxLength: 6 }).map((ls) => Buffer.from([...BASE, ...ls].join('\n'))),
  mutated(fc.array(lineArb, { maxLength: 12 }).map((ls) => Buffer.from(ls.join('\n'))), 400),
);

test('property: the config reader gives a config or ConfigErrors, never another error or a secret', async (t) => {
  t.diagnostic(`replayed ${await replay('config', configProp)} saved inputs`);
  await check(t, 'config', configArb, configProp, runs(800));
});

// ---- token_url replies ---------------------------------------------------------------------------
function tokenProp(b: Buffer): void {
  let doc: unknown = null;
  try { doc = JSON.parse(b.toString('utf8')); } catch { /* not JSON: the reader must say so */ }
  try {
    const tok = parseTokenReply(b, NOW);
    assert.match(tok.access, /^[\x21-\x7e]+$/);
    assert.ok(tok.access.length <= MAX_TOKEN_CHARS);
    if (tok.refresh !== null) assert.ok(/^[\x21-\x7e]+$/.test(tok.refresh) && tok.refresh.length <= MAX_TOKEN_CHARS);
    assert.equal(tok.issuedAt, NOW);
    const life = tok.expiresAt - tok.issuedAt;
    assert.ok(Number.isFinite(life) && life >= MIN_LIFETIME_MS && life <= MAX_LIFETIME_MS, `lifetime ${life}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    only(e, UpstreamError, 'parseTokenReply');
    assert.equal((e as UpstreamError).kind, 'auth');
    if (doc && typeof doc === 'object') {
      const o = doc as Record<string, unknown>;
      for (const v of [o.access_token, o.refresh_token]) {
        if (typeof v === 'string' && v.length >= 8) assert.ok(!(e as Error).message.includes(v), `error quotes a token: ${(e as Error).message}`);
      }
    }
  }
}
const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const tokenArb = fc.oneof(fc.stringMatching(/^[A-Za-z0-9._~+/-]{8,40}$/), text(20), fc.constantFrom('', 'a b', 'x'.repeat(8193)),
  fc.oneof(fc.integer(), fc.double(), fc.constant('soon')).map((exp) => `${b64url({ alg: 'none' })}.${b64url({ exp })}.sig`));
const tokenDoc = fc.record({
  access_token: fc.oneof(tokenArb, fc.constant(null), fc.integer()), refresh_token: fc.oneof(tokenArb, fc.constant(undefined)),
  token_type: fc.oneof(fc.constantFrom('bearer', 'Bearer', 'mac', undefined), text(8)),
  expires_in: fc.oneof(fc.constantFrom(undefined, null, 0, -1, 0.0005, 3600, '3599', '1e3', 1e308, Number.MAX_SAFE_INTEGER), fc.double(), fc.integer()),
}, { requiredKeys: [] });
const tokenBodies = fc.oneof(mutated(tokenDoc.map((d) => Buffer.from(JSON.stringify(d))), 300), fc.jsonValue().map((d) => Buffer.from(JSON.stringify(d) ?? 'null')));

test('property: token_url replies give a usable token or an auth UpstreamError that quotes none', async (t) => {
  t.diagnostic(`replayed ${await replay('token', tokenProp)} saved inputs`);
  await check(t, 'token', tokenBodies, tokenProp, runs(2500));
});
