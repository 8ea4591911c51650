// Optional account expiry on upstream records (`expiresAt`, `enabled`), which CentralEGA does
// not send but other user services do: parsed strictly, absent means "never expires".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseUserReply } from '../../src/upstream/validate.js';
import { UpstreamError } from '../../src/errors.js';
import { defaultConfig } from '../../src/config/load.js';

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
