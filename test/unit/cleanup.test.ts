// The cleanup of temporary accounts (src/cleanup/): the pure plan at its boundaries (the grace,
// disabled accounts, sessions matched by name and uid, a secondary), then one run over a real
// cache, resolver and local users' store with a clock of its own: what it removes, what it
// keeps (an expiry extended upstream or meanwhile), whose sessions it ends, a dry run that
// changes nothing, and the log lines an admin reads.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planCleanup, type PlanInput } from '../../src/cleanup/plan.js';
import { Cleanup, type SessionEnder } from '../../src/cleanup/run.js';
import { UserCache } from '../../src/cache/db.js';
import { Resolver } from '../../src/directory/resolver.js';
import { LocalStore } from '../../src/localusers/store.js';
import { defaultConfig } from '../../src/config/load.js';
import { setLogSink } from '../../src/log.js';
import type { Config } from '../../src/config/types.js';
import type { UpstreamUser } from '../../src/types.js';
import type { FetchResult, UserSource } from '../../src/upstream/types.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2024, 4, 1);
const TMP = mkdtempSync(join(tmpdir(), 'latchkey-cleanup-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

const input = (over: Partial<PlanInput>): PlanInput => ({ now: NOW, graceMs: DAY, cached: [], stored: [], sessions: [], mayRemoveStored: true, ...over });

test('plan: removed exactly at expiry + grace, not a millisecond before; sessions end from the expiry on', () => {
  const p = planCleanup(input({
    cached: [
      { name: 'atgrace', uid: 11001, accountExpiresAt: NOW - DAY },
      { name: 'ingrace', uid: 11002, accountExpiresAt: NOW - DAY + 1 },
      { name: 'future', uid: 11003, accountExpiresAt: NOW + 1 },
      { name: 'now', uid: 11004, accountExpiresAt: NOW },
    ],
    sessions: [{ user: 'ingrace', uid: 11002 }, { user: 'ingrace', uid: 11002 }, { user: 'future', uid: 11003 }, { user: 'now', uid: 11004 }],
  }));
  assert.deepEqual(p.cache, [{ name: 'atgrace', uid: 11001, expiredAt: NOW - DAY }]);
  assert.deepEqual(p.sessions.map((s) => [s.user, s.reason, s.open]), [['ingrace', 'expired', 2], ['now', 'expired', 1]]);
  assert.match(p.sessions[0]!.detail, /account expired upstream at 2024-04-30T00:00:00.001Z/);
});

test('plan: disabled upstream (expiry 0) or locally is not temporary: never removed, but its sessions end', () => {
  const p = planCleanup(input({
    cached: [{ name: 'off', uid: 11001, accountExpiresAt: 0 }],
    stored: [{ name: 'ldis', uid: 9001, expiresAt: null, disabled: true }, { name: 'lfine', uid: 9002, expiresAt: NOW + DAY, disabled: false }],
    sessions: [{ user: 'off', uid: 11001 }, { user: 'ldis', uid: 9001 }, { user: 'lfine', uid: 9002 }],
  }));
  assert.deepEqual(p.cache, []);
  assert.deepEqual(p.stored, []);
  assert.deepEqual(p.sessions.map((s) => [s.user, s.reason]), [['ldis', 'disabled'], ['off', 'disabled']]);
});

test('plan: local users past the grace are removed on a host that writes the store, never on a secondary', () => {
  const stored = [{ name: 'tmp1', uid: 9001, expiresAt: NOW - 2 * DAY, disabled: false }, { name: 'tmp2', uid: 9002, expiresAt: NOW - 1000, disabled: true }];
  const sessions = [{ user: 'tmp1', uid: 9001 }, { user: 'tmp2', uid: 9002 }];
  const primary = planCleanup(input({ stored, sessions }));
  assert.deepEqual(primary.stored.map((a) => a.name), ['tmp1']);
  // Expired wins over disabled as the reason: the expiry is what the account phase reports.
  assert.deepEqual(primary.sessions.map((s) => [s.user, s.reason]), [['tmp1', 'expired'], ['tmp2', 'expired']]);
  const secondary = planCleanup(input({ stored, sessions, mayRemoveStored: false }));
  assert.deepEqual(secondary.stored, []);
  assert.equal(secondary.sessions.length, 2, 'a secondary still ends the sessions');
});

test('plan: a session of another account of the same name (another uid) is not ended', () => {
  const p = planCleanup(input({
    cached: [{ name: 'shared', uid: 11005, accountExpiresAt: NOW - 1 }],
    sessions: [{ user: 'shared', uid: 9005 }],
  }));
  assert.deepEqual(p.sessions, []);
});

// ---- one run over real parts ----------------------------------------------------------------

class Upstream implements UserSource {
  users = new Map<string, UpstreamUser>();
  set(name: string, upstreamUid: number, accountExpiresAt: number | null): void {
    this.users.set(name, { username: name, upstreamUid, passwordHash: null, sshPublicKeys: [], gecos: name, accountExpiresAt });
  }
  async fetchByName(name: string): Promise<FetchResult> {
    const u = this.users.get(name);
    return u ? { kind: 'found', user: { ...u } } : { kind: 'notfound' };
  }
  async fetchByUid(uid: number): Promise<FetchResult> {
    const u = [...this.users.values()].find((x) => x.upstreamUid === uid);
    return u ? { kind: 'found', user: { ...u } } : { kind: 'notfound' };
  }
  lastError(): null { return null; }
  async close(): Promise<void> { /* nothing held */ }
}

/** The session registry's part the cleanup uses, keeping what it was asked. */
class Sessions implements SessionEnder {
  open: Array<{ user: string; uid: number }> = [];
  revoked: Array<[string, string, string]> = [];
  list(): Array<{ user: string; uid: number }> { return [...this.open]; }
  async revoke(user: string, reason: string, detail: string): Promise<number> {
    this.revoked.push([user, reason, detail]);
    const before = this.open.length;
    this.open = this.open.filter((s) => s.user !== user);
    return before - this.open.length;
  }
}

function world(role: 'standalone' | 'secondary' = 'standalone') {
  const dir = mkdtempSync(join(TMP, 'run-'));
  const homes = join(dir, 'homes');
  mkdirSync(join(homes, 'visitor'), { recursive: true });
  mkdirSync(join(homes, 'tmp1'), { recursive: true });
  const cfg: Config = defaultConfig();
  cfg.cache = { ...cfg.cache, dbPath: ':memory:', ttlSec: 3600 };
  cfg.users = { ...cfg.users, uidShift: 10000, localPasswdFile: join(dir, 'no-passwd'), localGroupFile: join(dir, 'no-group') };
  cfg.homes = { ...cfg.homes, base: homes };
  cfg.local = { ...cfg.local, minUid: 9000, maxUid: 9999, role };
  cfg.cleanup = { intervalSec: 0, expiredGraceSec: 86_400 };
  const clock = { t: NOW - 3 * DAY };
  const up = new Upstream();
  const cache = UserCache.open(':memory:');
  const resolver = new Resolver(cache, up, () => cfg, () => clock.t);
  const store = LocalStore.open(join(dir, 'local.db'), { rules: () => ({ users: { nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/ }, minUid: 9000, maxUid: 9999 }), now: () => clock.t });
  resolver.useStore(store);
  const sessions = new Sessions();
  const readOnly = role === 'secondary' ? 'this host is a secondary' : null;
  const cleanup = new Cleanup({ config: () => cfg, cache, resolver, sessions, local: { store, readOnly: () => readOnly }, now: () => clock.t });
  return { cfg, clock, up, cache, resolver, store, sessions, cleanup, homes };
}

function captureLog(): { lines: Array<Record<string, unknown>>; restore: () => void } {
  const lines: Array<Record<string, unknown>> = [];
  setLogSink((l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  return { lines, restore: () => setLogSink((l) => process.stderr.write(l + '\n')) };
}

test('run: expired past the grace leaves cache and store, homes listed and kept; a dry run changes nothing', async () => {
  const w = world();
  w.up.set('visitor', 1001, NOW - 2 * DAY); // expired past the grace
  w.up.set('recent', 1002, NOW - 1000); // expired within the grace: sessions end, entry stays
  w.up.set('member', 1003, null); // no expiry
  w.up.set('off', 1004, 0); // disabled upstream: not temporary
  for (const n of ['visitor', 'recent', 'member', 'off']) assert.equal((await w.resolver.byName(n)).status, 'found');
  w.store.add({ name: 'tmp1', uid: null, gecos: '', shell: null, passwordHash: null, context: null, keys: [], expiresAt: NOW - 2 * DAY }, { users: { nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/ }, minUid: 9000, maxUid: 9999 });
  w.store.add({ name: 'tmp2', uid: null, gecos: '', shell: null, passwordHash: null, context: null, keys: [], expiresAt: NOW + DAY }, { users: { nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/ }, minUid: 9000, maxUid: 9999 });
  w.clock.t = NOW;
  w.sessions.open = [{ user: 'recent', uid: 11002 }, { user: 'member', uid: 11003 }, { user: 'tmp1', uid: 9000 }];

  const cap = captureLog();
  try {
    const dry = await w.cleanup.run({ dryRun: true });
    assert.deepEqual(dry.cache.map((a) => [a.name, a.home, a.homeExists]), [['visitor', join(w.homes, 'visitor'), true]]);
    assert.deepEqual(dry.stored.map((a) => [a.name, a.uid, a.homeExists]), [['tmp1', 9000, true]]);
    assert.equal(dry.sessionsEnded, 2);
    assert.deepEqual(dry.sessionUsers, ['recent', 'tmp1']);
    assert.ok(w.cache.getByName('visitor') && w.store.get('tmp1'), 'a dry run removes nothing');
    assert.equal(w.sessions.revoked.length, 0, 'a dry run ends no session');
    assert.equal(cap.lines.filter((l) => String(l.event).startsWith('cleanup.')).length, 0, 'a dry run logs no removal');

    const r = await w.cleanup.run({ dryRun: false });
    assert.deepEqual(r.cache.map((a) => a.name), ['visitor']);
    assert.deepEqual(r.stored.map((a) => a.name), ['tmp1']);
    assert.equal(w.cache.getByName('visitor'), null);
    assert.equal(w.store.get('tmp1'), null);
    for (const n of ['recent', 'member', 'off']) assert.ok(w.cache.getByName(n), `${n} stays cached`);
    assert.ok(w.store.get('tmp2'));
    assert.deepEqual(w.sessions.revoked.map(([u, why]) => [u, why]), [['recent', 'expired'], ['tmp1', 'expired']]);
    assert.deepEqual(w.sessions.open, [{ user: 'member', uid: 11003 }]);
    assert.equal(r.sessionsEnded, 2);

    const removed = cap.lines.filter((l) => l.event === 'cleanup.removed');
    assert.deepEqual(removed.map((l) => [l.user, l.source, l.home, l.home_exists]), [
      ['visitor', 'cache', join(w.homes, 'visitor'), true], ['tmp1', 'local', join(w.homes, 'tmp1'), true],
    ]);
    assert.ok(removed.every((l) => /never deletes a home/.test(String(l.detail))));
    const summary = cap.lines.filter((l) => l.event === 'cleanup.run');
    assert.equal(summary.length, 1);
    assert.deepEqual([summary[0]!.cache_users, summary[0]!.local_users, summary[0]!.sessions_ended, summary[0]!.homes_kept], [1, 1, 2, 2]);

    // Nothing left to do: no summary line.
    const again = await w.cleanup.run({ dryRun: false });
    assert.equal(again.cache.length + again.stored.length + again.sessionsEnded, 0);
    assert.equal(cap.lines.filter((l) => l.event === 'cleanup.run').length, 1);
  } finally {
    cap.restore();
  }
});

test('run: an expiry extended upstream keeps the session; one extended meanwhile keeps the account', async () => {
  const w = world();
  w.up.set('back', 1001, NOW - 1000);
  assert.equal((await w.resolver.byName('back')).status, 'found');
  w.store.add({ name: 'tmp1', uid: null, gecos: '', shell: null, passwordHash: null, context: null, keys: [], expiresAt: NOW - 2 * DAY }, { users: { nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/ }, minUid: 9000, maxUid: 9999 });
  // The cached entry is past its TTL when the cleanup asks: the account phase's question refetches.
  w.clock.t = NOW + 2 * 3600_000;
  w.up.set('back', 1001, NOW + 30 * DAY);
  w.sessions.open = [{ user: 'back', uid: 11001 }];
  // The store's row is extended between the plan and the removal: the removal re-checks it.
  const plain = w.store.list.bind(w.store);
  w.store.list = () => { const l = plain(); w.store.setExpiry('tmp1', NOW + DAY); return l; };
  const cap = captureLog();
  try {
    const r = await w.cleanup.run({ dryRun: false });
    assert.equal(r.sessionsEnded, 0);
    assert.deepEqual(w.sessions.revoked, []);
    assert.ok(cap.lines.some((l) => l.event === 'cleanup.sessions_kept' && l.user === 'back'));
    assert.deepEqual(r.stored, []);
    assert.ok(w.store.get('tmp1'), 'extended meanwhile: kept');
  } finally {
    cap.restore();
  }
});

test('run: a secondary ends sessions but leaves its store to the primary\'s snapshot, and says so', async () => {
  const w = world('secondary');
  w.store.add({ name: 'tmp1', uid: null, gecos: '', shell: null, passwordHash: null, context: null, keys: [], expiresAt: NOW - 2 * DAY }, { users: { nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/ }, minUid: 9000, maxUid: 9999 });
  w.clock.t = NOW;
  w.sessions.open = [{ user: 'tmp1', uid: 9000 }];
  const cap = captureLog();
  try {
    const r = await w.cleanup.run({ dryRun: false });
    assert.deepEqual(r.stored, []);
    assert.equal(r.storedSkipped, 'this host is a secondary');
    assert.ok(w.store.get('tmp1'));
    assert.equal(r.sessionsEnded, 1);
  } finally {
    cap.restore();
  }
});
