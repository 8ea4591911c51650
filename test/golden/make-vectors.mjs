#!/usr/bin/env node
// Generates the protocol golden vectors with the TypeScript codec (the daemon's own encoder): a
// request and an OK reply of every message of the spec (nss.sock and priv.sock), error replies
// and malformed frames:
//   test/golden/vectors.json  the checked-in vectors, read by the TS golden test
//   test/golden/vectors.txt   the same vectors flattened to one token per line, read by the C
//                             golden test (test/c/test_golden.c) without a JSON parser
// Run after `tsc -p tsconfig.json`:  node test/golden/make-vectors.mjs
// `--check` exits 1 when the checked-in files differ from what the codec produces now.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const { encodeRequest, encodeReply, decodeReply, decodeRequestPayload, splitRequest, messageByName } =
  await import(join(root, 'dist/src/protocol/codec.js'));
const { Op, Status, Types, PROTO_VERSION, MAX_REPLY, SSH_KEY_TYPES } = await import(join(root, 'dist/src/protocol/generated.js'));
const { checkSshPublicKey } = await import(join(root, 'dist/src/upstream/sshkeys.js'));
const check = process.argv.includes('--check');

const alice = { name: 'alice', uid: 11001, gid: 10000, gecos: 'Alice Demo', dir: '/lega/homes/alice', shell: '/bin/bash' };
const zoe = { name: 'zoe.b-2', uid: 11002, gid: 10000, gecos: 'Zoë Ünïcode', dir: '/lega/homes/zoe.b-2', shell: '/sbin/nologin' };
const keyAlice = readFileSync(join(root, 'test/fixtures/keys/demo_alice_ed25519.pub'), 'utf8').trim();
const keyHeidi = readFileSync(join(root, 'test/fixtures/keys/demo_heidi_ecdsa.pub'), 'utf8').trim();

const vectors = [];
function request(name, op, fields) {
  vectors.push({ name, kind: 'request', buf: encodeRequest(op, fields) });
}
function reply(name, op, status, fields, detail = '') {
  const v = { name, kind: 'reply', buf: encodeReply(Op[op], status, fields, detail) };
  // Key replies also record what the daemon's upstream validation says of each key, for the C
  // side's keys helper to agree with key by key (one list of key types, spec.json).
  if (fields?.keys) v.keysOk = fields.keys.map((k) => checkSshPublicKey(k).ok);
  vectors.push(v);
}
/** A syntactically valid public key of `type`: the blob starts with the type name (RFC 4253). */
function sampleKey(type) {
  const name = Buffer.from(type, 'latin1');
  const blob = Buffer.concat([u32(name.length), name, Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1))]);
  return `${type} ${blob.toString('base64')} golden-${type}`;
}
/** A malformed reply: `opcode` is the message it pretends to answer, `reject` where it fails. */
function bad(name, op, reject, why, buf) {
  vectors.push({ name, kind: 'bad-reply', buf, bad: { opcode: Op[op], reject, why } });
}
const u16 = (v) => { const b = Buffer.alloc(2); b.writeUInt16BE(v); return b; };
const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b; };
const str = (s) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([u16(b.length), b]); };
/** A reply frame from a hand-made body (after the length prefix), with a correct prefix. */
const frame = (body) => Buffer.concat([u32(body.length), body]);
const head = (op, status = Status.OK) => Buffer.concat([u16(PROTO_VERSION), u16(Op[op]), u16(status)]);

