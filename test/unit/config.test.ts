// Config: every key parses and defaults as documented, every mistake is a ConfigError naming
// file:line, key and fix, LocalEGA's auth.conf works unchanged, and secrets stay private.
import { scratchDir } from '../lib/tmp.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  defaultConfig, formatConfigIni, loadConfig, parseConfig, redactConfig,
} from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { ConfigError } from '../../src/errors.js';
import { ROOT } from '../lib/paths.js';

const URLS = '[upstream]\nby_name_url = https://u.example/users/\nby_uid_url = https://u.example/uids/\n';
const withUrls = (over: Parameters<typeof defaultConfig>[0] = {}): Config => defaultConfig({
  ...over, upstream: { byNameUrl: 'https://u.example/users/', byUidUrl: 'https://u.example/uids/', ...over.upstream },
});
/** Parses `[section] key = raw` after the required endpoints. */
const one = (section: string, key: string, raw: string): Config =>
  parseConfig(`${URLS}${section === 'upstream' ? '' : `[${section}]\n`}${key} = ${raw}\n`, 'x.conf');

function tmp(name: string, text: string, mode: number): string {
  const file = join(scratchDir('latchkey-config-'), name);
  writeFileSync(file, text);
  chmodSync(file, mode);
  return file;
}

/** Asserts a ConfigError whose message names file:line and the key, and contains `hint`. */
function rejects(fn: () => unknown, where: string, key: string, hint: string | RegExp): string {
  let msg = '';
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${String(e)}`);
    msg = e.message;
    return true;
  });
  assert.ok(msg.startsWith(where + ':') || msg.startsWith(where + ' '), `"${msg}" should start with ${where}`);
  assert.ok(msg.includes(key), `"${msg}" should name ${key}`);
  if (typeof hint === 'string') assert.ok(msg.includes(hint), `"${msg}" should contain "${hint}"`);
  else assert.match(msg, hint);
  return msg;
}

test('only the two endpoints are required; everything else has the documented default', () => {
  const c = parseConfig(URLS, 'x.conf');
  assert.deepEqual(c, withUrls());
  assert.equal(c.source, '');
  assert.equal(c.cache.dbPath, '/run/latchkey/cache.db');
  assert.equal(c.daemon.socketDir, '/run/latchkey');
  assert.equal(c.pam.prompt, 'Please, enter your EGA password: ');
  assert.equal(c.users.shell, '/bin/bash');
  assert.equal(c.homes.mode, 0o2750);
  assert.equal(c.homes.umask, 0o027);
  assert.equal(c.users.nameRegex.source, '^[a-z_][a-z0-9_.-]{0,31}$');
});

test('etc/latchkey.conf parses, and its "#key = value" lines are exactly the defaults', () => {
  const text = readFileSync(join(ROOT, 'etc/latchkey.conf'), 'utf8');
  const c = parseConfig(text, 'latchkey.conf');
  const uncommented = parseConfig(text.replace(/^#([a-z_]+ =)/gm, '$1'), 'latchkey.conf');
  assert.deepEqual(uncommented, c);
  assert.equal(text.match(/^#[a-z_]+ =/gm)!.length, 77); // 71, +5 [upstream]/[cache] pacing keys (issue 19), +1 [userdb] enabled (issue 20)
  assert.deepEqual(c, withUrls({ upstream: {
    byNameUrl: 'https://users.example.org/users/%s?idType=username',
    byUidUrl: 'https://users.example.org/users/%u?idType=uid',
  } }));
});

const KEY_CASES: [string, string, string, (c: Config) => unknown, unknown][] = [
  ['upstream', 'json_prefix', '.response.result', (c) => c.upstream.jsonPrefix, 'response.result'],
  ['upstream', 'connect_timeout', '500ms', (c) => c.upstream.connectTimeoutMs, 500],
  ['upstream', 'request_timeout', '1m', (c) => c.upstream.requestTimeoutMs, 60_000],
  ['upstream', 'max_body', '1M', (c) => c.upstream.maxBodyBytes, 1024 * 1024],
  ['upstream', 'max_body', '2048', (c) => c.upstream.maxBodyBytes, 2048],
  ['upstream', 'max_concurrent', '4', (c) => c.upstream.maxConcurrent, 4],
  ['upstream', 'cacertfile', '/etc/ca.pem', (c) => c.upstream.caFile, '/etc/ca.pem'],
  ['upstream', 'cacertfile', '', (c) => c.upstream.caFile, null],
  // verify_peer/verify_hostname = no need insecure_tls = yes: test/unit/config-safety.test.ts
  ['upstream', 'insecure_tls', 'yes', (c) => c.upstream.insecureTls, true],
  ['upstream', 'insecure_http', 'On', (c) => c.upstream.insecureHttp, true],
  ['upstream', 'bearer_token', 'tok.en-1', (c) => c.upstream.bearerToken, 'tok.en-1'],
  ['cache', 'db_path', '/tmp/c.db', (c) => c.cache.dbPath, '/tmp/c.db'],
  ['cache', 'db_path', ':memory:', (c) => c.cache.dbPath, ':memory:'],
  ['cache', 'ttl', '2h', (c) => c.cache.ttlSec, 7200],
  ['cache', 'ttl', '90', (c) => c.cache.ttlSec, 90],
  // LocalEGA's 2018 inbox wrote cache_ttl = 36000.0: a zero fraction is taken, any other is not.
  ['cache', 'ttl', '36000.0', (c) => c.cache.ttlSec, 36000],
  ['cache', 'negative_ttl', '0', (c) => c.cache.negativeTtlSec, 0],
  ['cache', 'stale_grace', '1d', (c) => c.cache.staleGraceSec, 86400],
  ['cache', 'refresh_ahead', '30s', (c) => c.cache.refreshAheadSec, 30],
  ['users', 'uid_shift', '0', (c) => c.users.uidShift, 0],
  ['users', 'gid', '997', (c) => c.users.gid, 997],
  ['users', 'group_name', 'lega', (c) => c.users.groupName, 'lega'],
  ['users', 'min_uid', '20000', (c) => c.users.minUid, 20000],
  ['users', 'max_uid', '60000', (c) => c.users.maxUid, 60000],
  ['users', 'name_regex', '^[a-z][a-z0-9]{2,15}$', (c) => c.users.nameRegex.source, '^[a-z][a-z0-9]{2,15}$'],
  ['users', 'shell', '/usr/sbin/nologin', (c) => c.users.shell, '/usr/sbin/nologin'],
  ['homes', 'base', '/srv/inbox/', (c) => c.homes.base, '/srv/inbox'],
  ['homes', 'layout', 'plain', (c) => c.homes.layout, 'plain'],
  ['homes', 'mode', '0750', (c) => c.homes.mode, 0o750],
  ['homes', 'umask', '077', (c) => c.homes.umask, 0o077],
  ['homes', 'upload_dir', 'upload', (c) => c.homes.uploadDir, 'upload'],
  ['pam', 'prompt', 'Knock Knock:', (c) => c.pam.prompt, 'Knock Knock:'],
  ['pam', 'prompt', '"Password: "', (c) => c.pam.prompt, 'Password: '],
  ['pam', 'chroot_sessions', 'Yes', (c) => c.pam.chrootSessions, true],
  ['pam', 'max_failures', '3', (c) => c.pam.maxFailures, 3],
  ['pam', 'throttle_window', '10m', (c) => c.pam.throttleWindowSec, 600],
  ['pam', 'throttle_lockout', '0', (c) => c.pam.throttleLockoutSec, 0],
  ['pam', 'max_sessions_per_user', '2', (c) => c.pam.maxSessionsPerUser, 2],
  ['pam', 'max_session_age', '12h', (c) => c.pam.maxSessionAgeSec, 43200],
  ['daemon', 'socket_dir', '/tmp/run', (c) => c.daemon.socketDir, '/tmp/run'],
  ['daemon', 'max_connections', '8', (c) => c.daemon.maxConnections, 8],
  ['daemon', 'idle_timeout', '2m', (c) => c.daemon.idleTimeoutMs, 120_000],
  ['daemon', 'log_level', 'debug', (c) => c.daemon.logLevel, 'debug'],
];
for (const [section, key, raw, get, want] of KEY_CASES) {
  test(`[${section}] ${key} = ${raw}`, () => assert.deepEqual(get(one(section, key, raw)), want));
}

test('by_uid_url, basic credentials and client certificates', () => {
  const c = parseConfig(`[upstream]\nby_name_url = http://h:8080/n/%s?t=name\nby_uid_url = https://h/u/%u\nusername = lega\npassword = p=w:d\n`
    + 'certfile = /c.pem\nkeyfile = /k.pem\ninsecure_http = yes\n', 'x.conf');
  assert.equal(c.upstream.byNameUrl, 'http://h:8080/n/%s?t=name');
  assert.equal(c.upstream.byUidUrl, 'https://h/u/%u');
  assert.deepEqual(c.upstream.basicAuth, { user: 'lega', password: 'p=w:d' });
  assert.deepEqual([c.upstream.certFile, c.upstream.keyFile], ['/c.pem', '/k.pem']);
});

