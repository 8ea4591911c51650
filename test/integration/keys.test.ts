// latchkey-authorized-keys as sshd runs it: a real process whose NSS (private mount namespace,
// `passwd: files latchkey`, the module via LD_LIBRARY_PATH) resolves the user before it asks for
// keys. Part 1 scripts nss.sock to check what the helper sends and prints; part 2 runs it
// against the real latchkeyd and the example user service.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEnv, runInNamespace, haveCommand, NSS_LIB_DIR, ROOT, type TestEnv, type RunResult } from '../lib/harness.js';
import { startFakePriv, type FakePriv } from '../lib/pam.js';
import { ok, fail } from '../../src/server/dispatch.js';
import { Status } from '../../src/protocol/generated.js';

const HELPER = join(ROOT, 'native/latchkey-authorized-keys');
const skip = process.getuid?.() !== 0 ? 'needs root (mount namespaces)'
  : !haveCommand('unshare') ? 'needs unshare(1)' : false;

const ED25519 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtTQ5JPSQBeEpxa4l9g35KpDlRe4THz+oMCk/AQuQ6C alice@demo';

/** The helper for `user` in a namespace; `passwd` is bind-mounted over /etc/passwd when given. */
function keysFor(user: string, env: Record<string, string>, passwd?: string): Promise<RunResult> {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  return runInNamespace(`exec ${q(HELPER)} ${q(user)}`, env, { extraMounts: passwd ? `mount --bind ${q(passwd)} /etc/passwd` : '' });
}

const empty = (r: RunResult): void => {
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, '');
};
const failed = (r: RunResult, re: RegExp): void => {
  assert.equal(r.code, 1, r.stdout);
  assert.equal(r.stdout, '', 'no keys when the answer is not authoritative');
  assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
  assert.match(r.stderr, re);
};

describe('latchkey-authorized-keys against a scripted nss.sock', { skip }, () => {
  let dir: string;
  let fake: FakePriv;
  let env: Record<string, string>;
  let localPasswd: string;
  const UIDS: Record<string, number> = { alice: 11001, skewed: 11002, flaky: 11003, localadmin: 11005 };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'latchkey-keys-fake-'));
    chmodSync(dir, 0o755);
    fake = await startFakePriv(dir, {}, {
      PW_BY_NAME: (f) => {
        const name = f.name as string;
        if (name === 'nssdown') return fail(Status.UNAVAIL, 'scripted');
        const uid = UIDS[name];
        return uid === undefined ? fail(Status.NOTFOUND) : ok({ entry: { name, uid, gid: 10000, gecos: '', dir: `/nonexistent/${name}`, shell: '/bin/sh' } });
      },
      KEYS_FOR_LOGIN: (f) => {
        const name = f.name as string;
        if (name === 'flaky') return fail(Status.UNAVAIL, 'scripted');
        // latchkey serves skewed with another uid than NSS hands out
        const served = name === 'skewed' ? 29999 : UIDS[name];
        if (served !== f.uid) return fail(Status.NOTFOUND, `not served with uid ${String(f.uid)}`);
        return ok({ keys: [ED25519, `command="/bin/sh" ${ED25519}`, 'ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIKtTQ5JPSQBeEpxa4l9g35KpDlRe4THz+oMCk/AQuQ6C type-mismatch'] });
      },
    });
    env = { LATCHKEY_SOCKET_DIR: fake.dir, LD_LIBRARY_PATH: NSS_LIB_DIR };
    localPasswd = join(dir, 'passwd');
    writeFileSync(localPasswd, `${readFileSync('/etc/passwd', 'utf8')}localadmin:x:1500:1500::/home/localadmin:/bin/sh\n`);
  });
  after(async () => {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a served user: KEYS_FOR_LOGIN with the NSS uid; only plain key lines are printed', async () => {
    fake.nssRequests.length = 0;
    const r = await keysFor('alice', env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${ED25519}\n`);
    assert.match(r.stderr, /skipped 2 malformed key\(s\) of alice/);
    assert.deepEqual(fake.nssRequests, [
      { op: 'PW_BY_NAME', fields: { name: 'alice' } },
      { op: 'KEYS_FOR_LOGIN', fields: { name: 'alice', uid: 11001 } },
    ]);
  });

  test('local accounts (root, a name in /etc/passwd): exit 0, nothing printed, no request at all', async () => {
    fake.nssRequests.length = 0;
    empty(await keysFor('root', env));
    empty(await keysFor('localadmin', env, localPasswd)); // served by the fake, but local here
    empty(await keysFor('root', { ...env, LATCHKEY_SOCKET_DIR: join(dir, 'nowhere') })); // daemon down
    assert.deepEqual(fake.nssRequests, []);
  });

  test('unknown to NSS, or latchkey serves the name with another uid: exit 0, nothing printed', async () => {
    fake.nssRequests.length = 0;
    empty(await keysFor('nosuchuser', env));
    assert.deepEqual(fake.nssRequests.map((q) => q.op), ['PW_BY_NAME'], 'no keys asked for an unknown user');
    fake.nssRequests.length = 0;
    empty(await keysFor('skewed', env));
    assert.deepEqual(fake.nssRequests.at(-1), { op: 'KEYS_FOR_LOGIN', fields: { name: 'skewed', uid: 11002 } });
  });

  test('no authoritative answer → exit 1, one line on stderr, no keys', async () => {
    failed(await keysFor('flaky', env), /daemon could not answer for flaky/);
    failed(await keysFor('nssdown', env), /cannot resolve nssdown through NSS/);
  });
});

describe('latchkey-authorized-keys against latchkeyd and the example user service', { skip }, () => {
  let env: TestEnv;
  const served = (): number => env.daemon.logs.filter((l) => l.includes('"event":"request"')).length;

  before(async () => { env = await startEnv(); });
  after(async () => { await env?.stop(); });

  test('the binary is built', () => assert.ok(existsSync(HELPER), `${HELPER} missing: make -C native`));

  test('a user with a key gets it; a user without keys and an unknown user get nothing', async () => {
    const r = await keysFor('alice', env.shimEnv);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtTQ5JPSQBeEpxa4l9g35KpDlRe4THz+oMCk/AQuQ6C alice@latchkey-demo\n');
    empty(await keysFor('bob', env.shimEnv));
    empty(await keysFor('nosuchuser', env.shimEnv));
  });

  test('root never reaches latchkeyd', async () => {
    const first = served();
    await keysFor('alice', env.shimEnv);
    assert.ok(served() > first, 'the daemon log counts requests');
    const before = served();
    empty(await keysFor('root', env.shimEnv));
    assert.equal(served(), before);
  });

  test('a latchkey name that is local on this host gets no keys, and latchkeyd is not asked', async () => {
    const passwd = join(env.dir, 'passwd-with-alice');
    writeFileSync(passwd, `${readFileSync('/etc/passwd', 'utf8')}alice:x:4242:4242::/tmp:/bin/sh\n`);
    const before = served();
    empty(await keysFor('alice', env.shimEnv, passwd));
    assert.equal(served(), before);
  });

  test('daemon down → exit 1 with one line on stderr', async () => {
    await env.daemon.stop();
    failed(await keysFor('alice', env.shimEnv), /cannot resolve alice through NSS/);
  });
});
