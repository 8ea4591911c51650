// `scripts/fleet` in its short form: 3 hosts, each in its own network + mount namespace with its
// own tmpfs /run and latchkeyd, against one example user service, at a time scale of 1/600 (ttl
// 6 s, stale_grace 6 s, a 1-second outage). Checked are the goals that hold at that size: a host
// asks the upstream no more than a perfect cache would (≤ 1.05 requests per user per TTL), no
// lookup says "not found" or "unavailable" for a user the host fetched within the grace during
// the outage, every host gets a fresh answer soon after the upstream is back, and a popular user
// flushed everywhere costs one request per host. Then that nothing is left behind. And the
// example service's own parts the fleet relies on: the counters by user and client, the rate
// limit's 429 with Retry-After.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpRequest } from 'undici';
import { ROOT, haveCommand } from '../lib/harness.js';
import { scratchDir } from '../lib/tmp.js';
import { startUserService, type UserServiceStats } from '../../src/example/userservice.js';

const skip = process.getuid?.() !== 0 ? 'needs root (network and mount namespaces)'
  : ['ip', 'nsenter', 'setpriv', 'unshare'].find((c) => !haveCommand(c)) ?? false;

interface Row { key: string; value: number | null; met: boolean | null }

test('scripts/fleet, 3 hosts at 1/600: no more requests than a perfect cache, nothing lost in an outage, quick recovery', { skip, timeout: 90_000 }, async () => {
  const out = scratchDir('latchkey-fleet-smoke-');
  // spawn, not spawnSync: node --test's own timeout must be able to end it
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const p = spawn(join(ROOT, 'scripts/fleet'), ['--hosts', '3', '--scale', '600', '--scenarios', 'steady,outage,popular', '--out', out], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const t = setTimeout(() => p.kill('SIGTERM'), 80_000);
    p.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
  assert.equal(r.code, 0, `scripts/fleet failed:\n${r.stdout}\n${r.stderr}`);
  process.stdout.write(r.stdout.split('\n').filter((l) => l.startsWith('|')).map((l) => `# ${l}\n`).join(''));
  const doc = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as { rows: Row[]; detail: { outage: { ops: number; recovery_s: number | null } } };
  const row = (k: string): Row => { const x = doc.rows.find((y) => y.key === k); assert.ok(x, `no row ${k}`); return x; };

  assert.ok(row('steady.ratio').value! > 0.5, `steady ratio ${row('steady.ratio').value}: the load did not reach the upstream`);
  assert.ok(row('steady.ratio').value! <= 1.05, `steady: ${row('steady.ratio').value} upstream requests per user per TTL per host`);
  assert.ok(doc.detail.outage.ops > 0, 'no lookups ran during the outage');
  assert.equal(row('outage.notfound').value, 0, 'a user that exists was "not found" during the outage');
  assert.equal(row('outage.lost').value, 0, 'a user fetched within stale_grace was refused during the outage');
  // the daemon's hold-off after failures is wall-clock (2 s before issue 19, a capped backoff
  // after it); a 1-second outage must not keep a host from its upstream for long
  const rec = row('outage.recovery').value;
  assert.ok(rec !== null && rec <= 10, `time to recover ${rec} s`);
  assert.ok(row('popular.per_host').value! <= 1.05, `the popular user cost ${row('popular.per_host').value} requests per host`);
  assert.equal(row('popular.failed').value, 0);

  const work = /^fleet: work dir (\S+)$/m.exec(r.stderr)?.[1];
  assert.ok(work, `the fleet names its work dir on stderr:\n${r.stderr}`);
  assert.ok(!existsSync(work), `${work} left behind`);
  // every daemon, holder and service it started is gone (they all ran a config under the work dir)
  const left = spawnSync('pgrep', ['-f', work], { encoding: 'utf8' }).stdout.trim();
  assert.equal(left, '', `processes left behind: ${left}`);
});

test('example user service: 429 with Retry-After past its rate limit, counters by user, client and status', async () => {
  const users = [{ username: 'ann', uid: 7001 }, { username: 'ben', uid: 7002 }];
  const svc = await startUserService({ users, rateLimit: { perSec: 1, burst: 3 } });
  try {
    const get = async (path: string): Promise<{ status: number; retryAfter: string | undefined }> => {
      const r = await httpRequest(`${svc.url}${path}`);
      await r.body.text();
      return { status: r.statusCode, retryAfter: r.headers['retry-after'] as string | undefined };
    };
    const got = [await get('/username/ann'), await get('/user-id/7001'), await get('/username/nobody'), await get('/username/ben')];
    assert.deepEqual(got.map((x) => x.status), [200, 200, 404, 429], 'a burst of 3, then the limit');
    assert.equal(got[3]!.retryAfter, '1', 'one token a second: back within a second');
    assert.equal(got[0]!.retryAfter, undefined);
    const withAnswers = (await (await httpRequest(`${svc.url}/_stats?answers=1`)).body.json()) as UserServiceStats;
    // the last 200 per client and user: what that client can have cached since (not the 404, not the 429)
    assert.deepEqual(Object.keys(withAnswers.answers?.['127.0.0.1'] ?? {}), ['ann']);
    const s = (await (await httpRequest(`${svc.url}/_stats?reset=1`)).body.json()) as UserServiceStats;
    assert.equal(s.answers, undefined, 'only ?answers=1 lists them');
    // a by-uid request counts for the user the uid belongs to
    assert.deepEqual(s.byUser, { ann: 2, nobody: 1, ben: 1 });
    assert.deepEqual(s.byStatus, { 200: 2, 404: 1, 429: 1 });
    assert.equal(s.rateLimited, 1);
    const me = s.byHost['127.0.0.1'];
    assert.ok(me, JSON.stringify(s.byHost));
    assert.equal(me.requests, 4);
    assert.ok(me.firstAnswerAt !== null && me.lastAnswerAt! >= me.firstAnswerAt);
    const after = svc.stats();
    assert.equal(after.requests, 0, '?reset=1 started new counters');
    svc.setRateLimit(null);
    svc.setFault('503');
    const f = await get('/username/ann');
    assert.equal(f.status, 503);
    assert.equal(f.retryAfter, '30', 'the 503 fault asks to wait 30 s by default');
  } finally {
    await svc.close();
  }
});

test('userservice --help documents the fleet options', () => {
  const r = spawnSync(process.execPath, [join(ROOT, 'dist/src/example/userservice.js'), '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  for (const flag of ['--rate-limit', '--rate-burst', '--retry-after', '/_stats', '"429"']) assert.ok(r.stdout.includes(flag), `--help lacks ${flag}`);
});
