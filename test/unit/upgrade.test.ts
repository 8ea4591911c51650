// Hash upgrades on login (src/localusers/upgrade.ts) and the primary's update endpoint
// (endpoint.ts), against real https servers with a CA and certificate made by openssl:
// - remote upgrades to a primary that is down, slow (never answers) and failing (500): afterLogin
//   returns at once every time, the concurrency cap holds, nothing waits past upgrade_timeout,
//   every failure is counted and the password never reaches a log line;
// - local upgrades: the hash changes after the login, under the default context, and a password
//   changed meanwhile wins (compare-and-swap on the real store);
// - the endpoint: token, size, malformed bodies, wrong password (409, counted by the throttle),
//   throttling (429), an upgrade done, and the upgrader and the endpoint talking to each other.
import { testPki, type TestPki } from '../lib/pki.js';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import type { Config, HashContext } from '../../src/config/types.js';
import { defaultConfig } from '../../src/config/load.js';
import { LocalStore } from '../../src/localusers/store.js';
import { rowRules } from '../../src/localusers/rows.js';
import { newHash } from '../../src/localusers/contexts.js';
import { Upgrader } from '../../src/localusers/upgrade.js';
import { UpgradeEndpoint, MAX_BODY_BYTES } from '../../src/localusers/endpoint.js';
import { Throttle } from '../../src/verify/throttle.js';
import { verifyPassword } from '../../src/verify/password.js';
import { parseHash } from '../../src/verify/hash.js';
import { setLogSink } from '../../src/log.js';

const PASSWORD = 'Tr0ub4dor&3-upgrade';
const CONTEXTS: HashContext[] = [{ id: 'b4', algorithm: 'bcrypt', cost: 4 }, { id: 'y1', algorithm: 'yescrypt', cost: 1 }, { id: 'y5', algorithm: 'yescrypt', cost: 5 }];

const logs: string[] = [];
setLogSink((l) => { logs.push(l); });

let pki: TestPki;
const servers: Server[] = [];
/** Closed when the file ends, also after a failed assertion, so a failure never hangs the run. */
const cleanups: Array<() => Promise<unknown> | unknown> = [];

