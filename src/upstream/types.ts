import type { UpstreamUser } from '../types.js';

/** Result of asking the upstream service for one user. Failures throw UpstreamError instead. */
export type FetchResult = { kind: 'found'; user: UpstreamUser } | { kind: 'notfound' };

/** Where users come from. The REST client implements it; unit tests may pass a fake. */
export interface UserSource {
  fetchByName(name: string): Promise<FetchResult>;
  /** upstream uid, i.e. local uid minus the uid shift */
  fetchByUid(upstreamUid: number): Promise<FetchResult>;
  /** last upstream error (message, epoch ms) for `latchkeyctl status`, or null */
  lastError(): { message: string; at: number } | null;
  close(): Promise<void>;
}
