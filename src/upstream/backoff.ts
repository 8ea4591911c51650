// When the directory may send the upstream a request: pure bookkeeping, no I/O, clock and
// randomness injected (the resolver owns one; unit tests drive it).
//
//   closed     requests go out; consecutive failures (timeouts, refused connections, 5xx, a 429
//              without Retry-After) are counted, a reply of any other kind resets the count
//   held       DOWN_AFTER_FAILURES in a row, or a 429/503 with Retry-After: nothing goes out
//              until `until`; lookups answer from the cache (fresh, stale within grace) or
//              "unavailable", never "not found"
//   half-open  the hold-off is over: exactly one request (the probe: a lookup or a background
//              refresh) goes out, every other caller keeps answering from the cache until it
//              returns; success closes, a failure holds off again, twice as long
//
// Hold-off k (0-based) lasts base × 2^k capped at [upstream] backoff_max, spread by ±20 %: a
// fleet whose upstream failed at one instant must not come back at one instant. A Retry-After is
// the service's own word: honoured (clamped by the client), never shortened, not doubled, but
// lengthened by up to RETRY_AFTER_SPREAD: the hosts a service told "wait 2 s" at one instant
// would otherwise all come back at one instant, into its limit again (make fleet).

/** the first hold-off, before jitter */
export const BACKOFF_BASE_MS = 1_000;
/** ± this fraction of each hold-off */
export const BACKOFF_JITTER = 0.2;
/** a Retry-After hold-off lasts up to this fraction longer than asked, never shorter */
export const RETRY_AFTER_SPREAD = 0.2;

export type HoldoffReason =
  | { kind: 'failures'; detail: string }
  | { kind: 'retry_after'; status: number; detail: string };

export interface HoldoffView {
  /** epoch ms the hold-off ends (the probe may go out from then on), by the wall clock of now */
  until: number;
  reason: string;
  /** consecutive failures counted so far */
  failures: number;
  /** true once `until` passed and one probe request is allowed or out */
  half_open: boolean;
}

/** What happened to one request, as far as pacing cares. */
export type Outcome =
  | { kind: 'success' }
  /** timeout, refused connection, 5xx, 429 without Retry-After */
  | { kind: 'failure'; detail: string }
  /** 429 or 503 with a Retry-After of `ms` (already clamped) */
  | { kind: 'retry_after'; status: number; ms: number; detail: string }
  /** anything else (a 401, an unusable body): the service answers, which ends a hold-off */
  | { kind: 'answered' };

export interface BackoffOptions {
  /**
   * A monotonic clock (performance.now): hold-offs are durations, and a wall clock stepped back
   * an hour must not hold the upstream off for an hour (nor one stepped forward end it early).
   */
  now: () => number;
  /** the wall clock, only to show `until` as a date */
  wall: () => number;
  random: () => number;
  /** failures in a row before the first hold-off */
  downAfter: number;
  /** cap of one exponential hold-off ([upstream] backoff_max) */
  maxMs: () => number;
  /** a probe not settled within this long is forgotten and another may go (request timeout + slack) */
  probeLimitMs: () => number;
}

export type Gate =
  /** send it */
  | 'open'
  /** send it: it is the one half-open probe; its outcome must be reported */
  | 'probe'
  /** do not send anything */
  | 'held';

export class UpstreamBackoff {
  private failures = 0;
  /** hold-offs in a row: the exponent of the next one */
  private level = 0;
  private until = 0;
  private reason: HoldoffReason | null = null;
  private probeSince: number | null = null;

  constructor(private readonly o: BackoffOptions) {}

  /** Whether a request may go out now; 'probe' reserves the half-open slot for the caller. */
  gate(): Gate {
    if (this.reason === null) return 'open';
    const now = this.o.now();
    if (now < this.until) return 'held';
    if (this.probeSince !== null && now - this.probeSince < this.o.probeLimitMs()) return 'held';
    this.probeSince = now;
    return 'probe';
  }

  /** Like gate() but reserves nothing: whether a request could go out now (background work asks this). */
  wouldSend(): boolean {
    if (this.reason === null) return true;
    const now = this.o.now();
    return now >= this.until && (this.probeSince === null || now - this.probeSince >= this.o.probeLimitMs());
  }

  /**
   * Reports one request's outcome. Returns the new hold-off when this report started one (the
   * caller logs it: once per hold-off), else null.
   */
  report(r: Outcome): HoldoffView | null {
    const now = this.o.now();
    const wasHeld = this.reason !== null;
    switch (r.kind) {
      case 'success':
      case 'answered':
        this.failures = 0;
        this.level = 0;
        this.until = 0;
        this.reason = null;
        this.probeSince = null;
        return null;
      case 'retry_after': {
        this.probeSince = null;
        const until = now + r.ms + Math.round(r.ms * RETRY_AFTER_SPREAD * this.o.random());
        // A request that went out before the hold-off began and returns during it must not
        // shorten it.
        const fresh = !wasHeld || now >= this.until;
        this.until = Math.max(this.until, until);
        this.reason = { kind: 'retry_after', status: r.status, detail: r.detail };
        return fresh ? this.view()! : null;
      }
      case 'failure': {
        this.failures++;
        if (wasHeld && now < this.until) {
          // Sent before the hold-off began (or an explicit refresh during it): the hold-off in
          // force already covers it.
          return null;
        }
        if (!wasHeld && this.failures < this.o.downAfter) return null;
        const exp = BACKOFF_BASE_MS * 2 ** Math.min(this.level, 30);
        const capped = Math.min(exp, Math.max(BACKOFF_BASE_MS, this.o.maxMs()));
        const spread = capped * (1 + BACKOFF_JITTER * (2 * this.o.random() - 1));
        this.level++;
        this.until = now + Math.round(spread);
        this.reason = { kind: 'failures', detail: r.detail };
        this.probeSince = null;
        return this.view()!;
      }
    }
  }

  /** Whether the service itself asked to wait (Retry-After) and the time has not come. */
  retryAfterHeld(): boolean {
    return this.reason?.kind === 'retry_after' && this.o.now() < this.until;
  }

  /** A probe that never reached the upstream (refused a slot, the daemon stopping): another may go. */
  probeAbandoned(): void {
    this.probeSince = null;
  }

  /** The hold-off in force or its half-open end, null when requests flow freely. */
  view(): HoldoffView | null {
    if (this.reason === null) return null;
    const r = this.reason;
    const reason = r.kind === 'retry_after'
      ? `the user service asked to wait (HTTP ${r.status} Retry-After): ${r.detail}`
      : `${this.failures} failed requests in a row: ${r.detail}`;
    const now = this.o.now();
    return { until: Math.round(this.o.wall() + (this.until - now)), reason, failures: this.failures, half_open: now >= this.until };
  }

  /** The detail an "unavailable" answer carries while held: what an admin reads in the NSS/PAM log. */
  heldDetail(): string {
    const r = this.reason;
    const s = Math.max(1, Math.ceil((this.until - this.o.now()) / 1000));
    if (r === null) return 'the user service is not being asked right now';
    if (r.kind === 'retry_after') return `the user service asked to wait ${s} s (HTTP ${r.status})`;
    return this.o.now() < this.until
      ? `user service unreachable (${this.failures} failures in a row; next try in ${s} s): ${r.detail}`
      : `user service unreachable (${this.failures} failures in a row; one probe request is out): ${r.detail}`;
  }
}
