// Persistent local users (issue 16) as a sysadmin meets them: added with the real latchkeyctl,
// resolved by the real NSS module (getent, as root and as an unprivileged user who went through
// the shared-memory map first), logging in through the real sshd with a password and with a key,
// and still there after a daemon restart and a wipe of the runtime directory (/run is a tmpfs).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, latchkeyctl, runInNamespace, startDaemon, startEnv, exampleUsers, type DaemonProc, type TestEnv } from '../lib/harness.js';
import { startSshd, sftp, sftpWorkspace, type Sshd, type SftpWorkspace } from '../lib/sshd.js';

const CTL = join(ROOT, 'bin/latchkeyctl');
const GID = 10000;

interface Out { code: number | null; stdout: string; stderr: string }

describe('persistent local users: latchkeyctl local, getent, sshd, restart and /run wipe', () => {
  let env: TestEnv;
  let daemon: DaemonProc;
  let sshd: Sshd;
  let ws: SftpWorkspace | undefined;
  let base: string;
  let work: string;
  let key: string;
  const upstreamName = exampleUsers()[0]!.username;

  const ctl = (args: string[], input = ''): Promise<Out> => latchkeyctl(env.socketDir, args, input);
  const ok = async (args: string[], input = ''): Promise<string> => {
    const r = await ctl(args, input);
    assert.equal(r.code, 0, `latchkeyctl ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const getent = async (what: string, asUser?: string): Promise<Out> => {
    const cmd = asUser ? `runuser -u ${asUser} -- getent passwd ${what}` : `getent passwd ${what}`;
    return runInNamespace(cmd, env.shimEnv);
  };
  const diag = (r: { out: string }): string => `${r.out}\n--- sshd ---\n${sshd.logs().slice(-2000)}\n--- latchkeyd ---\n${daemon.logs.slice(-15).join('\n')}`;

  before(async () => {
    ws = sftpWorkspace('local-users');
    ({ base, work, key } = ws);
    writeFileSync(join(work, 'hello.txt'), 'hello\n');
    // sha512crypt keeps the password logins fast; the upgrade tests use costlier contexts.
    env = await startEnv({ homes: { base }, local: { contexts: 's5k=sha512crypt:5000', default_context: 's5k' } });
    daemon = env.daemon;
    sshd = await startSshd(env.dir, env.socketDir, env.shimEnv);
  });
  after(async () => {
    await sshd?.stop();
    await daemon?.stop();
    await env?.stop();
    ws?.remove();
  });

  test('an unprivileged user looked the name up first: once added, it resolves at once, in the local range', async () => {
    // nobody's miss is published in the shared-memory map as a negative entry (issue 15)...
    const before = await getent('ops1', 'nobody');
    assert.equal(before.code, 2, before.stdout + before.stderr);
    await ok(['local', 'add', 'ops1', '--password-stdin', '--key', `${key}.pub`, '--gecos', 'Operator One'], 'Ops-pass-1\n');
    // ...and a stored user must not be hidden by it, for root nor for nobody.
    for (const who of [undefined, 'nobody']) {
      const r = await getent('ops1', who);
      assert.equal(r.code, 0, `${who ?? 'root'}: ${r.stdout}${r.stderr}`);
      const f = r.stdout.trim().split(':');
      assert.equal(f[0], 'ops1');
      assert.ok(Number(f[2]) >= 9000 && Number(f[2]) <= 9999, r.stdout);
      assert.equal(Number(f[3]), GID);
      assert.equal(f[4], 'Operator One');
      assert.equal(f[5], join(base, 'ops1'));
    }
    const byUid = await getent('9000');
    assert.match(byUid.stdout, /^ops1:x:9000:/);
    // A uid of the range that nobody has: "no such user", never asked upstream.
    const none = await getent('9999');
    assert.equal(none.code, 2);
  });

  test('password and key logins through sshd; the home belongs to the stored uid', async () => {
    const pw = await sftp(sshd.port, 'ops1', `put ${join(work, 'hello.txt')} inbox/pw.txt\n`, { password: 'Ops-pass-1' }, work);
    assert.equal(pw.code, 0, diag(pw));
    const k = await sftp(sshd.port, 'ops1', `put ${join(work, 'hello.txt')} inbox/key.txt\n`, { key }, work);
    assert.equal(k.code, 0, diag(k));
    const st = statSync(join(base, 'ops1', 'inbox', 'key.txt'));
    assert.equal(st.uid, 9000);
    const bad = await sftp(sshd.port, 'ops1', 'ls\n', { password: 'wrong password' }, work);
    assert.notEqual(bad.code, 0);
  });

  test('still there after a restart and a wipe of the runtime directory', async () => {
    await daemon.stop();
    // What a reboot does to /run: the cache, the sessions and the map are gone.
    for (const f of readdirSync(env.socketDir)) rmSync(join(env.socketDir, f), { recursive: true, force: true });
    daemon = await startDaemon(env.configFile, env.socketDir);
    const r = await getent('ops1');
    assert.equal(r.code, 0, r.stderr);
    const pw = await sftp(sshd.port, 'ops1', 'ls inbox\n', { password: 'Ops-pass-1' }, work);
    assert.equal(pw.code, 0, diag(pw));
    assert.match(pw.out, /key\.txt/);
    const k = await sftp(sshd.port, 'ops1', 'ls inbox\n', { key }, work);
    assert.equal(k.code, 0, diag(k));
  });

  test('disabled: no login (account phase, logged); enabled again: logins work', async () => {
    await ok(['local', 'disable', 'ops1']);
    const refused = await sftp(sshd.port, 'ops1', 'ls\n', { key }, work);
    assert.notEqual(refused.code, 0, diag(refused));
    assert.ok(daemon.logs.some((l) => l.includes('local account disabled')), daemon.logs.slice(-10).join('\n'));
    await ok(['local', 'enable', 'ops1']);
    const back = await sftp(sshd.port, 'ops1', 'ls\n', { key }, work);
    assert.equal(back.code, 0, diag(back));
  });

  test('an account with --expires logs in until then and is refused after it', async () => {
    const when = new Date(Date.now() + 4000).toISOString();
    await ok(['local', 'add', 'temp1', '--key', `${key}.pub`, '--expires', when]);
    const early = await sftp(sshd.port, 'temp1', 'ls\n', { key }, work);
    assert.equal(early.code, 0, diag(early));
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(when) - Date.now()) + 300));
    const late = await sftp(sshd.port, 'temp1', 'ls\n', { key }, work);
    assert.notEqual(late.code, 0, diag(late));
    assert.ok(daemon.logs.some((l) => l.includes('local account expired')), daemon.logs.slice(-10).join('\n'));
  });

  test('a name the upstream has: refused; forced, the stored user wins and status shows the conflict', async () => {
    const r = await ctl(['local', 'add', upstreamName, '--password-stdin'], 'Pw-x-12345\n');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /upstream/i);
    await ok(['local', 'add', upstreamName, '--password-stdin', '--force'], 'Pw-x-12345\n');
    const g = await getent(upstreamName);
    assert.equal(g.code, 0);
    const uid = Number(g.stdout.split(':')[2]);
    assert.ok(uid >= 9000 && uid <= 9999, `the stored user answers: ${g.stdout}`);
    // At once: the forced add records the conflict itself (not the hourly background check).
    const status = JSON.parse(await ok(['status', '--json'])) as { local?: { conflicts: Array<{ name: string }> } };
    assert.ok(status.local?.conflicts.some((c) => c.name === upstreamName), JSON.stringify(status.local));
    assert.ok(daemon.logs.some((l) => l.includes('"local.conflict"') && l.includes(upstreamName)));
  });

  test('local passwd on a terminal: asked twice without echo; a mismatch changes nothing', async () => {
    // script(1) gives latchkeyctl a pseudo-terminal and feeds it what we type.
    const onTty = (input: string): Promise<Out> => new Promise((resolve, reject) => {
      const cmd = `'${process.execPath}' '${CTL}' local passwd ops1`;
      const p = spawn('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, LATCHKEY_SOCKET_DIR: env.socketDir, TERM: 'dumb' }, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
      p.on('error', reject);
      p.on('close', (code) => resolve({ code, stdout, stderr: '' }));
      // One line at a time, as a person types: the second prompt comes after the first answer.
      const lines = input.split('\n');
      let i = 0;
      const next = (): void => { if (i < lines.length) { p.stdin.write(lines[i++] + (i < lines.length ? '\n' : '')); setTimeout(next, 300); } else p.stdin.end(); };
      setTimeout(next, 500);
    });
    const bad = await onTty('Tty-pass-2\nTty-pass-3');
    assert.notEqual(bad.code, 0, bad.stdout);
    assert.match(bad.stdout, /do not match/);
    const good = await onTty('Tty-pass-2\nTty-pass-2');
    assert.equal(good.code, 0, good.stdout);
    assert.match(good.stdout, /new password for ops1: /);
    assert.match(good.stdout, /again: /);
    assert.doesNotMatch(good.stdout, /Tty-pass-2/, 'never echoed');
    const login = await sftp(sshd.port, 'ops1', 'ls\n', { password: 'Tty-pass-2' }, work);
    assert.equal(login.code, 0, diag(login));
    const old = await sftp(sshd.port, 'ops1', 'ls\n', { password: 'Ops-pass-1' }, work);
    assert.notEqual(old.code, 0, 'the old password no longer works');
  });

  test('the store file is the daemon account\'s, 0600, and never shows a hash to latchkeyctl', async () => {
    const db = JSON.parse(await ok(['status', '--json'])) as { local: { db: string } };
    const st = statSync(db.local.db);
    assert.equal(st.mode & 0o777, 0o600);
    const show = await ok(['local', 'show', 'ops1', '--json']);
    assert.doesNotMatch(show, /\$6\$|\$y\$|\$2b\$/);
    assert.ok(existsSync(db.local.db));
    assert.doesNotMatch(readFileSync(join(env.dir, 'latchkey.conf'), 'utf8'), /Ops-pass-1/);
  });
});
