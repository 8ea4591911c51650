// `latchkeyctl local` end to end: the real bin/latchkeyctl, spawned as its own process, against
// the real latchkeyd with its local users' store on disk and the example user service
// (test/lib/harness.ts). What an admin sees: users added, shown and listed without a hash,
// refusals that say why, getent resolving the stored user through the real NSS module, the
// store surviving a daemon restart, `status` showing it, and a secondary refusing changes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { startEnv, startDaemon, haveCommand, runInNamespace, request, ROOT, TEST_DAEMON_UID, type TestEnv } from '../lib/harness.js';
import { Status } from '../../src/protocol/generated.js';

const CTL = join(ROOT, 'bin/latchkeyctl');
const KEY_FILE = join(ROOT, 'test/fixtures/keys/demo_ivan_ed25519.pub');
const KEY2_FILE = join(ROOT, 'test/fixtures/keys/demo_heidi_ecdsa.pub');
const PASSWORD = 'correct horse battery staple';
const root = process.getuid?.() === 0;
let env: TestEnv;

interface Out { code: number | null; stdout: string; stderr: string }

/** latchkeyctl as its own process (never spawnSync: the user service runs in this process). */
function ctl(args: string[], input = '', socketDir = env.socketDir): Promise<Out> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CTL, ...args], { env: { ...process.env, LATCHKEY_SOCKET_DIR: socketDir }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      // No output may carry a hash or the password typed.
      for (const s of [stdout, stderr]) {
        assert.doesNotMatch(s, /\$(y|2b|6|5)\$/, `latchkeyctl ${args.join(' ')} printed a hash`);
        assert.ok(!s.includes(PASSWORD), `latchkeyctl ${args.join(' ')} printed the password`);
      }
      resolve({ code, stdout, stderr });
    });
    p.stdin!.on('error', () => { /* may exit before reading */ });
    p.stdin!.end(input);
  });
}

