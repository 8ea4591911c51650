// The login decisions table behind `latchkeyctl why` (src/verify/decisions.ts): the latest
// decision per phase, and bounded against both attackers: made-up names (a remote ssh client
// picks them) and a local user sending KEYS_FOR_LOGIN for every real name cannot push a real
// user's PAM record out, and the table never grows past its tiers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoginDecisions } from '../../src/verify/decisions.js';

test('the latest decision of each phase, merged from every tier', () => {
  let now = 1000;
  const d = new LoginDecisions(undefined, () => now);
  assert.equal(d.get('alice'), null);
  d.record('alice', 'auth_password', true, { result: 'wrong_password', detail: 'wrong password', hash: { kind: 'bcrypt', cost: 10, cost_name: 'cost' } });
  now = 2000;
  d.record('alice', 'auth_password', true, { result: 'ok', detail: 'password accepted' });
  d.record('alice', 'keys_for_login', true, { result: 'served', detail: '1 key', keys: 1 }, 65534);
  const r = d.get('alice')!;
  assert.equal(r.served, true);
  assert.equal(r.phases.auth_password!.result, 'ok');
  assert.equal(r.phases.auth_password!.at, 2000);
  assert.equal(r.phases.keys_for_login!.peer_uid, 65534);
  assert.equal(r.phases.session_open, undefined);
});

test('made-up names churn only their own small tier; real users\' records stay', () => {
  const d = new LoginDecisions({ served: 100, unserved: 10 });
  for (let i = 0; i < 100; i++) d.record(`user${i}`, 'login_check', true, { result: 'served', detail: '' });
  for (let i = 0; i < 10_000; i++) d.record(`x${i}-${'a'.repeat(300)}`, 'login_check', false, { result: 'notfound', detail: 'd'.repeat(5000) });
  assert.deepEqual(d.size(), { served: 100, unserved: 10, peers: 0 });
  for (let i = 0; i < 100; i++) assert.ok(d.get(`user${i}`), `user${i} was pushed out`);
  // Long names and details are cut, never stored whole.
  const k = `x9999-${'a'.repeat(300)}`.slice(0, 255) + '…';
  assert.ok(d.get(k)!.phases.login_check!.detail.length <= 480);
});

test('an unprivileged peer records only served users, in a tier of its own', () => {
  const d = new LoginDecisions({ served: 50, unserved: 10 });
  d.record('alice', 'auth_password', true, { result: 'ok', detail: '' });
  d.record('nosuch', 'keys_for_login', false, { result: 'notfound', detail: '' }, 1000);
  assert.equal(d.get('nosuch'), null);
  // A local user enumerating every real name through KEYS_FOR_LOGIN.
  for (let i = 0; i < 1000; i++) d.record(`real${i}`, 'keys_for_login', true, { result: 'served', detail: '' }, 1000);
  assert.deepEqual(d.size(), { served: 1, unserved: 0, peers: 50 });
  assert.equal(d.get('alice')!.phases.auth_password!.result, 'ok');
});

test('a served user stays served when the upstream is down; a stranger who becomes a user moves up', () => {
  const d = new LoginDecisions({ served: 5, unserved: 2 });
  d.record('alice', 'login_check', true, { result: 'served', detail: '' });
  d.record('alice', 'login_check', false, { result: 'unavailable', detail: 'timeout' });
  assert.equal(d.get('alice')!.served, true);
  d.record('bob', 'auth_password', false, { result: 'unknown_user', detail: '' });
  d.record('bob', 'login_check', true, { result: 'served', detail: '' });
  assert.deepEqual(d.size(), { served: 2, unserved: 0, peers: 0 });
  assert.equal(d.get('bob')!.phases.auth_password!.result, 'unknown_user');
});

test('sshd\'s keys helper (an unprivileged uid) is heard on a served name whatever the answer, and another uid cannot replace its record', () => {
  let now = 1000;
  const d = new LoginDecisions(undefined, () => now);
  d.record('alice', 'login_check', true, { result: 'served', detail: 'ok' });
  const NOBODY = 65534;
  now = 2000;
  d.record('alice', 'keys_for_login', false, { result: 'mismatch', detail: 'another source answers this name with another uid' }, NOBODY);
  assert.equal(d.get('alice')!.phases.keys_for_login!.result, 'mismatch', 'a failure of the helper is recorded for a served name');
  now = 3000;
  d.record('alice', 'keys_for_login', true, { result: 'served', detail: 'spoofed' }, 1000);
  assert.equal(d.get('alice')!.phases.keys_for_login!.peer_uid, 1000, 'the newest is shown, with who asked');
  assert.equal(d.size().peers, 2, 'one record per asking uid: the helper\'s is still there');
  now = 4000;
  d.record('alice', 'keys_for_login', false, { result: 'unavailable', detail: 'upstream down' }, NOBODY);
  const k = d.get('alice')!.phases.keys_for_login!;
  assert.deepEqual([k.result, k.peer_uid], ['unavailable', NOBODY], 'uid 1000 did not take the helper\'s place');
  // a name latchkey does not serve is still not recorded from an unprivileged uid
  d.record('mallory', 'keys_for_login', false, { result: 'notfound', detail: 'x' }, 1000);
  assert.equal(d.get('mallory'), null);
});
