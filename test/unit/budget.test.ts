// Connection budgets (issue 12): per-uid shares, eviction of the heaviest uid's oldest idle
// connection, a total from the fd limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionBudget, RequestPacer, nssBudgetFromFdLimit } from '../../src/server/budget.js';
import type { ConnectionHandle } from '../../src/server/connection.js';

let clock = 0;
function conn(uid: number, busy = false): ConnectionHandle & { closed: boolean; setBusy(b: boolean): void } {
  let b = busy;
  const h = {
    peer: { socket: 'nss' as const, uid, pid: 1 }, lastActive: clock++, closed: false,
    busy: () => b, setBusy: (v: boolean) => { b = v; }, destroy: () => { h.closed = true; },
  };
  return h;
}

test('one uid cannot take more than its share; its own oldest idle connection goes first', () => {
  const budget = new ConnectionBudget(() => ({ total: 100, perUid: 3 }));
  const mine = [conn(1000), conn(1000), conn(1000)];
  for (const c of mine) budget.add(c);
  const a = budget.admit(1000);
  assert.ok(a.ok && a.evicted === mine[0]);
  budget.remove(mine[0]!);
  for (const c of mine.slice(1)) c.setBusy(true);
  budget.add(conn(1000, true));
  const refused = budget.admit(1000);
  assert.equal(refused.ok, false);
  // another uid is untouched by 1000's state
  const other = budget.admit(0);
  assert.ok(other.ok && other.evicted === null);
});

test('when the socket is full, the heaviest uid gives up its oldest idle connection', () => {
  const budget = new ConnectionBudget(() => ({ total: 6, perUid: 6 }));
  const light = conn(0);
  budget.add(light);
  const heavy = [conn(1000), conn(1000, true), conn(1000), conn(1000), conn(1000)];
  for (const c of heavy) budget.add(c);
  const a = budget.admit(0);
  assert.ok(a.ok);
  assert.equal(a.evicted, heavy[0], 'the heaviest uid\'s oldest idle one, not root\'s');
  assert.equal(budget.size, 6);
  assert.equal(budget.uidCount(1000), 5);
});

test('a full socket whose connections are all busy refuses, rather than dropping a request', () => {
  const budget = new ConnectionBudget(() => ({ total: 2, perUid: 2 }));
  budget.add(conn(1, true));
  budget.add(conn(2, true));
  assert.equal(budget.admit(3).ok, false);
});

test('the total follows the fd limit: thousands, not 256, and one uid gets an eighth', () => {
  assert.deepEqual(nssBudgetFromFdLimit(1024), { total: 576, perUid: 72 });
  assert.deepEqual(nssBudgetFromFdLimit(524288), { total: 16384, perUid: 2048 });
  assert.ok(nssBudgetFromFdLimit(100).total >= 64);
});

test('requests over the per-uid rate wait their turn; root and other uids are not paced', () => {
  const t = { now: 0 };
  const p = new RequestPacer(100, () => t.now);
  for (let i = 0; i < 100; i++) assert.equal(p.delay(1000), 0);
  assert.equal(p.delay(1000), 10, 'one request over: one token interval');
  assert.equal(p.delay(1000), 20);
  assert.equal(p.delay(0), 0);
  assert.equal(p.delay(1001), 0);
  t.now += 1000; // refilled, minus the debt
  assert.equal(p.delay(1000), 0);
});