/** An https server on 127.0.0.1 with the test certificate; counts the connections open at once. */
async function httpsServer(handler: (req: IncomingMessage, res: import('node:http').ServerResponse) => void): Promise<{ server: Server; port: number; open: () => number; maxOpen: () => number }> {
  const server = createServer({ cert: readFileSync(pki.cert), key: readFileSync(pki.key) }, handler);
  let open = 0, maxOpen = 0;
  server.on('secureConnection', (s: Socket) => { open++; maxOpen = Math.max(maxOpen, open); s.on('close', () => open--); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { server, port: (server.address() as AddressInfo).port, open: () => open, maxOpen: () => maxOpen };
}

before(() => { pki = testPki(); });
after(async () => {
  for (const c of cleanups.splice(0)) await c();
  for (const s of servers) { s.closeAllConnections(); s.close(); }
});

/** An Upgrader that is closed when the file ends. */
function upgrader(...args: ConstructorParameters<typeof Upgrader>): Upgrader {
  const up = new Upgrader(...args);
  cleanups.push(() => up.close());
  return up;
}

function remoteConfig(port: number, over: Partial<Config['local']> = {}): Config {
  return defaultConfig({
    local: {
      contexts: CONTEXTS, defaultContext: 'y5', upgrade: 'remote', role: 'secondary', primary: 'sync@primary',
      upgradeUrl: `https://127.0.0.1:${port}/latchkey/v1/upgrade`, upgradeCaFile: pki.ca, upgradeBearerToken: 'sekrit-token',
      upgradeTimeoutMs: 400, upgradeMaxConcurrent: 2, ...over,
    },
  });
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** afterLogin must return before any hash or request: it is timed, and must return undefined. */
function login(up: Upgrader, name: string, context: string | null = 'b4', hash = '$2b$04$' + 'a'.repeat(53)): number {
  const t = process.hrtime.bigint();
  const r = up.afterLogin({ name, passwordHash: hash, context }, PASSWORD);
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  assert.equal(r, undefined);
  assert.ok(ms < 20, `afterLogin took ${ms} ms`);
  return ms;
}

function noPasswordLogged(): void {
  for (const l of logs) assert.ok(!l.includes(PASSWORD) && !l.includes('sekrit-token'), l);
}

test('remote: primary down (connection refused): afterLogin returns at once, the failure is counted and logged', async () => {
  const { server, port } = await httpsServer(() => undefined);
  await new Promise<void>((r) => server.close(() => r()));
  const up = upgrader(() => remoteConfig(port), { get: () => null, setHashIf: () => false });
  logs.length = 0;
  login(up, 'alice');
  assert.deepEqual(up.counts(), { local_ok: 0, local_failed: 0, remote_ok: 0, remote_failed: 0, remote_skipped: 0 });
  await until('the failure', () => up.counts().remote_failed === 1);
  assert.ok(logs.some((l) => l.includes('upgrade.remote_failed') && /refused|ECONNREFUSED/i.test(l)), logs.join('\n'));
  noPasswordLogged();
  await up.close();
});

test('remote: primary slow (never answers): the cap holds, extra upgrades are skipped, nothing waits past upgrade_timeout', async () => {
  const seen: string[] = [];
  const srv = await httpsServer((req) => { seen.push(req.headers.authorization ?? ''); /* never answers */ });
  const up = upgrader(() => remoteConfig(srv.port), { get: () => null, setHashIf: () => false });
  const started = Date.now();
  for (const n of ['u1', 'u2', 'u3', 'u4', 'u5']) login(up, n);
  // Two in flight (upgrade_max_concurrent), three skipped at once.
  assert.equal(up.counts().remote_skipped, 3);
  await until('both timed out', () => up.counts().remote_failed === 2, 3000);
  const took = Date.now() - started;
  assert.ok(took < 400 + 400, `the in-flight upgrades ended ${took} ms after the logins (timeout 400 ms)`);
  assert.ok(srv.maxOpen() <= 2, `the primary saw ${srv.maxOpen()} connections at once`);
  assert.equal(seen.length, 2);
  assert.ok(seen.every((a) => a === 'Bearer sekrit-token'));
  // The slots are free again: the next login's upgrade is sent, not skipped.
  login(up, 'u6');
  await until('u6 timed out', () => up.counts().remote_failed === 3, 3000);
  assert.equal(up.counts().remote_skipped, 3);
  noPasswordLogged();
  await up.close();
});

test('remote: a primary that sends headers and then dribbles the body is cut off at upgrade_timeout', async () => {
  const timers: NodeJS.Timeout[] = [];
  cleanups.push(() => { for (const t of timers) clearInterval(t); });
  const srv = await httpsServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    // One byte every 100 ms: each read is within the body timeout, the whole never ends.
    timers.push(setInterval(() => res.write(' '), 100));
  });
  const up = upgrader(() => remoteConfig(srv.port), { get: () => null, setHashIf: () => false });
  const started = Date.now();
  login(up, 'dribble');
  await until('the deadline', () => up.counts().remote_failed === 1, 3000);
  const took = Date.now() - started;
  assert.ok(took < 400 + 400, `ended ${took} ms after the login (timeout 400 ms)`);
  for (const t of timers) clearInterval(t);
  await up.close();
});

test('remote: primary failing (500) and a bad reply: counted as failures; a good reply counted ok', async () => {
  let mode: 'fail' | 'garbage' | 'ok' = 'fail';
  const bodies: unknown[] = [];
  const srv = await httpsServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      if (mode === 'fail') { res.writeHead(500); res.end('boom'); return; }
      // Well-formed but over the reply cap: refused unread, not parsed.
      if (mode === 'garbage') { res.writeHead(200); res.end(JSON.stringify({ upgraded: true, context: 'y5', pad: 'x'.repeat(100_000) })); return; }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ upgraded: true, context: 'y5' }));
    });
  });
  const up = upgrader(() => remoteConfig(srv.port), { get: () => null, setHashIf: () => false });
  logs.length = 0;
  login(up, 'carol');
  await until('the 500', () => up.counts().remote_failed === 1);
  assert.ok(logs.some((l) => l.includes('upgrade.remote_failed') && l.includes('"status":500')), logs.join('\n'));
  mode = 'garbage';
  login(up, 'carol');
  await until('the oversized reply', () => up.counts().remote_failed === 2);
  mode = 'ok';
  login(up, 'carol');
  await until('the good reply', () => up.counts().remote_ok === 1);
  assert.deepEqual(bodies[2], { user: 'carol', password: PASSWORD, context: 'y5' });
  noPasswordLogged();
  await up.close();
});

