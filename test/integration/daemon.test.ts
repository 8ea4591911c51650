// The real latchkeyd on real sockets with the real example user service: lookups, framing
// abuse, socket permissions, upstream faults, SIGHUP reload.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { spawnSync } from 'node:child_process';
import { statSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEnv, request, exampleUsers, type TestEnv } from '../lib/harness.js';
import { Status, Op, PROTO_VERSION } from '../../src/protocol/generated.js';
import { encodeRequest, decodeReply, type Fields } from '../../src/protocol/codec.js';

let env: TestEnv;
const nss = (): string => join(env.socketDir, 'nss.sock');
const priv = (): string => join(env.socketDir, 'priv.sock');

before(async () => { env = await startEnv({ cache: { ttl: '2s', stale_grace: '1h', refresh_ahead: '0s' } }); });
after(async () => { await env.stop(); });

/** Writes raw bytes and collects whatever comes back until the peer closes or `ms` pass. */
function raw(path: string, bytes: Buffer, ms = 1500): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    const chunks: Buffer[] = [];
    let closed = false;
    const t = setTimeout(() => { c.destroy(); resolve({ data: Buffer.concat(chunks), closed }); }, ms);
    c.on('connect', () => c.write(bytes));
    c.on('data', (d) => chunks.push(d));
    c.on('close', () => { closed = true; clearTimeout(t); resolve({ data: Buffer.concat(chunks), closed }); });
    c.on('error', () => { /* reset by the daemon counts as closed */ });
  });
}

test('sockets exist with the right modes', () => {
  assert.equal(statSync(nss()).mode & 0o777, 0o666);
  assert.equal(statSync(priv()).mode & 0o777, 0o600);
});

test('PING answers with the version', async () => {
  const r = await request(nss(), 'PING', {});
  assert.equal(r.status, Status.OK);
  assert.match(String(r.fields!.daemon_version), /^\d+\.\d+\.\d+/);
});

test('user by name: first from upstream, then from cache', async () => {
  const before = env.service.stats().requests;
  const r = await request(nss(), 'PW_BY_NAME', { name: 'alice' });
  assert.equal(r.status, Status.OK);
  const e = r.fields!.entry as Fields;
  assert.equal(e.name, 'alice');
  assert.equal(e.uid, 11001);
  assert.equal(e.gid, 10000);
  assert.equal(e.dir, join(env.dir, 'homes', 'alice'));
  assert.equal(env.service.stats().requests, before + 1);
  const again = await request(nss(), 'PW_BY_NAME', { name: 'alice' });
  assert.equal(again.status, Status.OK);
  assert.equal(env.service.stats().requests, before + 1, 'second lookup must be a cache hit');
});

test('user by uid applies the uid shift; low uids are refused without asking upstream', async () => {
  const r = await request(nss(), 'PW_BY_UID', { uid: 11002 });
  assert.equal(r.status, Status.OK);
  assert.equal((r.fields!.entry as Fields).name, 'bob');
  const before = env.service.stats().requests;
  for (const uid of [0, 1, 999]) assert.equal((await request(nss(), 'PW_BY_UID', { uid })).status, Status.NOTFOUND);
  assert.equal(env.service.stats().requests, before);
});

test('unknown user is NOTFOUND and negatively cached; bad names never reach upstream', async () => {
  assert.equal((await request(nss(), 'PW_BY_NAME', { name: 'nosuchuser' })).status, Status.NOTFOUND);
  const before = env.service.stats().requests;
  assert.equal((await request(nss(), 'PW_BY_NAME', { name: 'nosuchuser' })).status, Status.NOTFOUND);
  for (const name of ['root:x', 'a/b', 'A', '', 'x'.repeat(40), '../etc']) {
    assert.equal((await request(nss(), 'PW_BY_NAME', { name })).status, Status.NOTFOUND, name);
  }
  assert.equal(env.service.stats().requests, before);
});

