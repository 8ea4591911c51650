// Upstream: reply validation (pure) and the REST client against the real example service.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { UpstreamConfig, UsersConfig } from '../../src/config/types.js';
import { UpstreamError } from '../../src/errors.js';
import { setLogSink, setLogLevel } from '../../src/log.js';
import { RestUserSource, expandUrl } from '../../src/upstream/client.js';
import { Semaphore } from '../../src/verify/semaphore.js';
import { parseUserReply, parseUserReplyDetailed, type ParseOptions } from '../../src/upstream/validate.js';
import { startUserService, type CegaUser, type UserService } from '../../src/example/userservice.js';
import { ROOT } from '../lib/paths.js';

const USERS: UsersConfig = {
  uidShift: 10000, gid: 10000, groupName: 'lega', minUid: 10001, maxUid: 60000,
  nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/, shell: '/bin/bash',
  denyNames: ['root'], localPasswdFile: '/etc/passwd', localGroupFile: '/etc/group',
};
const AUTH = { user: 'lega', password: 'S3cret-Upstream-PW' };
const demoUsers = JSON.parse(readFileSync(join(ROOT, 'etc/example-users.json'), 'utf8')) as CegaUser[];
const alice = demoUsers.find((u) => u.username === 'alice')!;
const ALICE_KEY = alice.sshPublicKeys![0]!;
const HEIDI_KEY = demoUsers.find((u) => u.username === 'heidi')!.sshPublicKeys![0]!;

const logLines: string[] = [];
setLogSink((l) => logLines.push(l));

function cfg(url: string, over: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return {
    byNameUrl: `${url}/username/`, byUidUrl: `${url}/user-id/`, basicAuth: AUTH, bearerToken: null, tokenUrl: null, apiKey: null,
    jsonPrefix: 'response.result', connectTimeoutMs: 1000, requestTimeoutMs: 1500, maxBodyBytes: 64 * 1024,
    maxConcurrent: 4, caFile: null, certFile: null, keyFile: null, verifyPeer: true, verifyHostname: true, insecureHttp: true, insecureTls: false, healthUrl: null, ...over,
  };
}

const opts = (o: Partial<ParseOptions> = {}): ParseOptions => ({ jsonPrefix: '', users: USERS, ...o });
const rec = (o: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ username: 'alice', uid: 1001, passwordHash: '$2b$10$abcdefghijklmnopqrstuv', sshPublicKeys: [ALICE_KEY], gecos: 'Alice', ...o });
const parse = (o: Record<string, unknown>, p: Partial<ParseOptions> = {}) => parseUserReply(JSON.stringify(rec(o)), opts(p));
const isKind = (kind: string, re?: RegExp) => (e: unknown) =>
  e instanceof UpstreamError && e.kind === kind && (!re || re.test(e.message));