request('ping request', 'PING', {});
reply('ping reply', 'PING', Status.OK, { daemon_version: '0.1.0' });
request('pw_by_name request', 'PW_BY_NAME', { name: 'alice' });
reply('pw_by_name ok reply', 'PW_BY_NAME', Status.OK, { entry: alice });
request('pw_by_uid request', 'PW_BY_UID', { uid: 11002 });
reply('pw_by_uid ok reply (utf-8 gecos)', 'PW_BY_UID', Status.OK, { entry: zoe });
reply('pw_by_name notfound reply with detail', 'PW_BY_NAME', Status.NOTFOUND, null, 'no such user: mallory');
reply('pw_by_name unavail reply, empty detail', 'PW_BY_NAME', Status.UNAVAIL, null, '');
request('pw_list request', 'PW_LIST', { start_uid: 0 });
reply('pw_list reply with 2 entries', 'PW_LIST', Status.OK, { next_uid: 11003, entries: [alice, zoe] });
reply('pw_list reply, empty page ends the list', 'PW_LIST', Status.OK, { next_uid: 11003, entries: [] });
request('gr_by_gid request', 'GR_BY_GID', { gid: 10000 });
reply('gr_by_gid reply with members', 'GR_BY_GID', Status.OK, { entry: { name: 'lega', gid: 10000, members: ['alice', 'zoe.b-2'] } });
request('gr_by_name request', 'GR_BY_NAME', { name: 'lega' });
reply('gr_by_name reply, no members', 'GR_BY_NAME', Status.OK, { entry: { name: 'lega', gid: 10000, members: [] } });
request('gr_list request', 'GR_LIST', { start_gid: 10000 });
reply('gr_list reply with 1 group', 'GR_LIST', Status.OK, { next_gid: 10001, entries: [{ name: 'lega', gid: 10000, members: ['alice'] }] });
request('keys_by_name request', 'KEYS_BY_NAME', { name: 'alice' });
reply('keys_by_name reply with 2 keys', 'KEYS_BY_NAME', Status.OK, { keys: [keyAlice, keyHeidi] });
reply('keys_for_login reply with 1 key', 'KEYS_FOR_LOGIN', Status.OK, { keys: [keyAlice] });
reply('keys_for_login notfound: not served with that uid', 'KEYS_FOR_LOGIN', Status.NOTFOUND, null, 'latchkey does not serve root with uid 0');
request('keys_for_login request', 'KEYS_FOR_LOGIN', { name: 'alice', uid: 11001 });
reply('keys_for_login reply, every spec key type, a DSA key and an unknown type', 'KEYS_FOR_LOGIN', Status.OK,
  { keys: [...SSH_KEY_TYPES.map(sampleKey), sampleKey('ssh-dss'), sampleKey('ssh-foo@example.org')] });
request('login_check request', 'LOGIN_CHECK', { user: 'alice', uid: 11001 });
reply('login_check reply with the prompt', 'LOGIN_CHECK', Status.OK, { prompt: 'Please, enter your EGA password: ' });
reply('login_check unavail reply', 'LOGIN_CHECK', Status.UNAVAIL, null, 'user service unavailable');
reply('login_check notfound reply', 'LOGIN_CHECK', Status.NOTFOUND, null, 'latchkey does not serve root with uid 0');
request('auth_password request', 'AUTH_PASSWORD', { user: 'alice', password: 'correct horse', service: 'sshd', rhost: '192.0.2.7' });
reply('auth_password ok reply', 'AUTH_PASSWORD', Status.OK, {});
reply('auth_password auth_failed reply', 'AUTH_PASSWORD', Status.AUTH_FAILED, null, '');
reply('auth_password throttled reply', 'AUTH_PASSWORD', Status.THROTTLED, null, 'too many failures; retry in 60s');
reply('auth_password unavail reply with the cause', 'AUTH_PASSWORD', Status.UNAVAIL, null, 'HTTP 401 from the user service: check cega_creds');
request('acct_mgmt request', 'ACCT_MGMT', { user: 'alice', service: 'sshd', rhost: '' });
reply('acct_mgmt ok reply', 'ACCT_MGMT', Status.OK, {});
reply('acct_mgmt expired reply', 'ACCT_MGMT', Status.EXPIRED, null, 'account expired');
request('session_open request', 'SESSION_OPEN', { user: 'alice', service: 'sshd', rhost: '192.0.2.7', tty: 'ssh', pid: 30247, pid_start: '4712345' });
reply('session_open ok reply', 'SESSION_OPEN', Status.OK, { session_id: '70b19514-1051-409e-842c-c2ec2a09a142', home: '/lega/homes/alice', umask: 0o027, chroot: 1 });
reply('session_open limit reply', 'SESSION_OPEN', Status.LIMIT, null, 'alice has 10 sessions open (max_sessions_per_user = 10)');
request('session_close request', 'SESSION_CLOSE', { user: 'alice', service: 'sshd', pid: 30247 });
reply('session_close ok reply', 'SESSION_CLOSE', Status.OK, {});
reply('session_close notfound reply', 'SESSION_CLOSE', Status.NOTFOUND, null, 'no session of pid 30247');
request('admin request', 'ADMIN', { json: Buffer.from('{"cmd":"status"}', 'utf8') });
reply('admin ok reply', 'ADMIN', Status.OK, { json: Buffer.from('{"ok":true,"version":"0.1.0"}', 'utf8') });
reply('admin denied reply', 'ADMIN', Status.DENIED, null, 'priv.sock only');

