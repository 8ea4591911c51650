// The real libnss_latchkey.so.2 inside real programs (getent, id, ls) against the real latchkeyd
// and the example user service. Each command runs in a private mount namespace whose
// /etc/nsswitch.conf says `passwd: files latchkey` / `group: files latchkey`; glibc finds the
// module through LD_LIBRARY_PATH=native/nss and the daemon through LATCHKEY_SOCKET_DIR.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEnv, haveCommand, runInNamespace, runCommand, ROOT, NSS_LIB_DIR, type TestEnv, type RunResult } from '../lib/harness.js';
import { CLIENT_TIMEOUT_MS } from '../../src/protocol/generated.js';

const TTL_MS = 2000;
const skip = process.getuid?.() !== 0 ? 'needs root (mount namespaces)'
  : !haveCommand('unshare') ? 'needs unshare(1)' : false;

let env: TestEnv;

/** A script in a private mount namespace with our nsswitch.conf and the shim environment. */
const ns = (script: string, extra: Record<string, string> = {}): Promise<RunResult> =>
  runInNamespace(script, { ...env.shimEnv, ...extra });
/** A program with the shim environment, without blocking this process's event loop. */
const run = (cmd: string, args: string[], extra: Record<string, string> = {}): Promise<RunResult> =>
  runCommand(cmd, args, { ...env.shimEnv, ...extra });

const upstreamRequests = (): number => env.service.stats().requests;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

before(async () => {
  if (skip) return;
  const built = spawnSync('make', ['-s', '-C', 'native', 'all'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(built.status, 0, built.stderr);
  assert.ok(existsSync(join(NSS_LIB_DIR, 'libnss_latchkey.so.2')));
  env = await startEnv({ cache: { ttl: `${TTL_MS / 1000}s`, negative_ttl: '1s', refresh_ahead: '0s' } });
});
after(async () => { if (env) await env.stop(); });

test('getent passwd NAME: the first lookup asks upstream, the second is a cache hit', { skip }, async () => {
  const before = upstreamRequests();
  const first = await ns('getent passwd alice');
  assert.equal(first.code, 0, first.stderr);
  const [name, pw, uid, gid, gecos, dir, shell, ...rest] = first.stdout.replace(/\n$/, '').split(':');
  assert.deepEqual([name, pw, uid, gid, gecos, dir], ['alice', 'x', '11001', '10000', 'Alice Demo (bcrypt 2b + ed25519 key)', join(env.dir, 'homes', 'alice')]);
  assert.ok(shell?.startsWith('/') && rest.length === 0, first.stdout);
  assert.equal(upstreamRequests(), before + 1);
  const second = await ns('getent passwd alice');
  assert.equal(second.code, 0);
  assert.equal(second.stdout, first.stdout);
  assert.equal(upstreamRequests(), before + 1, 'second lookup must be a cache hit');
});

test('getent passwd UID resolves through the uid shift', { skip }, async () => {
  const r = await ns('getent passwd 11002');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^bob:x:11002:10000:/);
});

test('unknown user and invalid name: exit 2 (not found); an invalid name never reaches upstream', { skip }, async () => {
  const r = await ns('getent passwd nosuchuser');
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  const before = upstreamRequests();
  const bad = await ns("getent passwd 'Not.A.Name'");
  assert.equal(bad.code, 2);
  assert.equal(upstreamRequests(), before);
});

test('getent passwd enumerates files users and the cached latchkey users', { skip }, async () => {
  const r = await ns('getent passwd');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^root:x:0:0:/m);
  assert.match(r.stdout, /^alice:x:11001:10000:/m);
  assert.match(r.stdout, /^bob:x:11002:10000:/m);
});

test('getent group: by name, by gid, and enumeration', { skip }, async () => {
  const byName = await ns('getent group lega');
  assert.equal(byName.code, 0, byName.stderr);
  assert.match(byName.stdout, /^lega:x:10000:/);
  const byGid = await ns('getent group 10000');
  assert.equal(byGid.stdout, byName.stdout);
  const all = await ns('getent group');
  assert.match(all.stdout, /^root:x:0:/m);
  assert.match(all.stdout, /^lega:x:10000:/m);
});

test('id NAME shows the latchkey uid and primary group', { skip }, async () => {
  const r = await ns('id alice');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^uid=11001\(alice\) gid=10000\(lega\) groups=10000\(lega\)/);
});