describe('parseUserReply', () => {
  test('top-level object is accepted and normalised', () => {
    const u = parse({ gecos: null, sshPublicKeys: null, passwordHash: null });
    assert.deepEqual(u, { username: 'alice', upstreamUid: 1001, passwordHash: null, sshPublicKeys: [], gecos: '' });
  });
  test('prefix response.result as a one-element list (CentralEGA v1) and as an object', () => {
    const asList = { header: { code: '200' }, response: { numTotalResults: 1, result: [rec()] } };
    const asObject = { response: { result: rec() } };
    for (const doc of [asList, asObject]) {
      const u = parseUserReply(Buffer.from(JSON.stringify(doc)), opts({ jsonPrefix: 'response.result' }));
      assert.deepEqual([u.username, u.sshPublicKeys], ['alice', [ALICE_KEY]]);
    }
  });
  test('missing prefix, empty or multi-element list are invalid', () => {
    assert.throws(() => parseUserReply(JSON.stringify({ response: {} }), opts({ jsonPrefix: 'response.result' })), isKind('invalid', /response\.result/));
    assert.throws(() => parseUserReply(JSON.stringify({ r: [] }), opts({ jsonPrefix: 'r' })), isKind('invalid', /exactly one/));
    assert.throws(() => parseUserReply(JSON.stringify({ r: [rec(), rec()] }), opts({ jsonPrefix: 'r' })), isKind('invalid', /list of 2/));
    assert.throws(() => parseUserReply('[1]', opts()), isKind('invalid'));
    assert.throws(() => parseUserReply('"alice"', opts()), isKind('invalid'));
  });
  test('bad JSON and bad UTF-8 are json errors that do not quote the body', () => {
    assert.throws(() => parseUserReply('{"passwordHash":"$6$secretsalt$', opts()), (e: unknown) =>
      isKind('json')(e) && !(e as Error).message.includes('secretsalt'));
    assert.throws(() => parseUserReply(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), opts()), isKind('json'));
    assert.throws(() => parseUserReply('', opts()), isKind('json'));
  });
  test('name rule and forbidden characters', () => {
    for (const name of ['Alice', '1alice', '', 'a'.repeat(33), 'al:ice', 'al/ice', 'al\nice', 'al\0ice', '../x']) {
      assert.throws(() => parse({ username: name }), isKind('invalid'), JSON.stringify(name));
    }
    assert.throws(() => parse({ username: 42 }), isKind('invalid', /expected a string/));
    assert.throws(() => parse({ username: undefined }), isKind('invalid', /missing/));
    // forbidden characters are refused even when a (misconfigured) name rule would allow them
    assert.throws(() => parse({ username: 'a:b' }, { users: { ...USERS, nameRegex: /.*/ } }), isKind('invalid', /':'/));
  });
  test('gecos: forbidden characters, wrong type, length', () => {
    for (const g of ['a:b', 'a/b', 'a\nb', 'a\0b', 'a\rb']) assert.throws(() => parse({ gecos: g }), isKind('invalid'), JSON.stringify(g));
    assert.throws(() => parse({ gecos: 5 }), isKind('invalid'));
    assert.throws(() => parse({ gecos: 'x'.repeat(2000) }), isKind('invalid'));
    assert.equal(parse({ gecos: 'Alice Liddell, Room 1' }).gecos, 'Alice Liddell, Room 1');
  });
  test('uid: type, sign, range after the shift, never 0', () => {
    for (const uid of ['1001', 1001.5, -1, null, undefined, true, 2 ** 60]) {
      assert.throws(() => parse({ uid }), isKind('invalid'), String(uid));
    }
    assert.throws(() => parse({ uid: 0 }), isKind('invalid', /below min_uid/));
    assert.throws(() => parse({ uid: 50001 }), isKind('invalid', /above max_uid/));
    const zero = { ...USERS, uidShift: 0, minUid: 0 };
    assert.throws(() => parse({ uid: 0 }, { users: zero }), isKind('invalid', /root/));
    assert.deepEqual([parse({ uid: 1 }).upstreamUid, parse({ uid: 50000 }).upstreamUid], [1, 50000]);
  });
  test('reply must match what was asked', () => {
    assert.throws(() => parse({}, { askedName: 'bob' }), isKind('invalid', /asked for "bob"/));
    assert.throws(() => parse({}, { askedUpstreamUid: 1002 }), isKind('invalid', /asked for uid 1002/));
    assert.equal(parse({}, { askedName: 'alice', askedUpstreamUid: 1001 }).username, 'alice');
  });
  test('passwordHash: string without whitespace/colon/NUL, or null; never echoed', () => {
    for (const h of ['$6$a b$c', '$6$a:b$c', '$6$a\0b', '$6$a\tb', '$6$é', 12, ['x']]) {
      assert.throws(() => parse({ passwordHash: h }), (e: unknown) =>
        isKind('invalid', /passwordHash/)(e) && (typeof h !== 'string' || !(e as Error).message.includes(h)), JSON.stringify(h));
    }
    assert.deepEqual([parse({ passwordHash: '' }).passwordHash, parse({ passwordHash: undefined }).passwordHash], [null, null]);
    assert.equal(parse({ passwordHash: 'PpYe7Ktr8duj6' }).passwordHash, 'PpYe7Ktr8duj6');
  });
  test('SSH keys: bad ones are dropped (with a reason), good ones kept and normalised', () => {
    const ed25519Blob = ALICE_KEY.split(' ')[1]!;
    const bad = [
      `${ALICE_KEY}\nssh-ed25519 ${ed25519Blob} injected`, // a second authorized_keys line
      `command="/bin/sh" ${ALICE_KEY}`, // options prefix
      `ssh-foo ${ed25519Blob}`, // unknown type
      `ssh-ed25519 not*base64`,
      `ssh-ed25519 ${ed25519Blob.slice(0, -1)}`, // broken padding
      `ssh-rsa ${ed25519Blob} liar`, // blob says ed25519
      'ssh-ed25519',
      42,
    ];
    const { user, dropped } = parseUserReplyDetailed(JSON.stringify(rec({ sshPublicKeys: [...bad, `  ${HEIDI_KEY}  `, ALICE_KEY.replace(/ /g, '\t')] })), opts());
    assert.deepEqual(user.sshPublicKeys, [HEIDI_KEY, ALICE_KEY]);
    assert.deepEqual(dropped.map((d) => d.index), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.match(dropped[5]!.reason, /names type "ssh-ed25519"/);
    assert.throws(() => parse({ sshPublicKeys: ALICE_KEY }), isKind('invalid', /sshPublicKeys/));
    assert.throws(() => parse({ sshPublicKeys: { a: 1 } }), isKind('invalid'));
  });
  test('legacy single-string sshPublicKey is accepted when the list is absent', () => {
    const u = parse({ sshPublicKeys: undefined, sshPublicKey: `${ALICE_KEY}\n${HEIDI_KEY}\n` });
    assert.deepEqual(u.sshPublicKeys, [ALICE_KEY, HEIDI_KEY]);
  });
  test('dropped keys are logged without failing the user', () => {
    logLines.length = 0;
    assert.equal(parse({ sshPublicKeys: ['ssh-foo AAAA', ALICE_KEY] }).sshPublicKeys.length, 1);
    assert.ok(logLines.some((l) => JSON.parse(l).event === 'upstream.key_dropped'));
  });
});

