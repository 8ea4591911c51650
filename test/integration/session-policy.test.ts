// Issue 17 session policies through the real sshd, pam_latchkey, latchkeyd and latchkey-rootd:
// on_limit = replace-oldest really ends the older sshd process (its sftp client sees the
// connection close) while the new login works; a user removed upstream loses a live sftp session
// at the refresh that learns it; every event reaches a test collector.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startEnv, exampleUsers, examplePasswords, latchkeyctl, runInNamespace, type TestEnv, type CegaUser } from '../lib/harness.js';
import { sftp, sftpWorkspace, startSshd, type Sshd, type SftpWorkspace } from '../lib/sshd.js';

/** An sftp client that stays logged in until stdin closes or the server ends the connection. */
function liveSftp(port: number, user: string, key: string, work: string): { proc: ChildProcess; exited: Promise<number | null>; out: () => string } {
  const p = spawn('sftp', ['-i', key, '-o', 'IdentitiesOnly=yes', '-o', 'PreferredAuthentications=publickey', '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-P', String(port), '-b', '-', `${user}@127.0.0.1`],
  { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work } });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  p.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  // A user at work: a command every half second. sftp -b reads its next command from stdin
  // before it looks at the connection again, so an idle one would not notice the server ending
  // it; and the command must go to the server (`pwd` is answered locally, `ls` is not).
  const ping = setInterval(() => { if (p.stdin!.writable) p.stdin!.write('ls\n'); }, 500);
  p.stdin!.on('error', () => { /* the connection is gone; exited says so */ });
  const exited = new Promise<number | null>((r) => p.on('close', (code) => { clearInterval(ping); r(code); }));
  p.stdin!.write('pwd\n');
  return { proc: p, exited, out: () => out };
}

/** latchkeyctl ARGS --json against this daemon; it must succeed. */
async function ctlJson(env: TestEnv, args: string[]): Promise<Record<string, any>> {
  const r = await latchkeyctl(env.socketDir, [...args, '--json']);
  assert.equal(r.code, 0, `latchkeyctl ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, any>;
}

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 15000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('session policies through real sshd logins', () => {
  let env: TestEnv;
  let sshd: Sshd;
  let ws: SftpWorkspace | undefined;
  let base: string;
  let work: string;
  let key: string;
  let collector: Server;
  const events: Array<Record<string, unknown>> = [];
  const users = exampleUsers();
  const alice = users[0]!;
  const bob = users[1]!;
  const live: ChildProcess[] = [];

  const ctl = (args: string[]) => ctlJson(env, args);
  const openFor = async (user: string) => (await ctl(['sessions', user])).sessions as Array<{ id: string; pid: number }>;
  const diag = () => `--- sshd ---\n${sshd.logs().slice(-2000)}\n--- latchkeyd ---\n${env.daemon.logs.slice(-20).join('\n')}`;

  before(async () => {
    collector = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => { body += d.toString(); });
      req.on('end', () => { events.push(...(JSON.parse(body) as { events: Array<Record<string, unknown>> }).events); res.end(); });
    });
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
    ws = sftpWorkspace('policy');
    ({ base, work, key } = ws);
    const withKey = users.map((u) => ({ ...u, sshPublicKeys: [ws!.pub] })) as CegaUser[];
    env = await startEnv({
      cache: { ttl: '2s', negative_ttl: '1s', refresh_ahead: '0s' }, homes: { base },
      pam: { max_sessions: 1, session_limit: 'per-user', on_limit: 'replace-oldest' },
      events: { url: `http://127.0.0.1:${(collector.address() as AddressInfo).port}/events`, timeout: '1s' },
    }, withKey);
    sshd = await startSshd(env.dir, env.socketDir, env.shimEnv);
  });
  after(async () => {
    for (const p of live) if (p.exitCode === null) p.kill('SIGTERM');
    await sshd?.stop();
    await env?.stop();
    collector?.close();
    ws?.remove();
  });

  test('replace-oldest: a second login ends the first sshd session (its client sees the close); the new one works', async () => {
    const first = liveSftp(sshd.port, alice.username, key, work);
    live.push(first.proc);
    const [s1] = await until('the first session', async () => { const s = await openFor(alice.username); return s.length === 1 ? s : undefined; }).catch((e) => { throw new Error(`${e}\n${first.out()}\n${diag()}`); });
    const second = liveSftp(sshd.port, alice.username, key, work);
    live.push(second.proc);
    const code = await Promise.race([first.exited, new Promise((r) => setTimeout(() => r('still running'), 15000))]);
    assert.notEqual(code, 'still running', `the older sftp client was not disconnected\n${diag()}`);
    const [s2] = await until('the second session', async () => { const s = await openFor(alice.username); return s.length === 1 && s[0]!.id !== s1!.id ? s : undefined; });
    assert.equal(second.proc.exitCode, null, 'the new login is still connected');
    second.proc.stdin!.write('pwd\n');
    const ended = (await ctl(['sessions', alice.username, '--ended'])).ended as Array<{ id: string; end_reason: string; end_detail: string }>;
    const r = ended.find((e) => e.id === s1!.id);
    assert.ok(r, JSON.stringify(ended));
    assert.equal(r.end_reason, 'replaced');
    assert.equal(r.end_detail, `replaced by session ${s2!.id}`);
    await until('events at the collector', () => events.some((e) => e.event === 'replaced' && e.session_id === s1!.id)
      && events.some((e) => e.event === 'open' && e.session_id === s2!.id));
    assert.ok(env.daemon.logs.some((l) => l.includes('"session.replaced"') && l.includes(s1!.id)));
    const st = await ctl(['status']);
    assert.ok(st.events.sent >= 3, JSON.stringify(st.events));
    assert.equal(st.events.dropped, 0);
    second.proc.stdin!.end();
    await second.exited;
  });

  test('a user removed upstream loses a live sftp session at the refresh that learns it', async () => {
    const s = liveSftp(sshd.port, bob.username, key, work);
    live.push(s.proc);
    const [open] = await until('bob\'s session', async () => { const o = await openFor(bob.username); return o.length === 1 ? o : undefined; }).catch((e) => { throw new Error(`${e}\n${s.out()}\n${diag()}`); });
    env.service.setUsers(users.filter((u) => u !== bob) as CegaUser[]);
    await new Promise((r) => setTimeout(r, 2500)); // past the 2 s TTL
    // The refresh that learns it: any lookup of bob, here getent through the NSS module.
    const g = await runInNamespace(`getent passwd ${bob.username}`, env.shimEnv);
    assert.equal(g.code, 2, `getent now says "no such user": ${g.stdout}${g.stderr}`);
    const code = await Promise.race([s.exited, new Promise((r) => setTimeout(() => r('still running'), 15000))]);
    assert.notEqual(code, 'still running', `bob's sftp client was not disconnected\n${diag()}`);
    const ended = (await ctl(['sessions', bob.username, '--ended'])).ended as Array<{ id: string; end_reason: string }>;
    assert.equal(ended.find((e) => e.id === open!.id)?.end_reason, 'removed', JSON.stringify(ended));
    await until('the revoked event', () => events.some((e) => e.event === 'revoked' && e.reason === 'removed' && e.session_id === open!.id));
  });
});

