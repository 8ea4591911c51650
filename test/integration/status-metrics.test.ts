// `latchkeyctl status` tells the upstream's failure kinds apart (issue 18: a 503 was shown as
// "unreachable"), asks [upstream] health_url instead of a fake user, and sends nothing when none
// is set; it shows the config in force (digest) and the last reload. The Prometheus endpoint
// ([metrics] listen) is scraped with curl over its Unix socket and parsed strictly. Through the
// real daemon, latchkeyctl and the example user service.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { examplePasswords, haveCommand, latchkeyctl, request, runCommand, startEnv, type TestEnv } from '../lib/harness.js';
import { parseExposition } from '../lib/prometheus.js';
import { Status } from '../../src/protocol/generated.js';
import { ROOT } from '../lib/paths.js';

let env: TestEnv;
let quiet: TestEnv;
const metricsSock = (): string => join(env.socketDir, 'metrics.sock');

before(async () => {
  env = await startEnvWithMetrics();
  quiet = await startEnv({ upstream: { health_url: 'none' } });
});
after(async () => {
  await env?.stop();
  await quiet?.stop();
});

/** startEnv with [metrics] listen in its own run dir (writeConfig's socket_dir). */
async function startEnvWithMetrics(): Promise<TestEnv> {
  const e = await startEnv();
  const sock = join(e.socketDir, 'metrics.sock');
  appendFileSync(e.configFile, `\n[metrics]\nlisten = unix:${sock}\n`);
  const r = await latchkeyctl(e.socketDir, ['reload']);
  assert.equal(r.code, 0, r.stderr);
  return e;
}

