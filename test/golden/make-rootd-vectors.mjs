#!/usr/bin/env node
// Generates the latchkey-rootd golden vectors (spec.json "rootd"): requests encoded by the
// daemon's own encoder (src/protocol/rootd.ts), replies laid out byte by byte from the spec's
// offsets (as rootd_encode writes them), and malformed frames of both kinds:
//   test/golden/rootd-vectors.json  read by the TS codec test (test/unit/codec.test.ts)
//   test/golden/rootd-vectors.txt   the same, one token per line, read by the C test
//                                   (test/c/test_rootd_golden.c: rootd_decode, rootd_encode)
// Run after `tsc -p tsconfig.json`:  node test/golden/make-rootd-vectors.mjs
// `--check` exits 1 when the checked-in files differ from what this produces now.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const { encodeRootdRequest } = await import(join(root, 'dist/src/protocol/rootd.js'));
const g = await import(join(root, 'dist/src/protocol/generated.js'));
const check = process.argv.includes('--check');

const vectors = [];
const request = (name, fields) => vectors.push({ name, kind: 'request', buf: encodeRootdRequest(fields), fields });

/** A reply frame as rootd_encode lays it out. */
function replyFrame(code, flags, msg, patch = (b) => b) {
  const m = Buffer.from(msg, 'utf8');
  const b = Buffer.alloc(g.ROOTD_REPLY_SIZE);
  b.writeUInt16BE(g.ROOTD_PROTO_VERSION, g.RootdReplyOffset.version);
  b.writeUInt16BE(code, g.RootdReplyOffset.status);
  b.writeUInt16BE(flags, g.RootdReplyOffset.flags);
  b.writeUInt16BE(m.length, g.RootdReplyOffset.msg_len);
  m.copy(b, g.RootdReplyOffset.msg);
  return patch(b);
}
function reply(name, status, flags, msg) {
  const code = g.RootdStatus[status];
  vectors.push({
    name, kind: 'reply', buf: replyFrame(code, flags, msg),
    decoded: { status: status.toLowerCase(), code, created: (flags & g.RootdFlag.CREATED) !== 0, repaired: (flags & g.RootdFlag.REPAIRED) !== 0, message: msg },
  });
}
const badReply = (name, why, buf) => vectors.push({ name, kind: 'bad-reply', buf, why });
/** A malformed request: a valid frame with `patch` applied; `why` is a part of rootd's MALFORMED message. */
function badRequest(name, why, fields, patch) {
  const b = Buffer.from(encodeRootdRequest(fields));
  vectors.push({ name, kind: 'bad-request', buf: patch(b) ?? b, why });
}
const Q = g.RootdRequestOffset;

request('create_home', { op: 'create_home', name: 'alice', uid: 20001, gid: 10000 });
request('create_home, a 32-byte name', { op: 'create_home', name: 'a'.repeat(31) + 'z', uid: 4294967294, gid: 2147483647 });
request('end_session', { op: 'end_session', uid: 20001, pid: 30247, pidStart: 123456789n });
request('end_session with the name, a start time above 2^32', { op: 'end_session', uid: 20001, pid: 4194303, pidStart: (1n << 40n) + 7n, name: 'zoe.b-2' });
request('reload', { op: 'reload' });

reply('ok, created', 'OK', g.RootdFlag.CREATED, 'created /ega/inbox/alice');
reply('ok, repaired', 'OK', g.RootdFlag.REPAIRED, 'home alice had mode 0777, set to 0755; upload dir alice/inbox had group 999, set to 10000');
reply('ok, checked, no message', 'OK', 0, '');
reply('malformed', 'MALFORMED', 0, 'unknown opcode 9');
reply('refused', 'REFUSED', 0, 'uid 0 is outside the served range (20000..29999, at least uid_shift 10000, never 0, 65534, 65535 or the daemon\'s)');
reply('unsafe', 'UNSAFE', 0, 'home alice is a symbolic link; not followed');
reply('gone', 'GONE', 0, 'pid 30247: no such process');
reply('failed, utf-8 text', 'FAILED', 0, 'cannot read /etc/passwd: Permission denied (\u00e9)');
reply('bad_peer', 'BAD_PEER', 0, 'uid 0 is not the daemon user');
reply('a message of the full 248 bytes', 'REFUSED', 0, 'm'.repeat(g.ROOTD_MSG_SIZE));

