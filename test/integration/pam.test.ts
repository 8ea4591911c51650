// pam_latchkey.so under the real libpam, driven by pamtester in a private mount namespace whose
// /etc/pam.d is a temp copy with our service files. Part 1 scripts priv.sock to check every
// status → PAM code mapping and the module options; part 2 runs the real latchkeyd against the
// example user service.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, statSync, existsSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcrypt';
import { startEnv, exampleUsers, examplePasswords, type TestEnv, type CegaUser } from '../lib/harness.js';
import { latchkeyStack, makePamDir, pamtester, startFakePriv, PamMsg, PAM_MODULE, type FakePriv, type NsResult } from '../lib/pam.js';
import { ok, fail } from '../../src/server/dispatch.js';
import { Status } from '../../src/protocol/generated.js';

const SVC = 'latchkey-test';
/** pamtester exits 0 only when every operation succeeded. */
const succeeded = (r: NsResult): void => assert.equal(r.code, 0, `expected success:\n${r.stdout}${r.stderr}`);
const failedWith = (r: NsResult, msg: string): void => {
  assert.notEqual(r.code, 0, r.stdout);
  assert.ok(r.stdout.includes(msg), `expected "${msg}":\n${r.stdout}${r.stderr}`);
};

test('the module is built', () => assert.ok(existsSync(PAM_MODULE), `${PAM_MODULE} missing: make -C pam`));

// ---- part 1: scripted daemon ------------------------------------------------------------------