async function status(e: TestEnv): Promise<any> {
  const r = await latchkeyctl(e.socketDir, ['--json', 'status']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('status with health_url: 503 is an HTTP error, 401 an auth failure, each with since when; one GET of health_url, no fake user', async () => {
  const ok = await status(env);
  assert.equal(ok.upstream.health.state, 'reachable');
  assert.equal(ok.upstream.health.url, `${env.service.url}/health`);
  assert.equal(typeof ok.upstream.probe_ms, 'number');
  const before = env.service.stats();
  await status(env);
  const after = env.service.stats();
  assert.equal(after.byPath['/health'], (before.byPath['/health'] ?? 0) + 1, 'one GET of health_url per status');
  assert.deepEqual(Object.keys(after.byPath).filter((p) => p.startsWith('/username/')), Object.keys(before.byPath).filter((p) => p.startsWith('/username/')), 'no fake user asked');

  env.service.setFault('5xx');
  try {
    const t0 = Date.now();
    const s = await status(env);
    assert.equal(s.upstream.health.state, 'http_error');
    assert.match(s.upstream.probe_error, /HTTP 503/);
    assert.ok(s.upstream.health.since >= t0 - 50, 'since: when it began');
    const piped = await latchkeyctl(env.socketDir, ['status']);
    assert.match(piped.stdout, /^upstream\thttp_error$/m);
    const since1 = s.upstream.health.since;
    assert.equal((await status(env)).upstream.health.since, since1, 'a second failure of the same kind keeps since');
  } finally {
    env.service.setFault(null);
  }

  // Wrong credentials: the health URL is on the user service's origin, so it gets them.
  const good = readFileSync(env.configFile, 'utf8');
  writeFileSync(env.configFile, good.replace(/^password = .*$/m, 'password = not-the-password'));
  try {
    assert.equal((await latchkeyctl(env.socketDir, ['reload'])).code, 0);
    const s = await status(env);
    assert.equal(s.upstream.health.state, 'auth_failed');
    assert.match(s.upstream.probe_error, /HTTP 401.*credentials refused/);
    assert.ok(!JSON.stringify(s).includes('not-the-password'));
    const lookup = await latchkeyctl(env.socketDir, ['--json', 'lookup', 'frank']);
    assert.notEqual(lookup.code, 0);
    assert.equal((await status(env)).upstream.health.last_lookup.outcome, 'auth_failed', 'a 401 to a lookup is an auth failure too');
  } finally {
    writeFileSync(env.configFile, good);
    assert.equal((await latchkeyctl(env.socketDir, ['reload'])).code, 0);
  }
  assert.equal((await status(env)).upstream.health.state, 'reachable');
});

test('status without health_url sends no request: it reports the last lookup and since when', async () => {
  const s0 = await status(quiet);
  assert.equal(s0.upstream.health.url, null);
  assert.equal(s0.upstream.health.state, 'unknown');
  assert.equal(s0.upstream.reachable, null);
  assert.equal(s0.upstream.probe_ms, null);
  const n = quiet.service.stats().requests;
  await status(quiet);
  await latchkeyctl(quiet.socketDir, ['status']);
  assert.equal(quiet.service.stats().requests, n, 'status sent nothing upstream');

  assert.equal((await latchkeyctl(quiet.socketDir, ['lookup', 'alice'])).code, 0);
  const s1 = await status(quiet);
  assert.equal(s1.upstream.health.state, 'reachable');
  assert.equal(s1.upstream.health.last_lookup.outcome, 'reachable');
  quiet.service.setFault('5xx');
  try {
    const t0 = Date.now();
    await latchkeyctl(quiet.socketDir, ['lookup', '--refresh', 'bob']);
    const s2 = await status(quiet);
    assert.equal(s2.upstream.health.state, 'http_error');
    assert.ok(s2.upstream.health.since >= t0 - 50);
    assert.match(s2.upstream.health.detail, /HTTP 503.*failing/);
    assert.equal(s2.upstream.reachable, false);
  } finally {
    quiet.service.setFault(null);
  }
  await quiet.service.close();
  await latchkeyctl(quiet.socketDir, ['lookup', '--refresh', 'carol']);
  const s3 = await status(quiet);
  assert.equal(s3.upstream.health.state, 'unreachable');
  assert.match(s3.upstream.health.detail, /connection refused/);
  if (haveCommand('script')) {
    // the terminal line says what kind of failure and since when
    const r = await runCommand('script', ['-qec', `${process.execPath} ${join(ROOT, 'bin/latchkeyctl')} status`, '/dev/null'], { ...process.env as Record<string, string>, LATCHKEY_SOCKET_DIR: quiet.socketDir, TERM: 'dumb' });
    if (r.code === 0) assert.match(r.stdout, /upstream:\s+unreachable \(no answer\) \(last request\) since .*connection refused/);
  }
});

test('status shows the config in force (sha256 of the file) and the last reload, refused with the loader\'s message', async () => {
  const digest = createHash('sha256').update(readFileSync(env.configFile)).digest('hex').slice(0, 16);
  const s = await status(env);
  assert.equal(s.config.file, env.configFile);
  assert.equal(s.config.digest, digest);
  assert.equal(s.config.last_reload.ok, true);
  const good = readFileSync(env.configFile, 'utf8');
  appendFileSync(env.configFile, '[cache]\nttl = soon\n');
  try {
    assert.equal((await latchkeyctl(env.socketDir, ['reload'])).code, 1);
    const r = await status(env);
    assert.equal(r.config.last_reload.ok, false);
    assert.match(r.config.last_reload.error, /cache\.ttl/);
    assert.equal(r.config.digest, digest, 'the refused file is not the one in force');
    const piped = await latchkeyctl(env.socketDir, ['status']);
    assert.match(piped.stdout, /^last reload\t\S+ refused .*cache\.ttl/m);
    assert.match(piped.stdout, new RegExp(`^config loaded\\t\\S+ ${digest}$`, 'm'));
  } finally {
    writeFileSync(env.configFile, good);
    assert.equal((await latchkeyctl(env.socketDir, ['reload'])).code, 0);
  }
});

test('metrics: curl over the Unix socket gets the text format 0.0.4, parsed strictly, counting what happened', { skip: !haveCommand('curl') && 'no curl' }, async () => {
  const scrape = async (): Promise<ReturnType<typeof parseExposition>> => {
    const r = await runCommand('curl', ['-sS', '--fail', '-D', '-', '--max-time', '5', '--unix-socket', metricsSock(), 'http://localhost/metrics'], {});
    assert.equal(r.code, 0, r.stderr);
    const [head, body] = r.stdout.split('\r\n\r\n', 2) as [string, string];
    assert.match(head, /^content-type: text\/plain; version=0\.0\.4; charset=utf-8$/im);
    return parseExposition(body);
  };
  const m0 = await scrape();
  assert.equal((await latchkeyctl(env.socketDir, ['lookup', '--refresh', 'dave'])).code, 0);
  assert.notEqual((await latchkeyctl(env.socketDir, ['lookup', 'nosuchuser'])).code, 0);
  // What pam_latchkey sends: one right and one wrong password.
  const priv = join(env.socketDir, 'priv.sock');
  const good = await request(priv, 'AUTH_PASSWORD', { user: 'alice', password: examplePasswords().alice, service: 'sshd', rhost: '192.0.2.7' });
  assert.equal(good.status, Status.OK);
  await request(priv, 'AUTH_PASSWORD', { user: 'alice', password: 'wrong', service: 'sshd', rhost: '192.0.2.7' });
  const m1 = await scrape();
  const v = (m: typeof m0, name: string, labels: Record<string, string> = {}): number => m.value(name, labels) ?? 0;
  assert.ok(v(m1, 'latchkey_upstream_requests_total', { via: 'lookup', outcome: 'reachable' }) >= v(m0, 'latchkey_upstream_requests_total', { via: 'lookup', outcome: 'reachable' }) + 2);
  assert.ok(v(m1, 'latchkey_upstream_request_duration_seconds_count', { via: 'lookup' }) >= 2);
  assert.ok(v(m1, 'latchkey_lookups_total', { result: 'miss' }) > v(m0, 'latchkey_lookups_total', { result: 'miss' }));
  assert.equal(m1.type('latchkey_upstream_request_duration_seconds'), 'histogram');
  assert.equal(m1.type('latchkey_lookups_total'), 'counter');
  assert.equal(m1.type('latchkey_cache_entries'), 'gauge');
  assert.ok(v(m1, 'latchkey_cache_entries', { state: 'fresh' }) >= 1);
  const kinds = m1.samples.filter((s) => s.name === 'latchkey_password_checks_total');
  assert.ok(kinds.some((s) => s.labels.result === 'ok' && s.value >= 1) && kinds.some((s) => s.labels.result === 'failed' && s.value >= 1), JSON.stringify(kinds));
  assert.ok(v(m1, 'latchkey_password_check_duration_seconds_count', { kind: kinds[0]!.labels.kind! }) >= 1);
  assert.ok(kinds.length >= 1 && kinds.every((s) => /^[a-z0-9_-]+$/.test(s.labels.kind!)), JSON.stringify(kinds));
  assert.equal(v(m1, 'latchkey_upstream_state', { state: 'reachable' }), 1);
  // No user name in any label: the names just used appear nowhere.
  for (const s of m1.samples) for (const l of Object.values(s.labels)) assert.ok(!['dave', 'alice', 'nosuchuser'].includes(l), `${s.name} carries a user name`);

  // Only GET /metrics.
  const post = await runCommand('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', '--unix-socket', metricsSock(), 'http://localhost/metrics'], {});
  assert.equal(post.stdout, '405');
  const other = await runCommand('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--unix-socket', metricsSock(), 'http://localhost/'], {});
  assert.equal(other.stdout, '404');
  const st = await status(env);
  assert.deepEqual(st.metrics, { listen: `unix:${metricsSock()}`, serving: true, error: null });
});

