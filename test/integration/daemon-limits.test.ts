// Connection limits of the real daemon: idle connections are closed, the number of connections
// is capped, and neither affects the next well-behaved client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { startEnv, request, type TestEnv } from '../lib/harness.js';
import { Status } from '../../src/protocol/generated.js';

let env: TestEnv;
before(async () => { env = await startEnv({ daemon: { idle_timeout: '1s', max_connections: 4 } }); });
after(async () => { await env.stop(); });

function open(path: string): Promise<{ sock: Socket; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const sock = createConnection(path);
    const closed = new Promise<number>((r) => sock.once('close', () => r(Date.now() - t0)));
    sock.on('error', () => { /* a reset counts as closed */ });
    sock.once('connect', () => resolve({ sock, closed }));
    sock.once('error', reject);
  });
}

test('an idle connection is closed after idle_timeout', async () => {
  const { closed } = await open(join(env.socketDir, 'nss.sock'));
  const ms = await closed;
  assert.ok(ms >= 900 && ms < 5000, `closed after ${ms} ms`);
});

test('a connection beyond max_connections makes the oldest idle one close; the daemon keeps serving', async () => {
  const nss = join(env.socketDir, 'nss.sock');
  const held = [];
  for (let i = 0; i < 4; i++) { held.push(await open(nss)); await new Promise((r) => setTimeout(r, 5)); }
  const extra = await open(nss);
  const first = await Promise.race([held[0]!.closed, new Promise<number>((r) => setTimeout(() => r(-1), 800))]);
  assert.ok(first >= 0, 'the oldest idle connection should have been closed to make room');
  const late = await Promise.race([extra.closed, new Promise<number>((r) => setTimeout(() => r(-1), 300))]);
  assert.equal(late, -1, 'the new connection is served');
  for (const h of [...held, extra]) h.sock.destroy();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await request(nss, 'PING', {})).status, Status.OK);
});