test('booleans, durations, sizes and modes accept every documented form', () => {
  for (const [raw, want] of [['yes', true], ['TRUE', true], ['on', true], ['1', true], ['No', false], ['false', false], ['off', false], ['0', false]] as const) {
    assert.equal(one('pam', 'chroot_sessions', raw).pam.chrootSessions, want, raw);
  }
  for (const [raw, ms] of [['3', 3000], ['3s', 3000], ['1500ms', 1500], ['5m', 300_000], ['1h', 3_600_000]] as const) {
    assert.equal(one('daemon', 'idle_timeout', raw).daemon.idleTimeoutMs, ms, raw);
  }
  for (const [raw, n] of [['64k', 65536], ['64K', 65536], ['1m', 1048576], ['100000', 100000]] as const) {
    assert.equal(one('upstream', 'max_body', raw).upstream.maxBodyBytes, n, raw);
  }
  for (const [raw, n] of [['2750', 0o2750], ['02770', 0o2770], ['0o700', 0o700], ['7750', 0o7750]] as const) {
    assert.equal(one('homes', 'mode', raw).homes.mode, n, raw);
  }
});

test('LocalEGA auth.conf (etc/ega-auth.conf) parses to the expected Config', () => {
  const c = parseConfig(readFileSync(join(ROOT, 'etc/ega-auth.conf'), 'utf8'), 'auth.conf');
  assert.deepEqual(c, defaultConfig({
    upstream: {
      byNameUrl: 'https://cega.example.org/lega/v1/legas/users/%s?idType=username',
      byUidUrl: 'https://cega.example.org/lega/v1/legas/users/%u?idType=uid',
      basicAuth: { user: 'lega', password: 'change-me' }, jsonPrefix: 'response.result',
    },
    cache: { dbPath: '/run/ega-users.db', ttlSec: 3600 },
    users: { uidShift: 10000, gid: 997 },
    homes: { base: '/ega/inbox', mode: 0o2750, umask: 0o027 },
    pam: { chrootSessions: true },
  }));
});

