// Privilege separation (issue 14) through the real processes: latchkeyd started as root drops to
// [daemon] user with no capabilities and starts latchkey-rootd; homes and session ends go through
// rootd; secrets stay readable for a reload; the systemd-style start (daemon as its user, rootd
// started on its own) works the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lchownSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { encodeReply, type Fields } from '../../src/protocol/codec.js';
import { Op, Status } from '../../src/protocol/generated.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LATCHKEYD, ROOT, TEST_DAEMON_UID, exampleUsers, request, runInNamespace, startDaemon, startEnv, writeConfig, type TestEnv } from '../lib/harness.js';
import { startUserService } from '../../src/example/userservice.js';

const isRoot = process.getuid?.() === 0;

function status(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

function childrenOf(pid: number): number[] {
  const kids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) kids.push(Number(d));
    } catch { /* gone */ }
  }
  return kids;
}

function exeName(pid: number): string {
  try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); } catch { return ''; }
}

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A stand-in for sshd's session process: loginuid set as pam_loginuid does, then asleep. */
function sessionProcess(loginuid: number): Promise<ChildProcess> {
  const p = spawn('sh', ['-c', `echo ${loginuid} > /proc/self/loginuid && echo ready && exec sleep 60`], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    p.stdout!.once('data', () => resolve(p));
    p.once('exit', (code) => reject(new Error(`session stand-in exited ${code}`)));
  });
}

