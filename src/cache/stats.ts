// Counters and a fixed-bucket latency histogram for `latchkeyctl stats`: constant memory,
// O(1) per sample, no allocation on the hot path.

const BUCKETS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, Infinity];

export class Histogram {
  private readonly counts = new Array<number>(BUCKETS_MS.length).fill(0);
  private n = 0;
  private sum = 0;
  private max = 0;

  record(ms: number): void {
    let i = 0;
    while (ms > BUCKETS_MS[i]!) i++;
    this.counts[i]!++;
    this.n++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  /** Upper bound of the bucket holding quantile q (0..1). */
  quantile(q: number): number | null {
    if (this.n === 0) return null;
    const target = Math.ceil(q * this.n);
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= target) return BUCKETS_MS[i] === Infinity ? this.max : BUCKETS_MS[i]!;
    }
    return this.max;
  }

  snapshot(): { count: number; mean_ms: number | null; p50_ms: number | null; p99_ms: number | null; max_ms: number; buckets: Record<string, number> } {
    const buckets: Record<string, number> = {};
    BUCKETS_MS.forEach((b, i) => { buckets[b === Infinity ? '+inf' : `le_${b}ms`] = this.counts[i]!; });
    return {
      count: this.n, mean_ms: this.n ? +(this.sum / this.n).toFixed(3) : null,
      p50_ms: this.quantile(0.5), p99_ms: this.quantile(0.99), max_ms: +this.max.toFixed(3), buckets,
    };
  }
}

export class ResolverStats {
  readonly lookups = { hit: 0, miss: 0, stale: 0, negative: 0, rule: 0, unavail: 0, notfound: 0 };
  readonly upstream = { found: 0, notfound: 0, error: 0, background_refresh: 0 };
  readonly upstreamLatency = new Histogram();

  snapshot(): Record<string, unknown> {
    const served = this.lookups.hit + this.lookups.negative;
    const total = served + this.lookups.miss + this.lookups.stale + this.lookups.unavail;
    return {
      lookups: { ...this.lookups },
      hit_ratio: total ? +(served / total).toFixed(4) : null,
      upstream: { ...this.upstream },
      upstream_latency: this.upstreamLatency.snapshot(),
    };
  }
}