test('every LocalEGA key, flat or above the first [section], including trailing comments', () => {
  const flat = [
    'cega_endpoint_username = http://cega_users/users/%s?idType=username', 'cega_endpoint_uid = http://cega_users/users/%u?idType=uid',
    'cega_creds = user:pass:word', 'cega_json_prefix = ', 'db_path = /run/ega-users.db  # on tmpfs', 'cache_ttl = 86400 ; a day',
    'ega_uid_shift = 1000', 'ega_gid = 997', 'chroot_sessions = yes', 'ega_dir = /ega/inbox', 'ega_dir_attrs = 2750 # rwxr-s---',
    'ega_dir_umask = 027 # world-denied', 'prompt = Knock Knock:', 'ega_shell = /bin/aspshell-r', 'cacertfile = /etc/ega/CA.cert',
    'certfile = /etc/ega/ssl.cert', 'keyfile = /etc/ega/ssl.key', 'verify_peer = yes', 'verify_hostname = no',
    'insecure_http = yes', 'insecure_tls = yes',
  ].join('\n');
  for (const text of [flat, flat + '\n[daemon]\nlog_level = warn\n']) {
    const c = parseConfig(text, 'auth.conf');
    assert.equal(c.upstream.byNameUrl, 'http://cega_users/users/%s?idType=username');
    assert.equal(c.upstream.byUidUrl, 'http://cega_users/users/%u?idType=uid');
    assert.deepEqual(c.upstream.basicAuth, { user: 'user', password: 'pass:word' });
    assert.equal(c.upstream.jsonPrefix, '');
    assert.deepEqual([c.cache.dbPath, c.cache.ttlSec], ['/run/ega-users.db', 86400]);
    assert.deepEqual([c.users.uidShift, c.users.gid, c.users.shell], [1000, 997, '/bin/aspshell-r']);
    assert.deepEqual([c.homes.base, c.homes.mode, c.homes.umask], ['/ega/inbox', 0o2750, 0o027]);
    assert.deepEqual([c.pam.prompt, c.pam.chrootSessions], ['Knock Knock:', true]);
    assert.deepEqual([c.upstream.caFile, c.upstream.certFile, c.upstream.keyFile], ['/etc/ega/CA.cert', '/etc/ega/ssl.cert', '/etc/ega/ssl.key']);
    assert.deepEqual([c.upstream.verifyPeer, c.upstream.verifyHostname], [true, false]);
  }
});