function ctl(env: TestEnv, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(join(ROOT, 'bin/latchkeyctl'), args, { env: { ...process.env, LATCHKEY_SOCKET_DIR: env.socketDir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    p.on('exit', (code) => resolve({ code, out }));
  });
}

test('latchkeyd started as root runs as [daemon] user with no capabilities; rootd is its root child', { skip: !isRoot }, async () => {
  const env = await startEnv();
  try {
    const s = status(env.daemon.pid);
    const ids = (v: string): number[] => v.split(/\s+/).map(Number);
    assert.deepEqual(ids(s.Uid!), [TEST_DAEMON_UID, TEST_DAEMON_UID, TEST_DAEMON_UID, TEST_DAEMON_UID], 'real, effective, saved and fs uid');
    assert.deepEqual(ids(s.Gid!), [TEST_DAEMON_UID, TEST_DAEMON_UID, TEST_DAEMON_UID, TEST_DAEMON_UID]);
    assert.deepEqual(s.Groups!.split(/\s+/).filter(Boolean).map(Number), [TEST_DAEMON_UID], 'no supplementary groups but its own');
    for (const k of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) assert.equal(BigInt('0x' + s[k]), 0n, `${k} is empty`);
    assert.ok(env.daemon.logs.some((l) => l.includes('daemon.dropped_root')), 'the drop is logged');
    // Its runtime dir and files are its own; the sockets answer as before.
    assert.equal(statSync(env.socketDir).uid, TEST_DAEMON_UID);
    assert.equal(statSync(join(env.socketDir, 'priv.sock')).mode & 0o777, 0o600);
    const rootd = childrenOf(env.daemon.pid).filter((p) => exeName(p) === 'latchkey-rootd');
    assert.equal(rootd.length, 1, 'one latchkey-rootd child');
    assert.equal(status(rootd[0]!).Uid!.split(/\s+/)[1], '0', 'rootd keeps root');
    const up = JSON.parse((await ctl(env, ['status', '--json'])).out) as { rootd: { reachable: boolean; socket: string } };
    assert.equal(up.rootd.reachable, true);
    assert.equal(up.rootd.socket, join(env.dir, 'rootd', 'rootd.sock'));
    // rootd gone (crashed, killed): status says so, with the socket, instead of logins failing silently.
    process.kill(rootd[0]!, 'SIGKILL');
    await waitFor('the daemon to see rootd exit', () => env.daemon.logs.some((l) => l.includes('rootd.exited')));
    const down = await ctl(env, ['status']);
    assert.match(down.out, /^rootd\tunreachable$/m, down.out);
  } finally {
    await env.stop();
  }
});

test('rootd does not outlive latchkeyd (SIGKILL): nobody could ask it anything', { skip: !isRoot }, async () => {
  const env = await startEnv();
  try {
    const rootd = childrenOf(env.daemon.pid).filter((p) => exeName(p) === 'latchkey-rootd');
    assert.equal(rootd.length, 1);
    env.daemon.proc.kill('SIGKILL');
    await waitFor('rootd to exit with its parent', () => !existsSync(`/proc/${rootd[0]}`) || status(rootd[0]!).State?.startsWith('Z') === true);
  } finally {
    await env.stop();
  }
});

test('homes are made by rootd, and kill-session ends only a process that is the recorded login', { skip: !isRoot }, async () => {
  const env = await startEnv();
  const sleepers: ChildProcess[] = [];
  try {
    const priv = join(env.socketDir, 'priv.sock');
    mkdirSync(join(env.dir, 'homes'), { mode: 0o755 }); // the base is the admin's to create
    const alice = exampleUsers().find((u) => u.username === 'alice')!;
    const aliceUid = 10000 + alice.uid;
    const good = await sessionProcess(aliceUid);
    sleepers.push(good);
    const open = await request(priv, 'SESSION_OPEN', { user: 'alice', service: 'sshd', rhost: '192.0.2.9', tty: 'ssh', pid: good.pid!, pid_start: '' });
    assert.equal(open.status, 0, open.detail);
    const home = join(env.dir, 'homes', 'alice');
    assert.equal(statSync(home).uid, 0, 'the chroot home is root\'s (made by rootd, not the daemon)');
    assert.equal(statSync(join(home, 'inbox')).uid, aliceUid, 'the upload dir is alice\'s');
    const goodExit = new Promise<string | null>((r) => good.once('exit', (_c, sig) => r(sig)));
    const k = await ctl(env, ['sessions', 'kill', '--user', 'alice']);
    assert.equal(k.code, 0, k.out);
    assert.equal(await goodExit, 'SIGTERM', 'the recorded login process was ended through rootd');

    // A process recorded as a session whose login uid is not the user's: rootd refuses, the
    // record is ended, the process lives, and the log says why.
    const stranger = await sessionProcess(4242);
    sleepers.push(stranger);
    const o2 = await request(priv, 'SESSION_OPEN', { user: 'alice', service: 'sshd', rhost: '192.0.2.9', tty: 'ssh', pid: stranger.pid!, pid_start: '' });
    assert.equal(o2.status, 0, o2.detail);
    const k2 = await ctl(env, ['sessions', 'kill', '--user', 'alice']);
    assert.equal(k2.code, 0, k2.out);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(stranger.exitCode, null, 'a process with another login uid is not signalled');
    assert.equal(stranger.signalCode, null);
    assert.ok(env.daemon.logs.some((l) => l.includes('session.end_failed') && l.includes(String(stranger.pid))), env.daemon.logs.slice(-5).join('\n'));
  } finally {
    for (const s of sleepers) s.kill('SIGKILL');
    await env.stop();
  }
});

test('a config holding secrets: root-only blocks the reload after the drop (logged with the fix); root:daemon 0640 works', { skip: !isRoot }, async () => {
  const env = await startEnv();
  try {
    chownSync(env.configFile, 0, 0);
    chmodSync(env.configFile, 0o600);
    env.daemon.proc.kill('SIGHUP');
    await waitFor('reload failure', () => env.daemon.logs.some((l) => l.includes('config.reload_failed')));
    const line = env.daemon.logs.find((l) => l.includes('config.reload_failed'))!;
    assert.match(line, /may read it|EACCES/, line);
    chownSync(env.configFile, 0, TEST_DAEMON_UID);
    chmodSync(env.configFile, 0o640);
    env.daemon.proc.kill('SIGHUP');
    await waitFor('reload', () => env.daemon.logs.some((l) => l.includes('config.reloaded')));
    await waitFor('rootd reload', () => env.daemon.logs.some((l) => l.includes('rootd.reload')));
    assert.ok(env.daemon.logs.some((l) => l.includes('rootd.reload') && l.includes('"status":"ok"')), 'rootd re-read its config too');
    // Group-readable by any other group stays refused.
    chownSync(env.configFile, 0, 4242);
    writeFileSync(env.configFile, readFileSync(env.configFile));
    env.daemon.proc.kill('SIGHUP');
    await waitFor('second failure', () => env.daemon.logs.filter((l) => l.includes('config.reload_failed')).length >= 2);
    assert.match(env.daemon.logs.filter((l) => l.includes('config.reload_failed'))[1]!, /chmod 600|EACCES|may read it/);
  } finally {
    await env.stop();
  }
});

test('[daemon] user = root is refused at start, naming the fix', { skip: !isRoot }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-privsep-'));
  try {
    const cfg = writeConfig(dir, 'http://127.0.0.1:9', { daemon: { user: 'root' } });
    await assert.rejects(startDaemon(cfg, join(dir, 'run')), (e: Error) => /daemon\.user|\[daemon\] user|must not be root/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('systemd-style: rootd started on its own, latchkeyd started as its user; homes still made', { skip: !isRoot }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-privsep-'));
  chmodSync(dir, 0o755);
  const service = await startUserService({ host: '127.0.0.1', port: 0, users: exampleUsers(), basicAuth: { user: 'lega', password: 'testpass' } });
  const started: ChildProcess[] = [];
  try {
    const cfg = writeConfig(dir, service.url);
    const run = join(dir, 'run');

    mkdirSync(run, { mode: 0o755 });
    chownSync(run, TEST_DAEMON_UID, TEST_DAEMON_UID); // RuntimeDirectory= with User=
    mkdirSync(join(dir, 'state'), { mode: 0o710 });
    chownSync(join(dir, 'state'), TEST_DAEMON_UID, TEST_DAEMON_UID); // StateDirectory= with User=
    mkdirSync(join(dir, 'rootd'), { mode: 0o755 });
    mkdirSync(join(dir, 'homes'), { mode: 0o755 });
    const rootd = spawn(join(ROOT, 'native/rootd/latchkey-rootd'),
      ['--socket', join(dir, 'rootd', 'rootd.sock'), '--daemon-user', String(TEST_DAEMON_UID), '--config', cfg], { stdio: ['ignore', 'inherit', 'inherit'] });
    started.push(rootd);
    await waitFor('rootd socket', () => existsSync(join(dir, 'rootd', 'rootd.sock')));
    const daemon = spawn(process.execPath, [LATCHKEYD, '--config', cfg], { uid: TEST_DAEMON_UID, gid: TEST_DAEMON_UID, stdio: ['ignore', 'pipe', 'pipe'] });
    started.push(daemon);
    let logs = '';
    daemon.stderr!.on('data', (d: Buffer) => { logs += d.toString(); });
    await waitFor('the daemon', () => existsSync(join(run, 'priv.sock')), 15000);
    assert.ok(!logs.includes('daemon.dropped_root'), 'nothing to drop');
    const sleeper = spawn('sleep', ['30']);
    started.push(sleeper);
    const o = await request(join(run, 'priv.sock'), 'SESSION_OPEN', { user: 'bob', service: 'sshd', rhost: '', tty: 'ssh', pid: sleeper.pid!, pid_start: '' });
    assert.equal(o.status, 0, `${o.detail}\n${logs}`);
    assert.ok(statSync(join(dir, 'homes', 'bob', 'inbox')).isDirectory(), 'rootd made the home');
  } finally {
    for (const p of started.reverse()) p.kill('SIGTERM');
    await service.close();
    await new Promise((r) => setTimeout(r, 100));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a socket in the daemon-owned socket dir swapped for a symlink to another root service is not believed', { skip: !isRoot }, async () => {
  const env = await startEnv();
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-privsep-other-'));
  // Another root service on the host, answering anything it is sent with a forged passwd entry.
  const other = createServer((c) => {
    c.once('data', () => c.end(encodeReply(Op.PW_BY_NAME, Status.OK, {
      entry: { name: 'alice', uid: 23456, gid: 10000, gecos: 'FORGED by another root socket', dir: '/', shell: '/bin/sh' } as unknown as Fields,
    })));
  });
  await new Promise<void>((r) => other.listen(join(dir, 'svc.sock'), r));
  try {
    // What a compromised daemon (owner of socket_dir) could do.
    rmSync(join(env.socketDir, 'nss.sock'));
    symlinkSync(join(dir, 'svc.sock'), join(env.socketDir, 'nss.sock'));
    lchownSync(join(env.socketDir, 'nss.sock'), TEST_DAEMON_UID, TEST_DAEMON_UID); // the daemon made it
    const r = await runInNamespace('getent passwd alice', env.shimEnv);
    assert.ok(!r.stdout.includes('FORGED'), `a root socket behind a symlink was believed: ${r.stdout}`);
    assert.notEqual(r.code, 0);
  } finally {
    other.close();
    await env.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an upstream user shifted onto the daemon\'s own uid is never served (it could talk to rootd and signal the daemon)', { skip: !isRoot }, async () => {
  const env = await startEnv({}, [...exampleUsers(), { username: 'mallory', uid: TEST_DAEMON_UID - 10000, passwordHash: null, sshPublicKeys: [], gecos: 'wants the daemon uid' }]);
  try {
    const nss = join(env.socketDir, 'nss.sock');
    assert.equal((await request(nss, 'PW_BY_UID', { uid: TEST_DAEMON_UID })).status, Status.NOTFOUND);
    assert.notEqual((await request(nss, 'PW_BY_NAME', { name: 'mallory' })).status, Status.OK);
    assert.ok(env.daemon.logs.some((l) => l.includes('latchkeyd itself')), 'the refusal names the daemon');
  } finally {
    await env.stop();
  }
});

test('files planted in the daemon-owned socket dir are not chowned by the next start as root', { skip: !isRoot }, async () => {
  const env = await startEnv();
  const victim = join(env.dir, 'victim');
  try {
    await env.daemon.stop();
    writeFileSync(victim, 'root only\n', { mode: 0o600 });
    // A hard link and a symlink to root's file, under names the daemon keeps there.

    linkSync(victim, join(env.socketDir, 'sessions.db.bad-1'));
    symlinkSync(victim, join(env.socketDir, 'sessions.db.bad-2'));
    const again = await startDaemon(env.configFile, env.socketDir);
    try {
      assert.equal(statSync(victim).uid, 0, 'root\'s file still root\'s');
      assert.ok(again.logs.some((l) => l.includes('daemon.runtime_foreign_file')), again.logs.join('\n'));
    } finally {
      await again.stop();
    }
  } finally {
    await env.stop();
  }
});
