// The userdb provider's records and method answers (issue 20), without a socket: records follow
// systemd's JSON user record rules and are refused when they would not; SSH keys only for root;
// lookups answer as the resolver decides (unavailable is never NoRecordFound).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import type { Resolver } from '../../src/directory/resolver.js';
import type { Lookup } from '../../src/cache/types.js';
import type { CachedUser } from '../../src/types.js';
import { nameProblem, userRecord, validateGroupRecord, validateUserRecord } from '../../src/userdb/records.js';
import { answerCall, E, type UserdbCounters } from '../../src/userdb/methods.js';
import { VarlinkReader, parseCall } from '../../src/userdb/varlink.js';

function cfg(): Config {
  const c = defaultConfig();
  c.users.gid = 10000; c.users.groupName = 'lega'; c.users.shell = '/bin/bash';
  c.homes.base = '/srv/inbox';
  return c;
}

function user(over: Partial<CachedUser> = {}): CachedUser {
  return {
    username: 'alice', upstreamUid: 1001, uid: 11001, passwordHash: '$2b$10$secret', sshPublicKeys: ['ssh-ed25519 AAAA alice@x'],
    gecos: 'Alice Demo', fetchedAt: 0, expiresAt: Number.MAX_SAFE_INTEGER, ...over,
  };
}

const lega = { name: 'lega', gid: 10000, members: [] };

test('record: the NSS fields, the group, expiry in µs, keys only when privileged, never the hash', () => {
  const pub = userRecord(cfg(), user({ accountExpiresAt: 1_900_000_000_000 }), lega, false);
  assert.deepEqual(pub, {
    userName: 'alice', uid: 11001, gid: 10000, realName: 'Alice Demo', homeDirectory: '/srv/inbox/alice', shell: '/bin/bash',
    memberOf: ['lega'], notAfterUSec: 1_900_000_000_000_000, service: 'io.latchkey', disposition: 'regular',
  });
  assert.equal(validateUserRecord(pub as unknown as Record<string, unknown>), null);
  const priv = userRecord(cfg(), user(), lega, true);
  assert.deepEqual(priv.privileged, { sshAuthorizedKeys: ['ssh-ed25519 AAAA alice@x'] });
  assert.ok(!JSON.stringify(priv).includes('$2b$'));
  // disabled upstream ("enabled": false → accountExpiresAt 0): locked, no date
  const off = userRecord(cfg(), user({ accountExpiresAt: 0, gecos: '' }), null, false);
  assert.equal(off.locked, true);
  assert.equal(off.notAfterUSec, undefined);
  assert.equal(off.realName, undefined);
  assert.equal(off.memberOf, undefined);
});

test('validation refuses what systemd refuses, naming the field', () => {
  const good = userRecord(cfg(), user(), lega, true) as unknown as Record<string, unknown>;
  const cases: [Record<string, unknown>, string][] = [
    [{ userName: '1234' }, 'userName'], [{ userName: 'a:b' }, 'userName'], [{ userName: ' a' }, 'userName'], [{ userName: '..' }, 'userName'],
    [{ userName: 'a\nb' }, 'userName'], [{ uid: 0 }, 'uid'], [{ uid: 65535 }, 'uid'], [{ uid: 4294967295 }, 'uid'], [{ gid: 1.5 }, 'gid'],
    [{ realName: 'A:B' }, 'realName'], [{ realName: 'A\u0085B' }, 'realName'], [{ homeDirectory: 'srv/a' }, 'homeDirectory'],
    [{ homeDirectory: '/srv//a' }, 'homeDirectory'], [{ homeDirectory: '/srv/../a' }, 'homeDirectory'], [{ shell: '/bin/sh/' }, 'shell'],
    [{ memberOf: ['ok', '7'] }, 'memberOf'], [{ notAfterUSec: -1 }, 'notAfterUSec'], [{ service: 'io.other' }, 'service'],
    [{ privileged: { hashedPassword: ['$6$x'] } }, 'privileged.hashedPassword'], [{ privileged: { sshAuthorizedKeys: ['a\nb'] } }, 'privileged.sshAuthorizedKeys'],
    [{ secret: {} }, 'secret'],
  ];
  for (const [over, field] of cases) {
    assert.equal(validateUserRecord({ ...good, ...over })?.field, field, JSON.stringify(over));
  }
  assert.equal(nameProblem('a.b-c_d'), null);
  assert.equal(validateGroupRecord({ groupName: 'lega', gid: 10000, service: 'io.latchkey', disposition: 'regular' }), null);
  assert.equal(validateGroupRecord({ groupName: 'lega', gid: 0, service: 'io.latchkey', disposition: 'regular' })?.field, 'gid');
});

