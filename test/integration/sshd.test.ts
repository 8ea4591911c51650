// End to end with the real OpenSSH sshd: NSS for the user, latchkey-authorized-keys for keys,
// pam_latchkey for passwords, account and session (home creation), sshd's ChrootDirectory and
// internal-sftp. Also: `make install DESTDIR=…` puts every file where it belongs.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, lstatSync, writeFileSync, symlinkSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEnv, exampleUsers, examplePasswords, ROOT, type TestEnv, type CegaUser } from '../lib/harness.js';
import { startSshd, sftp, sftpWorkspace, type Sshd, type SftpWorkspace } from '../lib/sshd.js';

const SHIFT = 10000;
const GID = 10000;

describe('sshd + latchkey: SFTP logins of users that exist only upstream', () => {
  let env: TestEnv;
  let sshd: Sshd;
  let ws: SftpWorkspace | undefined;
  let base: string;
  let work: string;
  let key: string;
  const users = exampleUsers();
  const passwords = examplePasswords();
  const withPw = users.filter((u) => u.passwordHash && passwords[u.username] !== undefined);
  // bcrypt cost dominates a password login; prefer a cheap hash for the password cases.
  const pwUser = withPw.find((u) => /^\$(5|6|1)\$/.test(u.passwordHash!)) ?? withPw[0]!;
  const keyUser = users.find((u) => u !== pwUser)!;
  const linkUser = users.find((u) => u !== pwUser && u !== keyUser)!;
  const goneUser = users.find((u) => u !== pwUser && u !== keyUser && u !== linkUser)!;
  const numbers: Record<string, number> = {};

  before(async () => {
    ws = sftpWorkspace('sshd');
    ({ base, work, key } = ws);
    const pub = ws.pub;
    const withKey = users.map((u) => ([keyUser, linkUser, goneUser].includes(u) ? { ...u, sshPublicKeys: [pub] } : u)) as CegaUser[];
    env = await startEnv({ cache: { ttl: '2s', negative_ttl: '1s', refresh_ahead: '0s' }, homes: { base } }, withKey);
    sshd = await startSshd(env.dir, env.socketDir, env.shimEnv);
    writeFileSync(join(work, 'hello.txt'), 'hello from the test\n', { mode: 0o644 });
  });
  after(async () => {
    process.stdout.write(`# sshd login wall times (ms): ${JSON.stringify(numbers)}\n`);
    await sshd?.stop();
    await env?.stop();
    ws?.remove();
  });

  const upload = (name: string): string => `put ${join(work, 'hello.txt')} inbox/${name}\nls inbox\n`;
  const diag = (r: { out: string }): string => `${r.out}\n--- sshd ---\n${sshd.logs().slice(-3000)}\n--- latchkeyd ---\n${env.daemon.logs.slice(-15).join('\n')}`;

  test('key login: first time creates the home, uploads into the chroot; cached login is faster', async () => {
    const first = await sftp(sshd.port, keyUser.username, upload('first.txt'), { key }, work);
    assert.equal(first.code, 0, diag(first));
    numbers.firstKeyLogin = first.ms;
    const home = join(base, keyUser.username);
    const file = statSync(join(home, 'inbox', 'first.txt'));
    assert.equal(file.uid, keyUser.uid + SHIFT);
    assert.equal(file.mode & 0o027, 0, `umask 027 applies to uploads (mode ${(file.mode & 0o777).toString(8)})`);
    const second = await sftp(sshd.port, keyUser.username, upload('second.txt'), { key }, work);
    assert.equal(second.code, 0, diag(second));
    numbers.cachedKeyLogin = second.ms;
    assert.ok(existsSync(join(home, 'inbox', 'second.txt')));
  });

  test('home created once, root-owned chroot with a user-owned upload dir', async () => {
    const home = statSync(join(base, keyUser.username));
    assert.equal(home.uid, 0);
    assert.equal(home.mode & 0o022, 0);
    const inbox = statSync(join(base, keyUser.username, 'inbox'));
    assert.equal(inbox.uid, keyUser.uid + SHIFT);
    assert.equal(inbox.gid, GID);
    assert.equal(inbox.mode & 0o7777, 0o2750);
    const again = await sftp(sshd.port, keyUser.username, 'ls inbox\n', { key }, work);
    assert.equal(again.code, 0, diag(again));
    assert.equal(statSync(join(base, keyUser.username)).ino, home.ino);
    assert.equal(statSync(join(base, keyUser.username, 'inbox')).ino, inbox.ino);
  });

  test('password login (sshpass) uploads; a wrong password is refused', async () => {
    const good = await sftp(sshd.port, pwUser.username, upload('pw.txt'), { password: passwords[pwUser.username]! }, work);
    assert.equal(good.code, 0, diag(good));
    numbers.firstPasswordLogin = good.ms;
    assert.ok(existsSync(join(base, pwUser.username, 'inbox', 'pw.txt')));
    const cached = await sftp(sshd.port, pwUser.username, 'ls inbox\n', { password: passwords[pwUser.username]! }, work);
    assert.equal(cached.code, 0, diag(cached));
    numbers.cachedPasswordLogin = cached.ms;
    const bad = await sftp(sshd.port, pwUser.username, upload('bad.txt'), { password: 'certainly wrong' }, work);
    assert.notEqual(bad.code, 0);
    assert.ok(!existsSync(join(base, pwUser.username, 'inbox', 'bad.txt')));
  });

  test('unknown users are refused, by key and by password', async () => {
    assert.notEqual((await sftp(sshd.port, 'nosuchuser', 'ls\n', { key }, work)).code, 0);
    assert.notEqual((await sftp(sshd.port, 'nosuchuser', 'ls\n', { password: 'x' }, work)).code, 0);
    assert.ok(!existsSync(join(base, 'nosuchuser')));
  });

  test('a symlink planted as the home is not followed: login fails, /etc unchanged', async () => {
    const before = readdirSync('/etc').sort();
    const etc = statSync('/etc');
    symlinkSync('/etc', join(base, linkUser.username));
    const r = await sftp(sshd.port, linkUser.username, upload('evil.txt'), { key }, work);
    assert.notEqual(r.code, 0, diag(r));
    assert.ok(lstatSync(join(base, linkUser.username)).isSymbolicLink());
    assert.ok(env.daemon.logs.some((l) => l.includes('session.home_refused') && l.includes(linkUser.username)),
      'refused by the home check, not for another reason');
    assert.deepEqual(readdirSync('/etc').sort(), before);
    const after = statSync('/etc');
    assert.deepEqual([after.uid, after.gid, after.mode], [etc.uid, etc.gid, etc.mode]);
    assert.ok(!existsSync('/etc/inbox'));
  });

  test('a user removed upstream cannot log in once the cache TTL passed', async () => {
    const ok = await sftp(sshd.port, goneUser.username, 'ls\n', { key }, work);
    assert.equal(ok.code, 0, diag(ok));
    env.service.removeUser(goneUser.username);
    await new Promise((r) => setTimeout(r, 2300));
    const r = await sftp(sshd.port, goneUser.username, 'ls\n', { key }, work);
    assert.notEqual(r.code, 0, diag(r));
  });
});

