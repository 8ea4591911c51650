// Hash upgrades on login (issue 16) through the real stack: stored users added with the real
// latchkeyctl under one context, the default moved to a slow one (bcrypt 13), then real
// pamtester logins through pam_latchkey and latchkeyd:
// - upgrade = local: the login is answered before the re-hash (the store file, read with
//   better-sqlite3 as pamtester returns, still holds the old hash) and the hash changes shortly
//   after, under the new context, and still logs in;
// - upgrade = remote against a primary that is down, slow (never answers) and failing (500):
//   every login succeeds without waiting for it, `status` counts the failures and the skipped
//   upgrades, and the primary never sees more than upgrade_max_concurrent requests at once.
import { testPki } from '../lib/pki.js';
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { latchkeyctl, startDaemon, startEnv, writeConfig, type ConfigOverrides, type TestEnv } from '../lib/harness.js';
import { latchkeyStack, makePamDir, pamtester } from '../lib/pam.js';

const SVC = 'lk-upgrade';
const PASSWORD = 'Upgrade-me-1';
const USERS = ['up1', 'up2', 'up3', 'up4', 'up5', 'up6', 'up7'];
/** s5k is quick (the users' starting context); b13 is slow enough that a login waiting for the
 *  re-hash would show (about 0.5 s), and within the default [pam] max_bcrypt_cost. */
const CONTEXTS = 's5k=sha512crypt:5000, b13=bcrypt:13';

