// Upstream pacing through real components (issue 19): the real latchkeyd against the example user
// service, lookups through real getent and the real NSS module (and its own status, read with
// test/bench's lkload probe), `latchkeyctl status --json`, the service's own request counters.
//   - a 429 with Retry-After: nothing more is sent until then; cached users answer (stale),
//     an uncached one is TRYAGAIN, never NOTFOUND; status and stats say so; one probe after it
//   - warm start after a restart: nothing the surviving cache can still serve (fresh, or stale
//     within its grace) is refetched; after a "reboot" (cache file gone) the recent_file the
//     clean stop wrote is fetched, most recent first, at the configured rate
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ROOT, NSS_LIB_DIR, TEST_DAEMON_UID, startDaemon, writeConfig, runInNamespace, latchkeyctl, haveCommand,
  exampleUsers, type DaemonProc, type ConfigOverrides,
} from '../lib/harness.js';
import { startUserService, type UserService } from '../../src/example/userservice.js';

const LKLOAD = join(ROOT, 'test/bench/build/lkload');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const skip = process.getuid?.() !== 0 ? 'needs root (mount namespaces)'
  : !haveCommand('unshare') ? 'needs unshare(1)' : !haveCommand('cc') ? 'needs a C compiler for test/bench/lkload.c' : false;

const cleanups: Array<() => Promise<unknown> | unknown> = [];
before(() => {
  if (skip) return;
  const mk = spawnSync('make', ['-s', '-C', join(ROOT, 'test/bench')], { encoding: 'utf8' });
  assert.equal(mk.status, 0, `make -C test/bench: ${mk.stderr}`);
  const nss = spawnSync('make', ['-s', '-C', join(ROOT, 'native'), 'all'], { encoding: 'utf8' });
  assert.equal(nss.status, 0, nss.stderr);
});
after(async () => { for (const c of cleanups.reverse()) { try { await c(); } catch { /* keep cleaning */ } } });

interface Env { dir: string; svc: UserService; daemon: DaemonProc; configFile: string; socketDir: string; shimEnv: Record<string, string> }

async function env(cache: ConfigOverrides[string], svcOpts: { retryAfterS?: number } = {}): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-pacing-'));
  chmodSync(dir, 0o755);
  const svc = await startUserService({ host: '127.0.0.1', port: 0, users: exampleUsers(), basicAuth: { user: 'lega', password: 'testpass' }, ...svcOpts });
  const configFile = writeConfig(dir, svc.url, { cache: { ttl: '2s', refresh_ahead: '0s', stale_grace: '1h', negative_ttl: '1s', ...cache } });
  const socketDir = join(dir, 'run');
  const daemon = await startDaemon(configFile, socketDir);
  const e: Env = {
    dir, svc, daemon, configFile, socketDir,
    // the socket, not the map: every lookup below is one the daemon decides
    shimEnv: { LATCHKEY_SOCKET_DIR: socketDir, LD_LIBRARY_PATH: NSS_LIB_DIR, LATCHKEY_DAEMON_USER: String(TEST_DAEMON_UID), LATCHKEY_NSS_NO_MMAP: '1' },
  };
  cleanups.push(async () => { await e.daemon.stop(); await svc.close(); rmSync(dir, { recursive: true, force: true }); });
  return e;
}

/** getent's exit per name, and the NSS module's own status/errno for the last (lkload probe). */
async function lookups(e: Env, names: string[], probe?: string): Promise<{ codes: number[]; probe: { status?: string; errno_name?: string } }> {
  const script = names.map((n) => `getent passwd ${n} >/dev/null; echo "rc=$?"`).join('\n') + (probe ? `\n${LKLOAD} probe ${probe}` : '');
  const r = await runInNamespace(script, e.shimEnv, { timeoutMs: 20_000 });
  const codes = [...r.stdout.matchAll(/rc=(\d+)/g)].map((m) => Number(m[1]));
  const p = JSON.parse(r.stdout.split('\n').find((l) => l.startsWith('{')) ?? '{}') as { status?: string; errno_name?: string };
  return { codes, probe: p };
}

