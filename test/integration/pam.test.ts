// pam_latchkey.so under the real libpam, driven by pamtester in a private mount namespace whose
// /etc/pam.d is a temp copy with our service files and whose NSS asks latchkey after `files`.
// Part 1 scripts priv.sock and nss.sock to check the identity check (local passwd file, NSS,
// LOGIN_CHECK), every status → PAM code mapping and the module options; part 2 runs the real
// latchkeyd against the example user service.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, statSync, existsSync, chmodSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcrypt';
import { startEnv, exampleUsers, examplePasswords, NSS_LIB_DIR, type TestEnv, type CegaUser } from '../lib/harness.js';
import { latchkeyStack, makePamDir, pamtester, runPamNs, startFakePriv, PamMsg, PAM_MODULE, PASSWORD_CHANGE_MSG, type FakePriv, type FakeRequest, type NsResult } from '../lib/pam.js';
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

describe('pam_latchkey against a scripted daemon (priv.sock and nss.sock)', () => {
  let dir: string;
  let fake: FakePriv;
  let pamDir: string;
  let env: Record<string, string>;
  /** A socket dir holding only nss.sock: NSS works, priv.sock is missing. */
  let nssOnly: string;
  let localPasswd: string;
  // What the scripted daemon says to AUTH_PASSWORD / ACCT_MGMT / SESSION_* for each user. Every
  // name here but `nouser` resolves through NSS (nss.sock PW_BY_NAME) with uid UIDS[name].
  const byUser: Record<string, number> = {
    good: Status.OK, nouser: Status.NOTFOUND, down: Status.UNAVAIL, wrong: Status.AUTH_FAILED,
    slow: Status.THROTTLED, gone: Status.EXPIRED, many: Status.LIMIT, broken: Status.INTERNAL,
    vanished: Status.NOTFOUND, checkdown: Status.OK, skewed: Status.OK, nssdown: Status.OK,
  };
  const UIDS: Record<string, number> = Object.fromEntries(Object.keys(byUser).map((u, i) => [u, 20000 + i]));
  /** The uid the scripted daemon serves `skewed` with: not the one NSS hands out. */
  const SKEWED_SERVED_UID = 29999;
  const DAEMON_PROMPT = 'Scripted daemon prompt: ';
  let chrootHome = '';
  /** Read by pam_echo after the session opened: absolute (through the root), relative (through the cwd). */
  const CHROOT_PROBE = '/latchkey-chroot-probe';
  const CWD_PROBE = 'latchkey-cwd-probe';
  const answer = (user: string, okFields: Record<string, string | number> = {}) => {
    const s = byUser[user] ?? Status.NOTFOUND;
    return s === Status.OK ? ok(okFields) : fail(s, `scripted ${user}`);
  };
  const allRequests = (): FakeRequest[] => [...fake.nssRequests, ...fake.requests];
  const clear = (): void => { fake.requests.length = 0; fake.nssRequests.length = 0; };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'latchkey-pam-fake-'));
    chmodSync(dir, 0o755);
    chrootHome = join(dir, 'chroot-home');
    fake = await startFakePriv(dir, {
      LOGIN_CHECK: (f) => {
        const user = f.user as string;
        if (user === 'checkdown') return fail(Status.UNAVAIL, 'scripted: user service down');
        const served = user === 'skewed' ? SKEWED_SERVED_UID : UIDS[user];
        if (user === 'nouser' || served !== f.uid) return fail(Status.NOTFOUND, `scripted: ${user} not served with uid ${String(f.uid)}`);
        return ok({ prompt: DAEMON_PROMPT });
      },
      AUTH_PASSWORD: (f) => {
        if (f.user === 'good') return f.password === 'right password' ? ok() : fail(Status.AUTH_FAILED);
        return answer(f.user as string);
      },
      ACCT_MGMT: (f) => answer(f.user as string),
      SESSION_OPEN: (f) => answer(f.user as string, {
        session_id: 'sess-1', home: f.tty === 'chroot' ? chrootHome : '/nonexistent', umask: 0o027, chroot: f.tty === 'chroot' ? 1 : 0,
      }),
      SESSION_CLOSE: (f) => answer(f.user as string),
    }, {
      PW_BY_NAME: (f) => {
        const name = f.name as string;
        if (name === 'nssdown') return fail(Status.UNAVAIL, 'scripted: user service down');
        const uid = UIDS[name];
        if (uid === undefined || name === 'nouser') return fail(Status.NOTFOUND);
        return ok({ entry: { name, uid, gid: 10000, gecos: 'scripted', dir: `/nonexistent/${name}`, shell: '/bin/sh' } });
      },
    });
    nssOnly = join(dir, 'nss-only');
    mkdirSync(nssOnly);
    symlinkSync(join(fake.dir, 'nss.sock'), join(nssOnly, 'nss.sock'));
    localPasswd = join(dir, 'local-passwd');
    writeFileSync(localPasswd, 'root:x:0:0:root:/root:/bin/bash\nlocaladmin:x:1500:1500:Local Admin:/home/localadmin:/bin/sh\n');
    pamDir = makePamDir(dir, {
      [SVC]: latchkeyStack(),
      'lk-unknown-deny': latchkeyStack('unknown=deny'),
      'lk-options': latchkeyStack('no_such_option umask=99 [prompt=Secret word: ]'),
      'lk-socket-opt': latchkeyStack(`socket_dir=${fake.dir}`),
      'lk-local': latchkeyStack(`local_passwd=${localPasswd}`),
      'lk-first-pass': `auth optional ${PAM_MODULE}\nauth requisite ${PAM_MODULE} use_first_pass\naccount required pam_permit.so\n`,
      'lk-try-first': `auth optional ${PAM_MODULE}\nauth requisite ${PAM_MODULE} try_first_pass\naccount required pam_permit.so\n`,
      // pam_echo runs in the same process after pam_latchkey: it reads an absolute path through the
      // process's root and a relative one through its cwd, and pamtester prints what it read.
      'lk-chroot-probe': `session requisite ${PAM_MODULE}\nsession optional pam_echo.so file=${CHROOT_PROBE}\nsession optional pam_echo.so file=${CWD_PROBE}\n`,
    });
    env = { LATCHKEY_SOCKET_DIR: fake.dir, LD_LIBRARY_PATH: NSS_LIB_DIR };
  });
  after(async () => {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('right password: asks whose user it is, prompts with the daemon\'s prompt, sends user, password, service, rhost', async () => {
    clear();
    const r = await pamtester(pamDir, env, SVC, 'good', ['authenticate'], { input: 'right password\n', items: { rhost: '127.0.0.1' } });
    succeeded(r);
    assert.ok(r.stdout.includes(DAEMON_PROMPT), r.stdout);
    assert.ok(!r.stdout.includes('EGA password'), r.stdout);
    assert.deepEqual(fake.nssRequests, [{ op: 'PW_BY_NAME', fields: { name: 'good' } }]);
    assert.deepEqual(fake.requests, [
      { op: 'LOGIN_CHECK', fields: { user: 'good', uid: UIDS.good } },
      { op: 'AUTH_PASSWORD', fields: { user: 'good', password: 'right password', service: SVC, rhost: '127.0.0.1' } },
    ]);
  });

  test('status mapping for authenticate', async () => {
    const cases: Array<[string, string]> = [
      ['wrong', PamMsg.AUTH_ERR], ['nouser', PamMsg.USER_UNKNOWN], ['slow', PamMsg.MAXTRIES],
      ['down', PamMsg.AUTHINFO_UNAVAIL], ['vanished', PamMsg.USER_UNKNOWN],
    ];
    for (const [user, msg] of cases) failedWith(await pamtester(pamDir, env, SVC, user, ['authenticate'], { input: 'pw\n' }), msg);
    failedWith(await pamtester(pamDir, env, SVC, 'good', ['authenticate'], { input: 'wrong\n' }), PamMsg.AUTH_ERR);
  });

  test('no daemon at all, or nss.sock but no priv.sock → PAM_AUTHINFO_UNAVAIL, quickly, without a prompt', async () => {
    for (const socketDir of [join(dir, 'nowhere'), nssOnly]) {
      const r = await pamtester(pamDir, { ...env, LATCHKEY_SOCKET_DIR: socketDir }, SVC, 'good', ['authenticate'], { input: 'right password\n' });
      failedWith(r, PamMsg.AUTHINFO_UNAVAIL);
      assert.ok(!r.stdout.includes(DAEMON_PROMPT), r.stdout);
      assert.ok(r.ms < 5000, `took ${r.ms} ms`);
    }
  });

  test('socket_dir= option; prompt= wins over the daemon\'s prompt; unknown options and bad umask are not fatal', async () => {
    // NSS finds nss.sock through LATCHKEY_SOCKET_DIR (a dir without priv.sock); priv.sock only through socket_dir=.
    succeeded(await pamtester(pamDir, { ...env, LATCHKEY_SOCKET_DIR: nssOnly }, 'lk-socket-opt', 'good', ['authenticate'], { input: 'right password\n' }));
    const r = await pamtester(pamDir, env, 'lk-options', 'good', ['authenticate'], { input: 'right password\n' });
    succeeded(r);
    assert.match(r.stdout, /Secret word: /);
    assert.ok(!r.stdout.includes(DAEMON_PROMPT), r.stdout);
  });

  test('a public key accepted by sshd (SSH_AUTH_INFO_0) does not replace the password', async () => {
    const key = { SSH_AUTH_INFO_0: 'publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\n' };
    clear();
    const r = await pamtester(pamDir, env, SVC, 'good', ['authenticate'], { pamEnv: key, input: 'wrong\n' });
    failedWith(r, PamMsg.AUTH_ERR);
    assert.ok(r.stdout.includes(DAEMON_PROMPT), 'the password is asked for');
    assert.deepEqual(fake.requests.map((q) => q.op), ['LOGIN_CHECK', 'AUTH_PASSWORD']);
    failedWith(await pamtester(pamDir, env, SVC, 'wrong', ['authenticate'], { pamEnv: key, input: 'x\n' }), PamMsg.AUTH_ERR);
    succeeded(await pamtester(pamDir, env, SVC, 'good', ['authenticate'], { pamEnv: key, input: 'right password\n' }));
  });

  test('local accounts (local passwd file) never reach the daemon nor NSS, in any phase', async () => {
    clear();
    const ops = ['authenticate'];
    failedWith(await pamtester(pamDir, env, 'lk-local', 'localadmin', ops, { input: 'pw\n' }), PamMsg.USER_UNKNOWN);
    failedWith(await pamtester(pamDir, env, SVC, 'root', ops, { input: 'pw\n' }), PamMsg.USER_UNKNOWN); // default /etc/passwd
    // account, session and password answer PAM_IGNORE: the pam_permit fallthrough decides.
    succeeded(await pamtester(pamDir, env, 'lk-local', 'localadmin', ['acct_mgmt', 'open_session', 'close_session', 'chauthtok'], { input: 'a\nb\nb\n' }));
    succeeded(await pamtester(pamDir, env, SVC, 'root', ['acct_mgmt', 'open_session']));
    failedWith(await pamtester(pamDir, env, 'lk-unknown-deny', 'root', ['acct_mgmt']), PamMsg.USER_UNKNOWN);
    assert.deepEqual(allRequests(), []);
    // ...and they do not wait for a daemon that is gone.
    const r = await pamtester(pamDir, { ...env, LATCHKEY_SOCKET_DIR: join(dir, 'nowhere') }, 'lk-local', 'localadmin', ['acct_mgmt']);
    succeeded(r);
  });

  test('latchkey serves another uid than NSS resolved → not latchkey\'s user: no password check, account ignored', async () => {
    clear();
    failedWith(await pamtester(pamDir, env, SVC, 'skewed', ['authenticate'], { input: 'pw\n' }), PamMsg.USER_UNKNOWN);
    assert.deepEqual(fake.requests, [{ op: 'LOGIN_CHECK', fields: { user: 'skewed', uid: UIDS.skewed } }]);
    succeeded(await pamtester(pamDir, env, SVC, 'skewed', ['acct_mgmt', 'open_session', 'chauthtok'], { input: 'a\nb\nb\n' }));
    assert.deepEqual(fake.requests.map((q) => q.op), ['LOGIN_CHECK', 'LOGIN_CHECK', 'LOGIN_CHECK', 'LOGIN_CHECK', 'LOGIN_CHECK']);
  });

  test('cannot tell whose user (NSS or LOGIN_CHECK unavailable) → fail closed in every phase', async () => {
    for (const user of ['nssdown', 'checkdown']) {
      clear();
      failedWith(await pamtester(pamDir, env, SVC, user, ['authenticate'], { input: 'pw\n' }), PamMsg.AUTHINFO_UNAVAIL);
      failedWith(await pamtester(pamDir, env, SVC, user, ['acct_mgmt']), PamMsg.AUTHINFO_UNAVAIL);
      failedWith(await pamtester(pamDir, env, SVC, user, ['open_session']), PamMsg.SESSION_ERR);
      failedWith(await pamtester(pamDir, env, SVC, user, ['chauthtok'], { input: 'a\nb\nb\n' }), PamMsg.AUTHTOK_ERR);
      assert.deepEqual(fake.requests.filter((q) => q.op !== 'LOGIN_CHECK'), [], user);
    }
  });

  test('use_first_pass reuses the stored password; try_first_pass asks again after a failure', async () => {
    clear();
    const r = await pamtester(pamDir, env, 'lk-first-pass', 'good', ['authenticate'], { input: 'right password\n' });
    succeeded(r);
    const passwords = (): unknown[] => fake.requests.filter((q) => q.op === 'AUTH_PASSWORD').map((q) => q.fields.password);
    assert.deepEqual(passwords(), ['right password', 'right password']);
    assert.equal(r.stdout.split(DAEMON_PROMPT).length - 1, 1, 'asked once');
    clear();
    const t = await pamtester(pamDir, env, 'lk-try-first', 'good', ['authenticate'], { input: 'bad\nright password\n' });
    succeeded(t);
    assert.deepEqual(passwords(), ['bad', 'bad', 'right password']);
  });

  test('account: OK, NOTFOUND → PAM_IGNORE (stack proceeds) or unknown=deny, EXPIRED, UNAVAIL', async () => {
    succeeded(await pamtester(pamDir, env, SVC, 'good', ['acct_mgmt']));
    succeeded(await pamtester(pamDir, env, SVC, 'nouser', ['acct_mgmt']));
    succeeded(await pamtester(pamDir, env, SVC, 'vanished', ['acct_mgmt']));
    failedWith(await pamtester(pamDir, env, 'lk-unknown-deny', 'nouser', ['acct_mgmt']), PamMsg.USER_UNKNOWN);
    failedWith(await pamtester(pamDir, env, SVC, 'gone', ['acct_mgmt']), PamMsg.ACCT_EXPIRED);
    failedWith(await pamtester(pamDir, env, SVC, 'down', ['acct_mgmt']), PamMsg.AUTHINFO_UNAVAIL);
  });

  test('session: open/close carry the same pid; LIMIT → PERM_DENIED; daemon errors → SESSION_ERR', async () => {
    clear();
    succeeded(await pamtester(pamDir, env, SVC, 'good', ['open_session', 'close_session'], { items: { tty: 'ssh', rhost: '127.0.0.1' } }));
    const [check, open, close] = fake.requests;
    assert.deepEqual(check, { op: 'LOGIN_CHECK', fields: { user: 'good', uid: UIDS.good } });
    assert.equal(open!.op, 'SESSION_OPEN');
    assert.deepEqual({ ...open!.fields, pid: 0, pid_start: '' }, { user: 'good', service: SVC, rhost: '127.0.0.1', tty: 'ssh', pid: 0, pid_start: '' });
    assert.ok((open!.fields.pid as number) > 1);
    // its own kernel start time, which the unprivileged daemon may not be able to read (hidepid)
    assert.match(open!.fields.pid_start as string, /^[1-9]\d*$/);
    assert.deepEqual(close, { op: 'SESSION_CLOSE', fields: { user: 'good', service: SVC, pid: open!.fields.pid } });
    failedWith(await pamtester(pamDir, env, SVC, 'many', ['open_session']), PamMsg.PERM_DENIED);
    failedWith(await pamtester(pamDir, env, SVC, 'broken', ['open_session']), PamMsg.SESSION_ERR);
    failedWith(await pamtester(pamDir, env, SVC, 'down', ['open_session']), PamMsg.SESSION_ERR);
  });

  test('session with chroot=1 confines the process to the home (missing home → SESSION_ERR)', async () => {
    failedWith(await pamtester(pamDir, env, SVC, 'good', ['open_session'], { items: { tty: 'chroot' } }), PamMsg.SESSION_ERR);
    mkdirSync(chrootHome, { mode: 0o755 });
    succeeded(await pamtester(pamDir, env, SVC, 'good', ['open_session'], { items: { tty: 'chroot' } }));
    // What the process sees afterwards: "/" is the home and so is its cwd. pamtester starts in
    // `outside`, whose probe file a process that was chrooted without chdir("/") still reads.
    writeFileSync(join(chrootHome, CHROOT_PROBE), 'root: the home\n');
    writeFileSync(join(chrootHome, CWD_PROBE), 'cwd: the home\n');
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, CWD_PROBE), 'cwd: outside the home\n');
    const r = await runPamNs(`cd '${outside}' && exec pamtester -I tty=chroot -v lk-chroot-probe good open_session 2>&1`, env, pamDir);
    succeeded(r);
    assert.match(r.stdout, /^root: the home$/m, r.stdout);
    assert.match(r.stdout, /^cwd: the home$/m, r.stdout);
    assert.doesNotMatch(r.stdout, /outside the home/, r.stdout);
  });

  test('password changes: refused for latchkey users, left to the stack for everybody else', async () => {
    const r = await pamtester(pamDir, env, SVC, 'good', ['chauthtok'], { input: 'a\nb\nb\n' });
    failedWith(r, PamMsg.AUTHTOK_ERR);
    assert.ok(r.stdout.includes(PASSWORD_CHANGE_MSG), r.stdout);
    const other = await pamtester(pamDir, env, SVC, 'nouser', ['chauthtok'], { input: 'a\nb\nb\n' });
    succeeded(other);
    assert.ok(!other.stdout.includes(PASSWORD_CHANGE_MSG), other.stdout);
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
  const CONFIG_PROMPT = 'Latchkey test password:';
  let emptyPasswd: string;
  /** Requests latchkeyd has served so far (its debug log has one `request` line per request). */
  const served = (): Array<{ sock?: string; op?: string }> => env.daemon.logs.flatMap((line) => {
    try {
      const e = JSON.parse(line) as { event?: string; sock?: string; op?: string };
      return e.event === 'request' ? [e] : [];
    } catch { return []; }
  });

  before(async () => {
    env = await startEnv({ cache: { ttl: '2s', negative_ttl: '1s', refresh_ahead: '0s' }, pam: { max_failures: 3, prompt: CONFIG_PROMPT } }, users);
    emptyPasswd = join(env.dir, 'empty-passwd');
    writeFileSync(emptyPasswd, '');
    pamDir = makePamDir(env.dir, {
      [SVC]: latchkeyStack(),
      'lk-unknown-deny': latchkeyStack('unknown=deny'),
      'lk-no-local': latchkeyStack(`local_passwd=${emptyPasswd}`),
    });
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

  test('the prompt configured in latchkey.conf reaches the user', async () => {
    const u = users.find((x) => x.passwordHash && passwords[x.username])!;
    const r = await pamtester(pamDir, shim, SVC, u.username, ['authenticate'], { input: `${passwords[u.username]}\n` });
    succeeded(r);
    assert.ok(r.stdout.includes(CONFIG_PROMPT), r.stdout);
  });

  test('root (a local account) never reaches latchkeyd: auth user unknown, account ignored', async () => {
    const before = served().length;
    failedWith(await pamtester(pamDir, shim, SVC, 'root', ['authenticate'], { input: 'x\n' }), PamMsg.USER_UNKNOWN);
    succeeded(await pamtester(pamDir, shim, SVC, 'root', ['acct_mgmt', 'open_session', 'close_session']));
    assert.deepEqual(served().slice(before), []);
  });

  test('NSS resolves a latchkey name to another uid (another source first): no password check, no home', async () => {
    // /etc/passwd in the namespace gives alice uid 4242; the module's local file is empty, so
    // only LOGIN_CHECK can tell that latchkey serves alice with another uid.
    const u = users.find((x) => x.passwordHash && passwords[x.username])!;
    const passwd = join(env.dir, 'passwd-other-uid');
    writeFileSync(passwd, `${readFileSync('/etc/passwd', 'utf8')}${u.username}:x:4242:4242::/tmp:/bin/sh\n`);
    const before = served().length;
    const r = await pamtester(pamDir, shim, 'lk-no-local', u.username, ['authenticate'], { input: `${passwords[u.username]}\n`, passwd });
    failedWith(r, PamMsg.USER_UNKNOWN);
    assert.ok(!r.stdout.includes(CONFIG_PROMPT), 'no password asked');
    succeeded(await pamtester(pamDir, shim, 'lk-no-local', u.username, ['acct_mgmt', 'open_session'], { passwd }));
    assert.deepEqual(served().slice(before).map((e) => e.op), ['LOGIN_CHECK', 'LOGIN_CHECK', 'LOGIN_CHECK']);
    assert.equal(existsSync(join(env.dir, 'homes', u.username)), false);
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

  test('removed upstream: after the TTL the user is no longer latchkey\'s (no password check; unknown=deny refuses the account)', async () => {
    const u = users.filter((x) => x.passwordHash && passwords[x.username]).at(-1)!;
    succeeded(await pamtester(pamDir, shim, SVC, u.username, ['acct_mgmt']));
    env.service.removeUser(u.username);
    await new Promise((r) => setTimeout(r, 2300));
    failedWith(await pamtester(pamDir, shim, SVC, u.username, ['authenticate'], { input: `${passwords[u.username]}\n` }), PamMsg.USER_UNKNOWN);
    failedWith(await pamtester(pamDir, shim, 'lk-unknown-deny', u.username, ['acct_mgmt']), PamMsg.USER_UNKNOWN);
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