bad('truncated string', 'PW_BY_NAME', 'payload', 'name says 5 bytes, 3 follow',
  frame(Buffer.concat([head('PW_BY_NAME'), u16(5), Buffer.from('ali')])));
bad('count larger than the data', 'PW_LIST', 'payload', 'entries count 3, 2 entries present',
  frame(Buffer.concat([head('PW_LIST'), encodeReply(Op.PW_LIST, Status.OK, { next_uid: 11003, entries: [alice, zoe] }).subarray(10, 14),
    u16(3), encodeReply(Op.PW_LIST, Status.OK, { next_uid: 11003, entries: [alice, zoe] }).subarray(16)])));
bad('trailing bytes', 'PING', 'payload', 'one byte after the last field',
  frame(Buffer.concat([head('PING'), str('0.1.0'), Buffer.from([0])])));
bad('trailing bytes after a detail', 'PW_BY_NAME', 'payload', 'non-OK status carries exactly one str',
  frame(Buffer.concat([head('PW_BY_NAME', Status.NOTFOUND), str('gone'), Buffer.from('xx')])));
bad('length prefix above the max', 'PING', 'frame', `length ${MAX_REPLY + 1} > MAX_REPLY (and MAX_NSS_REPLY)`,
  Buffer.concat([u32(MAX_REPLY + 1), head('PING'), str('0.1.0')]));
bad('strlist count overflow', 'KEYS_BY_NAME', 'payload', 'keys count 65535, no data',
  frame(Buffer.concat([head('KEYS_BY_NAME'), u16(0xffff)])));
bad('member count larger than the data', 'GR_BY_GID', 'payload', 'members count 2, 1 member present',
  frame(Buffer.concat([head('GR_BY_GID'), str('lega'), u32(10000), u16(2), str('alice')])));
bad('string containing NUL', 'PW_BY_NAME', 'payload', 'str bytes must not contain NUL',
  frame(Buffer.concat([head('PW_BY_NAME'), str('al\0ce'), u32(11001), u32(10000), str(''), str('/h/a'), str('/bin/sh')])));
bad('login_check prompt cut short', 'LOGIN_CHECK', 'payload', 'prompt says 40 bytes, 6 follow',
  frame(Buffer.concat([head('LOGIN_CHECK'), u16(40), Buffer.from('Passwo')])));
bad('empty body', 'PING', 'payload', 'length 0: no version, opcode or status', frame(Buffer.alloc(0)));
bad('session_open reply without its chroot byte', 'SESSION_OPEN', 'payload', 'umask present, chroot u8 missing',
  frame(Buffer.concat([head('SESSION_OPEN'), str('s-1'), str('/lega/homes/alice'), u32(0o027)])));
bad('auth_password ok reply with a payload', 'AUTH_PASSWORD', 'payload', 'OK carries no fields; one str follows',
  frame(Buffer.concat([head('AUTH_PASSWORD'), str('x')])));
bad('acct_mgmt reply for another opcode', 'ACCT_MGMT', 'payload', 'opcode says AUTH_PASSWORD',
  frame(Buffer.concat([head('AUTH_PASSWORD')])));
bad('admin blob count larger than the data', 'ADMIN', 'payload', 'json says 100 bytes, 2 follow',
  frame(Buffer.concat([head('ADMIN'), u32(100), Buffer.from('{}')])));

// ---- decoded form, from the TS decoder (so the JSON states what the daemon side reads) ------
/** Blobs as { blob_hex } in the JSON (a Buffer would serialise as a list of numbers). */
const jsonable = (x) => Buffer.isBuffer(x) ? { blob_hex: x.toString('hex') }
  : Array.isArray(x) ? x.map(jsonable)
    : x && typeof x === 'object' ? Object.fromEntries(Object.entries(x).map(([k, y]) => [k, jsonable(y)])) : x;