/** A resolver with the few methods the userdb answers use; answers as given. */
function fakeResolver(users: CachedUser[], opts: { unavailable?: boolean; groupIsLocal?: boolean } = {}): Resolver & { asked: Array<[string, unknown, number]> } {
  const asked: Array<[string, unknown, number]> = [];
  const r = {
    asked,
    local: { groupIsLocal: () => opts.groupIsLocal ?? false },
    async byName(name: string, peerUid: number): Promise<Lookup> {
      asked.push(['name', name, peerUid]);
      if (opts.unavailable) return { status: 'unavail', reason: 'upstream down' };
      const u = users.find((x) => x.username === name);
      return u ? { status: 'found', user: u, source: 'cache' } : { status: 'notfound', source: 'upstream' };
    },
    async byUid(uid: number, peerUid: number): Promise<Lookup> {
      asked.push(['uid', uid, peerUid]);
      if (opts.unavailable) return { status: 'unavail', reason: 'upstream down' };
      const u = users.find((x) => x.uid === uid);
      return u ? { status: 'found', user: u, source: 'cache' } : { status: 'notfound', source: 'upstream' };
    },
    list(start: number, limit: number): CachedUser[] {
      return users.filter((u) => u.uid >= start).sort((a, b) => a.uid - b.uid).slice(0, limit);
    },
  };
  return r as unknown as Resolver & { asked: typeof asked };
}

async function call(resolver: Resolver, msg: object, peerUid = 1000, paced = { n: 0 }): Promise<Array<Record<string, unknown>>> {
  const p = parseCall(Buffer.from(JSON.stringify(msg)));
  assert.ok(p.ok);
  const out: Buffer[] = [];
  const counters: UserdbCounters = { requests: 0, errors: 0, refusedRecords: 0 };
  await answerCall(p.call, {
    resolver, cfg, peer: { uid: peerUid, pid: 1 }, chargeUid: peerUid, counters, closed: () => false,
    send: async (m) => { out.push(m); }, pace: async () => { paced.n++; },
  });
  return new VarlinkReader(1 << 24).push(Buffer.concat(out)).map((b) => JSON.parse(b.toString()) as Record<string, unknown>);
}

const M = 'io.systemd.UserDatabase.';
const svc = { service: 'io.latchkey' };

test('GetUserRecord: by name, by uid, both; keys for root only; the asker pays for the lookup', async () => {
  const res = fakeResolver([user()]);
  const [r] = await call(res, { method: M + 'GetUserRecord', parameters: { userName: 'alice', ...svc } }, 1000);
  const rec = (r!.parameters as { record: Record<string, unknown>; incomplete: boolean });
  assert.equal(rec.record.userName, 'alice');
  assert.equal(rec.record.privileged, undefined);
  assert.equal(rec.incomplete, true);
  assert.deepEqual(res.asked.at(-1), ['name', 'alice', 1000]);
  const [root] = await call(res, { method: M + 'GetUserRecord', parameters: { uid: 11001, ...svc } }, 0);
  assert.deepEqual((root!.parameters as { record: { privileged: unknown } }).record.privileged, { sshAuthorizedKeys: ['ssh-ed25519 AAAA alice@x'] });
  assert.deepEqual(await call(res, { method: M + 'GetUserRecord', parameters: { uid: 11002, userName: 'alice', ...svc } }), [{ error: E.conflicting, parameters: {} }]);
  assert.deepEqual(await call(res, { method: M + 'GetUserRecord', parameters: { userName: 'zed', ...svc } }), [{ error: E.noRecord, parameters: {} }]);
});

