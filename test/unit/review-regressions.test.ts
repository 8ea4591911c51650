// Regression tests for defects found in the security review of src/ (one test per defect).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request, startDaemon, writeConfig } from '../lib/harness.js';
import { createServer, createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serveConnection } from '../../src/server/connection.js';
import { ok } from '../../src/server/dispatch.js';
import { encodeRequest } from '../../src/protocol/codec.js';
import { SwappableSource } from '../../src/daemon/swappable-source.js';
import type { FetchResult, UserSource } from '../../src/upstream/types.js';
import { SessionRegistry } from '../../src/sessions/registry.js';
import { SessionStore } from '../../src/sessions/store.js';
import type { ProcessOps } from '../../src/sessions/proc.js';
import { parseEndpoint, ValueProblem } from '../../src/config/values.js';
import { RestUserSource } from '../../src/upstream/client.js';
import { UpstreamError } from '../../src/errors.js';
import { defaultConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { setLogSink } from '../../src/log.js';

const logLines: string[] = [];
setLogSink((l) => logLines.push(l));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('connection: a peer that never reads its replies stops being served (no unbounded write buffer)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-review-'));
  const path = join(dir, 's.sock');
  let handled = 0;
  let serverSock: Socket | null = null;
  const big = 'x'.repeat(60_000);
  const srv = createServer((sock) => {
    serverSock = sock;
    serveConnection(sock, { socket: 'nss', uid: 0, pid: 0 }, {
      idleTimeoutMs: 10_000,
      handlers: () => ({ PING: () => { handled++; return ok({ daemon_version: big }); } }),
    });
  });
  await new Promise<void>((r) => srv.listen(path, r));
  const c = createConnection(path);
  try {
    await new Promise<void>((r) => c.once('connect', () => r()));
    c.pause(); // never read a reply
    const req = encodeRequest('PING', {});
    // 60 requests at a time (under the 64-frame queue cap), then let the server work.
    for (let round = 0; round < 40; round++) {
      c.write(Buffer.concat(Array.from({ length: 60 }, () => req)));
      await sleep(10);
    }
    await sleep(300);
    // 2400 replies of 60 kB would be 144 MB buffered in the daemon; with backpressure the server
    // stops after the socket buffers fill.
    assert.ok(handled < 400, `server answered ${handled} requests into a peer that reads nothing`);
    assert.ok(serverSock!.writableLength < 8 * 1024 * 1024, `server buffers ${serverSock!.writableLength} bytes`);
  } finally {
    c.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  }
});

class FakeSource implements UserSource {
  closed = false;
  pending: ((r: FetchResult) => void)[] = [];
  fetchByName(): Promise<FetchResult> {
    if (this.closed) return Promise.reject(new UpstreamError('connect', 'upstream client closed'));
    return new Promise((resolve, reject) => {
      this.pending.push(resolve);
      // a real client aborts its in-flight requests on close
      const t = setInterval(() => { if (this.closed) { clearInterval(t); reject(new UpstreamError('connect', 'upstream client closed')); } }, 5);
      this.pending.push(() => clearInterval(t));
    });
  }
  fetchByUid(): Promise<FetchResult> { return this.fetchByName(); }
  lastError() { return null; }
  async close(): Promise<void> { this.closed = true; }
  finishAll(): void { for (const p of this.pending.splice(0)) p({ kind: 'notfound' }); }
}

test('SIGHUP swap: the old upstream client finishes its in-flight request before it is closed', async () => {
  const a = new FakeSource();
  const b = new FakeSource();
  const s = new SwappableSource(a);
  const inflight = s.fetchByName('x');
  s.swap(b, 200);
  await sleep(30);
  assert.equal(a.closed, false, 'the old client must not be closed while its request may still run');
  a.finishAll();
  assert.deepEqual(await inflight, { kind: 'notfound' });
  await sleep(250);
  assert.equal(a.closed, true, 'the old client is closed after the grace period');
  const c = new FakeSource();
  s.swap(c, 60_000);
  await s.close();
  assert.ok(b.closed && c.closed, 'close() closes the current client and any still retiring');
});