test('quoted and escaped values keep # and ;', () => {
  const c = parseConfig(`${URLS}username = 'we;rd'\npassword = pa\\#ss # comment\n`, 'x.conf');
  assert.deepEqual(c.upstream.basicAuth, { user: 'we;rd', password: 'pa#ss' });
});

const ERRORS: [string, string, string, string | RegExp][] = [
  [`${URLS}[cahce]\nttl = 1h`, 'x.conf:4', '[cahce]', 'did you mean [cache]'],
  [`${URLS}[cache]\ntll = 1h`, 'x.conf:5', 'cache.tll', 'did you mean ttl'],
  [`${URLS}[cache]\nshell = /bin/sh`, 'x.conf:5', 'cache.shell', 'belongs under [users]'],
  [`ttl = 1h\n${URLS}`, 'x.conf:1', 'ttl', 'put it under [cache]'],
  [`cega_endpont_uid = http://h/\n${URLS}`, 'x.conf:1', 'cega_endpont_uid', 'did you mean cega_endpoint_uid'],
  [`${URLS}cega_json_prefix = a`, 'x.conf:4', 'upstream.cega_json_prefix', 'move it above the first [section]'],
  [`${URLS}[cache]\nttl = abc`, 'x.conf:5', 'cache.ttl', '"abc" is not a duration; expected e.g. 3600, 90s, 15m, 1h'],
  [`${URLS}[cache]\nttl = 1.5h`, 'x.conf:5', 'cache.ttl', '"1.5h" is not a duration; expected e.g. 3600, 90s, 15m, 1h'],
  [`${URLS}[cache]\nttl = 1500ms`, 'x.conf:5', 'cache.ttl', 'whole number of seconds'],
  [`${URLS}[cache]\nttl = 30d`, 'x.conf:5', 'cache.ttl', 'too long'],
  [`${URLS}[cache]\nttl = 0`, 'x.conf:5', 'cache.ttl', 'too short'],
  [`${URLS}verify_peer = maybe`, 'x.conf:4', 'upstream.verify_peer', 'yes/no'],
  [`${URLS}max_concurrent = -1`, 'x.conf:4', 'upstream.max_concurrent', 'not a whole number'],
  [`${URLS}max_concurrent = 0`, 'x.conf:4', 'upstream.max_concurrent', 'out of range'],
  [`${URLS}max_body = lots`, 'x.conf:4', 'upstream.max_body', 'not a size'],
  [`${URLS}[homes]\nmode = 0789`, 'x.conf:5', 'homes.mode', 'not an octal mode'],
  [`${URLS}[homes]\nmode = 17777`, 'x.conf:5', 'homes.mode', 'out of range'],
  [`${URLS}[homes]\nmode = 0777`, 'x.conf:5', 'homes.mode', 'world-writable'],
  [`${URLS}[homes]\numask = 1000`, 'x.conf:5', 'homes.umask', 'out of range'],
  [`${URLS}[homes]\nlayout = jail`, 'x.conf:5', 'homes.layout', 'chroot, plain'],
  [`${URLS}[homes]\nbase = /`, 'x.conf:5', 'homes.base', 'must not be /'],
  [`${URLS}[homes]\nbase = ega/inbox`, 'x.conf:5', 'homes.base', 'absolute path'],
  [`${URLS}[homes]\nupload_dir = a/b`, 'x.conf:5', 'homes.upload_dir', 'not a path'],
  [`${URLS}[homes]\nupload_dir = ..`, 'x.conf:5', 'homes.upload_dir', 'not a path'],
  [`${URLS}[daemon]\nlog_level = loud`, 'x.conf:5', 'daemon.log_level', 'debug, info, warn, error'],
  [`${URLS}json_prefix = a..b`, 'x.conf:4', 'upstream.json_prefix', 'dotted path'],
  ['[upstream]\nby_name_url = ftp://h/\nby_uid_url = http://h/', 'x.conf:2', 'upstream.by_name_url', 'http:// or https://'],
  ['[upstream]\nby_name_url = not a url\nby_uid_url = http://h/', 'x.conf:2', 'upstream.by_name_url', 'not a URL'],
  ['[upstream]\nby_name_url = http://u:p@h/\nby_uid_url = http://h/', 'x.conf:2', 'upstream.by_name_url', 'must not contain credentials'],
  ['[upstream]\nby_name_url = http://h/%u\nby_uid_url = http://h/', 'x.conf:2', 'upstream.by_name_url', 'contains %u'],
  ['[upstream]\nby_name_url = http://h/\nby_uid_url = http://h/%s', 'x.conf:3', 'upstream.by_uid_url', 'contains %s'],
  ['[upstream]\nby_name_url = http://h/\n', 'x.conf:1', 'upstream.by_uid_url', 'is required'],
  ['cega_endpoint_uid = http://h/\n', 'x.conf', 'upstream.by_name_url', 'cega_endpoint_username'],
  [`${URLS}[users]\nname_regex = ^[a-z]($`, 'x.conf:5', 'users.name_regex', 'does not compile'],
  [`${URLS}[users]\nname_regex = [a-z]+`, 'x.conf:5', 'users.name_regex', 'must be anchored'],
  [`${URLS}[users]\nname_regex = ^a$|^b`, 'x.conf:5', 'users.name_regex', 'must be anchored'],
  [`${URLS}[users]\nname_regex = ^[a-z:]+$`, 'x.conf:5', 'users.name_regex', 'accepts ":"'],
  [`${URLS}[users]\nname_regex = ^[a-z/]+$`, 'x.conf:5', 'users.name_regex', 'accepts "/"'],
  [`${URLS}[users]\nname_regex = ^[a-z\\s]+$`, 'x.conf:5', 'users.name_regex', 'accepts "\\n"'],
  [`${URLS}[users]\nname_regex = ^[^x]+$`, 'x.conf:5', 'users.name_regex', 'accepts'],
  [`${URLS}[users]\nname_regex = ^[a-z.]*$`, 'x.conf:5', 'users.name_regex', 'accepts ""'],
  [`${URLS}[users]\nname_regex = ^[a-z.]+$`, 'x.conf:5', 'users.name_regex', 'accepts "."'],
  [`${URLS}[users]\nmin_uid = 0`, 'x.conf:5', 'users.min_uid', 'out of range'],
  [`${URLS}[users]\ngid = 0`, 'x.conf:5', 'users.gid', 'out of range'],
  [`${URLS}[users]\ngid = 65534`, 'x.conf:5', 'users.gid', 'reserved'],
  [`${URLS}[users]\nmin_uid = 5000\nmax_uid = 4000`, 'x.conf:5', 'users.min_uid', 'above max_uid'],
  [`${URLS}[users]\nmax_uid = 4000`, 'x.conf', 'users.uid_shift', 'above max_uid'],
  [`${URLS}[users]\ngroup_name = Bad:Name`, 'x.conf:5', 'users.group_name', 'not a valid group name'],
  [`${URLS}[cache]\nttl = 60\nrefresh_ahead = 60`, 'x.conf:6', 'cache.refresh_ahead', 'shorter than the cache ttl'],
  [`${URLS}connect_timeout = 5s\nrequest_timeout = 1s`, 'x.conf:5', 'upstream.request_timeout', 'shorter than connect_timeout'],
  [`${URLS}certfile = /c.pem`, 'x.conf:4', 'upstream.certfile', 'both certfile and keyfile'],
  [`${URLS}username = lega`, 'x.conf:4', 'upstream.username', 'give both username and password'],
  [`${URLS}username = a:b\npassword = x`, 'x.conf:4', 'upstream.username', 'must not contain ":"'],
  [`${URLS}username = u\npassword = p\nbearer_token = t`, 'x.conf:6', 'upstream.bearer_token', 'x.conf:5'],
  [`${URLS}[cache]\nttl = 1h\nttl = 2h`, 'x.conf:6', 'cache.ttl', 'given twice (x.conf:5 and x.conf:6)'],
  [`cega_endpoint_username = http://a/\n${URLS}`, 'x.conf:3', 'upstream.by_name_url', 'cega_endpoint_username (x.conf:1 and x.conf:3)'],
  [`cega_creds = a:b\n${URLS}username = c`, 'x.conf:5', 'upstream.username', 'cega_creds (x.conf:1 and x.conf:5)'],
  [`${URLS} [cache]`, 'x.conf:4', '', 'malformed section header'],
  [`${URLS}[cache] # c`, 'x.conf:4', '', 'malformed section header'],
  [`${URLS}= 5`, 'x.conf:4', '', 'missing key name'],
  [`${URLS}verify_peer`, 'x.conf:4', 'verify_peer', 'has no "="'],
  [`${URLS}[pam]\nprompt = Pass#word:`, 'x.conf:5', 'pam.prompt', 'quote it'],
  [`${URLS}[pam]\nprompt = "bad \\d"`, 'x.conf:5', 'pam.prompt', 'bad double-quoted value'],
  [`${URLS}[pam]\nprompt =`, 'x.conf:5', 'pam.prompt', 'is empty'],
];
for (const [text, where, key, hint] of ERRORS) {
  test(`error: ${where} ${key || '(line)'} — ${String(hint)}`, () => { rejects(() => parseConfig(text, 'x.conf'), where, key, hint); });
}