test('enumeration, group and keys', async () => {
  await request(nss(), 'PW_BY_NAME', { name: 'carol' });
  const l = await request(nss(), 'PW_LIST', { start_uid: 0 });
  assert.equal(l.status, Status.OK);
  const names = (l.fields!.entries as Fields[]).map((e) => e.name);
  for (const n of ['alice', 'bob', 'carol']) assert.ok(names.includes(n), n);
  const end = await request(nss(), 'PW_LIST', { start_uid: l.fields!.next_uid as number });
  assert.equal((end.fields!.entries as Fields[]).length, 0);
  const g = await request(nss(), 'GR_BY_GID', { gid: 10000 });
  assert.equal(g.status, Status.OK);
  // no member list: lega is every user's primary group (a list would make local namesakes members)
  assert.deepEqual((g.fields!.entry as Fields).members, []);
  assert.equal((await request(nss(), 'GR_BY_NAME', { name: 'lega' })).status, Status.OK);
  assert.equal((await request(nss(), 'GR_BY_NAME', { name: 'wheel' })).status, Status.NOTFOUND);
  const k = await request(nss(), 'KEYS_BY_NAME', { name: 'alice' });
  assert.equal(k.status, Status.OK);
  assert.match((k.fields!.keys as string[])[0]!, /^ssh-ed25519 /);
});

test('privileged opcodes are DENIED on nss.sock', async () => {
  const r = await request(nss(), 'AUTH_PASSWORD', { user: 'alice', password: 'x', service: 's', rhost: '' });
  assert.equal(r.status, Status.DENIED);
  const a = await request(nss(), 'ADMIN', { json: Buffer.from('{"cmd":"status"}') });
  assert.equal(a.status, Status.DENIED);
});

test('priv.sock refuses a non-root peer even if the mode is opened', async () => {
  const { chmodSync } = await import('node:fs');
  chmodSync(priv(), 0o666);
  chmodSync(env.socketDir, 0o755);
  const script = `const c=require('net').createConnection(${JSON.stringify(priv())});c.on('connect',()=>c.write(Buffer.from(${JSON.stringify(encodeRequest('PING', {}).toString('hex'))},'hex')));c.on('data',()=>{console.log('answered');process.exit(0)});c.on('close',()=>{console.log('closed');process.exit(0)});c.on('error',e=>{console.log('error '+e.code);process.exit(0)});`;
  const r = spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 5000 });
  chmodSync(priv(), 0o600);
  assert.match(r.stdout, /closed|error/, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout, /EACCES|ENOENT/, 'the test must reach the socket to prove the uid check');
  assert.doesNotMatch(r.stdout, /answered/);
  await new Promise((res) => setTimeout(res, 200)); // spawnSync held our event loop: let the log pipe drain
  assert.ok(env.daemon.logs.some((l) => l.includes('priv.denied')));
});

test('bad version and unknown opcode get error replies on a connection that stays usable', async () => {
  const bad = encodeRequest('PING', {}, 99);
  const unk = Buffer.from([0, 0, 0, 4, 0, PROTO_VERSION, 0x7f, 0x7f]);
  const ping = encodeRequest('PING', {});
  const { data } = await raw(nss(), Buffer.concat([bad, unk, ping]), 800);
  const replies = [];
  for (let off = 0; off < data.length;) { const n = data.readUInt32BE(off); replies.push(decodeReply(data.subarray(off + 4, off + 4 + n))); off += 4 + n; }
  assert.deepEqual(replies.map((r) => r.status), [Status.BAD_VERSION, Status.UNKNOWN_OPCODE, Status.OK]);
  const malformed = Buffer.concat([Buffer.from([0, 0, 0, 7, 0, PROTO_VERSION, 0, Op.PW_BY_NAME]), Buffer.from([0, 9, 0x61])]);
  const m = await raw(nss(), malformed, 800);
  assert.equal(decodeReply(m.data.subarray(4)).status, Status.BAD_REQUEST);
});

test('oversized and garbage frames close the connection; the daemon survives', async () => {
  const huge = await raw(nss(), Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]));
  assert.ok(huge.closed);
  assert.equal(huge.data.length, 0);
  const junk = await raw(nss(), Buffer.from('GET / HTTP/1.1\r\n\r\n'));
  assert.ok(junk.closed);
  assert.ok(env.daemon.logs.some((l) => l.includes('connection.malformed')));
  assert.equal((await request(nss(), 'PING', {})).status, Status.OK);
});

