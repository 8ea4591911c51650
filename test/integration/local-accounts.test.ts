// The host's own accounts are never served by latchkey (issue 11, points 1, 4 and 12): an upstream
// record named like a local account, a denied name, an upstream uid that lands on a local uid,
// two upstream names with one uid, and the group when the host has it. Through the real daemon,
// its sockets and real getent in a private mount namespace.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratchDir } from '../lib/tmp.js';
import { startEnv, exampleUsers, request, runInNamespace, type TestEnv, type CegaUser } from '../lib/harness.js';

const ATTACKER_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM0attackerattackerattackerattackerattack0 mallory@evil';
let env: TestEnv;
let passwdFile: string;
let groupFile: string;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const upstreamAsked = (name: string): number => Object.entries(env.service.stats().byPath)
  .filter(([p]) => p.endsWith(`/${name}`)).reduce((n, [, c]) => n + c, 0);
const nss = (op: string, fields: Record<string, string | number>) => request(join(env.socketDir, 'nss.sock'), op, fields);
const priv = (op: string, fields: Record<string, string | number>) => request(join(env.socketDir, 'priv.sock'), op, fields);
const events = (name: string): Record<string, unknown>[] => env.daemon.logs
  .filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.event === name);

const hostile: CegaUser[] = [
  // names the host has: the record must never be served, nor its key printed, nor its password checked
  { username: 'root', uid: 5, passwordHash: null, sshPublicKeys: [ATTACKER_KEY], gecos: 'fake root' },
  { username: 'localadmin', uid: 6, passwordHash: null, sshPublicKeys: [ATTACKER_KEY], gecos: 'fake admin' },
  { username: 'newlocal', uid: 7, passwordHash: null, sshPublicKeys: [ATTACKER_KEY], gecos: 'becomes local' },
  { username: 'lkstaff', uid: 10, passwordHash: null, sshPublicKeys: [ATTACKER_KEY], gecos: 'named like a local group' },
  { username: 'ghost', uid: 9, passwordHash: null, sshPublicKeys: [ATTACKER_KEY], gecos: 'leftover group member' },
  { username: 'denied', uid: 8, passwordHash: null, sshPublicKeys: [ATTACKER_KEY], gecos: 'deny list' },
  // shifted uid 11500 is the local service account's uid
  { username: 'squatter', uid: 1500, passwordHash: null, sshPublicKeys: [ATTACKER_KEY], gecos: 'uid squatter' },
  // two upstream names, one uid
  { username: 'twinone', uid: 1600, passwordHash: null, sshPublicKeys: [], gecos: 'twin 1' },
  { username: 'twintwo', uid: 1600, passwordHash: null, sshPublicKeys: [ATTACKER_KEY], gecos: 'twin 2' },
];

before(async () => {
  const files = scratchDir('latchkey-local-');
  chmodSync(files, 0o755); // the daemon reads these after dropping root
  passwdFile = join(files, 'passwd');
  groupFile = join(files, 'group');
  writeFileSync(passwdFile, readFileSync('/etc/passwd', 'utf8') + 'localadmin:x:1500:1500:Local Admin:/home/localadmin:/bin/bash\nsvc:x:11500:1500::/nonexistent:/usr/sbin/nologin\n');
  // a leftover member name: no such account in passwd, but `sudo` lists it
  writeFileSync(groupFile, readFileSync('/etc/group', 'utf8').replace(/^sudo:x:27:(.*)$/m, (_l, m: string) => `sudo:x:27:${m ? m + ',' : ''}ghost`)
    + (/^sudo:/m.test(readFileSync('/etc/group', 'utf8')) ? '' : 'sudo:x:27:ghost\n') + 'lkstaff:x:4343:\n');
  env = await startEnv({
    users: { deny_names: 'root, denied', local_passwd: passwdFile, local_group: groupFile },
    cache: { negative_ttl: '0' },
  }, [...exampleUsers(), ...hostile]);
});
after(async () => { await env?.stop(); });

test('local and denied names are refused before any upstream request, on every opcode', async () => {
  for (const name of ['root', 'localadmin', 'denied', 'ghost', 'lkstaff']) {
    assert.equal((await nss('PW_BY_NAME', { name })).status, 1, `${name}: PW_BY_NAME`);
    assert.equal((await nss('KEYS_BY_NAME', { name })).status, 1, `${name}: KEYS_BY_NAME`);
    assert.equal((await nss('KEYS_FOR_LOGIN', { name, uid: 10000 + ({ root: 5, localadmin: 6, denied: 8, ghost: 9, lkstaff: 10 } as Record<string, number>)[name]! })).status, 1, `${name}: KEYS_FOR_LOGIN`);
    assert.equal((await priv('LOGIN_CHECK', { user: name, uid: 0 })).status, 1, `${name}: LOGIN_CHECK`);
    const auth = await priv('AUTH_PASSWORD', { user: name, password: 'whatever', service: 'sshd', rhost: '192.0.2.1' });
    assert.equal(auth.status, 1, `${name}: AUTH_PASSWORD must be NOTFOUND`);
    assert.equal((await priv('ACCT_MGMT', { user: name, service: 'sshd', rhost: '' })).status, 1, `${name}: ACCT_MGMT`);
    assert.equal(upstreamAsked(name), 0, `${name} was sent upstream`);
  }
  // real getent: files answers for root, and latchkey adds nothing
  const r = await runInNamespace('getent passwd root; getent passwd localadmin; echo rc=$?', env.shimEnv);
  assert.match(r.stdout, /^root:x:0:0:/m);
  assert.doesNotMatch(r.stdout, /fake/);
  assert.match(r.stdout, /rc=2/);
  // refused once each, with the reason
  const refusals = events('lookup.local_refused').filter((e) => e.name === 'root');
  assert.equal(refusals.length, 1);
  assert.equal(refusals[0]!.reason, 'deny list');
  assert.equal(events('lookup.local_refused').find((e) => e.name === 'ghost')?.reason, 'local group member');
  assert.equal(events('lookup.local_refused').find((e) => e.name === 'lkstaff')?.reason, 'local group');
});

