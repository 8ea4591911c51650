// Defaults derived from other settings follow them unless set explicitly (issue 11, point 7): any
// valid LocalEGA auth.conf starts, whatever its cache_ttl or timeouts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { ROOT } from '../lib/paths.js';

const egaConf = readFileSync(join(ROOT, 'etc/ega-auth.conf'), 'utf8')
  // the example holds https endpoints and cega_creds; keep it as shipped apart from the ttl
  .replace(/^cache_ttl = .*$/m, '');
const withTtl = (ttl: string): string => `${egaConf}\ncache_ttl = ${ttl}\n`;

test('a LocalEGA auth.conf starts with any cache_ttl: refresh-ahead follows the ttl', () => {
  for (const [ttl, ahead] of [['30', 3], ['1', 0], ['5', 0], ['59', 5], ['600', 60], ['3600', 60], ['86400', 60]] as const) {
    const c = parseConfig(withTtl(ttl), 'auth.conf');
    assert.equal(c.cache.ttlSec, Number(ttl));
    assert.equal(c.cache.refreshAheadSec, ahead, `cache_ttl = ${ttl}`);
    assert.ok(c.cache.refreshAheadSec < c.cache.ttlSec);
  }
});

test('an explicit refresh_ahead is kept, and refused only when it is the one that is wrong', () => {
  const ok = parseConfig(`[upstream]\nby_name_url = https://u.example/u/\nby_uid_url = https://u.example/i/\n[cache]\nttl = 30\nrefresh_ahead = 10\n`, 'x.conf');
  assert.equal(ok.cache.refreshAheadSec, 10);
  assert.throws(() => parseConfig(`[upstream]\nby_name_url = https://u.example/u/\nby_uid_url = https://u.example/i/\n[cache]\nttl = 30\nrefresh_ahead = 30\n`, 'x.conf'),
    (e: unknown) => e instanceof ConfigError && /x\.conf:6: cache\.refresh_ahead: must be shorter than the cache ttl/.test(e.message));
});

test('a short request_timeout alone pulls the default connect_timeout down with it', () => {
  const c = parseConfig(`[upstream]\nby_name_url = https://u.example/u/\nby_uid_url = https://u.example/i/\nrequest_timeout = 500ms\n`, 'x.conf');
  assert.equal(c.upstream.connectTimeoutMs, 500);
  assert.throws(() => parseConfig(`[upstream]\nby_name_url = https://u.example/u/\nby_uid_url = https://u.example/i/\nrequest_timeout = 500ms\nconnect_timeout = 2s\n`, 'x.conf'),
    /request_timeout: is shorter than connect_timeout/);
});

test('host_max_failures follows max_failures unless set', () => {
  const base = `[upstream]\nby_name_url = https://u.example/u/\nby_uid_url = https://u.example/i/\n[pam]\n`;
  assert.equal(parseConfig(base + 'max_failures = 3\n', 'x.conf').pam.hostMaxFailures, 12);
  assert.equal(parseConfig(base + 'max_failures = 3\nhost_max_failures = 7\n', 'x.conf').pam.hostMaxFailures, 7);
  assert.throws(() => parseConfig(base + 'max_failures = 10\nhost_max_failures = 7\n', 'x.conf'), /host_max_failures: is below max_failures/);
});
