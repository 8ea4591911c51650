// Which source answers a name or uid once persistent local users exist (directory/resolver.ts,
// directory/stored.ts): the store before the upstream (precedence local) or after its "no such
// user" (precedence upstream), the local uid range never asked upstream, the host's accounts over
// both, and a name both have recorded as a conflict.
import { test } from 'node:test';
import { scratchDir } from '../lib/tmp.js';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';

import { join } from 'node:path';
import { Resolver } from '../../src/directory/resolver.js';
import type { StoredUsers } from '../../src/directory/stored.js';
import { UserCache } from '../../src/cache/db.js';
import { defaultConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import type { FetchResult, UserSource } from '../../src/upstream/types.js';
import type { UpstreamUser } from '../../src/types.js';
import type { LocalUser } from '../../src/localusers/types.js';
import { UpstreamError } from '../../src/errors.js';

class Source implements UserSource {
  users = new Map<string, UpstreamUser>();
  calls: string[] = [];
  failing = false;
  add(name: string, upstreamUid: number): void {
    this.users.set(name, { username: name, upstreamUid, passwordHash: null, sshPublicKeys: [], gecos: `upstream ${name}` });
  }
  private async answer(key: string, u: UpstreamUser | undefined): Promise<FetchResult> {
    this.calls.push(key);
    if (this.failing) throw new UpstreamError('connect', 'refused');
    return u ? { kind: 'found', user: { ...u } } : { kind: 'notfound' };
  }
  fetchByName(name: string): Promise<FetchResult> { return this.answer(`name:${name}`, this.users.get(name)); }
  fetchByUid(uid: number): Promise<FetchResult> { return this.answer(`uid:${uid}`, [...this.users.values()].find((u) => u.upstreamUid === uid)); }
  lastError(): null { return null; }
  async close(): Promise<void> { /* nothing held */ }
}

class Stored implements StoredUsers {
  generation = 0;
  private readonly users = new Map<string, LocalUser>();
  add(name: string, uid: number, over: Partial<LocalUser> = {}): void {
    this.users.set(name, { name, uid, gecos: `stored ${name}`, shell: null, passwordHash: null, context: null, keys: [], expiresAt: null, disabled: false, createdAt: 1, updatedAt: 1, ...over });
    this.generation++;
  }
  get(name: string): LocalUser | null { return this.users.get(name) ?? null; }
  getByUid(uid: number): LocalUser | null { return [...this.users.values()].find((u) => u.uid === uid) ?? null; }
  list(): LocalUser[] { return [...this.users.values()].sort((a, b) => a.uid - b.uid); }
}

function setup(precedence: 'local' | 'upstream' = 'local', hostPasswd = 'root:x:0:0:root:/root:/bin/bash\n'): { r: Resolver; src: Source; store: Stored; cfg: Config } {
  const dir = scratchDir('latchkey-stored-');
  writeFileSync(join(dir, 'passwd'), hostPasswd);
  writeFileSync(join(dir, 'group'), 'root:x:0:\n');
  const cfg = defaultConfig({ cache: { dbPath: ':memory:' }, users: { localPasswdFile: join(dir, 'passwd'), localGroupFile: join(dir, 'group') } });
  cfg.local.precedence = precedence;
  const src = new Source();
  src.add('alice', 1001);
  src.add('ops', 1002);
  const store = new Stored();
  store.add('ops', 9000);
  store.add('partner', 9001);
  const r = new Resolver(UserCache.open(':memory:'), src, () => cfg);
  r.useStore(store);
  return { r, src, store, cfg };
}

test('precedence local: a stored name is answered from the store, never asked upstream; its uid range neither', async () => {
  const { r, src } = setup();
  const ops = await r.byName('ops');
  assert.equal(ops.status === 'found' && ops.source, 'local');
  assert.equal(ops.status === 'found' && ops.user.uid, 9000);
  assert.equal(ops.status === 'found' && ops.user.gecos, 'stored ops');
  const byUid = await r.byUid(9001);
  assert.equal(byUid.status === 'found' && byUid.user.username, 'partner');
  assert.deepEqual(await r.byUid(9500), { status: 'notfound', source: 'local' });
  assert.deepEqual(src.calls, []);
  // An upstream user still resolves as before.
  assert.equal((await r.byUid(11001)).status, 'found');
  assert.deepEqual(src.calls, ['uid:1001']);
});

test('precedence local: an upstream record of a stored name is shadowed, and the check records the conflict', async () => {
  const { r } = setup();
  assert.equal(await r.checkStoredName('ops'), 'yes');
  assert.equal(r.conflicts.get('ops')?.winner, 'local');
  // The cached upstream "ops" (uid 11002) is neither listed nor served by uid.
  const names = r.list(0, 100).map((u) => `${u.username}:${u.uid}`);
  assert.deepEqual(names, ['ops:9000', 'partner:9001']);
  assert.equal((await r.byUid(11002)).status, 'notfound');
  assert.equal(await r.checkStoredName('partner'), 'no');
  assert.equal(r.conflicts.has('partner'), false);
});

test('precedence upstream: the upstream answers a name both have; the store only after "no such user"; a failing upstream stays unavailable', async () => {
  const { r, src } = setup('upstream');
  const ops = await r.byName('ops');
  assert.equal(ops.status === 'found' && ops.source, 'upstream');
  assert.equal(ops.status === 'found' && ops.user.uid, 11002);
  assert.equal(r.conflicts.get('ops')?.winner, 'upstream');
  const partner = await r.byName('partner');
  assert.equal(partner.status === 'found' && partner.source, 'local');
  src.failing = true;
  const r2 = setup('upstream');
  r2.src.failing = true;
  assert.equal((await r2.r.byName('partner')).status, 'unavail', 'the upstream might have the name: not a guess');
});

test('the host\'s accounts win over the store, by name and by uid', async () => {
  const { r, src } = setup('local', 'root:x:0:0:root:/root:/bin/bash\nops:x:1500:1500::/home/ops:/bin/sh\nsvc:x:9001:9001::/:/bin/sh\n');
  assert.deepEqual(await r.byName('ops'), { status: 'notfound', source: 'rule' });
  // partner's uid 9001 is the host account svc's: the stored user is not served at all.
  assert.notEqual((await r.byName('partner')).status, 'found');
  assert.deepEqual(await r.byUid(9001), { status: 'notfound', source: 'rule' });
  assert.deepEqual(r.list(0, 100), []);
  assert.ok(!src.calls.includes('name:ops'));
});

test('enumeration merges the store and the cache by uid, page by page', async () => {
  const { r, store } = setup();
  await r.byName('alice');
  store.add('late', 12000);
  const cfgRange = r.inStoredRange(12000);
  assert.equal(cfgRange, false, 'outside the range: not served');
  assert.deepEqual(r.list(0, 100).map((u) => u.username), ['ops', 'partner', 'alice']);
  assert.deepEqual(r.list(0, 2).map((u) => u.username), ['ops', 'partner']);
  assert.deepEqual(r.list(9002, 2).map((u) => u.username), ['alice']);
});

test('a disabled or expiring stored user carries its account expiry (0 = disabled) for the account check', async () => {
  const { r, store } = setup();
  store.add('off', 9002, { disabled: true });
  store.add('temp', 9003, { expiresAt: 5_000 });
  const off = await r.byName('off');
  assert.equal(off.status === 'found' && off.user.accountExpiresAt, 0);
  const temp = await r.byName('temp');
  assert.equal(temp.status === 'found' && temp.user.accountExpiresAt, 5_000);
});

test('precedence upstream: while the upstream has a stored name, the stored user is not answered by uid nor listed; once it has none, it is', async () => {
  const { r, src } = setup('upstream');
  assert.equal((await r.byName('ops')).status === 'found', true);
  assert.deepEqual(await r.byUid(9000), { status: 'notfound', source: 'local' });
  assert.ok(!r.list(0, 100).some((u) => u.uid === 9000), 'one owner per name in the enumeration');
  src.users.delete('ops');
  r.sweep();
  const again = await r.refreshByName('ops');
  assert.equal(again.status === 'found' && again.source, 'local');
  assert.equal((await r.byUid(9000)).status, 'found');
});