test('secret values never appear in error messages', () => {
  const cases = [
    ['cega_creds = hunter2secret', 'cega_creds'],
    [`${URLS}password = hunter2secret#x`, 'upstream.password'],
    [`${URLS}bearer_token = hunter2 secret`, 'upstream.bearer_token'],
    [`${URLS}password = "hunter2secret\\q"`, 'upstream.password'],
  ];
  for (const [text, key] of cases) {
    const msg = rejects(() => parseConfig(text!, 'x.conf'), 'x.conf', key!, /./);
    assert.ok(!msg.includes('hunter2'), msg);
  }
});

test('loadConfig: a secret in a group/world-readable file is refused with the chmod fix', () => {
  const text = `${URLS}username = lega\npassword = s3cret-pw\n`;
  for (const mode of [0o644, 0o640, 0o604, 0o660]) {
    const file = tmp('latchkey.conf', text, mode);
    const msg = rejects(() => loadConfig(file), file, '', `chmod 600 ${file}`);
    assert.ok(!msg.includes('s3cret-pw'));
  }
  const legacy = tmp('auth.conf', 'cega_endpoint_username = http://h/\ncega_endpoint_uid = http://h/\ncega_creds = a:b\n', 0o644);
  rejects(() => loadConfig(legacy), legacy, '', 'cega_creds');
  const ok = tmp('latchkey.conf', text, 0o600);
  const c = loadConfig(ok);
  assert.equal(c.source, ok);
  assert.deepEqual(c.upstream.basicAuth, { user: 'lega', password: 's3cret-pw' });
});