const ok = () => replyFrame(0, 0, 'fine');
badReply('one byte short', 'size', ok().subarray(0, g.ROOTD_REPLY_SIZE - 1));
badReply('one byte long', 'size', Buffer.concat([ok(), Buffer.from([0])]));
badReply('version 2', 'version', replyFrame(0, 0, 'fine', (b) => { b.writeUInt16BE(2, 0); return b; }));
badReply('status 7', 'status', replyFrame(7, 0, 'fine'));
badReply('an unknown flag bit', 'flags', replyFrame(0, 4, 'fine'));
badReply('msg_len 249', 'msg_len', replyFrame(0, 0, 'fine', (b) => { b.writeUInt16BE(g.ROOTD_MSG_SIZE + 1, g.RootdReplyOffset.msg_len); return b; }));
badReply('bytes after the message', 'trailing', replyFrame(0, 0, 'fine', (b) => { b[g.ROOTD_REPLY_SIZE - 1] = 0x41; return b; }));
badReply('NUL inside the message', 'nul', replyFrame(0, 0, 'fi\0ne'));

const home = { op: 'create_home', name: 'alice', uid: 20001, gid: 10000 };
badRequest('one byte short', 'short frame: 63 of 64', home, (b) => b.subarray(0, 63));
badRequest('version 2', 'version 2, expected 1', home, (b) => { b.writeUInt16BE(2, Q.version); });
badRequest('opcode 0', 'unknown opcode 0', home, (b) => { b.writeUInt16BE(0, Q.opcode); });
badRequest('opcode 4', 'unknown opcode 4', home, (b) => { b.writeUInt16BE(4, Q.opcode); });
badRequest('a reserved byte set', 'reserved bytes are not zero', home, (b) => { b[Q.reserved + 6] = 1; });
badRequest('name_len 33', 'name_len 33 does not match', home, (b) => { b[Q.name_len] = 33; });
badRequest('bytes after name_len', 'name_len 5 does not match', home, (b) => { b[Q.name + 5] = 0x78; });
badRequest('NUL inside the name', 'name contains NUL', home, (b) => { b[Q.name + 2] = 0; });
badRequest('create_home with a pid', 'CREATE_HOME with a non-zero pid or pid_start', home, (b) => { b.writeUInt32BE(7, Q.pid); });
badRequest('create_home with a start time', 'CREATE_HOME with a non-zero pid or pid_start', home, (b) => { b[Q.pid_start] = 1; });
badRequest('end_session with a gid', 'END_SESSION with a non-zero gid', { op: 'end_session', uid: 20001, pid: 30247, pidStart: 5n }, (b) => { b.writeUInt32BE(10000, Q.gid); });
badRequest('reload with a uid', 'RELOAD with a non-zero', { op: 'reload' }, (b) => { b.writeUInt32BE(1, Q.uid); });
badRequest('reload with a name', 'RELOAD with a non-zero', { op: 'reload' }, (b) => { b[Q.name_len] = 1; b[Q.name] = 0x61; });

const hex = (s) => 'x' + Buffer.from(s, 'utf8').toString('hex');
const json = [];
const txt = ['# GENERATED by test/golden/make-rootd-vectors.mjs; do not edit.',
  '# vector NAME / kind / hex / request: op uid gid pid pid_start name | reply: status flags msg | bad-*: why / end'];
for (const v of vectors) {
  const out = { name: v.name, kind: v.kind, hex: v.buf.toString('hex') };
  txt.push(`vector ${v.name}`, `kind ${v.kind}`, `hex ${out.hex}`);
  if (v.kind === 'request') {
    const f = v.fields;
    out.request = { ...f, ...(f.pidStart !== undefined ? { pidStart: String(f.pidStart) } : {}) };
    txt.push(`op ${g.RootdOpcode[f.op.toUpperCase()]}`, `uid ${f.uid ?? 0}`, `gid ${f.gid ?? 0}`, `pid ${f.pid ?? 0}`,
      `pid_start ${f.pidStart ?? 0n}`, `name ${hex(f.name ?? '')}`);
  } else if (v.kind === 'reply') {
    out.decoded = v.decoded;
    const flags = (v.decoded.created ? g.RootdFlag.CREATED : 0) | (v.decoded.repaired ? g.RootdFlag.REPAIRED : 0);
    txt.push(`status ${v.decoded.code}`, `flags ${flags}`, `msg ${hex(v.decoded.message)}`);
  } else {
    out.why = v.why;
    txt.push(`why ${hex(v.why)}`);
  }
  json.push(out);
  txt.push('end');
}

const outputs = [
  [join(here, 'rootd-vectors.json'), JSON.stringify(json, null, 2) + '\n'],
  [join(here, 'rootd-vectors.txt'), txt.join('\n') + '\n'],
];
let stale = 0;
for (const [path, text] of outputs) {
  let old = '';
  try { old = readFileSync(path, 'utf8'); } catch { /* new file */ }
  if (old === text) continue;
  if (check) { console.error(`${path} is out of date: run node test/golden/make-rootd-vectors.mjs`); stale++; }
  else writeFileSync(path, text);
}
process.exit(stale ? 1 : 0);