test('GetUserRecord: an unavailable upstream is ServiceNotAvailable, never NoRecordFound', async () => {
  const res = fakeResolver([user()], { unavailable: true });
  assert.deepEqual(await call(res, { method: M + 'GetUserRecord', parameters: { userName: 'zed', ...svc } }), [{ error: E.unavailable, parameters: {} }]);
  assert.deepEqual(await call(res, { method: M + 'GetUserRecord', parameters: { uid: 12000, ...svc } }), [{ error: E.unavailable, parameters: {} }]);
  assert.deepEqual(await call(res, { method: M + 'GetMemberships', parameters: { userName: 'zed', ...svc } }), [{ error: E.unavailable, parameters: {} }]);
});

test('a record systemd would refuse is not sent: ServiceNotAvailable', async () => {
  const res = fakeResolver([user({ gecos: 'Evil:Name' })]);
  assert.deepEqual(await call(res, { method: M + 'GetUserRecord', parameters: { userName: 'alice', ...svc } }), [{ error: E.unavailable, parameters: {} }]);
});

test('enumeration streams with continues, the last without; none is NoRecordFound; needs more', async () => {
  const users = Array.from({ length: 600 }, (_, i) => user({ username: `u${i}`, uid: 20000 + i, sshPublicKeys: [] }));
  const paced = { n: 0 };
  const all = await call(fakeResolver(users), { method: M + 'GetUserRecord', parameters: svc, more: true }, 1000, paced);
  assert.equal(all.length, 600);
  // Each record costs real work on the one event loop: a uid's pacer token buys a few records,
  // not a page (one uid's enumeration loop stalled every nss.sock answer ~1,700-fold).
  assert.ok(paced.n >= 600 / 4 - 1, `${paced.n} pacer tokens for 600 records`);
  assert.ok(all.slice(0, -1).every((m) => m.continues === true));
  assert.equal(all.at(-1)!.continues, undefined);
  assert.deepEqual(all.map((m) => (m.parameters as { record: { userName: string } }).record.userName), users.map((u) => u.username));
  assert.deepEqual(await call(fakeResolver([]), { method: M + 'GetUserRecord', parameters: svc, more: true }), [{ error: E.noRecord, parameters: {} }]);
  assert.deepEqual(await call(fakeResolver(users), { method: M + 'GetUserRecord', parameters: svc }), [{ error: E.expectedMore, parameters: {} }]);
  const members = await call(fakeResolver(users.slice(0, 2)), { method: M + 'GetMemberships', parameters: { groupName: 'lega', ...svc }, more: true });
  assert.deepEqual(members.map((m) => m.parameters), [{ userName: 'u0', groupName: 'lega' }, { userName: 'u1', groupName: 'lega' }]);
});

test('GetGroupRecord, and the host group never answered', async () => {
  const [g] = await call(fakeResolver([]), { method: M + 'GetGroupRecord', parameters: { groupName: 'lega', ...svc } });
  assert.deepEqual(g!.parameters, { record: { groupName: 'lega', gid: 10000, service: 'io.latchkey', disposition: 'regular' }, incomplete: false });
  assert.deepEqual(await call(fakeResolver([]), { method: M + 'GetGroupRecord', parameters: { gid: 10001, ...svc } }), [{ error: E.noRecord, parameters: {} }]);
  assert.deepEqual(await call(fakeResolver([], { groupIsLocal: true }), { method: M + 'GetGroupRecord', parameters: { groupName: 'lega', ...svc } }), [{ error: E.noRecord, parameters: {} }]);
});

