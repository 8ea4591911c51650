// The shared-memory map (<socket_dir>/nss.map, src/fastpath + native/nss/nss_map.c) as a user
// sees it, through real getent/id/perl and the real daemon: cached users resolve while the
// daemon is frozen (SIGSTOP: the socket cannot answer, so only the map can), the map follows
// invalidate, flush, removal upstream and a reload at once, holds nothing secret, never shows a
// name only root asked for, and is gone when the daemon stops.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEnv, haveCommand, runInNamespace, ROOT, TEST_DAEMON_UID, exampleUsers, type TestEnv, type RunResult } from '../lib/harness.js';
import { MAP_FILE } from '../../src/protocol/generated.js';

const skip = process.getuid?.() !== 0 ? 'needs root (mount namespaces)'
  : !haveCommand('unshare') || !haveCommand('setpriv') || !haveCommand('perl') ? 'needs unshare, setpriv and perl' : false;

let env: TestEnv;
const CTL = join(ROOT, 'bin/latchkeyctl');
const mapPath = (): string => join(env.socketDir, MAP_FILE);
const ns = (script: string, extra: Record<string, string> = {}): Promise<RunResult> =>
  runInNamespace(script, { ...env.shimEnv, ...extra }, { timeoutMs: 20_000 });
/** As nobody: name misses asked by a user other than root are published. */
const asNobody = (cmd: string): string => `setpriv --reuid=65534 --regid=65534 --clear-groups ${cmd}`;
/** errno after getpwnam: 0 or ENOENT (2) for "no such user", EAGAIN (11) for "unavailable". */
const errnoOf = (name: string): string => `perl -e '$!=0; my @x = getpwnam("${name}"); print scalar(@x) ? "found" : ($!+0)'`;