test('Semaphore: FIFO hand-over, abandoned waiters lose their place', async () => {
  const sem = new Semaphore(1);
  const order: string[] = [];
  const r1 = await sem.acquire();
  const ac = new AbortController();
  const waits = ['a', 'b', 'c'].map((n) => sem.acquire(n === 'b' ? ac.signal : undefined)
    .then((rel) => { order.push(n); rel(); }, () => order.push(`${n}:gave-up`)));
  ac.abort(new Error('deadline'));
  r1();
  await Promise.all(waits);
  assert.deepEqual(order, ['b:gave-up', 'a', 'c']);
  assert.equal(sem.active, 0);
});

test('expandUrl: placeholder or append, value must be pre-encoded', () => {
  assert.equal(expandUrl('http://h/users/%s?idType=username', '%s', encodeURIComponent('a b/c')).href, 'http://h/users/a%20b%2Fc?idType=username');
  assert.equal(expandUrl('http://h/user-id/', '%u', '7').href, 'http://h/user-id/7');
});

describe('RestUserSource against the example service', () => {
  let svc: UserService;
  const clients: RestUserSource[] = [];
  const client = (over: Partial<UpstreamConfig> = {}, users: UsersConfig = USERS) => {
    const c = new RestUserSource(cfg(svc.url, over), users);
    clients.push(c);
    return c;
  };
  before(async () => { svc = await startUserService({ users: demoUsers, basicAuth: AUTH }); });
  afterEach(async () => {
    svc.setFault(null);
    svc.setDelay(0);
    await Promise.all(clients.splice(0).map((c) => c.close()));
  });
  after(() => svc.close());

  test('found by name, with keys and hash', async () => {
    const r = await client().fetchByName('alice');
    assert.ok(r.kind === 'found');
    assert.equal(r.user.upstreamUid, 1001);
    assert.equal(r.user.passwordHash, alice.passwordHash);
    assert.deepEqual(r.user.sshPublicKeys, alice.sshPublicKeys);
  });
  test('found by upstream uid (the caller subtracts the shift)', async () => {
    const r = await client().fetchByUid(1002);
    assert.ok(r.kind === 'found' && r.user.username === 'bob');
  });
  test('404 is notfound; names and uids that can never be valid skip the request', async () => {
    const c = client();
    assert.deepEqual(await c.fetchByName('nobody'), { kind: 'notfound' });
    assert.deepEqual(await c.fetchByUid(4242), { kind: 'notfound' });
    svc.resetStats();
    assert.deepEqual(await c.fetchByName('../etc'), { kind: 'notfound' });
    assert.deepEqual(await c.fetchByName('Root'), { kind: 'notfound' });
    assert.deepEqual(await c.fetchByUid(-10000), { kind: 'notfound' });
    assert.deepEqual(await c.fetchByUid(90000), { kind: 'notfound' });
    assert.equal(svc.stats().requests, 0);
    assert.equal(c.lastError(), null);
  });
  test('URL templates with %s / %u (LocalEGA style)', async () => {
    const c = client({ byNameUrl: `${svc.url}/users/%s?idType=username`, byUidUrl: `${svc.url}/users/%u?idType=uid` });
    assert.equal((await c.fetchByName('carol')).kind, 'found');
    assert.equal((await c.fetchByUid(1003)).kind, 'found');
  });
  // 401/403 is kind 'auth' since issue 18 (status tells credentials refused from a failing service).
  test('wrong credentials → auth error; lastError and logs carry no secret', async () => {
    logLines.length = 0;
    const c = client({ basicAuth: { user: 'lega', password: 'Wrong-PW-123' } });
    setLogLevel('debug'); // the client's own line is debug: the directory logs each fetch once (resolver.fetch)
    try {
      await assert.rejects(c.fetchByName('alice'), isKind('auth', /401.*credentials/));
    } finally { setLogLevel('info'); }
    const le = c.lastError();
    assert.ok(le && le.at > 0 && le.message.includes('alice'));
    for (const s of ['Wrong-PW-123', Buffer.from('lega:Wrong-PW-123').toString('base64')]) {
      assert.ok(!le.message.includes(s));
      assert.ok(!logLines.some((l) => l.includes(s)));
    }
    const line = logLines.map((l) => JSON.parse(l)).find((l) => l.event === 'upstream.request');
    assert.deepEqual([line.kind, line.key, line.status, typeof line.ms], ['name', 'alice', 401, 'number']);
  });
  test('success logs one upstream.request line (debug) without the hash', async () => {
    logLines.length = 0;
    setLogLevel('debug'); // at info the resolver's resolver.fetch line is the one per fetch
    try { await client().fetchByName('alice'); } finally { setLogLevel('info'); }
    const lines = logLines.filter((l) => JSON.parse(l).event === 'upstream.request');
    assert.equal(lines.length, 1);
    assert.ok(!lines[0]!.includes(alice.passwordHash as string));
    assert.ok(!lines[0]!.includes(AUTH.password));
    assert.equal(JSON.parse(lines[0]!).outcome, 'found');
  });

  const faults: Array<[Parameters<UserService['setFault']>[0], string, RegExp?]> = [
    ['5xx', 'http', /503/], ['garbage', 'json'], ['huge', 'too_large'], ['wrongtype', 'invalid', /uid/],
    ['wrongname', 'invalid', /asked for "alice"/], ['close', 'connect'],
  ];
  for (const [fault, kind, re] of faults) {
    test(`fault ${fault} → ${kind}`, async () => {
      svc.setFault(fault);
      const c = client();
      await assert.rejects(c.fetchByName('alice'), isKind(kind, re));
      assert.equal(c.lastError()?.message.includes(AUTH.password), false);
    });
  }
  test('fault hang → timeout within requestTimeoutMs', async () => {
    svc.setFault('hang');
    const t0 = Date.now();
    await assert.rejects(client({ requestTimeoutMs: 300 }).fetchByName('alice'), isKind('timeout'));
    const ms = Date.now() - t0;
    assert.ok(ms >= 280 && ms < 1000, `took ${ms} ms`);
  });
  test('delay beyond the deadline → timeout; after faults the client recovers', async () => {
    svc.setDelay(400);
    const c = client({ requestTimeoutMs: 200 });
    await assert.rejects(c.fetchByUid(1001), isKind('timeout'));
    svc.setDelay(0);
    assert.equal((await c.fetchByUid(1001)).kind, 'found');
  });
  test('connection refused → connect', async () => {
    const dead = await startUserService({ users: [] });
    await dead.close();
    const c = new RestUserSource(cfg(dead.url), USERS);
    clients.push(c);
    await assert.rejects(c.fetchByName('alice'), isKind('connect', /refused/));
    assert.match(c.lastError()!.message, /refused/);
  });
  test('keep-alive: 20 sequential requests reuse connections', async () => {
    const c = client();
    svc.resetStats();
    for (let i = 0; i < 20; i++) assert.equal((await c.fetchByName(i % 2 ? 'alice' : 'nobody')).kind, i % 2 ? 'found' : 'notfound');
    assert.equal(svc.stats().requests, 20);
    // undici 7 marks a socket idle a tick after the body ends, so a request issued at once takes
    // the pool's next socket: back-to-back requests alternate over two kept-alive sockets.
    assert.ok(svc.stats().connections <= 2, `${svc.stats().connections} connections`);
  });
  test('maxConcurrent caps requests in flight; waiters are served in order', async () => {
    const c = client({ maxConcurrent: 2, requestTimeoutMs: 5000 });
    svc.setDelay(100);
    svc.resetStats();
    const names = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'];
    const results = await Promise.all(names.map((n) => c.fetchByName(n)));
    assert.ok(results.every((r) => r.kind === 'found'));
    assert.deepEqual([svc.stats().maxInFlight, svc.stats().requests], [2, 6]);
  });
  test('time spent queued counts toward the deadline', async () => {
    const c = client({ maxConcurrent: 1, requestTimeoutMs: 300 });
    svc.setFault('hang');
    const first = assert.rejects(c.fetchByName('alice'), isKind('timeout'));
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    // queued behind the hung one until ~300 ms, then hangs itself: its own deadline (started
    // when it was asked, ~300 ms after t0) must fire, not a fresh one from when it got the slot
    await assert.rejects(c.fetchByName('bob'), isKind('timeout'));
    const ms = Date.now() - t0;
    assert.ok(ms >= 250 && ms < 450, `took ${ms} ms`);
    await first;
  });
  test('closed client rejects', async () => {
    const c = client();
    await c.close();
    await assert.rejects(c.fetchByName('alice'), isKind('connect', /closed/));
  });
});

