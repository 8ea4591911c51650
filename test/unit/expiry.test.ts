// Optional account expiry on upstream records (`expiresAt`, `enabled`), which CentralEGA does
// not send but other user services do: parsed strictly, absent means "never expires"; and the
// one decision PAM's account phase answers with (directory/account.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseUserReply } from '../../src/upstream/validate.js';
import { UpstreamError } from '../../src/errors.js';
import { defaultConfig } from '../../src/config/load.js';
import { accountExpiry, accountState } from '../../src/directory/account.js';
import { Resolver } from '../../src/directory/resolver.js';
import { UserCache } from '../../src/cache/db.js';
import type { FetchResult, UserSource } from '../../src/upstream/types.js';
import type { UpstreamUser } from '../../src/types.js';

const users = defaultConfig().users;
const parse = (extra: Record<string, unknown>): ReturnType<typeof parseUserReply> =>
  parseUserReply(JSON.stringify({ username: 'alice', uid: 1001, passwordHash: null, sshPublicKeys: null, gecos: null, ...extra }), { jsonPrefix: '', users });

test('no expiry fields: no expiry', () => {
  assert.equal(parse({}).accountExpiresAt, undefined);
  assert.equal(parse({ expiresAt: null, enabled: true }).accountExpiresAt, undefined);
});

test('ISO dates and epoch seconds', () => {
  assert.equal(parse({ expiresAt: '2030-01-02T03:04:05Z' }).accountExpiresAt, Date.parse('2030-01-02T03:04:05Z'));
  assert.equal(parse({ expiresAt: '2030-01-02' }).accountExpiresAt, Date.parse('2030-01-02'));
  assert.equal(parse({ expiresAt: 1_900_000_000 }).accountExpiresAt, 1_900_000_000_000);
});

test('enabled false means expired now', () => {
  assert.equal(parse({ enabled: false }).accountExpiresAt, 0);
  assert.equal(parse({ enabled: false, expiresAt: '2099-01-01' }).accountExpiresAt, 0);
});

test('wrong types are an upstream error, not a silent "never expires"', () => {
  for (const bad of [{ expiresAt: 'tomorrow' }, { expiresAt: -5 }, { expiresAt: {} }, { enabled: 'no' }, { enabled: 0 }]) {
    assert.throws(() => parse(bad), UpstreamError, JSON.stringify(bad));
  }
});

test('accountExpiry: expired from the expiry instant on, 0 is disabled, none never expires', () => {
  assert.deepEqual(accountExpiry({ accountExpiresAt: 5000 }, 4999), { expired: false });
  assert.deepEqual(accountExpiry({ accountExpiresAt: 5000 }, 5000), { expired: true, disabled: false, at: 5000 });
  assert.deepEqual(accountExpiry({ accountExpiresAt: 0 }, 1), { expired: true, disabled: true, at: 0 });
  assert.deepEqual(accountExpiry({ accountExpiresAt: null }, 1e15), { expired: false });
  assert.deepEqual(accountExpiry({}, 1e15), { expired: false });
});

test('accountState: active, expired, disabled, removed upstream (known before) vs never known, unavailable', async () => {
  const records = new Map<string, UpstreamUser>();
  let failing = false;
  const source: UserSource = {
    async fetchByName(name): Promise<FetchResult> {
      if (failing) throw new UpstreamError('http', 'HTTP 503 from upstream: the user service is failing');
      const u = records.get(name);
      return u ? { kind: 'found', user: { ...u } } : { kind: 'notfound' };
    },
    async fetchByUid(): Promise<FetchResult> { return { kind: 'notfound' }; },
    lastError: () => null,
    async close() { /* nothing held */ },
  };
  const add = (username: string, upstreamUid: number, accountExpiresAt?: number): void => {
    records.set(username, { username, upstreamUid, passwordHash: null, sshPublicKeys: [], gecos: '', ...(accountExpiresAt === undefined ? {} : { accountExpiresAt }) });
  };
  const cfg = defaultConfig();
  cfg.cache.dbPath = ':memory:';
  cfg.cache.ttlSec = 10;
  cfg.users.localPasswdFile = '/nonexistent';
  cfg.users.localGroupFile = '/nonexistent';
  let now = 1_000_000;
  const r = new Resolver(UserCache.open(':memory:'), source, () => cfg, () => now);
  add('alice', 1001);
  add('eve', 1002, now + 5_000);
  add('dis', 1003, 0);
  add('gone', 1004);
  assert.equal((await accountState(r, 'alice', () => now)).state, 'active');
  assert.deepEqual(await accountState(r, 'dis', () => now), { state: 'expired', detail: 'account disabled upstream', expiredAt: 0 });
  assert.equal((await accountState(r, 'eve', () => now)).state, 'active');
  assert.deepEqual(await accountState(r, 'eve', () => now + 5_000), { state: 'expired', detail: 'account expired', expiredAt: now + 5_000 });
  assert.equal((await accountState(r, 'gone', () => now)).state, 'active');
  records.delete('gone');
  now += 11_000; // past the TTL: the account check refetches
  assert.deepEqual(await accountState(r, 'gone', () => now), { state: 'removed', detail: 'account no longer exists upstream' });
  assert.deepEqual(await accountState(r, 'nobody', () => now), { state: 'unknown' });
  failing = true;
  assert.deepEqual(await accountState(r, 'never-seen', () => now), { state: 'unavailable', reason: 'HTTP 503 from upstream: the user service is failing' });
});