describe('pam_latchkey against a scripted priv.sock', () => {
  let dir: string;
  let fake: FakePriv;
  let pamDir: string;
  let env: Record<string, string>;
  const byUser: Record<string, number> = {
    good: Status.OK, nouser: Status.NOTFOUND, down: Status.UNAVAIL, wrong: Status.AUTH_FAILED,
    slow: Status.THROTTLED, gone: Status.EXPIRED, many: Status.LIMIT, broken: Status.INTERNAL,
  };
  let chrootHome = '';
  const answer = (user: string, okFields: Record<string, string | number> = {}) => {
    const s = byUser[user] ?? Status.NOTFOUND;
    return s === Status.OK ? ok(okFields) : fail(s, `scripted ${user}`);
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'latchkey-pam-fake-'));
    chmodSync(dir, 0o755);
    chrootHome = join(dir, 'chroot-home');
    fake = await startFakePriv(dir, {
      AUTH_PASSWORD: (f) => {
        if (f.user === 'good') return f.password === 'right password' ? ok() : fail(Status.AUTH_FAILED);
        return answer(f.user as string);
      },
      ACCT_MGMT: (f) => answer(f.user as string),
      SESSION_OPEN: (f) => answer(f.user as string, {
        session_id: 'sess-1', home: f.tty === 'chroot' ? chrootHome : '/nonexistent', umask: 0o027, chroot: f.tty === 'chroot' ? 1 : 0,
      }),
      SESSION_CLOSE: (f) => answer(f.user as string),
    });
    pamDir = makePamDir(dir, {
      [SVC]: latchkeyStack(),
      'lk-unknown-deny': latchkeyStack('unknown=deny'),
      'lk-options': latchkeyStack('no_such_option umask=99 [prompt=Secret word: ]'),
      'lk-socket-opt': latchkeyStack(`socket_dir=${fake.dir}`),
      'lk-first-pass': `auth optional ${PAM_MODULE}\nauth requisite ${PAM_MODULE} use_first_pass\naccount required pam_permit.so\n`,
      'lk-try-first': `auth optional ${PAM_MODULE}\nauth requisite ${PAM_MODULE} try_first_pass\naccount required pam_permit.so\n`,
    });
    env = { LATCHKEY_SOCKET_DIR: fake.dir };
  });
  after(async () => {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('right password: prompts with the LocalEGA prompt and sends user, password, service, rhost', async () => {
    fake.requests.length = 0;
    const r = await pamtester(pamDir, env, SVC, 'good', ['authenticate'], { input: 'right password\n', items: { rhost: '127.0.0.1' } });
    succeeded(r);
    assert.match(r.stdout, /Please, enter your EGA password: /);
    assert.deepEqual(fake.requests, [{ op: 'AUTH_PASSWORD', fields: { user: 'good', password: 'right password', service: SVC, rhost: '127.0.0.1' } }]);
  });

  test('status mapping for authenticate', async () => {
    const cases: Array<[string, string]> = [
      ['wrong', PamMsg.AUTH_ERR], ['nouser', PamMsg.USER_UNKNOWN], ['slow', PamMsg.MAXTRIES],
      ['down', PamMsg.AUTHINFO_UNAVAIL],
    ];
    for (const [user, msg] of cases) failedWith(await pamtester(pamDir, env, SVC, user, ['authenticate'], { input: 'pw\n' }), msg);
    failedWith(await pamtester(pamDir, env, SVC, 'good', ['authenticate'], { input: 'wrong\n' }), PamMsg.AUTH_ERR);
  });

  test('no daemon (no socket) → PAM_AUTHINFO_UNAVAIL, quickly', async () => {
    const r = await pamtester(pamDir, { LATCHKEY_SOCKET_DIR: join(dir, 'nowhere') }, SVC, 'good', ['authenticate'], { input: 'right password\n' });
    failedWith(r, PamMsg.AUTHINFO_UNAVAIL);
    assert.ok(r.ms < 5000, `took ${r.ms} ms`);
  });

  test('socket_dir= option, custom prompt, unknown options and bad umask are not fatal', async () => {
    succeeded(await pamtester(pamDir, {}, 'lk-socket-opt', 'good', ['authenticate'], { input: 'right password\n' }));
    const r = await pamtester(pamDir, env, 'lk-options', 'good', ['authenticate'], { input: 'right password\n' });
    succeeded(r);
    assert.match(r.stdout, /Secret word: /);
  });

  test('a public key already accepted by sshd (SSH_AUTH_INFO_0) needs no password', async () => {
    fake.requests.length = 0;
    const key = { SSH_AUTH_INFO_0: 'publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\n' };
    succeeded(await pamtester(pamDir, env, SVC, 'wrong', ['authenticate'], { pamEnv: key }));
    assert.equal(fake.requests.length, 0);
    const pwOnly = { SSH_AUTH_INFO_0: 'password\n' };
    failedWith(await pamtester(pamDir, env, SVC, 'wrong', ['authenticate'], { pamEnv: pwOnly, input: 'x\n' }), PamMsg.AUTH_ERR);
  });

  test('use_first_pass reuses the stored password; try_first_pass asks again after a failure', async () => {
    fake.requests.length = 0;
    const r = await pamtester(pamDir, env, 'lk-first-pass', 'good', ['authenticate'], { input: 'right password\n' });
    succeeded(r);
    assert.equal(fake.requests.length, 2);
    assert.equal(fake.requests[1]!.fields.password, 'right password');
    assert.equal(r.stdout.split('EGA password').length - 1, 1, 'asked once');
    fake.requests.length = 0;
    const t = await pamtester(pamDir, env, 'lk-try-first', 'good', ['authenticate'], { input: 'bad\nright password\n' });
    succeeded(t);
    assert.deepEqual(fake.requests.map((q) => q.fields.password), ['bad', 'bad', 'right password']);
  });

  test('account: OK, NOTFOUND → PAM_IGNORE (stack proceeds) or unknown=deny, EXPIRED, UNAVAIL', async () => {
    succeeded(await pamtester(pamDir, env, SVC, 'good', ['acct_mgmt']));
    succeeded(await pamtester(pamDir, env, SVC, 'nouser', ['acct_mgmt']));
    failedWith(await pamtester(pamDir, env, 'lk-unknown-deny', 'nouser', ['acct_mgmt']), PamMsg.USER_UNKNOWN);
    failedWith(await pamtester(pamDir, env, SVC, 'gone', ['acct_mgmt']), PamMsg.ACCT_EXPIRED);
    failedWith(await pamtester(pamDir, env, SVC, 'down', ['acct_mgmt']), PamMsg.AUTHINFO_UNAVAIL);
  });

  test('session: open/close carry the same pid; LIMIT → PERM_DENIED; daemon errors → SESSION_ERR', async () => {
    fake.requests.length = 0;
    succeeded(await pamtester(pamDir, env, SVC, 'good', ['open_session', 'close_session'], { items: { tty: 'ssh', rhost: '127.0.0.1' } }));
    const [open, close] = fake.requests;
    assert.equal(open!.op, 'SESSION_OPEN');
    assert.deepEqual({ ...open!.fields, pid: 0 }, { user: 'good', service: SVC, rhost: '127.0.0.1', tty: 'ssh', pid: 0 });
    assert.ok((open!.fields.pid as number) > 1);
    assert.deepEqual(close, { op: 'SESSION_CLOSE', fields: { user: 'good', service: SVC, pid: open!.fields.pid } });
    failedWith(await pamtester(pamDir, env, SVC, 'many', ['open_session']), PamMsg.PERM_DENIED);
    failedWith(await pamtester(pamDir, env, SVC, 'broken', ['open_session']), PamMsg.SESSION_ERR);
    failedWith(await pamtester(pamDir, env, SVC, 'down', ['open_session']), PamMsg.SESSION_ERR);
  });

  test('session with chroot=1 confines the process to the home (missing home → SESSION_ERR)', async () => {
    failedWith(await pamtester(pamDir, env, SVC, 'good', ['open_session'], { items: { tty: 'chroot' } }), PamMsg.SESSION_ERR);
    mkdirSync(chrootHome, { mode: 0o755 });
    succeeded(await pamtester(pamDir, env, SVC, 'good', ['open_session'], { items: { tty: 'chroot' } }));
  });

  test('password changes are refused', async () => {
    failedWith(await pamtester(pamDir, env, SVC, 'good', ['chauthtok'], { input: 'a\nb\nb\n' }), PamMsg.AUTHTOK_ERR);
  });
});

