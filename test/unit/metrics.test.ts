// The metrics registry renders what the strict 0.0.4 reader accepts, keeps its series bounded
// whatever label values arrive, and [metrics] listen takes loopback or a Unix socket only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Histogram, MAX_SERIES, Registry } from '../../src/metrics/registry.js';
import { DaemonMetrics } from '../../src/metrics/daemon.js';
import { UpstreamHealth, outcomeOf } from '../../src/upstream/health.js';
import { UpstreamError } from '../../src/errors.js';
import { parseConfig } from '../../src/config/load.js';
import { parseExposition } from '../lib/prometheus.js';

const URLS = '[upstream]\nby_name_url = https://u.example/username/\nby_uid_url = https://u.example/user-id/\n';

test('a histogram renders cumulative buckets ending in +Inf = _count; label values are escaped', () => {
  const r = new Registry();
  const h = r.add(new Histogram('x_seconds', 'help with a \\ backslash\nand newline', [0.1, 1], ['via']));
  for (const v of [0.05, 0.5, 5, Number.NaN]) h.observe(v, { via: 'a"b\\c\nd' });
  const c = r.add(new Counter('x_total', 'a counter', ['k']));
  c.inc({ k: 'v' }, 3);
  const text = r.render();
  const m = parseExposition(text);
  assert.equal(m.value('x_seconds_bucket', { via: 'a"b\\c\nd', le: '0.1' }), 2);
  assert.equal(m.value('x_seconds_bucket', { via: 'a"b\\c\nd', le: '1' }), 3);
  assert.equal(m.value('x_seconds_bucket', { via: 'a"b\\c\nd', le: '+Inf' }), 4);
  assert.equal(m.value('x_seconds_count', { via: 'a"b\\c\nd' }), 4);
  assert.equal(m.value('x_total', { k: 'v' }), 3);
  assert.match(text, /^# HELP x_seconds help with a \\\\ backslash\\nand newline$/m);
});

test('series stay bounded: label values past MAX_SERIES count under "other"', () => {
  const c = new Counter('y_total', 'y', ['kind']);
  for (let i = 0; i < 10_000; i++) c.inc({ kind: `k${i}` });
  const m = parseExposition(c.render());
  assert.equal(m.samples.length, MAX_SERIES);
  assert.equal(m.value('y_total', { kind: 'other' }), 10_000 - (MAX_SERIES - 1));
});

test('the daemon metrics parse strictly and count upstream outcomes, checks and sessions; hash kinds are sanitised', () => {
  const health = new UpstreamHealth();
  const dm = new DaemonMetrics({
    version: '0.1.0', startedAt: 1714557600000,
    lookups: () => ({ hit: 3, negative: 1, rule: 0, miss: 2, stale: 0, unavail: 1, local: 0, local_notfound: 0, notfound: 1 }),
    cacheCounts: () => ({ fresh: 2, stale: 1, expired: 0, negative: 1 }),
    openSessions: () => 1, throttle: () => ({ lockouts: 2, refused: 0, failures: 7 }),
    authCounts: () => ({ throttled: 1, unknownUser: 4 }), events: () => null, token: () => null,
    health: () => health.snapshot(),
  });
  health.listener = (via, o, ms) => dm.upstream(via, o, ms);
  health.record('lookup', 'reachable', 12);
  health.record('lookup', 'http_error', 30, 'HTTP 503');
  health.record('probe', 'auth_failed', 2, 'HTTP 401');
  dm.passwordCheck('bcrypt', true, 120);
  dm.passwordCheck('evil"kind{with}junk', false, 1);
  dm.session('open', 'login');
  dm.session('close', 'closed');
  dm.session('revoked', 'no-such-reason');
  const m = parseExposition(dm.render());
  assert.equal(m.value('latchkey_upstream_requests_total', { via: 'lookup', outcome: 'http_error' }), 1);
  assert.equal(m.value('latchkey_upstream_request_duration_seconds_count', { via: 'lookup' }), 2);
  assert.equal(m.value('latchkey_upstream_state', { state: 'auth_failed' }), 1);
  assert.equal(m.value('latchkey_upstream_state', { state: 'reachable' }), 0);
  assert.equal(m.value('latchkey_password_checks_total', { kind: 'other', result: 'failed' }), 1);
  assert.equal(m.value('latchkey_password_check_duration_seconds_bucket', { kind: 'bcrypt', le: '0.25' }), 1);
  assert.equal(m.value('latchkey_sessions_ended_total', { reason: 'other' }), 1);
  assert.equal(m.value('latchkey_throttle_lockouts_total'), 2);
  assert.equal(m.value('latchkey_lookups_total', { result: 'unavail' }), 1);
  assert.equal(m.value('latchkey_cache_entries', { state: 'stale' }), 1);
  assert.equal(m.value('latchkey_events_sent_total'), undefined, 'no events collector: no events series');
});

test('health: since is when the state began; failures map to their kinds', () => {
  let now = 1000;
  const h = new UpstreamHealth(() => now);
  assert.equal(h.snapshot().state, 'unknown');
  h.record('lookup', 'http_error', 5, 'HTTP 503');
  now = 2000;
  h.record('probe', 'http_error', 5, 'HTTP 503');
  assert.deepEqual([h.snapshot().state, h.snapshot().since], ['http_error', 1000]);
  now = 3000;
  h.record('probe', 'reachable', 5);
  assert.deepEqual([h.snapshot().state, h.snapshot().since, h.snapshot().detail], ['reachable', 3000, null]);
  assert.equal(h.snapshot().last_lookup?.outcome, 'http_error', 'a probe is not a lookup');
  assert.equal(outcomeOf(new UpstreamError('auth', 'x')), 'auth_failed');
  assert.equal(outcomeOf(new UpstreamError('timeout', 'x')), 'unreachable');
  assert.equal(outcomeOf(new UpstreamError('json', 'x')), 'invalid_reply');
  assert.equal(outcomeOf(new UpstreamError('http', 'x')), 'http_error');
});

test('[metrics] listen: a Unix socket or loopback only; [upstream] health_url: a URL or none', () => {
  assert.equal(parseConfig(URLS, 'x.conf').metrics.listen, null);
  assert.deepEqual(parseConfig(`${URLS}[metrics]\nlisten = unix:/run/latchkey/metrics.sock\n`, 'x.conf').metrics.listen, { unix: '/run/latchkey/metrics.sock' });
  assert.deepEqual(parseConfig(`${URLS}[metrics]\nlisten = 127.0.0.1:9465\n`, 'x.conf').metrics.listen, { host: '127.0.0.1', port: 9465 });
  assert.deepEqual(parseConfig(`${URLS}[metrics]\nlisten = [::1]:9465\n`, 'x.conf').metrics.listen, { host: '::1', port: 9465 });
  for (const bad of ['0.0.0.0:9465', '[::]:9465', '192.0.2.1:9465', 'localhost:9465', '127.0.0.1:0', 'unix:relative.sock', `unix:/${'a'.repeat(120)}`]) {
    assert.throws(() => parseConfig(`${URLS}[metrics]\nlisten = ${bad}\n`, 'x.conf'), /metrics\.listen/, bad);
  }
  assert.equal(parseConfig(URLS, 'x.conf').upstream.healthUrl, null);
  assert.equal(parseConfig(`${URLS}health_url = none\n`, 'x.conf').upstream.healthUrl, null);
  assert.equal(parseConfig(`${URLS}health_url = https://u.example/health\n`, 'x.conf').upstream.healthUrl, 'https://u.example/health');
  assert.throws(() => parseConfig(`${URLS}health_url = ftp://u.example/health\n`, 'x.conf'), /health_url/);
  assert.throws(() => parseConfig(`${URLS}health_url = https://a:b@u.example/health\n`, 'x.conf'), /health_url/);
});
