// Temporary accounts as a sysadmin meets them (issue 17), through the real latchkeyd, sshd,
// sftp and latchkeyctl: a local account added with --expires a few seconds ahead logs in and
// holds a live sftp session; after its expiry a new login is refused with the reason in the log;
// an upstream user whose expiresAt is past is refused too. `purge --expired --dry-run` lists
// both (with the home) and changes nothing; then a reload turns the periodic cleanup on, which
// ends the live session (the sftp client sees the connection close), removes both accounts and
// logs their homes, which are still there.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { examplePasswords, exampleUsers, latchkeyctl, startEnv, writeConfig, type CegaUser, type ConfigOverrides, type TestEnv } from '../lib/harness.js';
import { startSshd, sftp, sftpWorkspace, type Sshd, type SftpWorkspace } from '../lib/sshd.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('temporary accounts: expiry refused, purge --dry-run, the periodic cleanup', () => {
  let env: TestEnv;
  let sshd: Sshd;
  let ws: SftpWorkspace | undefined;
  let base: string;
  let work: string;
  let key: string;
  let live: ChildProcess | null = null;
  const spawned: ChildProcess[] = [];
  let liveExit: Promise<number | null> = Promise.resolve(null);
  const GRACE_S = 2;
  const over: ConfigOverrides = {};
  // An upstream user whose account expired an hour ago: served by NSS, refused at login.
  const expired = exampleUsers().find((u) => u.username === 'bob')!;
  const users = exampleUsers().map((u) => (u.username === expired.username ? { ...u, expiresAt: new Date(Date.now() - 3600_000).toISOString() } : u)) as CegaUser[];

  const ok = async (args: string[]): Promise<string> => {
    const r = await latchkeyctl(env.socketDir, args);
    assert.equal(r.code, 0, `latchkeyctl ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const logs = (): string => env.daemon.logs.join('\n');
  const diag = (r: { out: string }): string => `${r.out}\n--- sshd ---\n${sshd.logs().slice(-2000)}\n--- latchkeyd ---\n${env.daemon.logs.slice(-15).join('\n')}`;
  const until = async (what: string, cond: () => boolean | Promise<boolean>, ms: number): Promise<void> => {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms\n${env.daemon.logs.slice(-20).join('\n')}`);
      await sleep(200);
    }
  };

  /**
   * A live sftp session: the ssh transport sftp(1) runs (`ssh -s ... sftp`), its stdin held
   * open, so it lasts until the server ends the connection (sftp itself would notice only at its
   * next command). Resolves once latchkeyd has recorded it.
   */
  const liveSession = async (user: string): Promise<{ proc: ChildProcess; exited: Promise<number | null> }> => {
    const proc = spawn('ssh', ['-s', '-i', key, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no',
      '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-p', String(sshd.port), `${user}@127.0.0.1`, 'sftp'],
    { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work } });
    spawned.push(proc);
    // 'exit', not 'close': stdin stays open on purpose. The output is read so the pipes never fill.
    proc.stdout!.resume();
    proc.stderr!.resume();
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
    await until(`${user}'s live session is recorded`, async () => {
      const s = JSON.parse(await ok(['sessions', user, '--json'])) as { sessions: unknown[] };
      return s.sessions.length === 1;
    }, 15_000);
    return { proc, exited };
  };
  const endsWithin = (exited: Promise<number | null>, ms: number): Promise<boolean> =>
    Promise.race([exited.then(() => true), sleep(ms).then(() => false)]);

  before(async () => {
    ws = sftpWorkspace('cleanup');
    ({ base, work, key } = ws);
    // No periodic run yet (interval 0): the dry run must see the accounts still there.
    Object.assign(over, {
      homes: { base },
      local: { contexts: 's5k=sha512crypt:5000', default_context: 's5k' },
      cleanup: { interval: 0, expired_grace: `${GRACE_S}s` },
    });
    env = await startEnv(over, users);
    sshd = await startSshd(env.dir, env.socketDir, env.shimEnv);
  });
  after(async () => {
    for (const p of spawned) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await sshd?.stop();
    await env?.stop();
    ws?.remove();
  });

  test('an account added with --expires logs in, holds a session, and is refused after its expiry with the reason logged', async () => {
    const expiresAt = Date.now() + 5000;
    await ok(['local', 'add', 'temp1', '--key', `${key}.pub`, '--expires', new Date(expiresAt).toISOString()]);
    const s = await liveSession('temp1');
    [live, liveExit] = [s.proc, s.exited];
    const proc = live;
    assert.ok(existsSync(join(base, 'temp1')), 'the login made the home');

    await sleep(Math.max(0, expiresAt - Date.now()) + 300);
    const late = await sftp(sshd.port, 'temp1', 'ls\n', { key }, work);
    assert.notEqual(late.code, 0, diag(late));
    assert.ok(env.daemon.logs.some((l) => l.includes('"account.expired"') && l.includes('"temp1"') && l.includes('local account expired')), logs().slice(-3000));
    assert.equal(proc.exitCode, null, 'the expiry alone does not end a live session before the cleanup runs');
  });

  test('an upstream user whose expiresAt is past is refused at login, with the reason logged', async () => {
    const r = await sftp(sshd.port, expired.username, 'ls\n', { password: examplePasswords()[expired.username]! }, work);
    assert.notEqual(r.code, 0, diag(r));
    assert.ok(env.daemon.logs.some((l) => l.includes('"account.expired"') && l.includes(`"${expired.username}"`) && l.includes('account expired')), logs().slice(-3000));
  });

  test('purge --expired --dry-run lists both accounts, the session and the home, and changes nothing', async () => {
    await sleep(GRACE_S * 1000 + 200);
    const dry = JSON.parse(await ok(['purge', '--expired', '--dry-run', '--json'])) as {
      dry_run: boolean; cache_users: Array<{ name: string }>; local_users: Array<{ name: string; home: string; home_exists: boolean }>;
      sessions_ended: number; session_users: string[]; homes_kept: string[];
    };
    assert.equal(dry.dry_run, true);
    assert.deepEqual(dry.cache_users.map((u) => u.name), [expired.username]);
    assert.deepEqual(dry.local_users.map((u) => [u.name, u.home, u.home_exists]), [['temp1', join(base, 'temp1'), true]]);
    assert.equal(dry.sessions_ended, 1);
    assert.deepEqual(dry.session_users, ['temp1']);
    assert.deepEqual(dry.homes_kept, [join(base, 'temp1')]);
    // The lines a script reads (stdout is no terminal) say the same.
    const lines = (await ok(['purge', '--expired', '--dry-run'])).trim().split('\n').map((l) => l.split('\t'));
    assert.deepEqual(lines.map((f) => [f[0], f[1], f[4], f[5]]), [['upstream', expired.username, join(base, expired.username), 'no'], ['local', 'temp1', join(base, 'temp1'), 'yes']]);
    // Nothing changed: the user, the cache entry and the live session are all still there.
    await ok(['local', 'show', 'temp1']);
    await ok(['show', expired.username]);
    assert.equal(live!.exitCode, null, 'the live session survives a dry run');
    assert.ok(!env.daemon.logs.some((l) => l.includes('"cleanup.removed"')));
  });

  test('local disable and local remove end the user\'s live session (the client sees the close)', async () => {
    for (const [name, cmd] of [['keep1', 'disable'], ['keep2', 'remove']] as const) {
      await ok(['local', 'add', name, '--key', `${key}.pub`]);
      const s = await liveSession(name);
      const r = JSON.parse(await ok(['local', cmd, name, '--json'])) as { sessions_ended?: number };
      assert.equal(r.sessions_ended, 1, `local ${cmd}`);
      assert.ok(await endsWithin(s.exited, 10_000), `local ${cmd} left the session running\n${env.daemon.logs.slice(-10).join('\n')}`);
      assert.ok(env.daemon.logs.some((l) => l.includes('"session.revoked"') && l.includes(`"${name}"`) && l.includes(cmd === 'disable' ? '"disabled"' : '"removed"')));
    }
  });

  test('after a reload turns the periodic cleanup on: the session ends, both accounts go, homes are listed and kept', async () => {
    writeConfig(env.dir, env.service.url, { ...over, cleanup: { interval: '10s', expired_grace: `${GRACE_S}s` } });
    env.daemon.proc.kill('SIGHUP');
    // The live sftp client sees the server end its connection.
    const exit = await Promise.race([liveExit, sleep(25_000).then(() => 'timeout' as const)]);
    assert.notEqual(exit, 'timeout', `the live session was not ended\n${env.daemon.logs.slice(-20).join('\n')}`);
    await until('both removals logged', () => env.daemon.logs.filter((l) => l.includes('"cleanup.removed"')).length >= 2, 5000);
    const removed = env.daemon.logs.filter((l) => l.includes('"cleanup.removed"')).map((l) => JSON.parse(l.slice(l.indexOf('{'))) as Record<string, unknown>);
    const temp1 = removed.find((l) => l.user === 'temp1');
    assert.ok(temp1, JSON.stringify(removed));
    assert.deepEqual([temp1.source, temp1.home, temp1.home_exists], ['local', join(base, 'temp1'), true]);
    assert.ok(removed.some((l) => l.user === expired.username && l.source === 'cache'), JSON.stringify(removed));
    assert.ok(existsSync(join(base, 'temp1')), 'the home is never deleted');
    const gone = await latchkeyctl(env.socketDir, ['local', 'show', 'temp1']);
    assert.equal(gone.code, 1, gone.stdout + gone.stderr);
    const notCached = await latchkeyctl(env.socketDir, ['show', expired.username]);
    assert.equal(notCached.code, 1, notCached.stdout + notCached.stderr);
    const ended = JSON.parse(await ok(['sessions', 'temp1', '--json'])) as { sessions: unknown[] };
    assert.deepEqual(ended.sessions, []);
  });
});
