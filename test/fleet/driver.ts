// `make fleet`: N latchkey hosts against one user service, the scenarios of issue 19 time-scaled,
// one Markdown table of the numbers with their goals (and JSON) in build/fleet/.
//
// Time scale S (FLEET_SCALE, default 60): the cache's production defaults divided by S (ttl 1h,
// refresh_ahead 60s, stale_grace 1h, an outage of 10 minutes), rounded to the whole seconds the
// config takes. The daemon's own pacing (hold-offs, backoff, warm-start rate) and the network
// timeouts are not scaled: they are wall-clock in the daemon, so they are reported as such.
//
// scripts/fleet starts this in a private network + mount namespace (hosts.ts has the layout).
// Scenarios, in this order (--scenarios picks some; steady always runs, the others need it):
//   steady   all hosts start cold at once, one TTL of warm-up, then `--steady-ttls` TTLs measured:
//            upstream requests per user per TTL per host against a perfect cache replaying the
//            same operations (report.ts idealFetches), and the steady request rate
//   restart  every daemon SIGTERMed and started again at once, cache files kept on the hosts'
//            tmpfs; the peak 1-second upstream rate until one TTL after the last is back,
//            relative to steady, and the lookups that failed once a host was back
//   outage   the user service killed for 10 minutes/S and started again: lookups answered stale
//            (the daemons' counters) and unavailable, any unavailable or not-found answer for a
//            user that host had answered within stale_grace before, and the time until every
//            host got its first fresh answer (the service's per-client counters)
//   popular  the steady load paused, the most popular user flushed on every host at once and
//            looked up (by name) and logged in 8 times on each at once: upstream requests for it
//            per host (1 is the single flight's promise)
// After steady, the service gets a rate limit of `--limit-factor` × the steady rate (429 with
// Retry-After), as a real upstream protecting itself would have.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { ROOT } from '../lib/paths.js';
import { releaseWorkDir } from '../lib/children.js';
import { TEST_DAEMON_UID } from '../lib/harness.js';
import type { UserServiceStats } from '../../src/example/userservice.js';
import { Host, SERVICE_IP, SERVICE_PORT, killStarted, mustRun, say, setUpBridge, sleep } from './hosts.js';
import { Load, type Op } from './load.js';
import { Service } from './service.js';
import { idealFetches, rates, statsDiff, table, type Row, type Sample } from './report.js';

const USAGE = `usage: scripts/fleet [--hosts N] [--scale S] [--scenarios L] [--rate N] [--users N] [--steady-ttls N]
                     [--limit-factor F] [--build DIR] [--before FILE] [--label TEXT] [--out DIR] [--keep]
  --hosts N         latchkey hosts, each in its own network + mount namespace (default $FLEET_HOSTS, else 20)
  --scale S         time scale: ttl, refresh_ahead, stale_grace and the outage are the defaults / S
                    (default $FLEET_SCALE, else 60: ttl 60 s, a 10 s outage)
  --scenarios L     steady,restart,outage,popular (default all; $FLEET_SCENARIOS)
  --rate N          operations per second per host (default 20): lookups by name and uid, 5 % logins
  --users N         the user population, Zipf s=1.1 (default 2000)
  --steady-ttls N   TTLs measured in steady state after one TTL of warm-up (default 2)
  --limit-factor F  the upstream's rate limit after steady, × the steady rate (default 1.5; 0 = none)
  --build DIR       the latchkey build the hosts run (default: this tree)
  --before FILE     an earlier run's JSON: its numbers become the table's "before" column
  --label TEXT      this run's column heading (default: the build's git describe)
  --out DIR         where fleet-*.json and fleet-*.md go (default build/fleet)
  --keep            keep the work dir (debugging)`;