test('loadConfig: files without secrets may be world-readable, never world-writable; missing file', () => {
  const file = tmp('latchkey.conf', URLS, 0o644);
  assert.deepEqual(loadConfig(file), { ...withUrls(), source: file });
  chmodSync(file, 0o646);
  rejects(() => loadConfig(file), file, '', `chmod go-w ${file}`);
  rejects(() => loadConfig(file + '.missing'), file + '.missing', '', 'ENOENT');
});

test('loadConfig: a secret file owned by another user is refused', { skip: process.geteuid?.() !== 0 }, () => {
  const file = tmp('latchkey.conf', `${URLS}bearer_token = t0k\n`, 0o600);
  chownSync(file, 12345, 0);
  rejects(() => loadConfig(file), file, '', `chown root ${file}`);
});

test('loadConfig: secrets_file supplies credentials and must be 0600', () => {
  const secrets = tmp('secrets', '# creds\nusername = lega\npassword = \'p#ss;word\'\n', 0o640);
  const file = tmp('latchkey.conf', `${URLS}secrets_file = ${secrets}\n`, 0o644);
  rejects(() => loadConfig(file), secrets, '', `chmod 600 ${secrets}`);
  chmodSync(secrets, 0o600);
  assert.deepEqual(loadConfig(file).upstream.basicAuth, { user: 'lega', password: 'p#ss;word' });
  // parseConfig is pure: it does not read the secrets_file
  assert.equal(parseConfig(`${URLS}secrets_file = ${secrets}\n`, 'x.conf').upstream.basicAuth, null);

  const tokenFile = tmp('secrets', 'bearer_token = abc.def\n', 0o600);
  const f2 = tmp('latchkey.conf', `${URLS}secrets_file = ${tokenFile}\n`, 0o644);
  assert.equal(loadConfig(f2).upstream.bearerToken, 'abc.def');

  const both = tmp('latchkey.conf', `${URLS}secrets_file = ${secrets}\nusername = other\npassword = x\n`, 0o600);
  rejects(() => loadConfig(both), secrets, 'username', `${both}:5 and ${secrets}:2`);
  const typo = tmp('secrets', 'pasword = x\n', 0o600);
  rejects(() => loadConfig(tmp('l.conf', `${URLS}secrets_file = ${typo}\n`, 0o644)), `${typo}:1`, 'pasword', 'did you mean password');
  const sectioned = tmp('secrets', '[upstream]\npassword = x\n', 0o600);
  rejects(() => loadConfig(tmp('l.conf', `${URLS}secrets_file = ${sectioned}\n`, 0o644)), `${sectioned}:1`, '', 'no sections');
  const half = tmp('secrets', 'password = x\n', 0o600);
  rejects(() => loadConfig(tmp('l.conf', `${URLS}secrets_file = ${half}\n`, 0o644)), `${half}:1`, 'password', 'secrets_file');
});

