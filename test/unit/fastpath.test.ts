// What the daemon publishes in the shared-memory map (src/fastpath/publisher.ts), decided against
// the real resolver and cache: the writer here records the calls (the real writer and reader are
// tested in test/c/test_map.c and, end to end through getent, in nss-map.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserCache } from '../../src/cache/db.js';
import { Resolver } from '../../src/directory/resolver.js';
import { MapPublisher } from '../../src/fastpath/publisher.js';
import { setLogSink } from '../../src/log.js';
import type { MapWriter, MapWriterStats } from '../../src/native/addon.js';
import type { UserSource, FetchResult } from '../../src/upstream/types.js';
import type { Config } from '../../src/config/types.js';
import { defaultConfig } from '../../src/config/load.js';
import { scratchDir } from '../lib/tmp.js';

function testConfig(dir: string): Config {
  const passwd = join(dir, 'passwd');
  const group = join(dir, 'group');
  writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\n');
  writeFileSync(group, 'root:x:0:\n');
  return {
    source: '',
    cache: { dbPath: ':memory:', ttlSec: 100, negativeTtlSec: 10, staleGraceSec: 50, refreshAheadSec: 20 },
    users: { uidShift: 10000, gid: 10000, groupName: 'lega', minUid: 1000, maxUid: 2 ** 31 - 1, nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/, shell: '/bin/bash', denyNames: ['root'], localPasswdFile: passwd, localGroupFile: group },
    homes: { base: '/srv/inbox', layout: 'chroot', mode: 0o2750, umask: 0o027, uploadDir: 'upload' },
    upstream: {} as Config['upstream'], pam: {} as Config['pam'], daemon: { socketDir: dir } as Config['daemon'], local: defaultConfig().local, events: defaultConfig().events, cleanup: defaultConfig().cleanup, metrics: defaultConfig().metrics, userdb: defaultConfig().userdb,
  };
}

const source: UserSource = {
  async fetchByName(name: string): Promise<FetchResult> {
    return name === 'alice' ? { kind: 'found', user: { username: 'alice', upstreamUid: 1001, passwordHash: '$2b$10$x', sshPublicKeys: [], gecos: 'Alice' } } : { kind: 'notfound' };
  },
  async fetchByUid(uid: number): Promise<FetchResult> {
    return uid === 1001 ? this.fetchByName('alice') : { kind: 'notfound' };
  },
  lastError: () => null,
  async close() { /* nothing held */ },
};

class RecordingWriter implements MapWriter {
  calls: unknown[][] = [];
  failOn: string | null = null;
  closed: boolean | null = null;
  private rec(name: string, ...args: unknown[]): 0 {
    if (this.failOn === name) throw Object.assign(new Error(`sizing nss.map: No space left on device`), { errno: 28 });
    this.calls.push([name, ...args]);
    return 0;
  }
  putUser(...a: unknown[]): 0 { return this.rec('putUser', ...a); }
  putNegName(...a: unknown[]): 0 { return this.rec('putNegName', ...a); }
  putNegUid(...a: unknown[]): 0 { return this.rec('putNegUid', ...a); }
  removeName(...a: unknown[]): 0 { return this.rec('removeName', ...a); }
  removeUid(...a: unknown[]): 0 { return this.rec('removeUid', ...a); }
  reset(...a: unknown[]): 0 { return this.rec('reset', ...a); }
  setGroup(...a: unknown[]): 0 { return this.rec('setGroup', ...a); }
  touchGroup(...a: unknown[]): void { this.rec('touchGroup', ...a); }
  stats(): MapWriterStats { return { generation: 1, fileSize: 1, slots: 1024, users: 0, negNames: 0, negUids: 0, dataUsed: 0, dataSize: 1, rebuilds: 0, notPublished: 0 }; }
  close(unlinkFile: boolean): void { this.closed = unlinkFile; }
  named(name: string): unknown[][] { return this.calls.filter((c) => c[0] === name); }
}

function setup(): { r: Resolver; w: RecordingWriter; m: MapPublisher; cfg: Config; db: UserCache } {
  const cfg = testConfig(scratchDir('latchkey-fastpath-'));
  const db = UserCache.open(':memory:');
  const r = new Resolver(db, source, () => cfg);
  const w = new RecordingWriter();
  const m = new MapPublisher(() => w, () => cfg, r, db);
  db.listener = m;
  m.start();
  return { r, w, m, cfg, db };
}

test('a fetched user is published until its refresh-ahead point, with the configured home and shell', async () => {
  const { r, w } = setup();
  const before = Date.now();
  await r.byName('alice');
  const [call] = w.named('putUser');
  assert.ok(call, JSON.stringify(w.calls));
  const [, name, uid, gid, gecos, dir, shell, until] = call as [string, string, number, number, string, string, string, number];
  assert.deepEqual([name, uid, gid, gecos, dir, shell], ['alice', 11001, 10000, 'Alice', '/srv/inbox/alice', '/bin/bash']);
  // ttl 100 s, refresh ahead 20 s: the socket must see lookups from the 80th second on
  assert.ok(until >= before + 80_000 && until <= Date.now() + 80_000, String(until - before));
});