const { values: argv } = parseArgs({
  options: {
    hosts: { type: 'string' }, scale: { type: 'string' }, scenarios: { type: 'string' }, rate: { type: 'string', default: '20' },
    users: { type: 'string', default: '2000' }, 'steady-ttls': { type: 'string', default: '2' }, 'limit-factor': { type: 'string', default: '1.5' },
    build: { type: 'string' }, before: { type: 'string' }, label: { type: 'string' }, out: { type: 'string' },
    keep: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
  },
  strict: true,
});
if (argv.help) { process.stdout.write(USAGE + '\n'); process.exit(0); }

const HOSTS = Number(argv.hosts ?? process.env.FLEET_HOSTS ?? 20);
const SCALE = Number(argv.scale ?? process.env.FLEET_SCALE ?? 60);
const SCENARIOS = (argv.scenarios ?? process.env.FLEET_SCENARIOS ?? 'steady,restart,outage,popular').split(',').map((s) => s.trim()).filter(Boolean);
const RATE = Number(argv.rate);
const USERS = Number(argv.users);
const STEADY_TTLS = Number(argv['steady-ttls']);
const LIMIT_FACTOR = Number(argv['limit-factor']);
const BUILD = resolve(argv.build ?? ROOT);
const OUT = resolve(argv.out ?? join(ROOT, 'build/fleet'));
const KNOWN = ['steady', 'restart', 'outage', 'popular'];
if (!(HOSTS >= 1 && HOSTS <= 200) || !(SCALE >= 1) || !(RATE > 0) || !(USERS >= 10) || !(STEADY_TTLS > 0) || !(LIMIT_FACTOR >= 0)
  || SCENARIOS.some((s) => !KNOWN.includes(s))) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(2);
}

/** Production defaults (etc/latchkey.conf) scaled: whole seconds, as the config takes them. */
const SCALED = {
  ttl: Math.max(1, Math.round(3600 / SCALE)),
  refreshAhead: Math.round(60 / SCALE),
  grace: Math.round(3600 / SCALE),
  negative: Math.round(60 / SCALE),
};
const TTL_MS = SCALED.ttl * 1000;
const OUTAGE_MS = (600 / SCALE) * 1000;
/** What the recovery is held to: [upstream] backoff_max's default (30 s) plus a second, wall clock. */
const RECOVERY_GOAL_S = 31;
const AUTH = { user: 'lega', password: 'fleet-secret' };
const UID_BASE = 100_000;
const UID_SHIFT = 10_000;

let WORK = '';
const hosts: Host[] = [];
let service: Service;
let load: Load;
const samples: Sample[] = [];
let sampler: NodeJS.Timeout | null = null;

/** bob's $6$ hash from etc/example-users.json and its password: one fast hash for every user. */
function loginHash(): { hash: string; password: string } {
  const users = JSON.parse(readFileSync(join(ROOT, 'etc/example-users.json'), 'utf8')) as Array<{ username: string; passwordHash: string }>;
  const pw = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/passwords.json'), 'utf8')) as Record<string, string>;
  return { hash: users.find((u) => u.username === 'bob')!.passwordHash, password: pw.bob! };
}

const userName = (i: number): string => `fu${String(i).padStart(5, '0')}`;

async function setUp(): Promise<{ password: string }> {
  setUpBridge();
  WORK = mkdtempSync(join(tmpdir(), 'latchkey-fleet-'));
  say(`work dir ${WORK}`);
  mustRun('mount', ['-t', 'tmpfs', '-o', 'mode=0755,size=256m', 'tmpfs', WORK]);
  const { hash, password } = loginHash();
  const users = Array.from({ length: USERS }, (_, i) => ({ username: userName(i), uid: UID_BASE + i, passwordHash: hash, sshPublicKeys: [], gecos: `Fleet user ${i}` }));
  writeFileSync(join(WORK, 'users.json'), JSON.stringify(users));
  service = new Service(join(WORK, 'users.json'), AUTH);
  await service.start();
  const knownKeys = readFileSync(join(BUILD, 'dist/src/config/keys.js'), 'utf8');
  for (let i = 0; i < HOSTS; i++) {
    const h = new Host(i, WORK, BUILD);
    hosts.push(h);
    await h.create({ scale: SCALED, knownKeys, serviceUrl: `http://${SERVICE_IP}:${SERVICE_PORT}`, auth: AUTH, daemonUid: TEST_DAEMON_UID });
  }
  return { password };
}