test('envelope errors: BadService, InvalidParameter, MethodNotFound; oneway gets nothing and asks nothing', async () => {
  const res = fakeResolver([user()]);
  assert.deepEqual(await call(res, { method: M + 'GetUserRecord', parameters: { userName: 'alice', service: 'io.systemd.Multiplexer' } }), [{ error: E.badService, parameters: {} }]);
  assert.deepEqual(await call(res, { method: M + 'GetUserRecord', parameters: { userName: 'alice' } }), [{ error: E.invalidParameter, parameters: { parameter: 'service' } }]);
  assert.deepEqual(await call(res, { method: M + 'GetUserRecord', parameters: { uid: -1, ...svc } }), [{ error: E.invalidParameter, parameters: { parameter: 'uid' } }]);
  assert.deepEqual(await call(res, { method: M + 'GetUserRecord', parameters: { uidMin: 5, ...svc } }), [{ error: E.invalidParameter, parameters: { parameter: 'uidMin' } }]);
  // red team 20: names of Object.prototype's members are undeclared parameters too
  for (const k of ['constructor', 'toString', '__proto__']) {
    const msg = `{"method":"${M}GetUserRecord","parameters":{"userName":"alice","service":"io.latchkey","${k}":5}}`;
    assert.deepEqual(await call(res, JSON.parse(msg) as object), [{ error: E.invalidParameter, parameters: { parameter: k } }], k);
  }
  assert.deepEqual(await call(res, { method: M + 'Nope', parameters: {} }), [{ error: E.methodNotFound, parameters: { method: M + 'Nope' } }]);
  const before = res.asked.length;
  assert.deepEqual(await call(res, { method: M + 'GetUserRecord', parameters: { userName: 'alice', ...svc }, oneway: true }), []);
  assert.equal(res.asked.length, before);
  const [info] = await call(res, { method: 'org.varlink.service.GetInfo' });
  assert.ok(((info!.parameters as { interfaces: string[] }).interfaces).includes('io.systemd.UserDatabase'));
});

// red team 20: a lone surrogate from the upstream (JSON.parse keeps it, JSON.stringify writes
// "\ud800") made systemd's parser drop the connection: the record must be refused instead.
test('a lone UTF-16 surrogate in a string field is refused, a surrogate pair is not', () => {
  const lone = userRecord(cfg(), user({ gecos: 'Lone \ud800 surrogate' }), lega, false) as unknown as Record<string, unknown>;
  assert.equal(validateUserRecord(lone)?.field, 'realName');
  const pair = userRecord(cfg(), user({ gecos: 'Emoji \ud83d\ude00' }), lega, false) as unknown as Record<string, unknown>;
  assert.equal(validateUserRecord(pair), null);
});

// red team 20: systemd-userdbd's workers are root but relay every local user's calls.
test('systemd-userdbd\'s workers are charged to their own key, other root peers to root', async () => {
  const { chargeUidOf, MULTIPLEXER_CHARGE_UID } = await import('../../src/userdb/server.js');
  const { mkdtempSync, copyFileSync, rmSync } = await import('node:fs');
  const { spawn } = await import('node:child_process');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  assert.equal(chargeUidOf({ socket: 'userdb', uid: 1000, pid: process.pid }), 1000);
  assert.equal(chargeUidOf({ socket: 'userdb', uid: 0, pid: process.pid }), 0);
  const dir = mkdtempSync(join(tmpdir(), 'rt20-'));
  const fake = join(dir, 'systemd-userwork');
  copyFileSync('/bin/sleep', fake);
  const p = spawn(fake, ['5']);
  try {
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(chargeUidOf({ socket: 'userdb', uid: 0, pid: p.pid! }), MULTIPLEXER_CHARGE_UID);
    // a non-root process of that name is just its uid
    assert.equal(chargeUidOf({ socket: 'userdb', uid: 1000, pid: p.pid! }), 1000);
  } finally {
    p.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
