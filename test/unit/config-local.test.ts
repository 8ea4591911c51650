// [local]: the persistent local users' keys and the rules that need several keys at once
// (src/config/load.ts finishLocal): the uid range against the upstream's, contexts, role and
// upgrade settings. Each refusal names the key and the fix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { conf, refused } from '../lib/conf.js';


test('defaults: 9000..9999, local precedence, yescrypt cost 5, local upgrades, standalone', () => {
  const c = parseConfig(conf(''), 'x.conf');
  assert.deepEqual([c.local.minUid, c.local.maxUid, c.local.precedence, c.local.defaultContext, c.local.upgrade, c.local.role],
    [9000, 9999, 'local', 'y5', 'local', 'standalone']);
  assert.deepEqual(c.local.contexts, [{ id: 'y5', algorithm: 'yescrypt', cost: 5 }]);
});

test('contexts parse; a bad entry, an unknown algorithm, a cost out of range or a duplicate id are refused', () => {
  const c = parseConfig(conf('[local]\ncontexts = b10=bcrypt:10, y5 = yescrypt:5,s6=sha512crypt:656000\ndefault_context = b10\n'), 'x.conf');
  assert.deepEqual(c.local.contexts.map((x) => `${x.id}/${x.algorithm}/${x.cost}`), ['b10/bcrypt/10', 'y5/yescrypt/5', 's6/sha512crypt/656000']);
  refused('[local]\ncontexts = b10 bcrypt 10\n', 'local.contexts', /ID=ALGORITHM:COST/);
  refused('[local]\ncontexts = m1=md5crypt:1\n', 'local.contexts', /expected one of bcrypt/);
  refused('[local]\ncontexts = b3=bcrypt:3\n', 'local.contexts', /4 \.\. 31/);
  refused('[local]\ncontexts = a=bcrypt:10, a=bcrypt:12\n', 'local.contexts', /twice/);
  refused('[local]\ndefault_context = b12\n', 'local.default_context', /does not define/);
  // above the [pam] ceilings: its hashes would never verify
  refused('[local]\ncontexts = b14=bcrypt:14\ndefault_context = b14\n', 'local.contexts', /max_bcrypt_cost/);
});

test('a local range overlapping the upstream\'s is refused when written, and gives way when it is the default', () => {
  refused('[local]\nmin_uid = 9000\nmax_uid = 10000\n', 'local.min_uid', /overlap the upstream's shifted range 10000/);
  refused('[local]\nmin_uid = 60000\nmax_uid = 70000\n', 'local.max_uid', /65534/);
  // A LocalEGA-style uid_shift of 0 with upstream uids from 1000: the default range overlaps.
  const c = parseConfig(conf('[users]\nuid_shift = 0\n'), 'x.conf');
  assert.deepEqual([c.local.minUid, c.local.maxUid], [0, 0]);
  refused('[users]\nuid_shift = 0\n[local]\nmax_uid = 9999\n', 'local.max_uid', /overlap/);
  const moved = parseConfig(conf('[users]\nuid_shift = 0\nmin_uid = 20000\n[local]\nmin_uid = 5000\nmax_uid = 5999\n'), 'x.conf');
  assert.deepEqual([moved.local.minUid, moved.local.maxUid], [5000, 5999]);
});

test('role and upgrade settings that cannot work together are refused with the fix', () => {
  refused('[local]\nrole = secondary\n', 'local.role', /primary = USER@HOST/);
  refused('[local]\nrole = secondary\nprimary = sync@p.example\nupgrade = local\n', 'local.upgrade', /upgrade = remote/);
  refused('[local]\nrole = secondary\nprimary = sync@p.example\n', 'local.role', /upgrade = remote/);
  refused('[local]\nupgrade = remote\n', 'local.upgrade', /upgrade_url/);
  refused('[local]\nupgrade_url = http://p.example/up\n', 'local.upgrade_url', /https/);
  refused('[local]\nprimary = -oProxyCommand=x@h\n', 'local.primary', /USER@HOST/);
  refused('[local]\nupgrade_listen = 127.0.0.1:8443\n', 'local.upgrade_listen', /role = primary/);
  refused('[local]\nrole = primary\nupgrade_listen = 127.0.0.1:8443\n', 'local.upgrade_listen', /upgrade_listen_cert/);
  refused('[local]\nrole = primary\nupgrade_listen = 127.0.0.1:8443\nupgrade_listen_cert = /c\nupgrade_listen_key = /k\n', 'local.upgrade_listen', /upgrade_listen_token/);
  refused('[local]\nupgrade_username = s1\n', 'local.upgrade_username', /upgrade_password/);
  const ok = parseConfig(conf('[local]\nrole = secondary\nprimary = latchkey-sync@192.0.2.1\nupgrade = remote\n'
    + 'upgrade_url = https://192.0.2.1:8443/latchkey/v1/upgrade\nupgrade_bearer_token = tok\n'), 'x.conf');
  assert.equal(ok.local.role, 'secondary');
  assert.equal(ok.local.upgradeBearerToken, 'tok');
});

test('latchkey-sync, which cannot read the secrets_file, parses a config whose credentials are split across it', () => {
  const text = conf('username = lega\nsecrets_file = /etc/latchkey/secrets\n[local]\nrole = primary\nupgrade_listen = 127.0.0.1:8443\n'
    + 'upgrade_listen_cert = /c\nupgrade_listen_key = /k\nupgrade_username = s1\n');
  assert.throws(() => parseConfig(text, 'x.conf'), /without its pair/);
  const c = parseConfig(text, 'x.conf', { secretsUnread: true });
  assert.equal(c.local.role, 'primary');
  assert.equal(c.upstream.basicAuth, null);
  // Only with a secrets_file named: a half credential with nowhere else to be is still an error.
  assert.throws(() => parseConfig(conf('username = lega\n'), 'x.conf', { secretsUnread: true }), /without its pair/);
});