test('SIGHUP with an unreadable cacertfile keeps the old config instead of crashing the daemon', async () => {
  // A real latchkeyd (it drops root, so never in this process), reloaded with a config whose
  // cacertfile is missing: it logs the failure, keeps serving and stays up.
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-review-'));
  const file = writeConfig(dir, 'http://127.0.0.1:9');
  const d = await startDaemon(file, join(dir, 'run'));
  try {
    writeFileSync(file, readFileSync(file, 'utf8').replace('[upstream]\n', `[upstream]\ncacertfile = ${join(dir, 'no-such-ca.pem')}\n`));
    d.proc.kill('SIGHUP');
    const deadline = Date.now() + 5000;
    while (!d.logs.some((l) => l.includes('config.reload_failed')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(d.logs.some((l) => l.includes('config.reload_failed') && l.includes('no-such-ca.pem')), d.logs.join('\n'));
    const r = await request(join(dir, 'run', 'nss.sock'), 'PING', {});
    assert.equal(r.status, 0, 'the daemon still answers with the previous config');
    assert.equal(d.proc.exitCode, null);
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sessions: a pid whose start time was never recorded is not signalled (it may be reused)', async () => {
  const running = new Map<number, string>();
  const terminated: number[] = [];
  const procs: ProcessOps = {
    alive: (pid) => running.has(pid),
    startTime: (pid) => running.get(pid) ?? null,
    terminate: (p) => { terminated.push(p.pid); return running.delete(p.pid); },
  };
  const cfg = { pam: { maxSessionsPerUser: 0, maxSessionAgeSec: 60 } } as unknown as Config;
  let now = 1_000_000;
  const store = SessionStore.open(':memory:');
  const reg = new SessionRegistry(store, () => cfg, procs, () => now);
  // /proc could not be read at open: no start time recorded.
  assert.ok(reg.open({ user: 'alice', uid: 10001, service: 'sshd', rhost: '', tty: 'ssh', pid: 4242 }).ok);
  running.set(4242, '999'); // now some process holds that pid: maybe a stranger
  assert.equal(await reg.kill({ user: 'alice' }), 1, 'the record is ended');
  assert.deepEqual(terminated, [], 'but no signal goes to a process we cannot identify');

  // The same holds for the max-age sweep.
  assert.ok(reg.open({ user: 'bob', uid: 10002, service: 'sshd', rhost: '', tty: 'ssh', pid: 5151 }).ok);
  running.set(5151, '777');
  now += 120_000;
  reg.sweep();
  assert.deepEqual(terminated, []);
  store.close();
});

// throttle: huge user/rhost strings do not become huge map keys -> test/unit/throttle.test.ts

test('upstream endpoint: the user name may not choose the host that gets the credentials', async () => {
  for (const bad of ['https://users.example.org', 'https://%s.example.org/users', 'http://127.0.0.1:8443%s']) {
    assert.throws(() => parseEndpoint(bad, '%s'), ValueProblem, bad);
  }
  assert.throws(() => parseEndpoint('https://users.example.org', '%u'), ValueProblem);
  for (const good of ['https://users.example.org/', 'https://x.org/users/%s', 'https://x.org/u?name=%s&idType=username', 'http://127.0.0.1:8443/username']) {
    assert.doesNotThrow(() => parseEndpoint(good, '%s'), good);
  }
  // Defence in depth in the client, for a config built without the parser.
  const cfg = defaultConfig();
  const src = new RestUserSource({ ...cfg.upstream, byNameUrl: 'http://127.0.0.1', byUidUrl: 'http://127.0.0.1/uid/' }, cfg.users);
  try {
    await assert.rejects(src.fetchByName('x.invalid'), (e: unknown) => e instanceof UpstreamError && e.kind === 'invalid');
  } finally {
    await src.close();
  }
});

test('verify: an absurd cost in an upstream hash is refused, not computed for hours', async () => {
  const { verifyPassword } = await import('../../src/verify/password.js');
  const salt53 = 'abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ01234'.slice(0, 53);
  const sha512 = '$6$rounds=999999999$saltsalt$' + 'a'.repeat(86);
  for (const hash of ['$2b$31$' + salt53, sha512]) {
    const t0 = Date.now();
    const r = await Promise.race([verifyPassword('guess', hash), sleep(10_000).then(() => 'timeout' as const)]);
    assert.equal(r, false, hash.slice(0, 20));
    assert.ok(Date.now() - t0 < 10_000);
  }
  assert.ok(logLines.some((l) => l.includes('verify.cost_refused')));
  assert.ok(!logLines.some((l) => l.includes(salt53) || l.includes('saltsalt')), 'the hash is never logged');
});