async function json(args: string[]): Promise<Record<string, any>> {
  const r = await ctl([...args, '--json']);
  assert.equal(r.code, 0, `latchkeyctl ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, any>;
}

const getent = (what: string): Promise<{ code: number | null; stdout: string }> =>
  runInNamespace(`getent passwd ${what}`, { ...env.shimEnv, LATCHKEY_NSS_NO_MMAP: '1' });

before(async () => { if (root) env = await startEnv(); });
after(async () => { await env?.stop(); });

const skip = !root ? 'needs root (priv.sock, namespaces)' : !haveCommand('unshare') ? 'needs unshare' : false;

test('local add: a user with a key and a password, shown without its hash, resolved by getent, verified by auth-test', { skip }, async () => {
  const add = await ctl(['local', 'add', 'opsuser', '--gecos', 'Operations', '--key', KEY_FILE, '--password-stdin'], `${PASSWORD}\n`);
  assert.equal(add.code, 0, add.stderr);
  assert.match(add.stdout, /^name\topsuser$/m, 'piped: key<TAB>value lines');
  const show = await json(['local', 'show', 'opsuser']);
  assert.equal(show.user.uid, 9000, 'the lowest free uid of [local] min_uid .. max_uid');
  assert.equal(show.user.gecos, 'Operations');
  assert.equal(show.user.password.context, 'y5');
  assert.equal(show.user.password.kind, 'yescrypt');
  assert.equal(show.user.keys.length, 1);
  assert.equal(show.user.keys[0].comment, 'ivan@latchkey-demo');
  assert.equal(show.user.disabled, false);
  assert.deepEqual((await json(['local', 'show', '9000'])).user.name, 'opsuser');

  const g = await getent('opsuser');
  assert.equal(g.code, 0, JSON.stringify(g));
  assert.match(g.stdout, /^opsuser:x:9000:\d+:Operations:[^:]*\/opsuser:/m);
  assert.match((await getent('9000')).stdout, /^opsuser:x:9000:/m);

  const ok = await ctl(['auth-test', 'opsuser'], `${PASSWORD}\n`);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  const wrong = await ctl(['auth-test', 'opsuser'], 'not it\n');
  assert.equal(wrong.code, 1, wrong.stdout + wrong.stderr);

  const list = await ctl(['local', 'list']);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^opsuser\t9000\tenabled\tyes\ty5\t1\t-\tOperations$/m, list.stdout);
  const contexts = await json(['local', 'contexts']);
  assert.deepEqual(contexts.contexts.find((c: { id: string }) => c.id === 'y5'), { id: 'y5', algorithm: 'yescrypt', cost: 5, default: true, users: 1 });
});

test('local add refuses an upstream name, a host account, a taken name or uid, a bad name; an unreachable upstream needs --force', { skip }, async () => {
  const upstream = await ctl(['local', 'add', 'alice']);
  assert.equal(upstream.code, 1);
  assert.match(upstream.stderr, /the upstream has a user alice/);
  const host = await ctl(['local', 'add', 'root']);
  assert.equal(host.code, 1);
  assert.match(host.stderr, /root is (a local account of this host|in \[users\] deny_names)/);
  const twice = await ctl(['local', 'add', 'opsuser']);
  assert.equal(twice.code, 1);
  assert.match(twice.stderr, /a local user opsuser exists/);
  const uid = await ctl(['local', 'add', 'other', '--uid', '9000']);
  assert.equal(uid.code, 1);
  assert.match(uid.stderr, /uid 9000 is the local user opsuser's/);
  const outside = await ctl(['local', 'add', 'other', '--uid', '20000']);
  assert.equal(outside.code, 1);
  assert.match(outside.stderr, /outside the local range/);
  const badName = await ctl(['local', 'add', 'Other']);
  assert.equal(badName.code, 1);
  assert.match(badName.stderr, /name rule/);
  const badKey = await ctl(['local', 'add', 'other', '--key', join(ROOT, 'package.json')]);
  assert.notEqual(badKey.code, 0);
  assert.equal((await getent('other')).code, 2, 'nothing refused was stored');

  env.service.setFault('5xx');
  try {
    const down = await ctl(['local', 'add', 'partner', '--expires', '2099-01-31']);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot tell whether the upstream has a user partner.*--force/);
    const forced = await json(['local', 'add', 'partner', '--expires', '2099-01-31', '--force']);
    assert.equal(forced.user.expires_at, Date.UTC(2099, 0, 31));
    assert.equal(forced.user.password, null);
  } finally {
    env.service.setFault(null);
  }
});

test('local keys, passwd, disable, enable, remove change what the user sees', { skip }, async () => {
  const added = await json(['local', 'keys', 'opsuser', 'add', KEY2_FILE]);
  assert.deepEqual(added.keys.map((k: { index: number; type: string }) => [k.index, k.type]), [[1, 'ssh-ed25519'], [2, 'ecdsa-sha2-nistp256']]);
  const again = await ctl(['local', 'keys', 'opsuser', 'add', KEY2_FILE]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /has this key already/);
  const listed = await ctl(['local', 'keys', 'opsuser', 'list']);
  assert.match(listed.stdout, /^2\tecdsa-sha2-nistp256\tSHA256:\S+\theidi@latchkey-demo$/m);
  const removed = await json(['local', 'keys', 'opsuser', 'remove', '1']);
  assert.deepEqual(removed.keys.map((k: { comment: string }) => k.comment), ['heidi@latchkey-demo']);

  const before = (await json(['local', 'show', 'opsuser'])).user;
  assert.equal((await ctl(['local', 'passwd', 'opsuser', '--password-stdin'], 'a new password\n')).code, 0);
  assert.equal((await ctl(['auth-test', 'opsuser'], 'a new password\n')).code, 0);
  assert.equal((await ctl(['auth-test', 'opsuser'], `${PASSWORD}\n`)).code, 1, 'the old password no longer works');
  assert.ok((await json(['local', 'show', 'opsuser'])).user.updated_at >= before.updated_at);

  assert.equal((await json(['local', 'disable', 'opsuser'])).user.disabled, true);
  // The account check PAM runs at login (pam_latchkey's acct_mgmt) refuses a disabled user.
  const acct = (): Promise<number> => request(join(env.socketDir, 'priv.sock'), 'ACCT_MGMT', { user: 'opsuser', service: 'sshd', rhost: '' }).then((r) => r.status);
  assert.notEqual(await acct(), Status.OK, 'a disabled user may not log in');
  assert.match((await ctl(['local', 'list'])).stdout, /^opsuser\t9000\tdisabled\t/m);
  assert.equal((await json(['local', 'enable', 'opsuser'])).user.disabled, false);
  assert.equal(await acct(), Status.OK);
  assert.equal((await ctl(['auth-test', 'opsuser'], 'a new password\n')).code, 0);

  const gone = await json(['local', 'remove', 'partner']);
  assert.deepEqual(gone, { removed: 'partner', uid: 9001 });
  assert.equal((await getent('partner')).code, 2);
  const missing = await ctl(['local', 'show', 'partner']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no local user partner/);
});

test('the store survives a daemon restart; status shows the local users', { skip }, async () => {
  await env.daemon.stop();
  env.daemon = await startDaemon(env.configFile, env.socketDir);
  assert.equal((await json(['local', 'show', 'opsuser'])).user.uid, 9000);
  assert.match((await getent('opsuser')).stdout, /^opsuser:x:9000:/m);
  const status = await json(['status']);
  assert.equal(status.local.users, 1);
  assert.equal(status.local.role, 'standalone');
  assert.equal(status.local.db, join(env.dir, 'state', 'local.db'));
  const piped = await ctl(['status']);
  assert.match(piped.stdout, /^local users\t1 standalone local$/m, piped.stdout);
  assert.match(piped.stdout, /^upgrades\t\d+ \d+ \d+ \d+ \d+$/m);
  // The file on disk is the daemon account's alone.
  const st = statSync(join(env.dir, 'state', 'local.db'));
  assert.equal(st.mode & 0o777, 0o600);
  assert.equal(st.uid, TEST_DAEMON_UID);
});

test('on a secondary every change is refused with where to make it; reading still works', { skip }, async () => {
  const sec = await startEnv({ local: { role: 'secondary', primary: 'latchkey-sync@primary.example.org', upgrade: 'off' } });
  try {
    for (const args of [['local', 'add', 'someone'], ['local', 'passwd', 'someone', '--password-stdin'], ['local', 'disable', 'someone'],
      ['local', 'remove', 'someone'], ['local', 'keys', 'someone', 'add', KEY_FILE]]) {
      const r = await ctl(args, 'pw\n', sec.socketDir);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /this host is a secondary.*latchkey-sync@primary\.example\.org/, args.join(' '));
    }
    const list = await ctl(['local', 'list', '--json'], '', sec.socketDir);
    assert.equal(list.code, 0, list.stderr);
    assert.equal(JSON.parse(list.stdout).role, 'secondary');
  } finally {
    await sec.stop();
  }
});