describe('refuse, max age and renewal through real sshd logins', () => {
  let env: TestEnv;
  let sshd: Sshd;
  let ws: SftpWorkspace | undefined;
  let base: string;
  let work: string;
  let key: string;
  const passwords = examplePasswords();
  const users = exampleUsers();
  // A cheap hash: the password login must be quick next to the ages below.
  const user = users.find((u) => u.passwordHash && /^\$(5|6|1)\$/.test(u.passwordHash) && passwords[u.username] !== undefined)!;
  const live: ChildProcess[] = [];
  const MAX_AGE_S = 8;

  const ctl = (args: string[]) => ctlJson(env, args);

  before(async () => {
    ws = sftpWorkspace('policy');
    ({ base, work, key } = ws);
    const pub = ws.pub;
    env = await startEnv({
      homes: { base },
      pam: { max_sessions: 1, session_limit: 'per-user-service-host', on_limit: 'refuse', max_session_age: `${MAX_AGE_S}s`, session_renewal: 'on-login' },
    }, users.map((u) => ({ ...u, sshPublicKeys: [pub] })) as CegaUser[]);
    sshd = await startSshd(env.dir, env.socketDir, env.shimEnv);
  });
  after(async () => {
    for (const p of live) if (p.exitCode === null) p.kill('SIGTERM');
    await sshd?.stop();
    await env?.stop();
    ws?.remove();
  });

  test('a second login in the scope is refused; a password login renews the open session, which then ends at max age', async () => {
    const first = liveSftp(sshd.port, user.username, key, work);
    live.push(first.proc);
    const t0 = Date.now();
    await until('the first session', async () => ((await ctl(['sessions', user.username])).sessions.length === 1 ? true : undefined));
    // refuse: the same service from the same host is the same scope
    const second = await sftp(sshd.port, user.username, 'ls\n', { key }, work);
    assert.notEqual(second.code, 0, `the second login was let in:\n${second.out}`);
    assert.equal(first.proc.exitCode, null, 'the first one is untouched');
    assert.ok(env.daemon.logs.some((l) => l.includes('"session.limit"')));
    // renewal: a password proved again restarts the first session's clock (this login itself
    // is refused at its session, as the limit says)
    await new Promise((r) => setTimeout(r, 2000));
    await sftp(sshd.port, user.username, 'ls\n', { password: passwords[user.username]! }, work);
    const [open] = (await ctl(['sessions', user.username])).sessions as Array<{ id: string; renewed_at?: number }>;
    assert.ok(open!.renewed_at !== undefined, 'renewed by the password login');
    // past the first deadline, still connected; then ended at max age, from the renewal
    const firstDeadline = t0 + MAX_AGE_S * 1000;
    await new Promise((r) => setTimeout(r, Math.max(0, firstDeadline + 500 - Date.now())));
    assert.equal(first.proc.exitCode, null, 'not ended at the first deadline: the renewal moved it');
    const code = await Promise.race([first.exited, new Promise((r) => setTimeout(() => r('still running'), MAX_AGE_S * 1000 + 5000))]);
    assert.notEqual(code, 'still running', 'ended at max age after the renewal');
    const ended = (await ctl(['sessions', user.username, '--ended'])).ended as Array<{ id: string; end_reason: string }>;
    assert.equal(ended.find((e) => e.id === open!.id)?.end_reason, 'max_age', JSON.stringify(ended));
  });
});