test('redactConfig and formatConfigIni never contain a secret', () => {
  const basic = parseConfig(`${URLS}username = lega\npassword = Top-Secret-1\n`, 'x.conf');
  const bearer = parseConfig(`${URLS}bearer_token = Top-Secret-2\n`, 'x.conf');
  const legacy = parseConfig('cega_endpoint_username = http://h/\ncega_endpoint_uid = http://h/\ncega_creds = lega:Top-Secret-3\ninsecure_http = yes\n', 'x.conf');
  for (const c of [basic, bearer, legacy]) {
    const out = JSON.stringify(redactConfig(c)) + formatConfigIni(c);
    assert.ok(!out.includes('Top-Secret'), out);
    assert.ok(out.includes('<redacted>'));
  }
  const r = redactConfig(basic) as { upstream: { basicAuth: unknown }; homes: { mode: string }; users: { nameRegex: string } };
  assert.deepEqual(r.upstream.basicAuth, { user: 'lega', password: '<redacted>' });
  assert.equal(r.homes.mode, '2750');
  assert.equal(r.users.nameRegex, '^[a-z_][a-z0-9_.-]{0,31}$');
  // What `latchkeyctl --json config` prints: it must survive JSON unchanged
  // (a RegExp, Map, undefined or BigInt left in it would be lost or throw on the way).
  for (const c of [basic, bearer, legacy]) assert.deepEqual(JSON.parse(JSON.stringify(redactConfig(c))), redactConfig(c));
  assert.equal((redactConfig(bearer) as { upstream: { bearerToken: unknown } }).upstream.bearerToken, '<redacted>');
});

test('formatConfigIni parses back to the same config', () => {
  const c = parseConfig(`${URLS}username = lega\npassword = pw\njson_prefix = a.b\nconnect_timeout = 1500ms\nmax_body = 3000\n`
    + '[cache]\nttl = 90\nstale_grace = 0\n[users]\nname_regex = \'^[a-z;]+$\'\n'
    + '[homes]\nlayout = plain\nmode = 0700\numask = 077\n[pam]\nprompt = " Pa;ss#: "\nchroot_sessions = on\n', 'x.conf');
  const text = formatConfigIni(c);
  assert.match(text, /^\[upstream\]$/m);
  assert.match(text, /^# bearer_token =$/m);
  const back = parseConfig(text, 'x.conf');
  assert.deepEqual(back, { ...c, upstream: { ...c.upstream, basicAuth: { user: 'lega', password: '<redacted>' } } });
  assert.deepEqual(parseConfig(formatConfigIni(withUrls()), 'x.conf'), withUrls());
});

test('defaultConfig applies per-section overrides', () => {
  const c = defaultConfig({ cache: { dbPath: ':memory:' }, daemon: { socketDir: '/tmp/s' } });
  assert.equal(c.cache.dbPath, ':memory:');
  assert.equal(c.cache.ttlSec, 3600);
  assert.equal(c.daemon.socketDir, '/tmp/s');
  assert.notEqual(defaultConfig().cache, defaultConfig().cache);
});
