// What the daemon knows of the upstream's health, from every request it made (lookups, the
// token service, the health probe): the state now, since when, and the last lookup's outcome.
// `latchkeyctl status` reads it instead of asking for a fake user, and the metrics count each
// outcome. One object lives for the daemon's lifetime and is handed to every client a reload
// builds, so "since when" survives a reload.
import { UpstreamError } from '../errors.js';

/**
 * reachable: the last request got an answer it understood (found, not found, health 2xx).
 * unreachable: no HTTP answer (connect refused, DNS, timeout, TLS, closed connection).
 * http_error: an answer with a status it does not understand (5xx, 3xx, other 4xx).
 * auth_failed: 401/403 from the user service or the health URL, or token_url refused the login.
 * invalid_reply: a 200 whose body is unusable (not JSON, too large, not the user asked for).
 * unknown: no request yet since the start.
 */
export type UpstreamState = 'reachable' | 'unreachable' | 'http_error' | 'auth_failed' | 'invalid_reply' | 'unknown';
export type UpstreamOutcome = Exclude<UpstreamState, 'unknown'>;
/** lookup: a by-name or by-uid request; probe: health_url; token: a login or refresh at token_url */
export type RequestVia = 'lookup' | 'probe' | 'token';

/** Which state an upstream failure puts the service in. */
export function outcomeOf(e: unknown): UpstreamOutcome {
  if (!(e instanceof UpstreamError)) return 'unreachable';
  switch (e.kind) {
    case 'timeout': case 'connect': return 'unreachable';
    case 'http': return 'http_error';
    case 'auth': return 'auth_failed';
    case 'body': case 'json': case 'invalid': case 'too_large': return 'invalid_reply';
  }
}

export interface HealthSnapshot {
  state: UpstreamState;
  /** epoch ms the state began (the first of the run of outcomes that gave it); null: unknown */
  since: number | null;
  /** the failure's message (never a credential: the client redacts it); null when reachable */
  detail: string | null;
  /** the last lookup (not probe, not token): its outcome, when, how long it took */
  last_lookup: { outcome: UpstreamOutcome; at: number; ms: number; message: string | null } | null;
}

/** What a GET of [upstream] health_url found (src/answers/admin/status.ts shows it). */
export interface ProbeResult { outcome: UpstreamOutcome; ms: number; error: string | null }

export type HealthListener = (via: RequestVia, outcome: UpstreamOutcome, ms: number) => void;

export class UpstreamHealth {
  private state: UpstreamState = 'unknown';
  private since: number | null = null;
  private detail: string | null = null;
  private lastLookup: HealthSnapshot['last_lookup'] = null;
  /** told of every request's outcome (the metrics); must not throw */
  listener: HealthListener | null = null;

  constructor(private readonly now: () => number = Date.now) {}

  record(via: RequestVia, outcome: UpstreamOutcome, ms: number, message: string | null = null): void {
    const at = this.now();
    if (outcome !== this.state) {
      this.state = outcome;
      this.since = at;
    }
    this.detail = outcome === 'reachable' ? null : message;
    if (via === 'lookup') this.lastLookup = { outcome, at, ms: Math.round(ms * 100) / 100, message: outcome === 'reachable' ? null : message };
    this.listener?.(via, outcome, ms);
  }

  snapshot(): HealthSnapshot {
    return { state: this.state, since: this.since, detail: this.detail, last_lookup: this.lastLookup };
  }
}
