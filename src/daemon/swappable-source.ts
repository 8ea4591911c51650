// Lets SIGHUP replace the upstream client (new URL, credentials, TLS) without rebuilding the
// resolver or dropping its single-flight state.
import type { TokenStatus } from '../upstream/token.js';
import type { HealthSnapshot, ProbeResult } from '../upstream/health.js';
import type { FetchResult, UserSource } from '../upstream/types.js';

export class SwappableSource implements UserSource {
  /** replaced clients whose requests may still be in flight, with their close timers */
  private readonly retiring = new Map<UserSource, NodeJS.Timeout>();
  constructor(private current: UserSource) {}
  /**
   * Makes `next` the client for new requests. The old client is closed only after `graceMs` (its
   * request deadline: no request of its can still be running then): closing it at once would
   * abort its in-flight requests, failing every lookup (and login) running during a SIGHUP, and
   * the abort (an UpstreamError 'connect') would make the resolver stop asking upstream for
   * UNREACHABLE_HOLDOFF_MS.
   */
  swap(next: UserSource, graceMs = 0): UserSource {
    const old = this.current;
    this.current = next;
    const timer = setTimeout(() => {
      this.retiring.delete(old);
      old.close().catch(() => { /* closing anyway */ });
    }, graceMs);
    timer.unref();
    this.retiring.set(old, timer);
    return old;
  }
  fetchByName(name: string): Promise<FetchResult> { return this.current.fetchByName(name); }
  fetchByUid(uid: number): Promise<FetchResult> { return this.current.fetchByUid(uid); }
  lastError(): { message: string; at: number } | null { return this.current.lastError(); }
  tokenStatus(): TokenStatus | null { return this.current.tokenStatus?.() ?? null; }
  probeHealth(): Promise<ProbeResult | null> { return this.current.probeHealth?.() ?? Promise.resolve(null); }
  healthSnapshot(): HealthSnapshot {
    return this.current.healthSnapshot?.() ?? { state: 'unknown', since: null, detail: null, last_lookup: null };
  }
  async close(): Promise<void> {
    const old = [...this.retiring.keys()];
    for (const t of this.retiring.values()) clearTimeout(t);
    this.retiring.clear();
    await Promise.all([this.current, ...old].map((s) => s.close()));
  }
}