function startSampler(): void {
  sampler = setInterval(() => {
    void service.stats().then((s) => { if (s) samples.push({ t: s.at ?? Date.now(), requests: s.requests }); });
  }, 1000);
}

async function daemonStats(h: Host): Promise<{ stale: number; unavail: number } | null> {
  const s = await h.priv.admin({ cmd: 'stats' }).catch(() => null);
  const l = s?.lookups as Record<string, number> | undefined;
  return l ? { stale: l.stale ?? 0, unavail: l.unavail ?? 0 } : null;
}

const count = (ops: Op[], pred: (o: Op) => boolean): number => ops.reduce((n, o) => n + (pred(o) ? 1 : 0), 0);
const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;

async function run(password: string): Promise<{ rows: Row[]; detail: Record<string, unknown> }> {
  const rows: Row[] = [];
  const detail: Record<string, unknown> = {};
  load = new Load(hosts, { names: Array.from({ length: USERS }, (_, i) => userName(i)), upstreamUid: (i) => UID_BASE + i, uidShift: UID_SHIFT, password },
    { rate: RATE, loginShare: 0.05, uidShare: 0.35, zipfS: 1.1, seed: 19, maxInFlight: 64 });

  // ---- steady: a cold start of the whole fleet at once, then steady load ----
  say(`starting ${HOSTS} daemons at once`);
  await Promise.all(hosts.map((h) => h.start()));
  startSampler();
  load.start();
  const t0 = Date.now();
  say(`steady: warm-up ${SCALED.ttl} s, then ${STEADY_TTLS} × ${SCALED.ttl} s measured`);
  await sleep(TTL_MS);
  const w0 = Date.now();
  const s0 = await service.stats();
  await sleep(STEADY_TTLS * TTL_MS);
  const w1 = Date.now();
  const s1 = (await service.stats())!;
  const d = statsDiff(s0, s1);
  const ideal = idealFetches(load.ops, TTL_MS, w0, w1, HOSTS);
  const perHost = hosts.map((h) => (d.byHost[h.ip] ?? 0) / Math.max(1, ideal[h.index]!));
  const ratio = d.requests / Math.max(1, ideal.reduce((a, b) => a + b, 0));
  const steadyRates = rates(samples, w0, w1);
  const steadyRate = mean(steadyRates);
  detail.steady = { window_s: (w1 - w0) / 1000, upstream_requests: d.requests, ideal: ideal.reduce((a, b) => a + b, 0), ratio: round(ratio), worst_host_ratio: round(Math.max(...perHost)),
    rate_per_s: round(steadyRate, 1), peak_per_s: round(Math.max(...steadyRates), 1), by_status: d.byStatus, ops: count(load.ops, (o) => o.t >= w0 && o.t < w1) };
  rows.push({ key: 'steady.ratio', label: 'steady: upstream requests per user per TTL per host (vs a perfect cache)', goal: '≤ 1.05', value: round(ratio), unit: '', met: ratio <= 1.05 });
  rows.push({ key: 'steady.worst', label: 'steady: the same, worst host', goal: '—', value: round(Math.max(...perHost)), unit: '', met: null });
  rows.push({ key: 'steady.peak', label: 'steady: peak 1-s upstream rate ÷ mean (expiries in step)', goal: '—', value: round(Math.max(...steadyRates) / steadyRate, 2), unit: 'x', met: null });
  say(`steady: ratio ${ratio.toFixed(3)}, ${steadyRate.toFixed(1)} upstream req/s`);

  const limit = LIMIT_FACTOR > 0 ? Math.max(5, Math.round(LIMIT_FACTOR * steadyRate)) : 0;
  if (limit) await service.control({ rateLimit: { perSec: limit, burst: limit } });
  detail.rate_limit_per_s = limit || null;

  // ---- restart: every daemon at once, the caches kept ----
  if (SCENARIOS.includes('restart')) {
    const r0 = Date.now();
    const sr0 = await service.stats();
    say('restart: SIGTERM to every daemon, then start them all at once');
    const stoppedAt: number[] = [];
    await Promise.all(hosts.map(async (h) => { await h.stop(); stoppedAt[h.index] = Date.now(); }));
    const startAt = Date.now();
    const backAt: number[] = [];
    await Promise.all(hosts.map(async (h) => { await h.start(); backAt[h.index] = Date.now(); }));
    const allBack = Math.max(...backAt);
    await sleep(TTL_MS);
    const r1 = Date.now();
    const sr1 = (await service.stats())!;
    const dr = statsDiff(sr0, sr1);
    const peak = Math.max(0, ...rates(samples, r0, r1));
    const after = load.ops.filter((o) => o.t >= backAt[o.host]! && o.t < r1);
    const failed = count(after, (o) => o.outcome === 'UNAVAIL' || o.outcome === 'NOTFOUND' || o.outcome === 'TIMEOUT');
    const failedBy: Record<string, number> = {};
    for (const o of after) if (o.outcome === 'UNAVAIL' || o.outcome === 'NOTFOUND' || o.outcome === 'TIMEOUT') failedBy[`${o.kind} ${o.outcome}`] = (failedBy[`${o.kind} ${o.outcome}`] ?? 0) + 1;
    detail.restart = { restart_s: round((allBack - r0) / 1000, 1), slowest_stop_s: round((Math.max(...stoppedAt) - r0) / 1000, 1), slowest_start_s: round((allBack - startAt) / 1000, 1), upstream_requests: dr.requests, by_status: dr.byStatus, peak_per_s: round(peak, 1), ops_after: after.length, failed_after: failed, failed_by: failedBy };
    rows.push({ key: 'restart.peak', label: 'mass restart: peak 1-s upstream rate ÷ steady mean', goal: '≤ 2×', value: round(peak / steadyRate, 2), unit: 'x', met: peak / steadyRate <= 2 });
    rows.push({ key: 'restart.failed', label: 'mass restart: lookups and logins failed once the host was back (unavailable, not found, timeout)', goal: '0', value: failed, unit: 'n', met: failed === 0 });
    rows.push({ key: 'restart.429', label: `mass restart: requests the upstream answered 429 (its limit: ${LIMIT_FACTOR}× steady)`, goal: '—', value: dr.byStatus['429'] ?? 0, unit: 'n', met: null });
    say(`restart: peak ${peak.toFixed(1)}/s, ${failed} failed`);
  }

  // ---- outage: the user service down, then back ----
  if (SCENARIOS.includes('outage')) {
    const before0 = await Promise.all(hosts.map(daemonStats));
    // when each host last got each user from the upstream: such an entry must be served (fresh
    // or stale) until at least that time + stale_grace, whatever its jittered TTL
    const fetched = (await service.stats(true))?.answers ?? {};
    const o0 = Date.now();
    say(`outage: user service down for ${(OUTAGE_MS / 1000).toFixed(1)} s`);
    await service.stop();
    await sleep(OUTAGE_MS);
    const before1 = await Promise.all(hosts.map(daemonStats));
    await service.start();
    if (limit) await service.control({ rateLimit: { perSec: limit, burst: limit } });
    const back = service.upSince;
    const o1 = Date.now();
    // first fresh answer on every host: the service's first 200/404 to each client address
    let recovered: number | null = null;
    const deadline = back + 120_000;
    let firstAnswer: Record<string, number | null> = {};
    while (Date.now() < deadline) {
      const s = await service.stats();
      if (s) {
        firstAnswer = Object.fromEntries(hosts.map((h) => [h.name, firstAnswerAt(s, h.ip)]));
        const got = Object.values(firstAnswer);
        if (got.every((x) => x !== null)) { recovered = Math.max(...(got as number[])) - back; break; }
      }
      await sleep(100);
    }
    const during = load.ops.filter((o) => o.t >= o0 && o.t < o1);
    const lostOps = during.filter((o) => (o.outcome === 'UNAVAIL' || o.outcome === 'NOTFOUND')
      && (fetched[hosts[o.host]!.ip]?.[userName(o.user)] ?? -Infinity) > o.t - SCALED.grace * 1000);
    const lost = lostOps.length;
    const stale = hosts.reduce((n, h) => n + ((before1[h.index]?.stale ?? 0) - (before0[h.index]?.stale ?? 0)), 0);
    const unavail = count(during, (o) => o.outcome === 'UNAVAIL');
    const notfound = count(during, (o) => o.outcome === 'NOTFOUND');
    detail.outage = { outage_s: round((o1 - o0) / 1000, 1), ops: during.length, ok: count(during, (o) => o.outcome === 'OK'), stale, unavail, notfound,
      timeout: count(during, (o) => o.outcome === 'TIMEOUT'), lost,
      lost_examples: lostOps.slice(0, 10).map((o) => ({ host: hosts[o.host]!.name, user: userName(o.user), kind: o.kind, outcome: o.outcome, at_ms: o.t - o0, fetched_ms: fetched[hosts[o.host]!.ip]![userName(o.user)]! - o0 })), recovery_s: recovered === null ? null : round(recovered / 1000, 2), first_answer_ms: firstAnswer };
    rows.push({ key: 'outage.stale', label: `outage (${(OUTAGE_MS / 1000).toFixed(0)} s = 10 min/${SCALE}): lookups answered stale`, goal: '—', value: stale, unit: 'n', met: null });
    rows.push({ key: 'outage.unavail', label: 'outage: lookups and logins answered unavailable (of all during the outage)', goal: '—', value: unavail, unit: 'n', met: null });
    rows.push({ key: 'outage.lost', label: 'outage: unavailable or not found for a user that host fetched within stale_grace before', goal: '0', value: lost, unit: 'n', met: lost === 0 });
    rows.push({ key: 'outage.notfound', label: 'outage: "not found" for a user that exists', goal: '0', value: notfound, unit: 'n', met: notfound === 0 });
    rows.push({ key: 'outage.recovery', label: 'time to recover: first fresh answer on every host after the upstream is back (wall clock)', goal: `≤ ${RECOVERY_GOAL_S} s`,
      value: recovered === null ? null : round(recovered / 1000, 2), unit: 's', met: recovered !== null && recovered / 1000 <= RECOVERY_GOAL_S });
    say(`outage: ${stale} stale, ${unavail} unavailable, ${lost} lost, recovered in ${recovered} ms`);
    await sleep(Math.min(TTL_MS, 5000));
  }

  // ---- popular: the most popular user flushed everywhere, then looked up everywhere at once ----
  if (SCENARIOS.includes('popular')) {
    const name = userName(0);
    // The steady load pauses, so that what the service counts for the user is the burst's own:
    // no natural expiry or refresh of it falls into the window.
    load.stop();
    await load.drain();
    const p0 = await service.stats();
    say(`popular: ${name} flushed on every host, then 8 lookups and logins of it on each at once (by name: a uid lookup cannot know whose uid it is before it asks)`);
    await Promise.all(hosts.map((h) => h.priv.admin({ cmd: 'flush', user: name })));
    const outcomes = (await Promise.all(hosts.flatMap((h) => Array.from({ length: 8 }, (_, i) => load.one(h, 0, i % 2 ? 'login' : 'name'))))).flat();
    const p1 = (await service.stats())!;
    load.start();
    const dp = statsDiff(p0, p1);
    const asked = (dp.byUser[name] ?? 0) / HOSTS;
    const failed = outcomes.filter((o) => o !== 'OK').length;
    detail.popular = { user: name, upstream_requests: dp.byUser[name] ?? 0, per_host: round(asked), failed, by_status: dp.byStatus };
    rows.push({ key: 'popular.per_host', label: 'popular user flushed and asked for everywhere at once: upstream requests for it per host', goal: '≤ 1.05', value: round(asked), unit: '', met: asked <= 1.05 });
    rows.push({ key: 'popular.failed', label: 'popular user: its lookups that failed', goal: '0', value: failed, unit: 'n', met: failed === 0 });
  }

  load.stop();
  detail.total_ops = load.ops.length;
  detail.skipped_ops = load.skipped;
  detail.elapsed_s = round((Date.now() - t0) / 1000, 1);
  return { rows, detail };
}