test('a name miss is published only when someone other than root asked; a uid miss always', async () => {
  const { r, w } = setup();
  await r.byName('typedpassword', 0);
  await r.byName('ghost', 1000);
  await r.byUid(19999, 0);
  assert.deepEqual(w.named('putNegName').map((c) => c[1]), ['ghost']);
  assert.deepEqual(w.named('putNegUid').map((c) => c[1]), [19999]);
});

test('map_name_misses = no keeps every name miss out of the map; uid misses still go in', async () => {
  const { r, w, cfg } = setup();
  cfg.cache = { ...cfg.cache, mapNameMisses: false };
  await r.byName('ghost', 1000);
  await r.byUid(19998, 1000);
  assert.equal(w.named('putNegName').length, 0);
  assert.deepEqual(w.named('putNegUid').map((c) => c[1]), [19998]);
});

test('invalidate and flush reach the map; a user failing the rules after a reload is removed', async () => {
  const { r, w, m, db, cfg } = setup();
  await r.byName('alice');
  db.invalidate({ name: 'alice' });
  assert.deepEqual(w.calls.at(-1), ['removeName', 'alice']);
  db.flush({ negativeOnly: true });
  assert.deepEqual(w.calls.at(-1), ['reset', true, false]);
  await r.byName('alice');
  cfg.users = { ...cfg.users, denyNames: ['root', 'alice'] };
  w.calls = [];
  m.rebuild();
  assert.equal(w.named('putUser').length, 0, 'a denied name is not republished');
  assert.deepEqual(w.named('removeName').map((c) => c[1]), ['alice']);
});

test('a writer error turns the map off, retires the file, is logged once; a reload tries again', async () => {
  const { r, w, m } = setup();
  const lines: string[] = [];
  setLogSink((l) => lines.push(l));
  try {
    w.failOn = 'putUser';
    await r.byName('alice');
    assert.equal(m.status().state, 'failed');
    assert.match(m.status().reason ?? '', /No space left on device/);
    assert.equal(w.closed, true, 'the file is retired and removed: readers go to the socket');
    await r.byName('ghost', 1000);
    assert.equal(w.named('putNegName').length, 0, 'nothing is written after a failure');
    assert.equal(lines.filter((l) => l.includes('"map.failed"')).length, 1);
    w.failOn = null;
    m.rebuild();
    assert.equal(m.status().state, 'on');
  } finally {
    setLogSink((l) => process.stderr.write(l + '\n'));
  }
});

test('a name the host passwd file takes leaves the map within a second, with no lookup and no new file', async () => {
  const { r, w, m, cfg } = setup();
  try {
    await r.byName('alice');
    w.calls = [];
    m.sweep();
    assert.deepEqual(w.calls.map((c) => c[0]), ['touchGroup']);
    w.calls = [];
    writeFileSync(cfg.users.localPasswdFile, 'root:x:0:0:root:/root:/bin/bash\nalice:x:1500:1500::/home/alice:/bin/sh\n');
    await new Promise((res) => setTimeout(res, 1200));
    assert.equal(w.named('reset').length + w.named('setGroup').length, 0, 'removed in place: a local user can rewrite /etc/passwd at will (chfn)');
    assert.ok(w.named('removeName').some((c) => c[1] === 'alice'), 'now a local account: never from the map');
    assert.ok(w.named('removeUid').some((c) => c[1] === 1500));
    w.calls = [];
    writeFileSync(cfg.users.localGroupFile, 'root:x:0:\nlega:x:10000:\n');
    await new Promise((res) => setTimeout(res, 1200));
    assert.deepEqual(w.named('setGroup').map((c) => c[1]), [null], 'the host now has the group: files answers for it');
  } finally {
    m.close();
  }
});

test('after the wall clock stepped back, a rebuild leaves out the users fetched "in the future"', async () => {
  const cfg = testConfig(scratchDir('latchkey-fastpath-'));
  const db = UserCache.open(':memory:');
  const r = new Resolver(db, source, () => cfg);
  const w = new RecordingWriter();
  let now = Date.now();
  const m = new MapPublisher(() => w, () => cfg, r, db, () => now);
  db.listener = m;
  m.start();
  await r.byName('alice');
  await r.byUid(19997, 1000);
  assert.equal(w.named('putUser').length, 1);
  // The clock steps back two hours: alice's fetch (and the uid miss) now lie in the future, and
  // their expiries are hours away by the readers' clock. The rebuild the daemon runs on the step
  // (daemon/clock.ts onJump) must not republish them; the socket refetches alice.
  now -= 2 * 3600_000;
  w.calls = [];
  m.rebuild();
  assert.equal(w.named('putUser').length, 0, JSON.stringify(w.calls));
  assert.deepEqual(w.named('removeName').map((c) => c[1]), ['alice']);
  assert.equal(w.named('putNegUid').length, 0, JSON.stringify(w.calls));
  // a step back of under a minute (NTP) changes nothing
  now += 2 * 3600_000 - 30_000;
  w.calls = [];
  m.rebuild();
  assert.equal(w.named('putUser').length, 1);
});