function ctl(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CTL, ...args], { env: { ...process.env, LATCHKEY_SOCKET_DIR: env.socketDir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs fn with the daemon stopped (SIGSTOP): whatever resolves then came from the map. */
async function frozen<T>(fn: () => Promise<T>): Promise<T> {
  process.kill(env.daemon.pid, 'SIGSTOP');
  try {
    return await fn();
  } finally {
    process.kill(env.daemon.pid, 'SIGCONT');
  }
}

before(async () => {
  if (skip) return;
  // A short client timeout: a lookup the map cannot answer fails fast while the daemon is frozen.
  env = await startEnv({ cache: { ttl: '1h', negative_ttl: '1h', refresh_ahead: '0s' } });
  env.shimEnv.LATCHKEY_CLIENT_TIMEOUT_MS = '300';
});
after(async () => { if (env) await env.stop(); });

test('a cached user resolves by name and uid, and the group by name and gid, while the daemon is frozen', { skip }, async () => {
  const warm = await ns('getent passwd alice && getent passwd 11002 && getent group lega');
  assert.equal(warm.code, 0, warm.stderr);
  const st = statSync(mapPath());
  assert.equal(st.mode & 0o777, 0o644);
  assert.equal(st.uid, TEST_DAEMON_UID, 'owned by the daemon account');
  const r = await frozen(() => ns('getent passwd alice; getent passwd 11002; getent group lega; getent group 10000; id alice'));
  assert.match(r.stdout, /^alice:x:11001:10000:Alice Demo/m);
  assert.match(r.stdout, /^bob:x:11002:10000:/m);
  assert.match(r.stdout, /^lega:x:10000:$/m);
  assert.match(r.stdout, /^uid=11001\(alice\) gid=10000\(lega\) groups=10000\(lega\)$/m);
  assert.equal(r.stdout.match(/^lega:x:10000:$/gm)?.length, 2);
  // LATCHKEY_NSS_NO_MMAP=1 turns the map off for one process: the frozen socket cannot answer.
  const off = await frozen(() => ns(errnoOf('alice'), { LATCHKEY_NSS_NO_MMAP: '1' }));
  assert.equal(off.stdout, '11', `unavailable without the map: ${off.stdout} ${off.stderr}`);
});

test('the map holds public fields only: no hash, no key', { skip }, async () => {
  await ns('getent passwd alice; getent passwd bob');
  const bytes = readFileSync(mapPath());
  assert.ok(bytes.includes('alice') && bytes.includes('Alice Demo'));
  for (const u of exampleUsers()) {
    if (u.passwordHash) assert.ok(!bytes.includes(u.passwordHash), `hash of ${u.username} in the map`);
    for (const k of u.sshPublicKeys ?? []) assert.ok(!bytes.includes(k.split(' ')[1]!), `key of ${u.username} in the map`);
  }
});

test('a miss asked by a user answers from the map; one asked only by root is never in it', { skip }, async () => {
  const first = await ns(`${asNobody('getent passwd nosuchuser1')}; getent passwd 19999; getent passwd typedpassword1`);
  assert.equal(first.code, 2);
  const r = await frozen(() => ns(`${asNobody(errnoOf('nosuchuser1'))}; echo; ${errnoOf('typedpassword1')}; echo; ${errnoOf('nosuchuser1')}`));
  const [userMiss, rootMiss, rootAsks] = r.stdout.split('\n');
  assert.ok(userMiss === '0' || userMiss === '2', `nobody's miss answered "no such user" from the map: ${r.stdout}`);
  assert.equal(rootMiss, '11', 'a name only root asked for is not in the map: the frozen daemon is asked');
  assert.ok(rootAsks === '0' || rootAsks === '2', 'a published miss answers root too');
  const bytes = readFileSync(mapPath());
  assert.ok(bytes.includes('nosuchuser1'));
  assert.ok(!bytes.includes('typedpassword1'), 'sshd hands the daemon whatever a client typed: never in a 0644 file');
  const byUid = await frozen(() => ns('perl -e \'$!=0; my @x = getpwuid(19999); print scalar(@x) ? "found" : ($!+0)\''));
  assert.ok(byUid.stdout === '0' || byUid.stdout === '2', `a uid miss is published whoever asked: ${byUid.stdout}`);
});

test('invalidate, flush and removal upstream take effect in the map at once', { skip }, async () => {
  await ns('getent passwd alice; getent passwd bob; getent passwd carol');
  let r = await ctl(['invalidate', 'alice']);
  assert.equal(r.code, 0, r.stderr);
  let f = await frozen(() => ns(`${errnoOf('alice')}; echo; getent passwd bob`));
  assert.match(f.stdout, /^11\nbob:x:11002:/, 'invalidated alice must go to the daemon');
  r = await ctl(['flush']);
  assert.equal(r.code, 0, r.stderr);
  f = await frozen(() => ns(errnoOf('bob')));
  assert.equal(f.stdout, '11', 'after a flush nothing is answered from the map');
  // carol removed upstream: a refresh learns it, and the map stops answering for her at once.
  await ns('getent passwd carol');
  env.service.setUsers(exampleUsers().filter((u) => u.username !== 'carol'));
  r = await ctl(['lookup', 'carol', '--refresh']);
  f = await frozen(() => ns(`${errnoOf('carol')}; echo; perl -e '$!=0; my @x = getpwuid(11003); print scalar(@x) ? "found" : ($!+0)'`));
  const [byName, byUid] = f.stdout.split('\n');
  assert.notEqual(byName, 'found', `carol must not resolve after removal: ${f.stdout} ${r.stdout}`);
  assert.notEqual(byUid, 'found');
  env.service.setUsers(exampleUsers());
});

test('a reload that changes the shell is in the map at once', { skip }, async () => {
  await ns('getent passwd alice');
  const conf = readFileSync(env.configFile, 'utf8');
  try {
    writeFileSync(env.configFile, conf.replace(/^shell = .*$/m, 'shell = /bin/sh'));
    if (!/^shell = \/bin\/sh$/m.test(readFileSync(env.configFile, 'utf8'))) {
      writeFileSync(env.configFile, conf.replace(/^\[users\]$/m, '[users]\nshell = /bin/sh'));
    }
    process.kill(env.daemon.pid, 'SIGHUP');
    for (let i = 0; i < 100 && !env.daemon.logs.some((l) => l.includes('config.reloaded')); i++) await new Promise((r) => setTimeout(r, 50));
    const f = await frozen(() => ns('getent passwd alice'));
    assert.match(f.stdout, /^alice:x:11001:10000:.*:\/bin\/sh$/m, f.stdout + f.stderr);
  } finally {
    writeFileSync(env.configFile, conf);
    process.kill(env.daemon.pid, 'SIGHUP');
  }
});

test('latchkeyctl status shows the map; a stopped daemon removes it', { skip }, async () => {
  await ns('getent passwd alice');
  const s = await ctl(['status', '--json']);
  assert.equal(s.code, 0, s.stderr);
  const map = (JSON.parse(s.stdout) as { map: { state: string; users: number; file: string } }).map;
  assert.equal(map.state, 'on');
  assert.equal(map.file, mapPath());
  assert.ok(map.users >= 1);
  await env.daemon.stop();
  assert.equal(existsSync(mapPath()), false, 'a clean stop removes the map: nothing answers for a stopped daemon');
  const r = await ns(errnoOf('alice'));
  assert.notEqual(r.stdout, 'found');
});
