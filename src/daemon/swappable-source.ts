// Lets SIGHUP replace the upstream client (new URL, credentials, TLS) without rebuilding the
// resolver or dropping its single-flight state.
import type { FetchResult, UserSource } from '../upstream/types.js';

export class SwappableSource implements UserSource {
  constructor(private current: UserSource) {}
  swap(next: UserSource): UserSource { const old = this.current; this.current = next; return old; }
  fetchByName(name: string): Promise<FetchResult> { return this.current.fetchByName(name); }
  fetchByUid(uid: number): Promise<FetchResult> { return this.current.fetchByUid(uid); }
  lastError(): { message: string; at: number } | null { return this.current.lastError(); }
  close(): Promise<void> { return this.current.close(); }
}
