// Pure freshness decisions: the only place that says whether an entry may be served.

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

export function classify(expiresAt: number, now: number, cfg: FreshnessConfig): Freshness {
  if (now < expiresAt) {
    return now >= expiresAt - cfg.refreshAheadSec * 1000 ? 'refresh-ahead' : 'fresh';
  }
  return now < expiresAt + cfg.staleGraceSec * 1000 ? 'stale-servable' : 'dead';
}

/** A negative entry ("no such user") is honoured until it expires, never past it. */
export function negativeHolds(expiresAt: number | null, now: number): boolean {
  return expiresAt !== null && now < expiresAt;
}