test('metrics: a slow client (connects, never finishes its request) neither blocks a scrape nor holds a slot for long', { skip: !haveCommand('curl') && 'no curl' }, async () => {
  const net = await import('node:net');
  const held = Array.from({ length: 6 }, () => {
    const c = net.createConnection(metricsSock());
    c.on('error', () => undefined);
    c.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'); // headers never end
    return c;
  });
  try {
    const t0 = Date.now();
    const r = await runCommand('curl', ['-sS', '--fail', '--max-time', '5', '--unix-socket', metricsSock(), 'http://localhost/metrics'], {});
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - t0 < 2000, 'served at once beside the stalled ones');
    // The daemon answers its own sockets meanwhile.
    assert.equal((await latchkeyctl(env.socketDir, ['lookup', 'alice'])).code, 0);
    // The stalled ones are closed by the request deadline.
    const closed = await Promise.all(held.map((c) => new Promise<boolean>((res) => {
      if (c.destroyed) return res(true);
      const t = setTimeout(() => res(false), 12_000);
      c.on('close', () => { clearTimeout(t); res(true); });
    })));
    assert.ok(closed.every(Boolean), 'stalled connections are closed by the daemon');
  } finally {
    for (const c of held) c.destroy();
  }
});

test('metrics: one request per connection, so keep-alive clients cannot sit on every slot', async () => {
  const net = await import('node:net');
  // What a hogging client does: keep-alive connections that each ask now and then.
  const socks = Array.from({ length: 10 }, () => {
    const c = net.createConnection(metricsSock());
    c.on('error', () => undefined);
    return c;
  });
  try {
    const answers = await Promise.all(socks.map((c) => new Promise<{ head: string; closed: boolean }>((res) => {
      let data = '';
      c.on('data', (d: Buffer) => { data += d.toString(); });
      const t = setTimeout(() => res({ head: data.slice(0, 200), closed: false }), 8_000);
      c.on('close', () => { clearTimeout(t); res({ head: data.slice(0, 200), closed: true }); });
      c.write('HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    })));
    for (const a of answers) {
      assert.match(a.head, /^HTTP\/1\.1 200/);
      assert.match(a.head, /connection: close/i);
      assert.ok(a.closed, 'the daemon closed the connection after its one reply');
    }
  } finally {
    for (const c of socks) c.destroy();
  }
});
