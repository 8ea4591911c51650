// latchkey.node itself: peer credentials from the kernel, crypt_rn against known vectors, and
// proof that crypt runs on the threadpool rather than the event loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAddon, addonPath, peerCred, crypt } from '../../src/native/addon.js';

function fdOf(sock: Socket): number {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  assert.equal(typeof fd, 'number');
  return fd as number;
}

test('the addon loads and exports exactly its four functions and the map writer (homes are latchkey-rootd\'s)', () => {
  const a = loadAddon();
  assert.match(addonPath(), /native\/addon\/build\/Release\/latchkey\.node$/);
  assert.equal(typeof a.peerCred, 'function');
  assert.equal(typeof a.crypt, 'function');
  assert.equal(typeof a.checkDir, 'function');
  // The daemon runs without root: it has no way to create a home but asking rootd.
  assert.equal(typeof a.MapWriter, 'function');
  // sd_notify(3) for Type=notify: Node has no AF_UNIX datagram socket.
  assert.equal(typeof a.sdNotify, 'function');
  assert.deepEqual(Object.keys(a).sort(), ['MapWriter', 'checkDir', 'crypt', 'peerCred', 'sdNotify']);
});

test('peerCred on an accepted Unix socket returns our pid, uid and gid', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-peer-'));
  const path = join(dir, 's.sock');
  const accepted = new Promise<Socket>((resolve) => {
    const srv = createServer((s) => { srv.close(); resolve(s); });
    srv.listen(path);
  });
  await new Promise((r) => setTimeout(r, 10));
  const client = connect(path);
  const server = await accepted;
  try {
    const c = peerCred(fdOf(server));
    assert.deepEqual(c, { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    // The client's end sees the server: same process here.
    assert.equal(peerCred(fdOf(client)).pid, process.pid);
  } finally {
    client.destroy();
    server.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('peerCred throws a JS error with the errno text on a bad fd', () => {
  assert.throws(() => peerCred(987654), /SO_PEERCRED on fd 987654: Bad file descriptor/);
  assert.throws(() => peerCred('x' as unknown as number), TypeError);
});

test('crypt computes known vectors of every crypt(3) kind', async () => {
  // Vectors from openssl passwd and perl crypt() (independent of this addon).
  const vectors: [string, string, string][] = [
    ['secret', '$1$abcdefgh$', '$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1'],
    ['secret', '$5$abcdefgh$', '$5$abcdefgh$gruCpC7VkOTspMQTTSAR8mtlO9Upms.fwqE5y16JVM.'],
    ['secret', '$y$j9T$F5Jx5fExrKuPp53xLKQ..1$', '$y$j9T$F5Jx5fExrKuPp53xLKQ..1$GmcwIgvdUC9qLWcKCi6gklUa1dM3ziD43YxYNURLKy0'],
    ['secret', 'ab', 'abNANd1rDfiNc'],
  ];
  for (const [pw, setting, want] of vectors) assert.equal(await crypt(pw, setting), want, setting);
});

test('crypt resolves null for invalid settings and embedded NULs, never throws', async () => {
  assert.equal(await crypt('secret', '$y$j9T$abcdefghijklmnopqrstuv$'), null);
  assert.equal(await crypt('secret', '$9$nope$'), null);
  assert.equal(await crypt('secret', '*0'), null);
  assert.equal(await crypt('secret', ''), null);
  assert.equal(await crypt('sec\0ret', '$5$abcdefgh$'), null);
  await assert.rejects(async () => (loadAddon().crypt as (...a: unknown[]) => Promise<unknown>)(1, 2), TypeError);
});

test('crypt runs off the event loop: timers keep firing during a batch of slow hashes', async () => {
  let ticks = 0;
  const timer = setInterval(() => { ticks++; }, 5);
  const started = Date.now();
  const jobs = [];
  for (let i = 0; i < 6; i++) {
    jobs.push(crypt(`pw${i}`, '$6$rounds=400000$saltsalt$'));
    jobs.push(crypt(`pw${i}`, '$y$jCT$F5Jx5fExrKuPp53xLKQ..1$'));
  }
  const out = await Promise.all(jobs);
  clearInterval(timer);
  const elapsed = Date.now() - started;
  for (const h of out) assert.ok(h && h.startsWith('$'), String(h));
  assert.ok(elapsed > 100, `batch too fast to prove anything (${elapsed} ms)`);
  // A blocked loop would tick ~0 times; allow a wide margin for a loaded machine.
  assert.ok(ticks >= elapsed / 5 / 4, `only ${ticks} ticks in ${elapsed} ms`);
});