function ctl(env: TestEnv, args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return latchkeyctl(env.socketDir, args, input);
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('hash upgrades on login: local and remote, through pamtester and latchkeyd', () => {
  let env: TestEnv;
  let pamDir: string;
  let pki: { ca: string; cert: string; key: string };
  const servers: Server[] = [];
  const dbPath = (): string => join(env.dir, 'state', 'local.db');

  /** The stored hash and context, read from the store file itself (as root). */
  const stored = (name: string): { password_hash: string; context: string } => {
    const db = new Database(dbPath(), { readonly: true, fileMustExist: true });
    try {
      return db.prepare('SELECT password_hash, context FROM users WHERE name = ?').get(name) as { password_hash: string; context: string };
    } finally { db.close(); }
  };
  const upgrades = async (): Promise<Record<string, number>> => {
    const r = await ctl(env, ['--json', 'status']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return (JSON.parse(r.stdout) as { local: { upgrades: Record<string, number> } }).local.upgrades;
  };
  const login = (user: string, password = PASSWORD) =>
    pamtester(pamDir, env.shimEnv, SVC, user, ['authenticate'], { input: `${password}\n`, items: { rhost: '192.0.2.40' } });
  /** Restarts latchkeyd with [local] changed (the daemon reads it at start). */
  const restart = async (local: Record<string, string | number>): Promise<void> => {
    await env.daemon.stop();
    const over: ConfigOverrides = { local: { db_path: dbPath(), contexts: CONTEXTS, ...local } };
    writeConfig(env.dir, env.service.url, over);
    env.daemon = await startDaemon(env.configFile, env.socketDir);
  };

  /** An https "primary" on 127.0.0.1 with a certificate of the test CA; counts connections. */
  async function primary(handler: Parameters<typeof createServer>[1]): Promise<{ url: string; maxOpen: () => number; requests: () => number }> {
    const s = createServer({ cert: readFileSync(pki.cert), key: readFileSync(pki.key) }, (req, res) => { n++; handler!(req, res); });
    let open = 0, maxOpen = 0, n = 0;
    s.on('secureConnection', (sock: Socket) => { open++; maxOpen = Math.max(maxOpen, open); sock.on('close', () => open--); });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    servers.push(s);
    return { url: `https://127.0.0.1:${(s.address() as AddressInfo).port}/latchkey/v1/upgrade`, maxOpen: () => maxOpen, requests: () => n };
  }

  before(async () => {
    env = await startEnv({ local: { contexts: CONTEXTS, default_context: 's5k' } });
    pamDir = makePamDir(env.dir, { [SVC]: latchkeyStack() });
    for (const u of USERS) {
      const r = await ctl(env, ['local', 'add', u, '--password-stdin'], `${PASSWORD}\n`);
      assert.equal(r.code, 0, r.stdout + r.stderr);
    }
    pki = testPki();
  });
  after(async () => {
    for (const s of servers) { s.closeAllConnections(); s.close(); }
    await env?.stop();
  });

  test('the users start on the old context', () => {
    for (const u of USERS) {
      assert.equal(stored(u).context, 's5k');
      assert.match(stored(u).password_hash, /^\$6\$rounds=5000\$/);
    }
  });

  test('upgrade = local: the login does not wait for the re-hash; the hash changes shortly after and logs in', async () => {
    await restart({ default_context: 'b13', upgrade: 'local' });
    const old = stored('up1').password_hash;
    const r = await login('up1');
    // Read before anything else: the bcrypt-13 re-hash takes about half a second.
    const right = stored('up1');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(right.password_hash, old, `the hash had already changed when pamtester returned (${r.ms} ms)`);
    await until('the upgraded hash', () => stored('up1').context === 'b13');
    const now = stored('up1');
    assert.match(now.password_hash, /^\$2b\$13\$/);
    assert.deepEqual(await upgrades(), { local_ok: 1, local_failed: 0, remote_ok: 0, remote_failed: 0, remote_skipped: 0 });
    // The new hash is the same password.
    const again = await login('up1');
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.notEqual((await login('up1', 'not the password')).code, 0);
    assert.equal(stored('up1').password_hash, now.password_hash);
  });

  test('upgrade = remote, primary down: the login succeeds, the failure is counted, the hash stays', async () => {
    const s = await primary(() => undefined);
    const url = s.url;
    await new Promise<void>((r) => servers.pop()!.close(() => r()));
    await restart({ default_context: 'b13', upgrade: 'remote', upgrade_url: url, upgrade_cacertfile: pki.ca, upgrade_bearer_token: 'tok-remote', upgrade_timeout: '2s', upgrade_max_concurrent: 2 });
    const r = await login('up2');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(r.ms < 2000, `login took ${r.ms} ms`);
    await until('the failure counted', async () => (await upgrades()).remote_failed === 1);
    assert.equal(stored('up2').context, 's5k');
  });

  test('upgrade = remote, primary failing (500): logins succeed, failures counted', async () => {
    const auth: string[] = [];
    const s = await primary((req, res) => { auth.push(req.headers.authorization ?? ''); req.resume(); res.writeHead(500); res.end('no'); });
    await restart({ default_context: 'b13', upgrade: 'remote', upgrade_url: s.url, upgrade_cacertfile: pki.ca, upgrade_bearer_token: 'tok-remote', upgrade_timeout: '2s', upgrade_max_concurrent: 2 });
    for (const u of ['up2', 'up3']) {
      const r = await login(u);
      assert.equal(r.code, 0, r.stdout + r.stderr);
    }
    await until('both failures counted', async () => (await upgrades()).remote_failed === 2);
    assert.deepEqual(auth, ['Bearer tok-remote', 'Bearer tok-remote']);
    assert.ok(env.daemon.logs.some((l) => l.includes('upgrade.remote_failed') && l.includes('"status":500')), env.daemon.logs.slice(-10).join('\n'));
    assert.ok(!env.daemon.logs.some((l) => l.includes(PASSWORD) || l.includes('tok-remote')), 'no password or token in the log');
  });

  test('upgrade = remote, primary slow (never answers): logins do not wait, the cap holds, the rest are skipped', async () => {
    const s = await primary(() => { /* never answers */ });
    await restart({ default_context: 'b13', upgrade: 'remote', upgrade_url: s.url, upgrade_cacertfile: pki.ca, upgrade_bearer_token: 'tok-remote', upgrade_timeout: '3s', upgrade_max_concurrent: 2 });
    const started = Date.now();
    for (const u of ['up4', 'up5', 'up6', 'up7']) {
      const r = await login(u);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.ok(r.ms < 1500, `${u}: login took ${r.ms} ms while the primary hangs`);
    }
    const during = await upgrades();
    assert.ok(Date.now() - started < 3000, 'the logins ran within one upgrade_timeout');
    assert.equal(during.remote_skipped, 2, JSON.stringify(during));
    assert.equal(s.requests(), 2);
    assert.ok(s.maxOpen() <= 2, `the primary saw ${s.maxOpen()} connections at once`);
    // Nothing waits past upgrade_timeout: both in-flight upgrades end as failures.
    await until('the timeouts', async () => (await upgrades()).remote_failed === 2, 8000);
    for (const u of ['up4', 'up5', 'up6', 'up7']) assert.equal(stored(u).context, 's5k');
  });
});
