// What the daemon keeps in memory per cached user and per enumeration page (issue 15: anonymous
// memory at 100,000 cached users), and the bounds on every per-key map a peer can grow.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import { join } from 'node:path';
import { scratchDir } from '../lib/tmp.js';
import { UserCache, MEMO_MAX } from '../../src/cache/db.js';
import { LogOnce, logLimited, setLogSink, LIMITED_KEYS_MAX } from '../../src/log.js';
import { UpstreamScheduler, SchedulerBusy, MAX_TRACKED_UIDS } from '../../src/upstream/scheduler.js';
import { Resolver } from '../../src/directory/resolver.js';
import { nssHandlers, PageCache, PAGE_TTL_MS } from '../../src/answers/nss.js';
import type { LoginIdentity } from '../../src/directory/identity.js';
import { decodeReply } from '../../src/protocol/codec.js';
import type { Peer } from '../../src/server/dispatch.js';
import type { UserSource } from '../../src/upstream/types.js';
import type { CachedUser, UpstreamUser } from '../../src/types.js';
import type { Config } from '../../src/config/types.js';
import { defaultConfig } from '../../src/config/load.js';

function testConfig(shell = '/bin/bash'): Config {
  return {
    source: '',
    cache: { dbPath: ':memory:', ttlSec: 3600, negativeTtlSec: 10, staleGraceSec: 50, refreshAheadSec: 0 },
    users: { uidShift: 10000, gid: 10000, groupName: 'lega', minUid: 1000, maxUid: 2 ** 31 - 1, nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/, shell, denyNames: ['root'], localPasswdFile: '/etc/passwd', localGroupFile: '/etc/group' },
    homes: { base: '/srv/inbox', layout: 'chroot', mode: 0o2750, umask: 0o027, uploadDir: 'upload' },
    upstream: {} as Config['upstream'], pam: {} as Config['pam'], daemon: {} as Config['daemon'], local: defaultConfig().local, events: defaultConfig().events, cleanup: defaultConfig().cleanup, metrics: defaultConfig().metrics, userdb: defaultConfig().userdb,
  };
}

/** Never asked in these tests: every user is in the cache already. */
const noSource: UserSource = {
  fetchByName: () => Promise.reject(new Error('not asked')),
  fetchByUid: () => Promise.reject(new Error('not asked')),
  lastError: () => null,
  close: () => Promise.resolve(),
};
const peer: Peer = { socket: 'nss', uid: 1000, pid: 1 };
const upstream = (name: string, upstreamUid: number): UpstreamUser => ({
  username: name, upstreamUid, passwordHash: '$2b$10$abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyza',
  sshPublicKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtTQ5JPSQBeEpxa4l9g35KpDlRe4THz+oMCk/AQuQ6C k'], gecos: `${name} gecos`,
});
/** Built as the resolver builds a fetched user: the upstream record spread, local fields added. */
const fetched = (name: string, uid: number, now = Date.now()): CachedUser => ({
  ...upstream(name, uid - 10000), uid, fetchedAt: now, expiresAt: now + 3_600_000,
});

function setup(n: number, cfg: { current: Config } = { current: testConfig() }) {
  const cache = UserCache.open(':memory:');
  for (let i = 0; i < n; i++) cache.put(fetched(`memu${i}`, 20_000 + i));
  const resolver = new Resolver(cache, noSource, () => cfg.current);
  let gen = 1;
  const h = nssHandlers(resolver, {} as LoginIdentity, () => cfg.current, () => gen);
  return { cache, h, cfg, bump: () => { gen++; } };
}

const entryOf = (frame: Buffer): Record<string, unknown> =>
  (decodeReply(frame.subarray(4)).fields as { entry: Record<string, unknown> }).entry;

test('a kept reply frame costs about its own length, not a chunk of the shared Buffer pool', async () => {
  const { h } = setup(3000);
  const frames: Buffer[] = [];
  for (let i = 0; i < 3000; i++) {
    const r = await h.PW_BY_NAME!({ name: `memu${i}` }, peer);
    assert.equal(r.status, 0);
    frames.push((r as { frame: Buffer }).frame);
  }
  // the warm hit hands back the kept frame itself
  const again = await h.PW_BY_NAME!({ name: 'memu7' }, peer);
  assert.ok((again as { frame: Buffer }).frame === frames[7], 'a warm hit encoded the reply again');
  assert.equal(entryOf(frames[7]!).name, 'memu7');
  // Memory the kept frames hold alive: every distinct backing store. A frame left in the pool
  // chunk it was encoded in holds the chunk (and the encoder's spare bytes) alive with it.
  const stores = new Set(frames.map((f) => f.buffer));
  const held = [...stores].reduce((n, b) => n + b.byteLength, 0);
  const bytes = frames.reduce((n, f) => n + f.length, 0);
  assert.ok(held <= bytes * 1.25 + 64 * 1024, `${held} bytes held alive for ${bytes} bytes of frames`);
});