test('make install DESTDIR=… lands every file in its place', () => {
  const dest = mkdtempSync(join(tmpdir(), 'latchkey-install-'));
  try {
    const r = spawnSync('make', ['-s', 'install', `DESTDIR=${dest}`, 'PREFIX=/usr/local'], { cwd: ROOT, encoding: 'utf8', timeout: 300000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const multiarch = spawnSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).stdout.trim();
    const lib = multiarch ? `/lib/${multiarch}` : '/lib';
    const want: Array<[string, number]> = [
      ['/usr/local/lib/latchkey/dist/src/daemon/main.js', 0o644],
      ['/usr/local/lib/latchkey/bin/latchkeyd', 0o755],
      ['/usr/local/lib/latchkey/native/addon/build/Release/latchkey.node', 0o755],
      ['/usr/local/libexec/latchkey-authorized-keys', 0o755],
      [`${lib}/libnss_latchkey.so.2`, 0o644],
      [`${lib}/security/pam_latchkey.so`, 0o644],
      // root:_latchkey 0640 on a host (the daemon re-reads it after dropping root); in a staging
      // tree without that group, root:root 0640.
      ['/etc/latchkey/latchkey.conf', 0o640],
      ['/usr/local/lib/latchkey/native/rootd/latchkey-rootd', 0o755],
      ['/etc/systemd/system/latchkey-rootd.service', 0o644],
      ['/etc/pam.d/latchkey-sshd', 0o644],
      ['/etc/ssh/sshd_config.d/latchkey.conf', 0o644],
      ['/etc/systemd/system/latchkeyd.service', 0o644],
      ['/etc/tmpfiles.d/latchkey.conf', 0o644],
      ['/usr/local/share/latchkey/nsswitch.conf.example', 0o644],
    ];
    for (const [p, mode] of want) {
      const st = statSync(dest + p);
      assert.equal(st.mode & 0o777, mode, `${p} mode ${(st.mode & 0o777).toString(8)}`);
      assert.equal(st.uid, 0, `${p} root-owned`);
    }
    assert.ok(existsSync(dest + '/usr/local/lib/latchkey/node_modules/better-sqlite3'));
    assert.ok(!existsSync(dest + '/usr/local/lib/latchkey/dist/test'), 'tests are not installed');
    assert.ok(!existsSync(dest + '/usr/local/lib/latchkey/dist/src/example'), 'the example user service is not installed');
    for (const b of ['latchkeyd', 'latchkeyctl']) {
      assert.ok(lstatSync(`${dest}/usr/local/bin/${b}`).isSymbolicLink());
      assert.ok(existsSync(`${dest}/usr/local/bin/${b}`), `${b} link resolves`);
    }
    // An admin's config is never replaced.
    writeFileSync(`${dest}/etc/latchkey/latchkey.conf`, '# mine\n');
    const again = spawnSync(join(ROOT, 'scripts/install'), [dest, '/usr/local'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(again.status, 0, again.stderr);
    assert.equal(readFileSync(`${dest}/etc/latchkey/latchkey.conf`, 'utf8'), '# mine\n');
    // PREFIX reaches the unit and the sshd snippet.
    const other = mkdtempSync(join(tmpdir(), 'latchkey-install-opt-'));
    try {
      const o = spawnSync(join(ROOT, 'scripts/install'), [other, '/opt/lk'], { cwd: ROOT, encoding: 'utf8' });
      assert.equal(o.status, 0, o.stderr);
      assert.match(readFileSync(`${other}/etc/systemd/system/latchkeyd.service`, 'utf8'), /ExecStart=\/opt\/lk\/bin\/latchkeyd /);
      assert.match(readFileSync(`${other}/etc/ssh/sshd_config.d/latchkey.conf`, 'utf8'), /AuthorizedKeysCommand \/opt\/lk\/libexec\/latchkey-authorized-keys %u/);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  } finally {
    rmSync(dest, { recursive: true, force: true });
  }
});