test('a local uid is never served by uid, and an upstream uid that lands on one is refused', async () => {
  assert.equal((await nss('PW_BY_UID', { uid: 11500 })).status, 1);
  assert.equal(env.service.stats().byPath['/user-id/1500'] ?? 0, 0, 'a local uid was sent upstream');
  const r = await nss('PW_BY_NAME', { name: 'squatter' });
  assert.notEqual(r.status, 0, 'squatter was served with a local uid');
  const c = events('upstream.collision').filter((e) => e.name === 'squatter');
  assert.equal(c.length, 1);
  assert.equal(c[0]!.local_account, 'svc', 'both names in the log line');
  await nss('PW_BY_NAME', { name: 'squatter' });
  assert.equal(events('upstream.collision').filter((e) => e.name === 'squatter').length, 1, 'logged once');
});

test('two upstream names with one uid: the by-uid owner keeps it, the other is refused and logged once with both names', async () => {
  // The example service answers /user-id/1600 with the last record holding it: twintwo.
  assert.equal((await nss('PW_BY_NAME', { name: 'twinone' })).status, 0);
  // twintwo arrives with a uid twinone holds: the by-uid endpoint names twintwo (as after a
  // rename upstream), so twintwo takes it over, logged with both names
  assert.equal((await nss('PW_BY_NAME', { name: 'twintwo' })).status, 0);
  const moved = events('user.uid_reassigned');
  assert.deepEqual([moved.length, moved[0]?.from, moved[0]?.to], [1, 'twinone', 'twintwo']);
  // from then on they never flip: twinone is refused, twintwo stays
  for (let i = 0; i < 3; i++) {
    assert.notEqual((await nss('PW_BY_NAME', { name: 'twinone' })).status, 0);
    const again = await nss('PW_BY_NAME', { name: 'twintwo' });
    assert.equal(again.status, 0);
    assert.equal((again.fields!.entry as { name: string }).name, 'twintwo');
  }
  assert.notEqual((await nss('KEYS_BY_NAME', { name: 'twinone' })).status, 0);
  const byUid = await nss('PW_BY_UID', { uid: 11600 });
  assert.equal((byUid.fields!.entry as { name: string }).name, 'twintwo');
  const logged = events('upstream.uid_collision');
  assert.equal(logged.length, 1, 'logged once');
  assert.deepEqual([logged[0]!.cached, logged[0]!.refused], ['twintwo', 'twinone']);
});

test('a local account added on the host is refused without a reload', async () => {
  assert.equal((await nss('PW_BY_NAME', { name: 'newlocal' })).status, 0, 'served while not local');
  appendFileSync(passwdFile, 'newlocal:x:1700:1700::/home/newlocal:/bin/sh\n');
  await sleep(700);
  const asked = upstreamAsked('newlocal');
  assert.equal((await nss('PW_BY_NAME', { name: 'newlocal' })).status, 1);
  assert.equal((await nss('KEYS_BY_NAME', { name: 'newlocal' })).status, 1, 'the cached entry must not be used either');
  assert.equal(upstreamAsked('newlocal'), asked);
});

test('LOGIN_CHECK and KEYS_FOR_LOGIN act only for the exact (name, uid) latchkey serves', async () => {
  const good = await priv('LOGIN_CHECK', { user: 'alice', uid: 11001 });
  assert.equal(good.status, 0);
  assert.equal(good.fields!.prompt, 'Please, enter your EGA password: ');
  const keys = await nss('KEYS_FOR_LOGIN', { name: 'alice', uid: 11001 });
  assert.equal(keys.status, 0);
  assert.equal((keys.fields!.keys as string[]).length, 1);
  for (let i = 0; i < 2; i++) {
    assert.equal((await priv('LOGIN_CHECK', { user: 'alice', uid: 0 })).status, 1);
    assert.equal((await nss('KEYS_FOR_LOGIN', { name: 'alice', uid: 1001 })).status, 1);
  }
  assert.equal(events('login.identity_mismatch').filter((e) => e.user === 'alice').length, 2, 'once per (name, uid)');
  // LOGIN_CHECK is a privileged opcode
  assert.equal((await nss('LOGIN_CHECK', { user: 'alice', uid: 11001 })).status, 6);
});

test('the group: no member list, and not answered at all when the host has it', async () => {
  await nss('PW_BY_NAME', { name: 'alice' });
  const g = await nss('GR_BY_NAME', { name: 'lega' });
  assert.equal(g.status, 0);
  assert.deepEqual((g.fields!.entry as { members: string[] }).members, []);
  appendFileSync(groupFile, 'lega:x:10000:\n');
  await sleep(700);
  assert.equal((await nss('GR_BY_NAME', { name: 'lega' })).status, 1);
  assert.equal((await nss('GR_BY_GID', { gid: 10000 })).status, 1);
  const list = await nss('GR_LIST', { start_gid: 0 });
  assert.deepEqual(list.fields!.entries, []);
});
