// Counters and a fixed-bucket latency histogram for `latchkeyctl stats`: constant memory,
// O(1) per sample, no allocation on the hot path. The snapshot shape is documented in
// src/protocol/admin.ts (stats) and src/cli/help.ts, and drawn by src/cli/cmd-status.ts.

const BUCKETS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, Infinity];

export interface HistogramSnapshot {
  count: number;
  sum_ms: number;
  mean_ms: number | null;
  p50_ms: number | null;
  p99_ms: number | null;
  max_ms: number;
  /** `le_1ms` … `le_5000ms`, `+inf`: samples per bucket (not cumulative) */
  buckets: Record<string, number>;
}

export class Histogram {
  private readonly counts = new Array<number>(BUCKETS_MS.length).fill(0);
  private n = 0;
  private sum = 0;
  private max = 0;

  record(ms: number): void {
    if (!(ms >= 0)) ms = 0; // NaN or a clock step backwards: count it, in the first bucket
    let i = 0;
    while (ms > BUCKETS_MS[i]!) i++;
    this.counts[i]!++;
    this.n++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  /** Upper bound of the bucket holding quantile q (0..1); the max for the open-ended bucket. */
  quantile(q: number): number | null {
    if (this.n === 0) return null;
    const target = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= target) return BUCKETS_MS[i] === Infinity ? this.max : BUCKETS_MS[i]!;
    }
    return this.max;
  }

  snapshot(): HistogramSnapshot {
    return {
      count: this.n,
      sum_ms: round(this.sum),
      mean_ms: this.n ? round(this.sum / this.n) : null,
      p50_ms: this.quantile(0.5),
      p99_ms: this.quantile(0.99),
      max_ms: round(this.max),
      buckets: Object.fromEntries(BUCKETS_MS.map((b, i) => [b === Infinity ? '+inf' : `le_${b}ms`, this.counts[i]!])),
    };
  }
}

function round(ms: number): number { return Math.round(ms * 1000) / 1000; }

/**
 * Every lookup counts exactly one result:
 * hit (fresh cache entry), negative (fresh "no such user" entry), rule (refused by the name/uid
 * rules, never asked), miss (answered by upstream, found or not), stale (upstream failed, stale
 * entry served), unavail (upstream failed, nothing servable), local (a persistent local user,
 * src/localusers/), local_notfound (a uid in the local users' range that none of them has).
 */
export type LookupResult = 'hit' | 'negative' | 'rule' | 'miss' | 'stale' | 'unavail' | 'local' | 'local_notfound';

export interface ResolverStatsSnapshot {
  /** one result per lookup, plus `notfound`: the misses upstream answered "no such user" */
  lookups: Record<LookupResult | 'notfound', number>;
  /** (hit + negative) / every lookup not refused by rule; null before the first */
  hit_ratio: number | null;
  /** upstream requests by outcome; background_refresh counts the refresh-ahead ones among them;
   *  busy: lookups refused a slot (per-uid rate, queue, deadline), late: answered "unavailable"
   *  at the answer deadline while the request went on — neither counts against the upstream;
   *  held_off: lookups and refreshes answered without asking while the upstream was held off
   *  (failures in a row, or its Retry-After; upstream/backoff.ts); rate_limited: 429 and 503 replies */
  upstream: { found: number; notfound: number; error: number; background_refresh: number; busy: number; late: number; held_off: number; rate_limited: number };
  upstream_latency: HistogramSnapshot;
}

export class ResolverStats {
  readonly lookups: Record<LookupResult | 'notfound', number> = { hit: 0, negative: 0, rule: 0, miss: 0, stale: 0, unavail: 0, local: 0, local_notfound: 0, notfound: 0 };
  readonly upstream = { found: 0, notfound: 0, error: 0, background_refresh: 0, busy: 0, late: 0, held_off: 0, rate_limited: 0 };
  readonly upstreamLatency = new Histogram();

  hitRatio(): number | null {
    const l = this.lookups;
    const served = l.hit + l.negative;
    const total = served + l.miss + l.stale + l.unavail;
    return total ? Math.round((served / total) * 10_000) / 10_000 : null;
  }

  snapshot(): ResolverStatsSnapshot {
    return {
      lookups: { ...this.lookups },
      hit_ratio: this.hitRatio(),
      upstream: { ...this.upstream },
      upstream_latency: this.upstreamLatency.snapshot(),
    };
  }
}