test('no upgrade when the context is the default, or upgrade = off', async () => {
  let hits = 0;
  const srv = await httpsServer((_req, res) => { hits++; res.writeHead(500); res.end(); });
  const up = upgrader(() => remoteConfig(srv.port), { get: () => null, setHashIf: () => false });
  login(up, 'dave', 'y5');
  const off = upgrader(() => remoteConfig(srv.port, { upgrade: 'off' }), { get: () => null, setHashIf: () => false });
  login(off, 'dave', 'b4');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(hits, 0);
  assert.deepEqual(up.counts(), off.counts());
  assert.equal(up.counts().remote_failed + up.counts().remote_skipped, 0);
  await up.close(); await off.close();
});

// --- local ---------------------------------------------------------------------------------

function localSetup(): { cfg: Config; store: LocalStore; up: Upgrader } {
  const cfg = defaultConfig({ local: { contexts: CONTEXTS, defaultContext: 'y5', upgrade: 'local' } });
  const store = LocalStore.open(':memory:', { rules: () => rowRules(cfg) });
  return { cfg, store, up: upgrader(() => cfg, store) };
}

async function addUser(store: LocalStore, cfg: Config, name: string, ctx: HashContext): Promise<string> {
  const hash = await newHash(PASSWORD, ctx);
  store.add({ name, uid: null, gecos: '', shell: null, passwordHash: hash, context: ctx.id, keys: [], expiresAt: null }, rowRules(cfg));
  return hash;
}

test('local: the hash is re-made under the default context after the login, which does not wait for it', async () => {
  const { cfg, store, up } = localSetup();
  const old = await addUser(store, cfg, 'erin', CONTEXTS[0]!);
  login(up, 'erin', 'b4', old);
  // Still the old hash when afterLogin has returned: the work is in the background.
  assert.equal(store.get('erin')!.passwordHash, old);
  await until('the upgrade', () => store.get('erin')!.context === 'y5');
  const now = store.get('erin')!;
  assert.equal(parseHash(now.passwordHash).setting, '$y$j9T$');
  assert.equal(await verifyPassword(PASSWORD, now.passwordHash), true);
  assert.equal(up.counts().local_ok, 1);
  // Already on the default: nothing more happens.
  login(up, 'erin', 'y5', now.passwordHash!);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(store.get('erin')!.passwordHash, now.passwordHash);
  assert.equal(up.counts().local_ok, 1);
  await up.close();
});

test('local: a password changed during the upgrade wins (compare-and-swap)', async () => {
  const { cfg, store, up } = localSetup();
  const old = await addUser(store, cfg, 'frank', CONTEXTS[0]!);
  login(up, 'frank', 'b4', old);
  // The admin sets a new password before the background hash is stored.
  const changed = await newHash('a-new-password', CONTEXTS[1]!);
  store.setPassword('frank', changed, 'y1');
  await until('the upgrade to finish', () => logs.some((l) => l.includes('upgrade.local_superseded') && l.includes('frank')));
  assert.equal(store.get('frank')!.passwordHash, changed);
  assert.equal(store.get('frank')!.context, 'y1');
  assert.equal(up.counts().local_ok, 0);
  assert.equal(up.counts().local_failed, 0);
  await up.close();
});

test('local: upgrades run one at a time from a short queue; extras are dropped for the next login', async () => {
  const { cfg, store, up } = localSetup();
  const names = Array.from({ length: 10 }, (_, i) => `q${i}`);
  const hashes = new Map<string, string>();
  for (const n of names) hashes.set(n, await addUser(store, cfg, n, CONTEXTS[0]!));
  for (const n of names) login(up, n, 'b4', hashes.get(n)!);
  await until('the queue drained', () => up.counts().local_ok === 4, 10_000);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(up.counts().local_ok, 4, 'four queued, the rest dropped');
  assert.deepEqual(names.filter((n) => store.get(n)!.context === 'y5'), names.slice(0, 4));
  // A dropped user is upgraded at the next login.
  login(up, 'q9', 'b4', hashes.get('q9')!);
  await until('q9', () => store.get('q9')!.context === 'y5');
  await up.close();
});

// --- the endpoint --------------------------------------------------------------------------