function decoded(v) {
  if (v.kind === 'bad-reply') return { version: PROTO_VERSION, opcode: v.bad.opcode, reject: v.bad.reject, why: v.bad.why };
  const body = v.buf.subarray(4);
  if (v.kind === 'request') {
    const r = splitRequest(body);
    const m = [...Object.values(Op)].includes(r.opcode) ? messageOf(r.opcode) : null;
    return { version: r.version, opcode: r.opcode, fields: decodeRequestPayload(m, r.payload) };
  }
  const r = decodeReply(body);
  const out = { version: r.version, opcode: r.opcode, status: r.status, fields: r.fields ?? {} };
  if (r.status !== Status.OK) out.detail = r.detail;
  return out;
}
function messageOf(opcode) {
  const name = Object.entries(Op).find(([, code]) => code === opcode)[0];
  return messageByName(name);
}

// ---- flattening for vectors.txt: one line per scalar, strings as x<hex> -------------------
function flatten(lines, path, type, value) {
  const hex = (s) => 'x' + Buffer.from(s, 'utf8').toString('hex');
  if (type === 'str') lines.push(`f ${path} str ${hex(value)}`);
  else if (type === 'blob') lines.push(`f ${path} blob x${Buffer.from(value).toString('hex')}`);
  else if (['u8', 'u16', 'u32'].includes(type)) lines.push(`f ${path} ${type} ${value}`);
  else if (type === 'strlist') {
    lines.push(`f ${path} count ${value.length}`);
    value.forEach((s, i) => lines.push(`f ${path}.${i} str ${hex(s)}`));
  } else if (type.endsWith('[]')) {
    lines.push(`f ${path} count ${value.length}`);
    value.forEach((rec, i) => flattenFields(lines, `${path}.${i}.`, Types[type.slice(0, -2)], rec));
  } else if (Types[type]) flattenFields(lines, `${path}.`, Types[type], value);
  else throw new Error(`vectors.txt: no flattening for ${type}`);
}
function flattenFields(lines, prefix, fieldList, values) {
  for (const [n, t] of fieldList) flatten(lines, prefix + n, t, values[n]);
}

const json = [];
const txt = ['# GENERATED by test/golden/make-vectors.mjs from the TS codec; do not edit.',
  '# vector NAME / kind / hex / version / opcode [/ status / detail x<hex> / keys_ok 1 0..] / f PATH TYPE VALUE... / end'];
for (const v of vectors) {
  const d = decoded(v);
  json.push({ name: v.name, kind: v.kind, hex: v.buf.toString('hex'), decoded: jsonable(d), ...(v.keysOk ? { keys_ok: v.keysOk } : {}) });
  txt.push(`vector ${v.name}`, `kind ${v.kind}`, `hex ${v.buf.toString('hex')}`, `version ${d.version}`, `opcode ${d.opcode}`);
  if (v.kind === 'reply') {
    txt.push(`status ${d.status}`);
    if (d.status !== Status.OK) txt.push(`detail x${Buffer.from(d.detail, 'utf8').toString('hex')}`);
    if (v.keysOk) txt.push(`keys_ok ${v.keysOk.map((ok) => (ok ? 1 : 0)).join(' ')}`);
  }
  if (v.kind !== 'bad-reply') {
    const m = messageOf(d.opcode);
    const fields = v.kind === 'request' ? m.request : d.status === Status.OK ? m.reply : [];
    const lines = [];
    flattenFields(lines, '', fields, d.fields);
    txt.push(...lines);
  }
  txt.push('end');
}

const outputs = [
  [join(here, 'vectors.json'), JSON.stringify(json, null, 2) + '\n'],
  [join(here, 'vectors.txt'), txt.join('\n') + '\n'],
];
let stale = 0;
for (const [path, text] of outputs) {
  let old = '';
  try { old = readFileSync(path, 'utf8'); } catch { /* new file */ }
  if (old === text) continue;
  if (check) { console.error(`${path} is out of date: run node test/golden/make-vectors.mjs`); stale++; }
  else writeFileSync(path, text);
}
process.exit(stale ? 1 : 0);