async function statusJson(e: Env, cmd = 'status'): Promise<Record<string, any>> {
  const r = await latchkeyctl(e.socketDir, [cmd, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, any>;
}

/** user lookups the service got (not `latchkeyctl status`'s GET of health_url) */
const sentLookups = (e: Env): number => { const st = e.svc.stats(); return st.requests - (st.byPath['/health'] ?? 0); };

const events = (d: DaemonProc, event: string): Array<Record<string, any>> => d.logs.filter((l) => l.includes(`"event":"${event}"`)).map((l) => JSON.parse(l) as Record<string, any>);

test('a 429 with Retry-After: nothing is sent until then, cached users are served stale, an uncached one is TRYAGAIN (never NOTFOUND), then one probe', { skip }, async () => {
  const e = await env({}, { retryAfterS: 3 });
  assert.deepEqual((await lookups(e, ['alice', 'bob'])).codes, [0, 0]);
  await sleep(2_200); // both stale (ttl 2 s), within the grace
  e.svc.setFault('429');
  assert.deepEqual((await lookups(e, ['alice'])).codes, [0], 'the 429 itself: alice served stale');
  const sent = sentLookups(e);
  const held = await lookups(e, ['bob', 'alice', 'carol'], 'carol');
  assert.deepEqual(held.codes, [0, 0, 2]);
  // "unavailable" (the shim says TRYAGAIN or UNAVAIL with EAGAIN), never NOTFOUND
  assert.ok(['TRYAGAIN', 'UNAVAIL'].includes(held.probe.status ?? ''), JSON.stringify(held.probe));
  assert.equal(held.probe.errno_name, 'EAGAIN');
  assert.equal(sentLookups(e), sent, 'nothing was sent upstream during the hold-off');
  const st = await statusJson(e);
  assert.match(st.upstream.holdoff.reason, /HTTP 429/);
  assert.equal(st.upstream.holdoff.half_open, false);
  assert.ok(st.upstream.holdoff.until > Date.now() && st.upstream.holdoff.until <= Date.now() + 3_650, JSON.stringify(st.upstream.holdoff));
  // latchkeyctl status without --json (tab-separated when not on a terminal) says so too
  const plain = await latchkeyctl(e.socketDir, ['status']);
  assert.match(plain.stdout, /^upstream holdoff\t\S+ 0 held the user service asked to wait \(HTTP 429 Retry-After\)/m, plain.stdout);
  assert.match(plain.stdout, /^jitter\t0$/m);
  const stats = await statusJson(e, 'stats');
  assert.equal(stats.upstream.rate_limited, 1);
  assert.ok(stats.upstream.held_off >= 4, JSON.stringify(stats.upstream));
  const hold = events(e.daemon, 'upstream.holdoff');
  assert.equal(hold.length, 1, 'logged once per hold-off');
  assert.match(hold[0]!.reason, /HTTP 429/);
  // The service is back; after the hold-off exactly one request probes, and carol resolves.
  e.svc.setFault(null);
  await sleep(Math.max(0, st.upstream.holdoff.until - Date.now()) + 100);
  assert.deepEqual((await lookups(e, ['carol'])).codes, [0]);
  assert.equal(sentLookups(e), sent + 1);
  assert.ok((await statusJson(e)).upstream.holdoff == null, "no hold-off any more");
});

test('warm start: after a restart nothing the cache can still serve is refetched; after a "reboot" recent_file\'s users are fetched, most recent first, at the rate', { skip }, async () => {
  // a ttl that outlasts the restart and the warm start's random delay: only what is invalidated is stale
  const e = await env({ ttl: '1h', warm_start: '3', warm_start_rate: '5' });
  for (const n of ['alice', 'bob', 'carol', 'dave', 'erin']) assert.deepEqual((await lookups(e, [n])).codes, [0]);
  const inv = await latchkeyctl(e.socketDir, ['invalidate', 'alice', 'bob', 'carol', 'dave']);
  assert.equal(inv.code, 0, inv.stderr); // erin stays fresh, and is the most recent
  await e.daemon.stop();
  const before = { ...e.svc.stats().byUser };
  e.daemon = await startDaemon(e.configFile, e.socketDir);
  const waitDone = async (d: DaemonProc): Promise<Array<Record<string, any>>> => {
    for (let i = 0; i < 160; i++) {
      const end = events(d, 'cache.warm_start').filter((x) => x.phase === 'end');
      if (end.length) return events(d, 'resolver.fetch');
      await sleep(50);
    }
    assert.fail(`no warm start end:\n${d.logs.join('\n')}`);
  };
  // The cache file survived the restart: erin is fresh, dave and carol stale within their grace
  // (served if the upstream fails; a lookup refetches them). Refetching them all on every host of
  // a fleet restarted at once tripled the upstream's peak (make fleet): nothing is asked.
  assert.deepEqual((await waitDone(e.daemon)).map((f) => f.key), []);
  const after = e.svc.stats().byUser;
  assert.deepEqual(['alice', 'bob', 'carol', 'dave', 'erin'].map((n) => (after[n] ?? 0) - (before[n] ?? 0)), [0, 0, 0, 0, 0], 'nothing asked');
  assert.deepEqual((await statusJson(e)).cache.warm_start, { state: 'done', total: 3, done: 3, refreshed: 0, failed: 0 });
  // A clean stop wrote the recent file; a reboot loses the cache file (tmpfs), not the list.
  await e.daemon.stop();
  const recent = readFileSync(join(e.dir, 'state', 'recent-users'), 'utf8').split('\n').filter(Boolean);
  assert.equal(recent.length, 3);
  assert.ok(!recent.some((n) => !/^[a-z]+$/.test(n)), 'names only');
  for (const s of ['', '-wal', '-shm']) rmSync(join(e.socketDir, `cache.db${s}`), { force: true });
  assert.ok(!existsSync(join(e.socketDir, 'cache.db')));
  e.daemon = await startDaemon(e.configFile, e.socketDir);
  const again = await waitDone(e.daemon);
  assert.deepEqual(again.map((f) => f.key), recent.map((n) => `name:${n}`));
  // when each request started (the line is written when it ends, `ms` later)
  const started = (f: Record<string, any>): number => Date.parse(f.ts) - Number(f.ms);
  const gap = started(again[1]!) - started(again[0]!);
  assert.ok(gap >= 150, `two warm-start requests ${gap} ms apart at 5/s`);
  assert.deepEqual((await statusJson(e)).cache.warm_start, { state: 'done', total: 3, done: 3, refreshed: 3, failed: 0 });
  // and what it fetched is answered from the cache at once
  const sent = e.svc.stats().requests;
  assert.deepEqual((await lookups(e, recent)).codes, [0, 0, 0]);
  assert.equal(e.svc.stats().requests, sent);
});