function primaryConfig(): Config {
  return defaultConfig({
    pam: { ...defaultConfig().pam, maxFailures: 3, hostMaxFailures: 100 },
    local: {
      contexts: CONTEXTS, defaultContext: 'y5', upgrade: 'local', role: 'primary',
      upgradeListen: '127.0.0.1:0', upgradeListenCert: pki.cert, upgradeListenKey: pki.key, upgradeListenToken: 'listen-token',
    },
  });
}

async function endpointSetup(userIntervalMs = 0) {
  const cfg = primaryConfig();
  const store = LocalStore.open(':memory:', { rules: () => rowRules(cfg) });
  const throttle = new Throttle(() => cfg.pam);
  const ep = new UpgradeEndpoint(() => cfg, store, throttle, userIntervalMs);
  await ep.start();
  const port = ep.address()!.port;
  const agent = new Agent({ connect: { ca: readFileSync(pki.ca) } });
  cleanups.push(async () => { await agent.destroy(); await ep.close(); });
  const post = async (body: unknown, opts: { token?: string | null; path?: string; method?: 'POST' | 'GET'; raw?: string } = {}) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (opts.token !== null) headers.authorization = `Bearer ${opts.token ?? 'listen-token'}`;
    const res = await request(`https://127.0.0.1:${port}${opts.path ?? '/latchkey/v1/upgrade'}`, {
      dispatcher: agent, method: opts.method ?? 'POST', headers,
      ...(opts.method === 'GET' ? {} : { body: opts.raw ?? JSON.stringify(body) }),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? JSON.parse(text) as Record<string, unknown> : null };
  };
  return { cfg, store, throttle, ep, port, post, agent, close: async () => { await agent.close(); await ep.close(); } };
}

test('endpoint: token, method, path, size and body shape are checked before anything else', async () => {
  const e = await endpointSetup();
  await addUser(e.store, e.cfg, 'gina', CONTEXTS[0]!);
  const good = { user: 'gina', password: PASSWORD, context: 'y5' };
  logs.length = 0;
  assert.equal((await e.post(good, { token: null })).status, 401);
  assert.equal((await e.post(good, { token: 'listen-tokeN' })).status, 401);
  assert.equal((await e.post(good, { token: 'listen-token-longer' })).status, 401);
  assert.ok(logs.some((l) => l.includes('upgrade_endpoint.unauthorized') && l.includes('127.0.0.1')), logs.join('\n'));
  assert.equal(logs.filter((l) => l.includes('upgrade_endpoint.unauthorized')).length, 1, 'rate-limited per peer');
  assert.equal((await e.post(good, { path: '/other' })).status, 404);
  assert.equal((await e.post(good, { method: 'GET' })).status, 405);
  assert.equal((await e.post(null, { raw: JSON.stringify({ ...good, pad: 'x'.repeat(MAX_BODY_BYTES) }) })).status, 413);
  assert.equal((await e.post(null, { raw: '{"user": "gina", "password": "' + 'x'.repeat(MAX_BODY_BYTES) + '"}' })).status, 413);
  // Chunked, no length declared: cut off while it streams.
  const chunked = await request(`https://127.0.0.1:${e.port}/latchkey/v1/upgrade`, {
    dispatcher: e.agent, method: 'POST', headers: { authorization: 'Bearer listen-token' },
    body: Readable.from((function* () { for (let i = 0; i < 8; i++) yield Buffer.alloc(1024, 0x20); })()),
  });
  assert.equal(chunked.statusCode, 413);
  await chunked.body.dump();
  assert.equal((await e.post(null, { raw: 'not json' })).status, 400);
  assert.equal((await e.post({ ...good, extra: 1 })).status, 400);
  assert.equal((await e.post({ user: 'gina' })).status, 400);
  assert.equal((await e.post({ ...good, user: 'nobody' })).status, 404);
  // None of those changed the hash.
  assert.equal(e.store.get('gina')!.context, 'b4');
  noPasswordLogged();
  await e.close();
});

test('endpoint: a wrong password is 409 and counts in the throttle; past the budget 429', async () => {
  const e = await endpointSetup();
  await addUser(e.store, e.cfg, 'hank', CONTEXTS[0]!);
  const wrong = await e.post({ user: 'hank', password: 'wrong', context: 'y5' });
  assert.equal(wrong.status, 409);
  assert.deepEqual(wrong.body, { error: 'rejected' });
  assert.equal(e.throttle.list(10).entries.find((x) => x.scope === 'user')?.failures, 1);
  assert.equal((await e.post({ user: 'hank', password: 'wrong2' })).status, 409);
  assert.equal((await e.post({ user: 'hank', password: 'wrong3' })).status, 409);
  // max_failures = 3: locked, the right password too.
  const locked = await e.post({ user: 'hank', password: PASSWORD });
  assert.equal(locked.status, 429);
  assert.equal(e.store.get('hank')!.context, 'b4');
  await e.close();
});