// ---- part 2: the real daemon ------------------------------------------------------------------

function hashKindOf(h: string | null | undefined): string {
  if (!h) return 'none';
  const m = /^\$(2[aby]|1|5|6|y)\$/.exec(h);
  return m ? `$${m[1]}$` : 'DES';
}

describe('pam_latchkey against latchkeyd and the example user service', () => {
  let env: TestEnv;
  let pamDir: string;
  let shim: Record<string, string>;
  const users = exampleUsers();
  const passwords = examplePasswords();
  const timings: Record<string, number> = {};

  before(async () => {
    env = await startEnv({ cache: { ttl: '2s', negative_ttl: '1s', refresh_ahead: '0s' }, pam: { max_failures: 3 } }, users);
    pamDir = makePamDir(env.dir, { [SVC]: latchkeyStack() });
    shim = env.shimEnv;
    mkdirSync(join(env.dir, 'homes'), { recursive: true, mode: 0o755 });
  });
  after(async () => {
    process.stdout.write(`# pamtester authenticate wall time per hash kind (ms): ${JSON.stringify(timings)}\n`);
    const daemonMs: Record<string, number> = {};
    for (const line of env?.daemon.logs ?? []) {
      try {
        const e = JSON.parse(line) as { event?: string; result?: string; kind?: string; ms?: number };
        if (e.event === 'auth.result' && e.result === 'ok' && e.kind) daemonMs[e.kind] ??= e.ms ?? -1;
      } catch { /* not a log line */ }
    }
    process.stdout.write(`# latchkeyd verify time per hash kind, first success (ms): ${JSON.stringify(daemonMs)}\n`);
    await env?.stop();
  });

  test('every hash kind of the example users verifies through PAM', async () => {
    const withHash = users.filter((u) => u.passwordHash && passwords[u.username] !== undefined);
    const kinds = new Set(withHash.map((u) => hashKindOf(u.passwordHash)));
    for (const k of ['$2a$', '$2b$', '$2y$', '$1$', '$5$', '$6$', '$y$', 'DES']) assert.ok(kinds.has(k), `no example user with a ${k} hash`);
    // Each failure comes from its own remote host: per-source throttling must not kick in here.
    let n = 0;
    for (const u of withHash) {
      const r = await pamtester(pamDir, shim, SVC, u.username, ['authenticate'], { input: `${passwords[u.username]}\n`, items: { rhost: '127.0.0.1' } });
      succeeded(r);
      timings[hashKindOf(u.passwordHash)] = r.ms;
      failedWith(await pamtester(pamDir, shim, SVC, u.username, ['authenticate'], { input: 'not the password\n', items: { rhost: `127.0.1.${++n}` } }), PamMsg.AUTH_ERR);
    }
  });

  test('unknown user → user unknown; user without a password → auth error', async () => {
    failedWith(await pamtester(pamDir, shim, SVC, 'nosuchuser', ['authenticate'], { input: 'x\n', items: { rhost: '127.0.2.1' } }), PamMsg.USER_UNKNOWN);
    const nohash = users.find((u) => !u.passwordHash);
    assert.ok(nohash, 'the example users include one without a password hash');
    failedWith(await pamtester(pamDir, shim, SVC, nohash.username, ['authenticate'], { input: 'x\n', items: { rhost: '127.0.2.2' } }), PamMsg.AUTH_ERR);
  });

  test('acct_mgmt for root (not managed) ignores, so the stack proceeds', async () => {
    succeeded(await pamtester(pamDir, shim, SVC, 'root', ['acct_mgmt']));
  });

  test('password changed upstream: after the TTL the new one works and the old one not', async () => {
    const u = users.find((x) => x.passwordHash && passwords[x.username])!;
    succeeded(await pamtester(pamDir, shim, SVC, u.username, ['authenticate', 'acct_mgmt'], { input: `${passwords[u.username]}\n` }));
    env.service.setUsers(users.map((x) => (x.username === u.username ? { ...x, passwordHash: bcrypt.hashSync('brand new pw', 4) } : x)) as CegaUser[]);
    await new Promise((r) => setTimeout(r, 2300));
    succeeded(await pamtester(pamDir, shim, SVC, u.username, ['acct_mgmt', 'authenticate'], { input: 'brand new pw\n' }));
    failedWith(await pamtester(pamDir, shim, SVC, u.username, ['authenticate'], { input: `${passwords[u.username]}\n`, items: { rhost: '127.0.2.3' } }), PamMsg.AUTH_ERR);
    env.service.setUsers(users);
  });

  test('open_session creates the home with the right owner and mode, once', async () => {
    const u = users.find((x) => x.passwordHash)!;
    const home = join(env.dir, 'homes', u.username);
    assert.equal(existsSync(home), false);
    succeeded(await pamtester(pamDir, shim, SVC, u.username, ['open_session', 'close_session'], { items: { tty: 'ssh' } }));
    const h = statSync(home);
    // default layout 'chroot': home root-owned, not group/world-writable (sshd ChrootDirectory
    // rule); the upload dir inside belongs to the user with the configured mode.
    assert.equal(h.uid, 0);
    assert.equal(h.mode & 0o022, 0);
    const up = statSync(join(home, 'inbox'));
    assert.equal(up.uid, u.uid + 10000);
    assert.equal(up.gid, 10000);
    assert.equal(up.mode & 0o7777, 0o2750);
    succeeded(await pamtester(pamDir, shim, SVC, u.username, ['open_session', 'close_session']));
    assert.equal(statSync(home).ino, h.ino, 'not recreated');
  });

  test('removed upstream: after the TTL acct_mgmt says expired', async () => {
    const u = users.filter((x) => x.passwordHash).at(-1)!;
    succeeded(await pamtester(pamDir, shim, SVC, u.username, ['acct_mgmt']));
    env.service.removeUser(u.username);
    await new Promise((r) => setTimeout(r, 2300));
    failedWith(await pamtester(pamDir, shim, SVC, u.username, ['acct_mgmt']), PamMsg.ACCT_EXPIRED);
    env.service.setUsers(users);
  });

  test('expired or disabled upstream account: acct_mgmt says expired after the TTL', async () => {
    const u = users.filter((x) => x.passwordHash)[2]!;
    succeeded(await pamtester(pamDir, shim, SVC, u.username, ['acct_mgmt']));
    env.service.setUsers(users.map((x) => (x.username === u.username ? { ...x, expiresAt: '2001-01-01T00:00:00Z' } : x)) as CegaUser[]);
    await new Promise((r) => setTimeout(r, 2300));
    failedWith(await pamtester(pamDir, shim, SVC, u.username, ['acct_mgmt']), PamMsg.ACCT_EXPIRED);
    env.service.setUsers(users.map((x) => (x.username === u.username ? { ...x, enabled: false } : x)) as CegaUser[]);
    await new Promise((r) => setTimeout(r, 2300));
    failedWith(await pamtester(pamDir, shim, SVC, u.username, ['acct_mgmt']), PamMsg.ACCT_EXPIRED);
    env.service.setUsers(users.map((x) => (x.username === u.username ? { ...x, expiresAt: '2999-01-01' } : x)) as CegaUser[]);
    await new Promise((r) => setTimeout(r, 2300));
    succeeded(await pamtester(pamDir, shim, SVC, u.username, ['acct_mgmt']));
    env.service.setUsers(users);
  });

  test('repeated failures are throttled (PAM_MAXTRIES), even for the right password', async () => {
    // max_failures = 3; this user may already have one failure from the hash-kind test.
    const u = users.filter((x) => x.passwordHash && passwords[x.username])[1]!;
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await pamtester(pamDir, shim, SVC, u.username, ['authenticate'], { input: 'bad\n', items: { rhost: '127.0.0.9' } });
      seen.push(r.stdout.includes(PamMsg.MAXTRIES) ? 'MAXTRIES' : r.stdout.includes(PamMsg.AUTH_ERR) ? 'AUTH_ERR' : r.stdout);
    }
    assert.equal(seen[0], 'AUTH_ERR');
    assert.equal(seen[3], 'MAXTRIES', seen.join(','));
    failedWith(await pamtester(pamDir, shim, SVC, u.username, ['authenticate'], { input: `${passwords[u.username]}\n`, items: { rhost: '127.0.0.9' } }), PamMsg.MAXTRIES);
  });

  test('daemon down → PAM_AUTHINFO_UNAVAIL', async () => {
    await env.daemon.stop();
    const u = users.find((x) => x.passwordHash)!;
    failedWith(await pamtester(pamDir, shim, SVC, u.username, ['authenticate'], { input: `${passwords[u.username]}\n` }), PamMsg.AUTHINFO_UNAVAIL);
    failedWith(await pamtester(pamDir, shim, SVC, u.username, ['acct_mgmt']), PamMsg.AUTHINFO_UNAVAIL);
  });
});
