// The upstream scheduler (issue 12): known names before never-seen ones, fairness between peer
// uids, per-uid rate and queue bounds, and waiting that never counts against the upstream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UpstreamScheduler, SchedulerBusy, type SchedulerLimits } from '../../src/upstream/scheduler.js';

const limits = (over: Partial<SchedulerLimits> = {}) => (): SchedulerLimits =>
  ({ maxConcurrent: 4, newPerUidPerSec: 20, newPerUidBurst: 40, newPerUidQueued: 8, ...over });

/** A job that finishes when told to; `order` records starts. */
function gate(): { p: Promise<void>; open: () => void } {
  let open!: () => void;
  const p = new Promise<void>((r) => { open = r; });
  return { p, open };
}

test('never-seen names leave slots for known ones; a known lookup jumps the queue', async () => {
  const s = new UpstreamScheduler(limits());
  const g = gate();
  const started: string[] = [];
  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < 6; i++) {
    s.admit('new', 1000);
    jobs.push(s.run('new', 1000, 5000, async () => { started.push(`new${i}`); await g.p; }));
  }
  await new Promise((r) => setImmediate(r));
  assert.equal(started.length, 3, 'new names take at most max - reserve slots');
  const known = s.run('known', 0, 5000, async () => { started.push('known'); });
  await known;
  assert.ok(started.includes('known'), 'a known name started at once despite the flood');
  g.open();
  await Promise.all(jobs);
  assert.equal(started.length, 7);
});

test('round robin between uids: one uid queueing many names does not delay another uid\'s first name', async () => {
  const s = new UpstreamScheduler(limits({ maxConcurrent: 1 }));
  const order: string[] = [];
  const g = gate();
  const first = s.run('new', 1000, 5000, async () => { order.push('a0'); await g.p; });
  const jobs = [first];
  for (let i = 1; i <= 5; i++) jobs.push(s.run('new', 1000, 5000, async () => { order.push(`a${i}`); }));
  jobs.push(s.run('new', 1001, 5000, async () => { order.push('b0'); }));
  g.open();
  await Promise.all(jobs);
  assert.deepEqual(order.slice(0, 3), ['a0', 'a1', 'b0']);
});

test('per-uid token bucket and queue bound answer "busy" at once; root has a larger budget', () => {
  const t = { now: 0 };
  const s = new UpstreamScheduler(limits({ newPerUidPerSec: 2, newPerUidBurst: 3 }), () => t.now, 10);
  for (let i = 0; i < 3; i++) s.admit('new', 1000);
  assert.throws(() => s.admit('new', 1000), (e: unknown) => e instanceof SchedulerBusy && e.reason === 'rate');
  s.admit('new', 1001); // another uid is unaffected
  for (let i = 0; i < 30; i++) s.admit('new', 0);
  assert.throws(() => s.admit('new', 0), (e: unknown) => e instanceof SchedulerBusy && e.reason === 'rate');
  t.now += 1000; // refills newPerUidPerSec tokens
  s.admit('new', 1000);
  s.admit('new', 1000);
  assert.throws(() => s.admit('new', 1000), SchedulerBusy);
  s.admit('known', 1000); // known lookups are not rate limited
});

test('waiting past the deadline is "busy" (deadline), and the waiter leaves the queue', async () => {
  const s = new UpstreamScheduler(limits({ maxConcurrent: 1 }));
  const g = gate();
  const hold = s.run('known', 0, 1000, () => g.p);
  await assert.rejects(s.run('new', 1000, 20, async () => 'never'), (e: unknown) => e instanceof SchedulerBusy && e.reason === 'deadline');
  assert.equal(s.queued, 0);
  g.open();
  await hold;
  assert.equal(await s.run('new', 1000, 20, async () => 'ran'), 'ran');
});

test('a uid cannot queue more than newPerUidQueued names', async () => {
  const s = new UpstreamScheduler(limits({ maxConcurrent: 1, newPerUidQueued: 2 }));
  const g = gate();
  const hold = s.run('known', 0, 1000, () => g.p);
  const q = [s.run('new', 7, 1000, async () => 1), s.run('new', 7, 1000, async () => 2)];
  assert.throws(() => s.admit('new', 7), (e: unknown) => e instanceof SchedulerBusy && e.reason === 'queue');
  s.admit('new', 8);
  g.open();
  await hold;
  assert.deepEqual(await Promise.all(q), [1, 2]);
});