test('a reloaded config gets new frames (home, shell), not the kept ones', async () => {
  const cfg = { current: testConfig('/bin/bash') };
  const { h } = setup(3, cfg);
  const first = (await h.PW_BY_UID!({ uid: 20_001 }, peer)) as { frame: Buffer };
  assert.equal(entryOf(first.frame).shell, '/bin/bash');
  cfg.current = testConfig('/usr/bin/false');
  const after = (await h.PW_BY_UID!({ uid: 20_001 }, peer)) as { frame: Buffer };
  assert.equal(entryOf(after.frame).shell, '/usr/bin/false');
  const byName = (await h.PW_BY_NAME!({ name: 'memu1' }, peer)) as { frame: Buffer };
  assert.equal(entryOf(byName.frame).shell, '/usr/bin/false');
});

test('users in the memo share one hidden class, whether stored from upstream or read from SQLite', () => {
  // Each object with a hidden class of its own costs ~300 bytes more (its map and descriptors):
  // 6 MiB at a full memo. %HaveSameMap is V8's own answer to "one hidden class?".
  v8.setFlagsFromString('--allow-natives-syntax');
  const sameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
  const p = join(scratchDir('latchkey-memo-'), 'c.db');
  const now = Date.now();
  const writer = UserCache.open(p);
  writer.put(fetched('stored', 20_001, now));
  writer.put(fetched('other', 20_002, now));
  const reader = UserCache.open(p);
  const fromSqlite = reader.getByName('other')!;
  const stored = writer.getByName('stored')!;
  assert.equal(stored.username, 'stored');
  assert.deepEqual(stored.sshPublicKeys, upstream('stored', 1).sshPublicKeys);
  assert.ok(sameMap(stored, fromSqlite), 'a stored user keeps the shape it was built with (a hidden class per fetched user)');
  reader.close();
  writer.close();
});

test('enumeration pages: a walk from uid 0 is kept and reused; made-up start uids keep nothing', async () => {
  const { h, cache } = setup(3000);
  const walk = async (): Promise<Buffer[]> => {
    const frames: Buffer[] = [];
    let start = 0;
    for (;;) {
      const r = (await h.PW_LIST!({ start_uid: start }, peer)) as { frame: Buffer };
      frames.push(r.frame);
      const f = decodeReply(r.frame.subarray(4)).fields as { next_uid: number; entries: unknown[] };
      if (f.entries.length === 0) return frames;
      start = f.next_uid;
    }
  };
  const first = await walk();
  assert.ok(first.length > 2, 'several pages');
  const second = await walk();
  assert.equal(second.length, first.length);
  assert.ok(second.every((f, i) => f === first[i]), 'a second walk within the TTL was encoded again');
  // A start uid no walk reaches is answered right, and not kept: the cache gains a user without
  // a generation bump (so a kept page would still be served) and the answer shows it.
  const madeUp = 20_005;
  const a = decodeReply(((await h.PW_LIST!({ start_uid: madeUp }, peer)) as { frame: Buffer }).frame.subarray(4)).fields as { entries: Array<{ name: string }> };
  assert.equal(a.entries[0]!.name, 'memu5');
  cache.put(fetched('early', madeUp));
  const b = decodeReply(((await h.PW_LIST!({ start_uid: madeUp }, peer)) as { frame: Buffer }).frame.subarray(4)).fields as { entries: Array<{ name: string }> };
  assert.equal(b.entries[0]!.name, 'early', 'a page for a made-up start uid was kept');
});

