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

/**
 * `jitter`: the fraction ([cache] jitter, 0..0.5) by which each entry's TTL and refresh-ahead
 * window are spread, so that entries fetched together (a fleet restarted at once, a popular user
 * asked everywhere) do not expire and refresh together; absent = 0. `ttlSec`: the configured
 * TTL; when given, the jittered refresh-ahead window never reaches back to the fetch of the
 * shortest jittered entry (which would refresh on every hit).
 */
export interface FreshnessConfig { refreshAheadSec: number; staleGraceSec: number; jitter?: number; ttlSec?: number }

/**
 * A wall clock that went back makes every entry look fresh for as long as it jumped. An entry
 * fetched more than this far in the future of `now` is therefore not trusted as fresh: it is
 * refetched, and served only as stale when the upstream fails (forward jumps just expire entries
 * early, which fails closed by itself). A minute leaves room for NTP slewing and small steps.
 */
export const CLOCK_BACK_TOLERANCE_MS = 60_000;

/** The largest jitter a config may ask for: more would let two fetches' TTLs differ threefold. */
export const MAX_JITTER = 0.5;

/** A stored entry's lifetime in ms: `sec × (1 + U(−j, +j))`, `random` uniform in [0, 1). */
export function jitteredMs(sec: number, jitter: number | undefined, random: () => number = Math.random): number {
  const j = clampJitter(jitter);
  if (j === 0) return sec * 1000;
  return Math.round(sec * 1000 * (1 + j * (2 * random() - 1)));
}

/**
 * h ∈ [−1, 1], a fixed function of an entry's expiry (a 32-bit integer mix of its millisecond
 * value). The refresh-ahead window is spread by it rather than by a stored random number, so the
 * shared-memory map's publisher and the resolver agree on every entry without new state, and
 * entries expiring at different instants get unrelated windows.
 */
export function jitterUnit(expiresAt: number): number {
  const v = Math.trunc(expiresAt);
  let h = (v >>> 0) ^ Math.imul(Math.floor(v / 0x1_0000_0000) | 0, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h = (h ^ (h >>> 16)) >>> 0;
  return (h / 0xffff_ffff) * 2 - 1;
}

function clampJitter(j: number | undefined): number {
  return j === undefined || !(j > 0) ? 0 : Math.min(j, MAX_JITTER);
}

/**
 * Expiry is exclusive (at `expiresAt` the entry is already expired) and so is the end of the
 * grace period, so a zero refresh-ahead window never triggers and a zero grace never serves stale.
 */
/**
 * From when a lookup of an entry refreshes it in the background: the end of plain 'fresh'. The
 * window is `refresh_ahead × (1 + j·h)`, h from jitterUnit(expiresAt); fastpath/publisher.ts
 * publishes each user until exactly this instant.
 */
export function refreshAheadFrom(expiresAt: number, cfg: Pick<FreshnessConfig, 'refreshAheadSec' | 'jitter' | 'ttlSec'>): number {
  const j = clampJitter(cfg.jitter);
  let window = cfg.refreshAheadSec * 1000 * (1 + j * jitterUnit(expiresAt));
  if (j > 0 && cfg.ttlSec !== undefined) {
    // The shortest entry lives ttl × (1 − j); the load check keeps refresh_ahead < ttl, so
    // without jitter this never binds.
    window = Math.min(window, Math.max(0, cfg.ttlSec * 1000 * (1 - j) - 1000));
  }
  return expiresAt - Math.round(window);
}

/**
 * `fetchedAt`, when given, applies the backwards-clock rule (CLOCK_BACK_TOLERANCE_MS): an entry
 * fetched "in the future" is at best stale-servable, and never past its own expiry plus grace.
 */
export function classify(expiresAt: number, now: number, cfg: FreshnessConfig, fetchedAt?: number): Freshness {
  if (now < expiresAt) {
    if (fetchedAt !== undefined && fetchedAt - now > CLOCK_BACK_TOLERANCE_MS) return 'stale-servable';
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

/**
 * A negative entry ("no such user") is honoured until it expires, never past it; nor when it was
 * fetched "in the future" (the clock went back, CLOCK_BACK_TOLERANCE_MS): otherwise a user
 * created upstream meanwhile is "not found" for as long as the clock jumped.
 */
export function negativeHolds(expiresAt: number | null, now: number, fetchedAt?: number): boolean {
  if (fetchedAt !== undefined && fetchedAt - now > CLOCK_BACK_TOLERANCE_MS) return false;
  return expiresAt !== null && now < expiresAt;
}

/**
 * After a restart, the entries that expired while the daemon was down are all due at once: on a
 * fleet restarted together every host would refetch its whole hot set in the first seconds (the
 * upstream's peak after a mass restart, `make fleet`). For a window after the start (twice
 * `ttl × jitter`, or the time the daemon was down, `downMs`, up to four times), such an entry (expired
 * within that long before the start, after its natural lifetime: an invalidated one expired
 * early and is refetched as asked) stays servable until an instant spread over the window by a
 * hash of its expiry, so the refreshes come at about the pace they would have come without the
 * restart. Never past its stale grace; `jitter = 0%` turns it off. Returns the expiry to
 * classify with.
 */
export function restartSpreadExpiry(
  e: { expiresAt: number; fetchedAt: number },
  startedAt: number,
  cfg: Pick<FreshnessConfig, 'jitter' | 'ttlSec' | 'staleGraceSec'>,
  downMs = 0,
): number {
  const j = clampJitter(cfg.jitter);
  if (j === 0 || cfg.ttlSec === undefined) return e.expiresAt;
  const base = cfg.ttlSec * 1000 * j;
  // Twice the downtime's worth at least: the put-off refreshes then add at most half the steady
  // rate on top of it (one window measured 2.3x steady at ttl x jitter, make fleet).
  const windowMs = Math.max(2 * base, Math.min(downMs, 4 * base));
  if (e.expiresAt >= startedAt || e.expiresAt < startedAt - windowMs) return e.expiresAt;
  // its natural lifetime: ttl × (1 − j) at the least (less: invalidated, or an older, longer ttl)
  if (e.expiresAt - e.fetchedAt < cfg.ttlSec * 1000 * (1 - j) - 1) return e.expiresAt;
  const spread = startedAt + Math.round(windowMs * (jitterUnit(e.expiresAt) + 1) / 2);
  return Math.min(spread, e.expiresAt + cfg.staleGraceSec * 1000);
}