test('endpoint: the right password re-hashes under the asked context, else the default; then the upgrader end to end', async () => {
  const e = await endpointSetup();
  await addUser(e.store, e.cfg, 'ivy', CONTEXTS[0]!);
  // A context listed after the default (newer): a secondary may move ahead of its primary.
  e.cfg.local.contexts = [...CONTEXTS, { id: 'b5', algorithm: 'bcrypt', cost: 5 }];
  const r = await e.post({ user: 'ivy', password: PASSWORD, context: 'b5' });
  assert.deepEqual({ status: r.status, body: r.body }, { status: 200, body: { upgraded: true, context: 'b5' } });
  assert.equal(e.store.get('ivy')!.context, 'b5');
  assert.equal(await verifyPassword(PASSWORD, e.store.get('ivy')!.passwordHash), true);
  // An older context than the default (a weaker hash) or an unknown one: the primary's default.
  for (const asked of ['b4', 'zz']) {
    await addUser(e.store, e.cfg, `ivy-${asked}`, CONTEXTS[1]!);
    const d = await e.post({ user: `ivy-${asked}`, password: PASSWORD, context: asked });
    assert.deepEqual(d.body, { upgraded: true, context: 'y5' });
    assert.equal(parseHash(e.store.get(`ivy-${asked}`)!.passwordHash).setting, '$y$j9T$');
  }
  // Already there: nothing to do, and nothing checked (the answer does not depend on the password).
  assert.deepEqual((await e.post({ user: 'ivy-zz', password: 'not the password' })).body, { upgraded: false, context: 'y5' });

  // A secondary's upgrader against this endpoint.
  await addUser(e.store, e.cfg, 'jack', CONTEXTS[0]!);
  const up = upgrader(() => remoteConfig(e.port, { upgradeBearerToken: 'listen-token' }), { get: () => null, setHashIf: () => false });
  login(up, 'jack', 'b4', e.store.get('jack')!.passwordHash!);
  await until('the remote upgrade', () => up.counts().remote_ok === 1);
  assert.equal(e.store.get('jack')!.context, 'y5');
  await up.close();
  await e.close();
});

test('endpoint: one check per user per interval, a few requests per peer, disabled users unchecked; logins keep their hash slots', async () => {
  const e = await endpointSetup(60_000);
  await addUser(e.store, e.cfg, 'kim', CONTEXTS[0]!);
  await addUser(e.store, e.cfg, 'lou', CONTEXTS[0]!);
  assert.equal((await e.post({ user: 'kim', password: 'wrong' })).status, 409);
  // A compromised secondary repeating a password (right or wrong) gets one check a minute.
  const again = await e.post({ user: 'kim', password: PASSWORD });
  assert.equal(again.status, 429);
  assert.equal(e.store.get('kim')!.context, 'b4');
  e.store.setDisabled('lou', true);
  assert.equal((await e.post({ user: 'lou', password: PASSWORD })).status, 403);
  await e.close();
});

test('endpoint: one address holds at most PEER_CONNECTIONS connections, counted before TLS; closing them frees the room', async () => {
  const e = await endpointSetup();
  const { connect } = await import('node:net');
  const { PEER_CONNECTIONS } = await import('../../src/localusers/endpoint.js');
  const open = async (): Promise<{ closed: Promise<boolean>; s: import('node:net').Socket }> => {
    const s = connect(e.port, '127.0.0.1');
    await new Promise<void>((r) => s.once('connect', () => r()));
    const closed = new Promise<boolean>((r) => { s.once('close', () => r(true)); setTimeout(() => r(false), 500); });
    return { closed, s };
  };
  const held = [];
  for (let i = 0; i < PEER_CONNECTIONS; i++) held.push(await open());
  const extra = await open();
  assert.equal(await extra.closed, true, 'the connection over the limit is closed at once');
  for (const h of held) assert.equal(h.s.destroyed, false);
  for (const h of held) h.s.destroy();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await e.post({ user: 'nobody', password: 'x' })).status, 404, 'room again once they closed');
  await e.close();
});