test('PageCache: bounded in bytes, only pages a walk reaches, dropped once stale', () => {
  let now = 1_000_000;
  const cfg = testConfig();
  const page = (n: number): Buffer => Buffer.alloc(1000, n);
  const pc = new PageCache(() => now, 5000);
  // made-up starts: not one kept, however many
  for (let s = 1; s <= 2000; s++) pc.offer(s * 7, 1, cfg, s * 7 + 1, page(s));
  assert.equal(pc.size, 0);
  assert.equal(pc.bytes, 0);
  // a walk: 0 → 100 → 200 → … ; kept up to the byte bound, the rest sent without being kept
  for (let i = 0; i < 10; i++) pc.offer(i * 100, 1, cfg, (i + 1) * 100, page(i));
  assert.equal(pc.size, 5);
  assert.ok(pc.bytes <= 5000);
  assert.ok(pc.get(200, 1, cfg)?.equals(page(2)));
  assert.equal(pc.get(200, 2, cfg), null, 'another cache generation');
  assert.equal(pc.get(200, 1, testConfig()), null, 'another config');
  now += PAGE_TTL_MS;
  assert.equal(pc.get(200, 1, cfg), null, 'stale');
  pc.sweep();
  assert.equal(pc.size, 0, 'stale pages stay kept');
  assert.equal(pc.bytes, 0);
});

test('PageCache: an idle daemon lets go of the last enumeration', async () => {
  const pc = new PageCache();
  const cfg = testConfig();
  pc.offer(0, 1, cfg, 100, Buffer.alloc(1000));
  pc.offer(100, 1, cfg, 200, Buffer.alloc(1000));
  assert.equal(pc.size, 2);
  await new Promise((r) => setTimeout(r, PAGE_TTL_MS * 2 + 100));
  assert.equal(pc.size, 0, 'pages outlived their TTL with no lookup');
  assert.equal(pc.bytes, 0);
});

test('the decoded-user memo holds at most MEMO_MAX users', () => {
  const c = UserCache.open(':memory:');
  c.db.transaction(() => { for (let i = 0; i <= MEMO_MAX; i++) c.put(fetched(`m${i}`, 20_000 + i)); })();
  const first = c.getByName('m0')!;
  assert.ok(c.getByName('m0') === first, 'served from the memo');
  for (let i = 1; i <= MEMO_MAX; i++) c.getByName(`m${i}`);
  const again = c.getByName('m0')!;
  assert.equal(again.uid, 20_000);
  assert.ok(again !== first, `the memo still held m0 after ${MEMO_MAX} other users`);
  c.close();
});

test('log lines limited per key: the key map is bounded (a flood of keys starts it over)', () => {
  const lines: string[] = [];
  setLogSink((l) => lines.push(l));
  try {
    const now = 5_000_000;
    logLimited('bound:first', 'warn', 'test.limited', {}, now);
    logLimited('bound:first', 'warn', 'test.limited', {}, now);
    assert.equal(lines.length, 1, 'a repeat within the interval is suppressed');
    for (let i = 0; i < LIMITED_KEYS_MAX; i++) logLimited(`bound:${i}`, 'warn', 'test.limited', {}, now);
    lines.length = 0;
    logLimited('bound:first', 'warn', 'test.limited', {}, now);
    assert.equal(lines.length, 1, `the key map kept more than ${LIMITED_KEYS_MAX} keys`);
  } finally {
    setLogSink((l) => process.stderr.write(l + '\n'));
  }
});

test('LogOnce: one line per key, and at most `max` keys remembered', () => {
  const lines: string[] = [];
  setLogSink((l) => lines.push(l));
  try {
    const once = new LogOnce(3);
    once.log('a', 'warn', 'test.once');
    once.log('a', 'warn', 'test.once');
    assert.equal(lines.length, 1);
    for (const k of ['b', 'c', 'd']) once.log(k, 'warn', 'test.once');
    lines.length = 0;
    once.log('a', 'warn', 'test.once');
    assert.equal(lines.length, 1, 'LogOnce remembered more keys than its bound');
  } finally {
    setLogSink((l) => process.stderr.write(l + '\n'));
  }
});

test('scheduler: per-uid token buckets are kept for at most MAX_TRACKED_UIDS uids', () => {
  const t = { now: 0 };
  const s = new UpstreamScheduler(() => ({ maxConcurrent: 4, newPerUidPerSec: 1, newPerUidBurst: 2, newPerUidQueued: 8 }), () => t.now);
  s.admit('new', 70_000);
  s.admit('new', 70_000);
  assert.throws(() => s.admit('new', 70_000), SchedulerBusy);
  // Every other uid one name: the idlest bucket (70000's) goes once the bound is reached.
  for (let uid = 1; uid <= MAX_TRACKED_UIDS; uid++) s.admit('new', 100_000 + uid);
  s.admit('new', 70_000); // a new, full bucket: its old one was forgotten
});
