// The one set of identity rules shared by the resolver, the upstream client and reply validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nameProblem, upstreamUidProblem, localUidAllowed } from '../../src/users/rules.js';
import { defaultConfig } from '../../src/config/load.js';

const users = defaultConfig().users; // shift 10000, min 1000, max 2147483647

test('names: the rule, forbidden characters and the 32-byte cap', () => {
  assert.equal(nameProblem('alice', users), null);
  for (const bad of ['', 'a:b', 'a/b', 'a\nb', 'a\rb', 'a\0b', 'a\tb', 'a\u007fb', 'Alice', 'x'.repeat(33)]) {
    assert.notEqual(nameProblem(bad, users), null, JSON.stringify(bad));
  }
  const wide = { ...users, nameRegex: /^[\s\S]+$/ };
  assert.match(nameProblem('é'.repeat(17), wide)!, /32 bytes/);
  assert.match(nameProblem('a:b', wide)!, /':'/);
});

test('uids: never root, inside [min, max], never reserved', () => {
  assert.equal(upstreamUidProblem(1001, users), null);
  assert.match(upstreamUidProblem(-10000, users)!, /negative/);
  assert.match(upstreamUidProblem(1.5, users)!, /integer/);
  assert.match(upstreamUidProblem(0, { ...users, uidShift: 0, minUid: 0 })!, /root/);
  assert.match(upstreamUidProblem(55534, users)!, /reserved/);
  assert.match(upstreamUidProblem(2 ** 31, users)!, /max_uid/);
  assert.match(upstreamUidProblem(1, { ...users, minUid: 20000 })!, /min_uid/);
  assert.equal(localUidAllowed(11001, users), true);
  for (const uid of [0, 999, 9999, 65534, 65535, 1.5]) assert.equal(localUidAllowed(uid, users), false, String(uid));
});
