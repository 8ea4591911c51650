// The daemon's metrics: which numbers are exported and where each comes from. Counters the
// daemon already keeps (lookups, cache entries, throttle, events, token) are read at scrape
// time; what nothing counted before (upstream outcomes with latency, password checks with
// latency, session ends by reason) is told here by hooks main.ts wires. The sources are
// described structurally, so this folder imports no layer above the domain.
import type { LookupResult } from '../cache/stats.js';
import type { HealthSnapshot, RequestVia, UpstreamOutcome } from '../upstream/health.js';
import type { TokenStatus } from '../upstream/token.js';
import { Collected, Counter, Histogram, Registry } from './registry.js';

/** Seconds: a cache hit is microseconds, an upstream round trip milliseconds, a slow one seconds. */
const UPSTREAM_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds: bcrypt and yescrypt at their usual costs take 50..500 ms; the ceiling caps the rest. */
const VERIFY_BOUNDS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Session end reasons the registry gives (src/sessions/registry.ts); anything else is "other". */
const END_REASONS = new Set(['closed', 'gone', 'reopened', 'replaced', 'max_age', 'killed', 'removed', 'disabled', 'expired']);
/** Hash kinds are named by src/verify/hash.ts; a kind is a short word, anything odd is "other". */
const KIND_RE = /^[a-z0-9_-]{1,24}$/;

