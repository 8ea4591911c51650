// Issue 17's keys: token mode ([upstream] token_url, api_key), the session policy ([pam]
// session_limit, max_sessions, on_limit, session_renewal, privileged_groups), [events] and
// [cleanup]; the rules that need several keys at once (src/config/load.ts finish) name the key
// and the fix. And the shipped etc/latchkey.conf documents every key the parser knows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { KEYS, SECRETS_FILE_MAP } from '../../src/config/keys.js';
import { upstreamAuthMode, insecureSettings } from '../../src/config/safety.js';
import { conf, refused } from '../lib/conf.js';
import { ConfigErrors } from '../../src/errors.js';
import { ROOT as REPO } from '../lib/paths.js';


test('token mode: token_url with username/password or api_key; the auth mode follows the keys', () => {
  const basic = parseConfig(conf('username = u\npassword = p\n'), 'x.conf');
  assert.equal(upstreamAuthMode(basic), 'basic');
  const bearer = parseConfig(conf('bearer_token = abc\n'), 'x.conf');
  assert.equal(upstreamAuthMode(bearer), 'bearer');
  assert.equal(upstreamAuthMode(parseConfig(conf(''), 'x.conf')), 'none');
  const t = parseConfig(conf('token_url = https://u.example/login\nusername = u\npassword = p\n'), 'x.conf');
  assert.equal(upstreamAuthMode(t), 'token');
  assert.equal(t.upstream.tokenUrl, 'https://u.example/login');
  assert.deepEqual(t.upstream.basicAuth, { user: 'u', password: 'p' });
  const k = parseConfig(conf('token_url = https://u.example/login\napi_key = k-123\n'), 'x.conf');
  assert.equal(k.upstream.apiKey, 'k-123');
  assert.equal(upstreamAuthMode(k), 'token');
});

test('token mode: what cannot work together is refused with the fix', () => {
  refused('token_url = https://u.example/login\n', 'upstream.token_url', /username and password, or api_key/);
  refused('token_url = https://u.example/login\napi_key = k\nbearer_token = b\n', 'upstream.bearer_token', /conflicts with token_url/);
  refused('token_url = https://u.example/login\napi_key = k\nusername = u\npassword = p\n', 'upstream.api_key', /one or the other/);
  refused('api_key = k\n', 'upstream.api_key', /only used in token mode/);
  refused('token_url = http://u.example/login\napi_key = k\n', 'upstream.token_url', /clear text over http/);
  refused('token_url = https://a:b@u.example/login\napi_key = k\n', 'upstream.token_url', /must not carry credentials/);
  refused('token_url = ftp://u.example/login\napi_key = k\n', 'upstream.token_url', /scheme ftp/);
  // Accepted over http only when the admin says so, and then said at every start.
  const c = parseConfig('[upstream]\nby_name_url = http://127.0.0.1:1/u/\nby_uid_url = http://127.0.0.1:1/i/\ninsecure_http = yes\ntoken_url = http://127.0.0.1:1/login\napi_key = k\n', 'x.conf');
  assert.match(insecureSettings(c).join('\n'), /the upstream token goes in clear text/);
  // A secrets_file may not be readable (latchkey-sync): then missing credentials are not an error.
  assert.equal(parseConfig(conf('token_url = https://u.example/login\nsecrets_file = /nonexistent\n'), 'x.conf', { secretsUnread: true }).upstream.tokenUrl, 'https://u.example/login');
});

test('session policy keys parse, with max_sessions defaulting to 1 when only a scope is given', () => {
  const d = parseConfig(conf(''), 'x.conf');
  assert.deepEqual([d.pam.maxSessionsPerUser, d.pam.sessionLimit, d.pam.onLimit, d.pam.sessionRenewal], [0, 'per-user', 'refuse', 'off']);
  assert.deepEqual([d.pam.privilegedGroups, d.pam.privilegedUsers], [[], []]);
  const s = parseConfig(conf('[pam]\nsession_limit = per-user-service-host\non_limit = replace-oldest\n'), 'x.conf');
  assert.deepEqual([s.pam.maxSessionsPerUser, s.pam.sessionLimit, s.pam.onLimit], [1, 'per-user-service-host', 'replace-oldest']);
  const n = parseConfig(conf('[pam]\nmax_sessions = 3\nsession_limit = per-user-service\nmax_session_age = 8h\nsession_renewal = on-login\nprivileged_groups = admins, ops\nprivileged_users = ops1 root2\n'), 'x.conf');
  assert.deepEqual([n.pam.maxSessionsPerUser, n.pam.maxSessionAgeSec, n.pam.sessionRenewal, n.pam.privilegedGroups, n.pam.privilegedUsers], [3, 8 * 3600, 'on-login', ['admins', 'ops'], ['ops1', 'root2']]);
  // the old name still works, and is the same setting
  assert.equal(parseConfig(conf('[pam]\nmax_sessions_per_user = 2\n'), 'x.conf').pam.maxSessionsPerUser, 2);
  refused('[pam]\nmax_sessions = 2\nmax_sessions_per_user = 3\n', 'pam.max_sessions_per_user', /sets the same thing as pam\.max_sessions/);
  refused('[pam]\non_limit = replace-oldest\n', 'pam.on_limit', /no limit to act on/);
  refused('[pam]\nsession_renewal = on-login\n', 'pam.session_renewal', /max_session_age/);
  refused('[pam]\nsession_limit = per-device\n', 'pam.session_limit', /per-user-service-host/);
  refused('[pam]\nprivileged_groups = wheel/rm\n', 'pam.privileged_groups', /not a user name/);
});

