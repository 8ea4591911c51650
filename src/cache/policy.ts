// Pure freshness decisions: the only place that says whether a cache entry may be served.
// Times are epoch milliseconds, config values seconds (as in CacheConfig).

export type Freshness =
  /** serve from cache */
  | 'fresh'
  /** serve from cache and refresh in the background: it is in use and about to expire */
  | 'refresh-ahead'
  /** expired: refetch; serve it only if the upstream fails */
  | 'stale-servable'
  /** expired past the grace period: refetch; if the upstream fails the answer is "unavailable" */
  | 'dead';

export interface FreshnessConfig { refreshAheadSec: number; staleGraceSec: number }

/**
 * Expiry is exclusive (at `expiresAt` the entry is already expired) and so is the end of the
 * grace period, so a zero refresh-ahead window never triggers and a zero grace never serves stale.
 */
/** From when a lookup of an entry refreshes it in the background: the end of plain 'fresh'. */
export function refreshAheadFrom(expiresAt: number, cfg: Pick<FreshnessConfig, 'refreshAheadSec'>): number {
  return expiresAt - cfg.refreshAheadSec * 1000;
}

export function classify(expiresAt: number, now: number, cfg: FreshnessConfig): Freshness {
  if (now < expiresAt) {
    return now >= refreshAheadFrom(expiresAt, cfg) ? 'refresh-ahead' : 'fresh';
  }
  return now < expiresAt + cfg.staleGraceSec * 1000 ? 'stale-servable' : 'dead';
}

/** Whether an entry may answer without asking upstream. */
export function servableWithoutFetch(f: Freshness): boolean {
  return f === 'fresh' || f === 'refresh-ahead';
}

/** Whether an entry may answer when the upstream has just failed. */
export function servableOnUpstreamError(f: Freshness): boolean {
  return f !== 'dead';
}

/** A negative entry ("no such user") is honoured until it expires, never past it. */
export function negativeHolds(expiresAt: number | null, now: number): boolean {
  return expiresAt !== null && now < expiresAt;
}