test('initgroups_dyn is exported; lega is the primary group only, never a member list', { skip }, async () => {
  const r = await ns('getent passwd alice >/dev/null && id alice && getent initgroups alice && getent group lega');
  assert.equal(r.code, 0, r.stderr);
  const [idLine, initLine, groupLine, ...rest] = r.stdout.replace(/\n$/, '').split('\n');
  // the primary group comes from pw_gid, once
  assert.match(idLine ?? '', /^uid=11001\(alice\) gid=10000\(lega\) groups=10000\(lega\)$/);
  // getent initgroups passes no primary gid (-1) and the module lists no supplementary groups:
  // a member list would make a local account of the same name a member too (sshd Match Group)
  const [user, ...gids] = (initLine ?? '').trim().split(/\s+/);
  assert.equal(user, 'alice');
  assert.deepEqual(gids, [], r.stdout);
  assert.equal(groupLine, 'lega:x:10000:');
  assert.equal(rest.length, 0, r.stdout);
  // glibc (nss/initgroups.c) walks setgrent/getgrent_r (state shared by every thread) only
  // for a module without initgroups_dyn; LD_DEBUG cannot tell (glibc >= 2.34 dlsyms every
  // entry point at load), so check the export itself
  if (haveCommand('nm')) {
    const syms = await run('nm', ['-D', '--defined-only', join(NSS_LIB_DIR, 'libnss_latchkey.so.2')]);
    assert.equal(syms.code, 0, syms.stderr);
    assert.match(syms.stdout, / T _nss_latchkey_initgroups_dyn$/m);
  }
});

test('ls -l names the owner of a file chowned to a latchkey uid', { skip }, async () => {
  const file = join(env.dir, 'owned-by-alice');
  writeFileSync(file, 'x');
  const r = await ns(`chown 11001:10000 '${file}' && ls -l '${file}'`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, / alice lega /);
});

test('latchkey-authorized-keys prints the user\'s key; nothing for an unknown or local user', { skip }, async () => {
  // The helper resolves the user through NSS first (the identity sshd uses), so it runs in the
  // namespace whose nsswitch.conf has latchkey.
  const bin = join(ROOT, 'native/latchkey-authorized-keys');
  const alice = await ns(`${bin} alice`);
  assert.equal(alice.code, 0, alice.stderr);
  assert.match(alice.stdout, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\S+ alice@latchkey-demo\n$/);
  for (const name of ['nosuchuser', 'root']) {
    const r = await ns(`${bin} ${name}`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
  }
});

test('a user removed upstream disappears after the TTL', { skip }, async () => {
  env.service.addUser({ username: 'tempuser', uid: 1900, passwordHash: null, sshPublicKeys: [], gecos: 'Temporary' });
  assert.equal((await ns('getent passwd tempuser')).code, 0);
  env.service.removeUser('tempuser');
  assert.equal((await ns('getent passwd tempuser')).code, 0, 'still cached within the TTL');
  await sleep(TTL_MS + 700);
  const gone = await ns('getent passwd tempuser');
  assert.equal(gone.code, 2, gone.stdout);
});

test('daemon SIGSTOPped: getent gives up after the client timeout, which LATCHKEY_NSS_TIMEOUT_MS cannot shorten; files users still resolve', { skip }, async () => {
  process.kill(env.daemon.pid, 'SIGSTOP');
  try {
    // 1500 is below the daemon's answer deadline: the shim raises it to CLIENT_TIMEOUT_MS, so a
    // slow upstream reaches callers as the daemon's UNAVAIL, not as the shim's own timeout
    const r = await ns('getent passwd carol', { LATCHKEY_NSS_TIMEOUT_MS: '1500' });
    assert.equal(r.code, 2);
    assert.ok(r.ms >= CLIENT_TIMEOUT_MS - 100 && r.ms < CLIENT_TIMEOUT_MS + 3000, `took ${r.ms} ms`);
    const root = await ns('getent passwd root', { LATCHKEY_NSS_TIMEOUT_MS: '1500' });
    assert.equal(root.code, 0);
    assert.match(root.stdout, /^root:x:0:0:/);
    assert.ok(root.ms < 1000, `root took ${root.ms} ms`);
  } finally {
    process.kill(env.daemon.pid, 'SIGCONT');
  }
  assert.equal((await ns('getent passwd alice')).code, 0, 'answers again after SIGCONT');
});

test('daemon stopped: getent returns at once and files users still resolve', { skip }, async () => {
  await env.daemon.stop();
  const r = await ns('getent passwd alice');
  assert.equal(r.code, 2);
  assert.ok(r.ms < 500, `took ${r.ms} ms`);
  const root = await ns('getent passwd root');
  assert.equal(root.code, 0);
  assert.match(root.stdout, /^root:x:0:0:/);
  const id = await ns('id root');
  assert.equal(id.code, 0);
  assert.ok(id.ms < 500, `id root took ${id.ms} ms`);
  const groups = await ns('getent initgroups root');
  assert.equal(groups.code, 0, groups.stderr);
  assert.match(groups.stdout, /^root\b/);
  assert.ok(groups.ms < 500, `getent initgroups root took ${groups.ms} ms`);
});