test('[events] and [cleanup] parse and check', () => {
  const c = parseConfig(conf('[events]\nurl = https://c.example/ev\nbearer_token = t0k\nqueue_size = 50\ntimeout = 500ms\n[cleanup]\ninterval = 5m\nexpired_grace = 1d\n'), 'x.conf');
  assert.deepEqual(c.events, { url: 'https://c.example/ev', bearerToken: 't0k', caFile: null, queueSize: 50, timeoutMs: 500 });
  assert.deepEqual(c.cleanup, { intervalSec: 300, expiredGraceSec: 86400 });
  const d = parseConfig(conf(''), 'x.conf');
  assert.deepEqual([d.events.url, d.cleanup.intervalSec, d.cleanup.expiredGraceSec], [null, 3600, 7 * 86400]);
  assert.equal(parseConfig(conf('[cleanup]\ninterval = 0\n'), 'x.conf').cleanup.intervalSec, 0);
  refused('[cleanup]\ninterval = 2s\n', 'cleanup.interval', /below 10s/);
  refused('[events]\nurl = http://c.example/ev\n', 'events.url', /clear text over http/);
  refused('[events]\nbearer_token = t\n', 'events.bearer_token', /url is not/);
  refused('[events]\nqueue_size = 0\n', 'events.queue_size', /0/);
});

test('every secrets_file key stands for a secret key of its section', () => {
  for (const [flat, [section, key]] of Object.entries(SECRETS_FILE_MAP)) {
    const spec = KEYS.find((k) => k.section === section && k.key === key);
    assert.ok(spec, `${flat} → [${section}] ${key} exists`);
    assert.ok(spec.secret || flat === 'username', `${flat} is a secret`);
  }
});

test('the shipped etc/latchkey.conf documents every key, under its own section', () => {
  const text = readFileSync(join(REPO, 'etc', 'latchkey.conf'), 'utf8');
  const sections = new Map<string, string>();
  let current = '';
  for (const line of text.split('\n')) {
    const h = /^\[(\w+)\]/.exec(line);
    if (h) { current = h[1]!; continue; }
    sections.set(current, (sections.get(current) ?? '') + line + '\n');
  }
  const missing: string[] = [];
  for (const k of KEYS) {
    if (k.key === null) continue;
    const body = sections.get(k.section) ?? '';
    if (!new RegExp(`^#? ?${k.key} =`, 'm').test(body)) missing.push(`[${k.section}] ${k.key}`);
  }
  assert.deepEqual(missing, []);
});

test('a line without "=" is named only when it is a key: a secret typed without its key never reaches the message', () => {
  for (const line of ['password hunter2SECRET', 'hunter2SECRET', 'cega_creds lega:hunter2SECRET']) {
    assert.throws(() => parseConfig(conf(`[upstream]\n${line}\n`), 'x.conf'), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.match(e.message, /x\.conf:5: the line \(not shown\) has no "="/);
      assert.doesNotMatch(e.message, /hunter2SECRET/);
      return true;
    });
  }
  refused('[upstream]\nverify_peer\n', 'verify_peer', /has no "="/);
});

test('a refused URL or username is quoted without its password or query string', () => {
  const cases: Array<[string, RegExp]> = [
    ['[upstream]\nhealth_url = https://lega:S3cr3tPw@u.example/health\n', /https:\/\/lega:\*\*\*@u\.example\/health/],
    ['[upstream]\ntoken_url = https://lega:S3cr3tPw@u.example/login\napi_key = k\n', /https:\/\/lega:\*\*\*@u\.example\/login/],
    ['[events]\nurl = https://c:S3cr3tPw@c.example/ev?token=S3cr3tTok\n', /c:\*\*\*@c\.example\/ev\?\*\*\*/],
    ['[upstream]\nusername = lega:S3cr3tPw\n', /the value \(not shown\) must not contain ":"/],
  ];
  for (const [body, shown] of cases) {
    assert.throws(() => parseConfig(conf(body), 'x.conf'), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.match(e.message, shown);
      assert.doesNotMatch(e.message, /S3cr3t/);
      return true;
    });
  }
});

test('a file of garbage is reported up to 50 errors and a last line saying the check stopped', () => {
  const garbage = Array.from({ length: 20_000 }, (_, i) => (i % 2 ? `nosuchkey${i} = 1` : `junk line ${i}`)).join('\n');
  assert.throws(() => parseConfig(conf(`[upstream]\n${garbage}\n`), 'x.conf'), (e: unknown) => {
    assert.ok(e instanceof ConfigErrors);
    assert.equal(e.errors.length, 51);
    assert.match(e.errors[50]!.message, /stopped after 50 errors; fix these and run the check again/);
    assert.ok(e.message.length < 16_000, `${e.message.length} characters`);
    return true;
  });
});
