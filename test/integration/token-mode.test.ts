// Token mode end to end: the real latchkeyd logs in at a token endpoint issuing 2 s tokens
// (test/lib/tokenservice.ts) with credentials it reads from a systemd credential
// ($CREDENTIALS_DIRECTORY/latchkey.secrets), and real getent and nss.sock lookups go through it:
// refresh before expiry, 401 → one re-login, a refused refresh token, the token endpoint down,
// credential rotation by SIGHUP under load, and no secret in the log or in `latchkeyctl status`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  NSS_LIB_DIR, ROOT, TEST_DAEMON_UID, exampleUsers, haveCommand, latchkeyctl, request, runInNamespace, startDaemon, writeConfig,
  type DaemonProc,
} from '../lib/harness.js';
import { startTokenService, type TokenService } from '../lib/tokenservice.js';
import { Status } from '../../src/protocol/generated.js';

const skip = process.getuid?.() !== 0 ? 'needs root (mount namespaces, dropping to the daemon account)'
  : !haveCommand('unshare') ? 'needs unshare(1)' : false;

const FIRST = { username: 'sync-bot', password: 'Cred-One-5ecret' };
const SECOND = { username: 'sync-bot-2', password: 'Cred-Two-5ecret' };
const KNOWN = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan'];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let dir: string;
let credDir: string;
let socketDir: string;
let svc: TokenService;
let daemon: DaemonProc;

const nss = (): string => join(socketDir, 'nss.sock');
const lookup = async (name: string): Promise<number> => (await request(nss(), 'PW_BY_NAME', { name })).status;
const shimEnv = (): Record<string, string> => ({ LATCHKEY_SOCKET_DIR: socketDir, LD_LIBRARY_PATH: NSS_LIB_DIR, LATCHKEY_DAEMON_USER: String(TEST_DAEMON_UID) });
/** Log lines from index `from` on: failed upstream fetches (a lookup answered stale or "unavailable"). */
const fetchErrors = (from: number): string[] => daemon.logs.slice(from).filter((l) => l.includes('"resolver.fetch"') && l.includes('"outcome":"error"'));

/** The systemd credential: root's, readable by the daemon's group only (it re-reads it on SIGHUP). */
function writeCredential(c: { username: string; password: string }): void {
  const f = join(credDir, 'latchkey.secrets');
  writeFileSync(f, `username = ${c.username}\npassword = ${c.password}\n`, { mode: 0o640 });
  chownSync(f, 0, TEST_DAEMON_UID);
  chmodSync(f, 0o640);
}