describe('RestUserSource against a scripted server', () => {
  let server: http.Server;
  let url = '';
  const seen: Array<{ path: string; auth?: string }> = [];
  let reply: (res: http.ServerResponse) => void = (res) => res.writeHead(404).end();
  before(async () => {
    server = http.createServer((req, res) => { seen.push({ path: req.url ?? '', auth: req.headers.authorization }); reply(res); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));

  test('bearer token is sent as Authorization: Bearer', async () => {
    const c = new RestUserSource(cfg(url, { basicAuth: null, bearerToken: 'tok-123' }), USERS);
    assert.deepEqual(await c.fetchByName('alice'), { kind: 'notfound' });
    assert.equal(seen.at(-1)!.auth, 'Bearer tok-123');
    await c.close();
  });
  test('redirects are not followed (credentials stay on the configured endpoint)', async () => {
    reply = (res) => res.writeHead(302, { location: `${url}/elsewhere/alice` }).end();
    const c = new RestUserSource(cfg(url), USERS);
    seen.length = 0;
    await assert.rejects(c.fetchByName('alice'), isKind('http', /302.*not followed/));
    assert.deepEqual(seen.map((s) => s.path), ['/username/alice']);
    await c.close();
  });
  test('Content-Length above maxBodyBytes is refused before reading', async () => {
    reply = (res) => { res.writeHead(200, { 'content-length': 1_000_000 }); res.write('{'); };
    const c = new RestUserSource(cfg(url, { maxBodyBytes: 1000 }), USERS);
    await assert.rejects(c.fetchByName('alice'), isKind('too_large', /declares 1000000/));
    await c.close();
  });
  test('bad endpoint URLs are config errors', () => {
    assert.throws(() => new RestUserSource(cfg(url, { byNameUrl: 'ftp://h/' }), USERS), /scheme ftp/);
    assert.throws(() => new RestUserSource(cfg(url, { byUidUrl: 'http://u:p@h/' }), USERS), /credentials in the URL/);
  });
});

describe('RestUserSource over https', () => {
  const haveOpenssl = spawnSync('openssl', ['version']).status === 0;
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-tls-'));
  const f = (n: string) => join(dir, n);
  const ossl = (...args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  const issue = (name: string, san: string, extra = '') => {
    ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`,
      '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(f(`${name}.ext`), `subjectAltName=${san}\n${extra}`);
    ossl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  };
  const services: UserService[] = [];
  const serve = async (name: string, requireClientCert = false) => {
    const tls = { cert: readFileSync(f(`${name}.crt`)), key: readFileSync(f(`${name}.key`)), ca: readFileSync(f('ca.crt')), requireClientCert };
    services.push(await startUserService({ users: demoUsers, basicAuth: AUTH, tls }));
    return services.at(-1)!;
  };
  const tryFetch = async (s: UserService, over: Partial<UpstreamConfig>) => {
    const c = new RestUserSource(cfg(s.url, over), USERS);
    try { return await c.fetchByName('alice'); } finally { await c.close(); }
  };

  before(() => {
    if (!haveOpenssl) return;
    ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key',
      '-out', 'ca.crt', '-days', '2', '-subj', '/CN=latchkey test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    issue('ip', 'IP:127.0.0.1');
    issue('localhost', 'DNS:localhost');
    issue('client', 'DNS:latchkey-client', 'extendedKeyUsage=clientAuth\n');
  });
  after(async () => { await Promise.all(services.map((s) => s.close())); rmSync(dir, { recursive: true, force: true }); });
  const t = (name: string, fn: () => Promise<void>) =>
    test(name, { skip: haveOpenssl ? false : 'openssl not installed: https tests skipped' }, fn);

  t('verification is on by default: unknown CA → connect error naming cacertfile', async () => {
    const s = await serve('ip');
    await assert.rejects(tryFetch(s, {}), isKind('connect', /TLS verification failed.*cacertfile/));
  });
  t('caFile makes it work; verifyPeer=false also does', async () => {
    const s = await serve('ip');
    assert.equal((await tryFetch(s, { caFile: f('ca.crt') })).kind, 'found');
    assert.equal((await tryFetch(s, { verifyPeer: false })).kind, 'found');
  });
  t('host name is checked; verifyHostname=false skips only that', async () => {
    const s = await serve('localhost');
    await assert.rejects(tryFetch(s, { caFile: f('ca.crt') }), isKind('connect', /TLS|ALTNAME|altnames/i));
    assert.equal((await tryFetch(s, { caFile: f('ca.crt'), verifyHostname: false })).kind, 'found');
    await assert.rejects(tryFetch(s, { verifyHostname: false }), isKind('connect', /TLS/)); // chain still checked
  });
  t('client certificate is presented when configured', async () => {
    const s = await serve('ip', true);
    await assert.rejects(tryFetch(s, { caFile: f('ca.crt') }), isKind('connect'));
    assert.equal((await tryFetch(s, { caFile: f('ca.crt'), certFile: f('client.crt'), keyFile: f('client.key') })).kind, 'found');
  });
});