function firstAnswerAt(s: UserServiceStats, ip: string): number | null {
  return s.byHost[ip]?.firstAnswerAt ?? null;
}

function describe(dir: string): string {
  const r = spawnSync('git', ['-C', dir, 'describe', '--always', '--dirty'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : dir;
}

async function main(): Promise<void> {
  const started = Date.now();
  let failed = false;
  const stop = (): void => { void cleanUp().then(() => process.exit(130)); };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const { password } = await setUp();
    const { rows, detail } = await run(password);
    const cpu = cpus();
    const label = argv.label ?? describe(BUILD);
    const meta = {
      date: new Date().toISOString().slice(0, 19) + 'Z', build: BUILD, label,
      machine: `${cpu.length} cores (${cpu[0]?.model.trim() ?? '?'}), Linux ${release()}, Node ${process.version}`,
      hosts: HOSTS, scale: SCALE, scenarios: SCENARIOS, rate_per_host: RATE, users: USERS, zipf_s: 1.1, cache: SCALED, outage_s: OUTAGE_MS / 1000,
    };
    let before: { rows: Row[]; label: string } | null = null;
    if (argv.before) {
      const b = JSON.parse(readFileSync(argv.before, 'utf8')) as { meta: { label: string }; rows: Row[] };
      before = { rows: b.rows, label: b.meta.label };
    }
    const md = `${HOSTS} hosts, time scale 1/${SCALE} (ttl ${SCALED.ttl} s, refresh_ahead ${SCALED.refreshAhead} s, stale_grace ${SCALED.grace} s, outage ${OUTAGE_MS / 1000} s), `
      + `${RATE} operations/s per host over ${USERS} Zipf users; ${meta.machine}\n\n${table(rows, before?.rows ?? null, before?.label ?? '', label)}`;
    mkdirSync(OUT, { recursive: true });
    const stamp = meta.date.replace(/:/g, '-');
    const json = join(OUT, `fleet-${stamp}.json`);
    writeFileSync(json, JSON.stringify({ meta, rows, detail }, null, 2) + '\n');
    writeFileSync(join(OUT, `fleet-${stamp}.md`), md);
    writeFileSync(join(OUT, 'latest.json'), JSON.stringify({ meta, rows, detail }, null, 2) + '\n');
    process.stdout.write(`\n${md}\nwritten: ${json} (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  } catch (e) {
    failed = true;
    process.stderr.write(`fleet: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    for (const h of hosts) if (h.daemon?.exitCode !== null && h.daemon) process.stderr.write(`--- ${h.name} log:\n${h.logTail()}\n`);
  } finally {
    await cleanUp();
  }
  process.exit(failed ? 1 : 0);
}

let cleaned = false;
async function cleanUp(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  load?.stop();
  if (sampler) clearInterval(sampler);
  await Promise.all(hosts.map((h) => h.destroy().catch(() => undefined)));
  await service?.stop().catch(() => undefined);
  await killStarted();
  if (WORK) releaseWorkDir(WORK, argv.keep === true, say, 'fleet');
}

void main();