export interface MetricSources {
  version: string;
  startedAt: number;
  lookups(): Record<LookupResult | 'notfound', number>;
  cacheCounts(): { fresh: number; stale: number; expired: number; negative: number };
  openSessions(): number;
  throttle(): { lockouts: number; refused: number; failures: number };
  authCounts(): { throttled: number; unknownUser: number };
  events(): { sent: number; failed_attempts: number; dropped: number; queued: number } | null;
  token(): TokenStatus | null;
  health(): HealthSnapshot;
}

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly upstreamRequests: Counter;
  private readonly upstreamSeconds: Histogram;
  private readonly checks: Counter;
  private readonly checkSeconds: Histogram;
  private readonly sessionsOpened: Counter;
  private readonly sessionsEnded: Counter;

  constructor(src: MetricSources) {
    const r = this.registry;
    r.add(new Collected('latchkey_info', 'latchkeyd version (always 1)', 'gauge', ['version'], () => [[[src.version], 1]]));
    r.add(new Collected('latchkey_start_time_seconds', 'when latchkeyd started, seconds since the epoch', 'gauge', [], () => [[[], Math.floor(src.startedAt / 1000)]]));
    r.add(new Collected('latchkey_lookups_total', 'user and group lookups by result (hit, negative, rule, miss, stale, unavail, local, local_notfound; notfound: misses upstream answered "no such user")',
      'counter', ['result'], () => Object.entries(src.lookups()).map(([k, v]) => [[k], v])));
    this.upstreamRequests = r.add(new Counter('latchkey_upstream_requests_total',
      'requests to the user service by what asked (lookup, probe, token) and outcome (reachable, unreachable, http_error, auth_failed, invalid_reply)', ['via', 'outcome']));
    this.upstreamSeconds = r.add(new Histogram('latchkey_upstream_request_duration_seconds', 'duration of requests to the user service (lookups and health probes)', UPSTREAM_BOUNDS, ['via']));
    const states = ['reachable', 'unreachable', 'http_error', 'auth_failed', 'invalid_reply', 'unknown'] as const;
    r.add(new Collected('latchkey_upstream_state', 'the user service\'s state from the last request (1 for the current state)', 'gauge', ['state'],
      () => { const s = src.health().state; return states.map((st) => [[st], st === s ? 1 : 0]); }));
    r.add(new Collected('latchkey_upstream_token_logins_total', 'token mode: logins at token_url by the current client (a reload starts a new one)', 'counter', [],
      () => { const t = src.token(); return t ? [[[], t.logins]] : []; }));
    r.add(new Collected('latchkey_upstream_token_refreshes_total', 'token mode: token refreshes by the current client (a reload starts a new one)', 'counter', [],
      () => { const t = src.token(); return t ? [[[], t.refreshes]] : []; }));
    this.checks = r.add(new Counter('latchkey_password_checks_total', 'password verifications by hash kind and result (ok, failed)', ['kind', 'result']));
    this.checkSeconds = r.add(new Histogram('latchkey_password_check_duration_seconds', 'duration of password verifications by hash kind', VERIFY_BOUNDS, ['kind']));
    r.add(new Collected('latchkey_password_checks_refused_total', 'password attempts not checked: throttled, or for a user latchkey does not have', 'counter', ['reason'],
      () => { const a = src.authCounts(); return [[['throttled'], a.throttled], [['unknown_user'], a.unknownUser]]; }));
    r.add(new Collected('latchkey_throttle_lockouts_total', 'users or hosts locked out after too many failed passwords', 'counter', [], () => [[[], src.throttle().lockouts]]));
    r.add(new Collected('latchkey_throttle_failures_total', 'failed passwords counted by the throttle', 'counter', [], () => [[[], src.throttle().failures]]));
    this.sessionsOpened = r.add(new Counter('latchkey_sessions_opened_total', 'sessions opened (PAM session open accepted)'));
    this.sessionsOpened.touch({});
    this.sessionsEnded = r.add(new Counter('latchkey_sessions_ended_total', 'sessions ended by reason (closed, gone, reopened, replaced, max_age, killed, removed, disabled, expired)', ['reason']));
    r.add(new Collected('latchkey_sessions_open', 'sessions open now', 'gauge', [], () => [[[], src.openSessions()]]));
    r.add(new Collected('latchkey_cache_entries', 'cached entries by state (fresh, stale, expired, negative)', 'gauge', ['state'],
      () => Object.entries(src.cacheCounts()).filter(([k]) => k !== 'total').map(([k, v]) => [[k], v])));
    const ev = (pick: (e: NonNullable<ReturnType<MetricSources['events']>>) => number) => (): Array<[string[], number]> => {
      const e = src.events();
      return e ? [[[], pick(e)]] : [];
    };
    r.add(new Collected('latchkey_events_sent_total', 'session events the collector accepted', 'counter', [], ev((e) => e.sent)));
    r.add(new Collected('latchkey_events_dropped_total', 'session events dropped (queue full)', 'counter', [], ev((e) => e.dropped)));
    r.add(new Collected('latchkey_events_failed_attempts_total', 'failed attempts to send session events (retried)', 'counter', [], ev((e) => e.failed_attempts)));
    r.add(new Collected('latchkey_events_queued', 'session events waiting to be sent', 'gauge', [], ev((e) => e.queued)));
  }

  /** Every request to the user service (src/upstream/health.ts's listener). */
  upstream(via: RequestVia, outcome: UpstreamOutcome, ms: number): void {
    this.upstreamRequests.inc({ via, outcome });
    // A token exchange is timed by nobody (its failure is what matters): no latency sample.
    if (via !== 'token') this.upstreamSeconds.observe(ms / 1000, { via });
  }

  /** Every password verification (AuthStats' listener). */
  passwordCheck(kind: string, ok: boolean, ms: number): void {
    const k = KIND_RE.test(kind) ? kind : 'other';
    this.checks.inc({ kind: k, result: ok ? 'ok' : 'failed' });
    this.checkSeconds.observe(ms / 1000, { kind: k });
  }

  /** Every session event (src/events/types.ts): opened, or ended with its reason. */
  session(event: string, reason: string): void {
    if (event === 'open') this.sessionsOpened.inc();
    else this.sessionsEnded.inc({ reason: END_REASONS.has(reason) ? reason : 'other' });
  }

  render(onError?: (name: string, e: unknown) => void): string {
    return this.registry.render(onError);
  }
}
