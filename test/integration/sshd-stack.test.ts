// The shipped PAM stack (etc/pam.d/latchkey-sshd) and sshd drop-in, through the real sshd and
// real ssh/sftp clients: the host's own accounts keep working beside latchkey users, cannot be
// taken over by upstream records of the same name, /etc/nologin holds for both, key+password
// really asks for the password, and chroot_sessions coexists with sshd's ChrootDirectory.
// sshd runs with a private /etc (an overlay holding a local account `localadmin` with an
// /etc/shadow password); latchkeyd reads the same passwd/group copies ([users] local_*) and the
// test's sshd_config ([daemon] sshd_config), as a deployed daemon reads the host's.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEnv, writeConfig, exampleUsers, examplePasswords, type TestEnv, type CegaUser, type ConfigOverrides } from '../lib/harness.js';
import { makePrivateEtc, planSshd, startSshd, sftp, type Sshd, type SshdPlan } from '../lib/sshd.js';

const LOCAL = { name: 'localadmin', uid: 4242, password: 'local admin secret' };

describe('sshd with the shipped PAM stack: local accounts, nologin, key+password, chroot', () => {
  let env: TestEnv;
  let sshd: Sshd;
  let plan: SshdPlan;
  let top: string;
  let base: string;
  let work: string;
  let key: string;
  let attackerKey: string;
  let over: ConfigOverrides;
  const passwords = examplePasswords();
  // A cheap hash (sha512crypt) keeps password logins fast.
  const bob = exampleUsers().find((u) => u.username === 'bob')!;
  const bobPw = passwords.bob!;

  before(async () => {
    // ChrootDirectory wants every component root-owned and not group/world-writable: not /tmp.
    base = mkdtempSync('/var/lib/latchkey-sshd-stack-');
    chmodSync(base, 0o755);
    top = mkdtempSync(join(tmpdir(), 'latchkey-sshd-stack-'));
    chmodSync(top, 0o755);
    work = mkdtempSync(join(tmpdir(), 'latchkey-sshd-stack-client-'));
    key = join(work, 'id_ed25519');
    attackerKey = join(work, 'attacker_ed25519');
    for (const k of [key, attackerKey]) spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', k]);
    const pub = readFileSync(`${key}.pub`, 'utf8').trim();
    const attackerPub = readFileSync(`${attackerKey}.pub`, 'utf8').trim();
    // The hostile upstream: records named like the host's accounts, with the attacker's key and
    // a password the attacker knows (bob's hash).
    const users: CegaUser[] = [
      ...exampleUsers().map((u) => (u.username === 'bob' ? { ...u, sshPublicKeys: [pub] } : u)),
      { username: LOCAL.name, uid: 2001, passwordHash: bob.passwordHash, sshPublicKeys: [attackerPub], gecos: 'attacker' },
      { username: 'root', uid: 2002, passwordHash: bob.passwordHash, sshPublicKeys: [attackerPub], gecos: 'attacker' },
    ] as CegaUser[];
    const etc = makePrivateEtc(top, [LOCAL]);
    plan = await planSshd(top, {
      // root may log in at all, so that only latchkey stands between the attacker and root.
      before: ['PermitRootLogin yes'],
      extraPorts: 2,
      etc,
      // ExposeAuthInfo on: pam_latchkey must ask for the password even when SSH_AUTH_INFO_0
      // says a key was accepted.
      after: ([kbd, pw]) => [
        `Match LocalPort ${kbd}`,
        '    AuthenticationMethods publickey,keyboard-interactive',
        '    KbdInteractiveAuthentication yes',
        '    ExposeAuthInfo yes',
        `Match LocalPort ${pw}`,
        '    AuthenticationMethods publickey,password',
        '    ExposeAuthInfo yes',
      ],
    });
    over = {
      cache: { ttl: '1h', negative_ttl: '1s', refresh_ahead: '0s' },
      homes: { base },
      users: { local_passwd: etc.passwd, local_group: etc.group },
      daemon: { sshd_config: plan.configFile },
    };
    env = await startEnv(over, users);
    sshd = await startSshd(top, env.socketDir, env.shimEnv, plan);
    writeFileSync(join(work, 'hello.txt'), 'hello\n', { mode: 0o644 });
  });
  after(async () => {
    await sshd?.stop();
    await env?.stop();
    for (const d of [top, work, base]) if (d) rmSync(d, { recursive: true, force: true });
  });

  const diag = (r: { out: string }): string => `${r.out}\n--- sshd ---\n${sshd.logs().slice(-3000)}\n--- latchkeyd ---\n${env.daemon.logs.slice(-15).join('\n')}`;

  test('a local account logs in with its /etc/shadow password (pam_unix); a wrong one is refused', async () => {
    const [ok, bad] = await Promise.all([
      sftp(sshd.port, LOCAL.name, 'pwd\n', { password: LOCAL.password }, work),
      sftp(sshd.port, LOCAL.name, 'pwd\n', { password: 'not it' }, work),
    ]);
    assert.equal(ok.code, 0, diag(ok));
    assert.match(ok.out, /Remote working directory: \//);
    assert.notEqual(bad.code, 0, diag(bad));
  });

  test('/etc/nologin refuses local and latchkey users, by password and by key; removing it lets them in', async () => {
    const set = await sshd.inNamespace('echo "down for maintenance" > /etc/nologin');
    assert.equal(set.code, 0, set.stderr);
    try {
      const local = await sftp(sshd.port, LOCAL.name, 'pwd\n', { password: LOCAL.password }, work);
      assert.notEqual(local.code, 0, diag(local));
      const byKey = await sftp(sshd.port, bob.username, 'ls\n', { key }, work);
      assert.notEqual(byKey.code, 0, diag(byKey));
      assert.match(sshd.logs(), new RegExp(`Access denied for user ${bob.username} by PAM account configuration`));
    } finally {
      await sshd.inNamespace('rm -f /etc/nologin');
    }
    assert.ok(!existsSync('/etc/nologin'), 'the host\'s /etc is untouched');
    const local = await sftp(sshd.port, LOCAL.name, 'pwd\n', { password: LOCAL.password }, work);
    assert.equal(local.code, 0, diag(local));
    const byKey = await sftp(sshd.port, bob.username, 'ls\n', { key }, work);
    assert.equal(byKey.code, 0, diag(byKey));
  });

  test('upstream records named localadmin and root log nobody in, with their key or their password', async () => {
    const from = sshd.logs().length;
    // In parallel: each refused password costs pam_unix's failure delay (2 s).
    const attempts = [LOCAL.name, 'root'].flatMap((name) => [
      { name, how: 'key', r: sftp(sshd.port, name, 'pwd\n', { key: attackerKey }, work) },
      { name, how: 'password', r: sftp(sshd.port, name, 'pwd\n', { password: bobPw }, work) },
    ]);
    for (const a of attempts) {
      const r = await a.r;
      assert.notEqual(r.code, 0, `${a.name} by the upstream ${a.how}: ${diag(r)}`);
    }
    assert.doesNotMatch(sshd.logs().slice(from), /Accepted \S+ for (localadmin|root)/);
  });

  for (const [idx, then] of [[0, 'keyboard-interactive'], [1, 'password']] as const) {
    test(`AuthenticationMethods publickey,${then}: the key alone or with a wrong password fails, with the right password it works`, async () => {
      const port = sshd.ports[idx]!;
      const keyOnly = await sftp(port, bob.username, 'ls\n', { key }, work);
      assert.notEqual(keyOnly.code, 0, diag(keyOnly));
      const wrong = await sftp(port, bob.username, 'ls\n', { key, password: 'wrong password', then }, work);
      assert.notEqual(wrong.code, 0, diag(wrong));
      const right = await sftp(port, bob.username, 'ls\n', { key, password: bobPw, then }, work);
      assert.equal(right.code, 0, diag(right));
      assert.match(sshd.logs(), new RegExp(`Accepted ${then === 'password' ? 'password' : 'keyboard-interactive/pam'} for ${bob.username}`));
    });
  }

  test('chroot_sessions = yes beside sshd\'s ChrootDirectory %h: sftp works, latchkeyd says it leaves sshd sessions to sshd', async () => {
    const reloaded = async (): Promise<void> => {
      const n = env.daemon.logs.filter((l) => /"config\.(reloaded|reload_failed)"/.test(l)).length;
      process.kill(env.daemon.pid, 'SIGHUP');
      const deadline = Date.now() + 5000;
      while (env.daemon.logs.filter((l) => /"config\.(reloaded|reload_failed)"/.test(l)).length === n) {
        assert.ok(Date.now() < deadline, 'latchkeyd did not reload');
        await new Promise((r) => setTimeout(r, 20));
      }
      const last = env.daemon.logs.filter((l) => /"config\.(reloaded|reload_failed)"/.test(l)).at(-1)!;
      assert.match(last, /config\.reloaded/, last);
    };
    writeConfig(env.dir, env.service.url, { ...over, pam: { chroot_sessions: 'yes' } });
    try {
      await reloaded();
      const r = await sftp(sshd.port, bob.username, `put ${join(work, 'hello.txt')} inbox/chrooted.txt\nls inbox\n`, { key }, work);
      assert.equal(r.code, 0, diag(r));
      assert.ok(existsSync(join(base, bob.username, 'inbox', 'chrooted.txt')));
      const dropIn = join(plan.dir, 'sshd_config.d', 'latchkey.conf');
      const line = readFileSync(dropIn, 'utf8').split('\n').findIndex((l) => /^\s*ChrootDirectory %h/.test(l)) + 1;
      const notice = env.daemon.logs.find((l) => l.includes('"deploy.check"') && l.includes('sshd.chroot_sessions'));
      assert.ok(notice, env.daemon.logs.slice(-10).join('\n'));
      assert.ok(notice.includes(`${dropIn}:${line}`), notice);
    } finally {
      writeConfig(env.dir, env.service.url, over);
      await reloaded();
    }
  });

  test('20 parallel wrong passwords through sshd: at most max_failures are ever checked, then the right one is refused', { timeout: 90_000 }, async () => {
    const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => sftp(sshd.port, 'carol', 'pwd\n', { password: `guess ${i}` }, work)));
    assert.ok(runs.every((r) => r.code !== 0), 'a wrong password logged in');
    const checked = env.daemon.logs.filter((l) => l.includes('"event":"auth.result"') && l.includes('"user":"carol"') && l.includes('"result":"wrong_password"')).length;
    process.stdout.write(`# 20 parallel wrong sftp passwords for carol: ${checked} checked by latchkeyd (max_failures 5)\n`);
    assert.ok(checked >= 1 && checked <= 5, `latchkeyd checked ${checked} wrong passwords`);
    if (checked === 5) {
      const right = await sftp(sshd.port, 'carol', 'pwd\n', { password: passwords.carol! }, work);
      assert.notEqual(right.code, 0, 'locked out: even the right password is refused for the lockout time');
    }
  });

  // Last: it stops latchkeyd. A stopped daemon (its sockets gone) must not lock the admins out.
  test('with latchkeyd stopped, the local account still logs in by password, at once', async () => {
    await env.daemon.stop();
    const r = await sftp(sshd.port, LOCAL.name, 'pwd\n', { password: LOCAL.password }, work);
    assert.equal(r.code, 0, diag(r));
    assert.ok(r.ms < 5000, `took ${r.ms} ms`);
    const latchkeyUser = await sftp(sshd.port, bob.username, 'ls\n', { key }, work);
    assert.notEqual(latchkeyUser.code, 0, 'latchkey users fail closed');
  });
});