async function waitFor(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function status(): Promise<{ upstream: { auth: { mode: string; token_valid_for_s: number | null; token_expires_at: number | null; logins: number; refreshes: number; last_auth_error: { message: string } | null } } }> {
  const r = await latchkeyctl(socketDir, ['status', '--json']);
  return JSON.parse(r.stdout) as Awaited<ReturnType<typeof status>>;
}

/** Lookups of known users from `workers` loops until stop(): every non-OK status is kept. */
function load(workers: number): { stop(): Promise<{ n: number; bad: string[] }> } {
  let running = true;
  let n = 0;
  const bad: string[] = [];
  const loops = Array.from({ length: workers }, async (_, w) => {
    for (let i = w; running; i++) {
      const name = KNOWN[i % KNOWN.length]!;
      const s = await lookup(name).catch(() => -1);
      n++;
      if (s !== Status.OK) bad.push(`${name}: ${s}`);
      await sleep(10);
    }
  });
  return { async stop() { running = false; await Promise.all(loops); return { n, bad }; } };
}

before(async () => {
  if (skip) return;
  const built = spawnSync('make', ['-s', '-C', 'native', 'all'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(built.status, 0, built.stderr);
  svc = await startTokenService({ users: exampleUsers(), logins: [FIRST], tokenTtlSec: 2 });
  dir = mkdtempSync(join(tmpdir(), 'latchkey-token-'));
  chmodSync(dir, 0o755);
  credDir = join(dir, 'credentials');
  mkdirSync(credDir, { mode: 0o755 });
  writeCredential(FIRST);
  // A short cache ttl keeps lookups reaching the user service (and so the token) all along.
  const file = writeConfig(dir, svc.url, { upstream: { token_url: svc.tokenUrl }, cache: { ttl: '1s', refresh_ahead: '0s', negative_ttl: '1s' } });
  // Token mode logs in with the credential's username/password, not the harness's basic auth.
  writeFileSync(file, readFileSync(file, 'utf8').replace(/^(username|password) = .*\n/gm, ''));
  socketDir = join(dir, 'run');
  daemon = await startDaemon(file, socketDir, { CREDENTIALS_DIRECTORY: credDir });
});

after(async () => {
  if (skip) return;
  await daemon?.stop();
  await svc?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('token mode: logs in with the systemd credential and refreshes before expiry; no lookup sees a 401', { skip }, async () => {
  const from = daemon.logs.length;
  const g = await runInNamespace('getent passwd alice', shimEnv());
  assert.equal(g.code, 0, g.stderr);
  assert.match(g.stdout, /^alice:x:11001:10000:/);
  const s0 = svc.stats();
  const l = load(3);
  await sleep(6000);
  const { n, bad } = await l.stop();
  const s = svc.stats();
  assert.deepEqual(bad, [], `${bad.length} of ${n} lookups failed`);
  assert.equal(s.unauthorized - s0.unauthorized, 0, 'a user request carried an expired token');
  assert.equal(s.logins, 1, 'one login in all');
  assert.ok(s.refreshes - s0.refreshes >= 4, `${s.refreshes - s0.refreshes} refreshes in 6 s of 2 s tokens`);
  assert.ok(s.userRequests - s0.userRequests >= 10, 'the lookups reached the user service');
  assert.deepEqual(fetchErrors(from), []);
  const a = (await status()).upstream.auth;
  assert.equal(a.mode, 'token');
  assert.ok(a.token_valid_for_s !== null && a.token_valid_for_s <= 2, JSON.stringify(a));
  assert.ok(a.token_expires_at! > Date.now() - 1000);
  assert.equal(a.logins, 1);
  assert.ok(a.refreshes >= 4);
  // Piped, latchkeyctl prints TSV, the value as mode, seconds left, logins, refreshes.
  const text = await latchkeyctl(socketDir, ['status']);
  assert.match(text.stdout, /^upstream auth\ttoken [012] 1 \d+$/m);
  assert.match(text.stdout, /^last auth error\t-$/m);
});

test('a refused refresh token: one clean login with the credential, no failed lookup', { skip }, async () => {
  const from = daemon.logs.length;
  const s0 = svc.stats();
  svc.revokeRefreshTokens();
  const l = load(2);
  await waitFor('a login after the refused refresh', () => svc.stats().logins > s0.logins);
  await sleep(1500);
  const { bad } = await l.stop();
  const s = svc.stats();
  assert.deepEqual(bad, []);
  assert.ok(s.refusedRefreshes > s0.refusedRefreshes);
  assert.equal(s.logins - s0.logins, 1);
  assert.equal(s.unauthorized - s0.unauthorized, 0);
  assert.deepEqual(fetchErrors(from), []);
  assert.ok(daemon.logs.slice(from).some((x) => x.includes('upstream.token_refresh_refused')));
});

test('credential rotation: a new systemd credential, SIGHUP under load, the old one revoked: no failed lookup', { skip }, async () => {
  const from = daemon.logs.length;
  const l = load(4);
  await sleep(1000);
  svc.allowLogin(SECOND.username, SECOND.password);
  writeCredential(SECOND);
  daemon.proc.kill('SIGHUP');
  await waitFor('config.reloaded', () => daemon.logs.slice(from).some((x) => x.includes('"config.reloaded"')));
  // The old client finishes its in-flight requests within its grace (request_timeout + 1 s) and
  // is closed; then the old credential and every token issued to it are revoked.
  await sleep(3500);
  const s1 = svc.stats();
  svc.revokeCredential(FIRST.username);
  await sleep(3000);
  const { n, bad } = await l.stop();
  const s = svc.stats();
  assert.deepEqual(bad, [], `${bad.length} of ${n} lookups failed`);
  assert.deepEqual(fetchErrors(from), []);
  assert.equal(s.unauthorized - s1.unauthorized, 0, 'a token of the old credential was used after it was revoked');
  assert.equal(s.refusedLogins, 0, 'nothing logged in with the revoked credential');
  assert.ok(s.userRequests - s1.userRequests >= 5, 'lookups kept reaching the user service with the new credential');
  assert.ok(!daemon.logs.slice(from).some((x) => x.includes('config.reload_failed')));
});

test('401 to a revoked token: exactly one re-login for a burst of lookups, each answered', { skip }, async () => {
  // A 60 s token first (a 401 and a login bring it): no background refresh can race the burst.
  svc.setTtl(60);
  svc.revokeAccessTokens();
  assert.equal(await lookup('warmup'), Status.NOTFOUND);
  await sleep(1100); // every cached entry expired (ttl 1 s): the burst goes upstream
  const from = daemon.logs.length;
  const s0 = svc.stats();
  svc.revokeAccessTokens();
  const names = [...KNOWN, 'nosuchuser'];
  const rs = await Promise.all(names.map((n) => lookup(n)));
  assert.deepEqual(rs, [...KNOWN.map(() => Status.OK), Status.NOTFOUND]);
  const s = svc.stats();
  assert.equal(s.logins - s0.logins, 1, 'one login for the whole burst');
  assert.ok(s.unauthorized - s0.unauthorized >= 1, 'the revoked token was refused');
  assert.deepEqual(fetchErrors(from), []);
  assert.equal(daemon.logs.slice(from).filter((x) => x.includes('"upstream.token_rejected"')).length, 1);
});

test('token endpoint down: cached users still served, unknown users "unavailable" (never "not found")', { skip }, async () => {
  svc.setTokenEndpoint('down');
  svc.revokeAccessTokens();
  await sleep(1100); // the cached entries are past their ttl: every lookup asks upstream first
  try {
    assert.equal(await lookup('alice'), Status.OK, 'a cached user is served stale');
    const g = await runInNamespace('getent passwd bob', shimEnv());
    assert.equal(g.code, 0, g.stderr);
    assert.match(g.stdout, /^bob:x:11002:/);
    assert.equal(await lookup('neverseen'), Status.UNAVAIL);
    assert.equal(await lookup('neverseen2'), Status.UNAVAIL, 'during the backoff too');
    const a = (await status()).upstream.auth;
    assert.equal(a.token_valid_for_s, null);
    assert.match(a.last_auth_error!.message, /token_url \(password\): token_url answered HTTP 503: the token service is failing/);
  } finally {
    svc.setTokenEndpoint('up');
  }
  // Back up: after the backoff the next lookup logs in again.
  const deadline = Date.now() + 10_000;
  let s = await lookup('neverseen');
  while (s !== Status.NOTFOUND && Date.now() < deadline) { await sleep(250); s = await lookup('neverseen'); }
  assert.equal(s, Status.NOTFOUND);
});

test('no password or token in the daemon log, in status or in status --json', { skip }, async () => {
  const text = await latchkeyctl(socketDir, ['status']);
  const json = await latchkeyctl(socketDir, ['status', '--json']);
  const secrets = [FIRST.password, SECOND.password, ...svc.issued()];
  assert.ok(secrets.length > 20);
  for (const [where, out] of [['log', daemon.logs.join('\n')], ['status', text.stdout + text.stderr], ['status --json', json.stdout]] as const) {
    for (const sec of secrets) assert.ok(!out.includes(sec), `a secret in the ${where}`);
  }
  assert.ok(daemon.logs.some((l) => l.includes('"upstream.token"')));
});