test('upstream down: stale entry served within grace, unknown user UNAVAIL (never NOTFOUND)', async () => {
  await request(nss(), 'PW_BY_NAME', { name: 'dave' });
  await new Promise((r) => setTimeout(r, 2200)); // ttl is 2 s
  env.service.setFault('5xx');
  try {
    const stale = await request(nss(), 'PW_BY_NAME', { name: 'dave' });
    assert.equal(stale.status, Status.OK);
    const unknown = await request(nss(), 'PW_BY_NAME', { name: 'neverseen' });
    assert.equal(unknown.status, Status.UNAVAIL);
    env.service.setFault('garbage');
    assert.equal((await request(nss(), 'PW_BY_NAME', { name: 'neverseen2' })).status, Status.UNAVAIL);
  } finally {
    env.service.setFault(null);
  }
  assert.equal((await request(nss(), 'PW_BY_NAME', { name: 'neverseen' })).status, Status.NOTFOUND);
});

test('many concurrent clients for one cold user make one upstream request', async () => {
  env.service.setDelay(200);
  const before = env.service.stats().requests;
  try {
    const rs = await Promise.all(Array.from({ length: 50 }, () => request(nss(), 'PW_BY_NAME', { name: 'erin' })));
    assert.ok(rs.every((r) => r.status === Status.OK));
  } finally { env.service.setDelay(0); }
  assert.equal(env.service.stats().requests, before + 1);
});

test('SIGHUP reloads a good config and keeps the old one on a bad config', async () => {
  const orig = readFileSync(env.configFile, 'utf8');
  writeFileSync(env.configFile, orig + '\n[bogus]\nkey = 1\n');
  process.kill(env.daemon.pid, 'SIGHUP');
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(env.daemon.logs.some((l) => l.includes('config.reload_failed') && l.includes('bogus')));
  assert.equal((await request(nss(), 'PING', {})).status, Status.OK);
  writeFileSync(env.configFile, orig.replace('group_name = lega', 'group_name = inbox'));
  process.kill(env.daemon.pid, 'SIGHUP');
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(env.daemon.logs.some((l) => l.includes('config.reloaded')));
  assert.equal((await request(nss(), 'GR_BY_NAME', { name: 'inbox' })).status, Status.OK);
});

test('logs are one JSON object per line and never carry secrets', async () => {
  // The events a secret could reach: an upstream fetch (basic auth, a record with a hash) and a
  // password check, wrong then right (alice's hash is $2b$, bob's $6$).
  assert.equal((await request(nss(), 'PW_BY_NAME', { name: 'bob' })).status, Status.OK);
  const wrongPw = 'Wrong-Guess-7';
  const rightPw = 'alice-demo-pass';
  const auth = (password: string) => request(priv(), 'AUTH_PASSWORD', { user: 'alice', password, service: 'latchkey-test', rhost: '' });
  assert.equal((await auth(wrongPw)).status, Status.AUTH_FAILED);
  assert.equal((await auth(rightPw)).status, Status.OK);
  const events = (): { event?: unknown; key?: unknown; user?: unknown; result?: unknown }[] =>
    env.daemon.logs.map((l) => { try { return JSON.parse(l) as Record<string, unknown>; } catch { return {}; } });
  for (let i = 0; i < 50 && !events().some((e) => e.event === 'auth.result' && e.result === 'ok'); i++) await new Promise((r) => setTimeout(r, 20));
  const seen = events();
  assert.ok(seen.some((e) => e.event === 'resolver.fetch' && e.key === 'name:bob'), 'no resolver.fetch line for bob');
  assert.ok(seen.some((e) => e.event === 'auth.result' && e.user === 'alice' && e.result === 'wrong_password'), 'no auth.result line for the wrong password');
  assert.ok(seen.some((e) => e.event === 'auth.result' && e.user === 'alice' && e.result === 'ok'), 'no auth.result line for the right password');
  const hashes = exampleUsers().map((u) => u.passwordHash).filter((h): h is string => !!h);
  assert.ok(hashes.length > 0);
  for (const line of env.daemon.logs) {
    assert.doesNotThrow(() => JSON.parse(line), line);
    assert.ok(!line.includes('testpass'), 'upstream password leaked: ' + line);
    assert.ok(!line.includes('$2b$') && !line.includes('$6$'), 'hash leaked: ' + line);
    for (const h of hashes) assert.ok(!line.includes(h), 'hash leaked: ' + line);
    assert.ok(!line.includes(wrongPw) && !line.includes(rightPw), 'password leaked: ' + line);
  }
});
