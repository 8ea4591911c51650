import type { UpstreamUser } from '../types.js';
import type { TokenStatus } from './token.js';
import type { HealthSnapshot, ProbeResult } from './health.js';

/**
 * Result of asking the upstream service for one user. Failures throw UpstreamError instead.
 * `validated`: the record went through upstream/validate.ts against what was asked (the REST
 * client always does this); the directory runs the same check on a record without it.
 */
export type FetchResult = { kind: 'found'; user: UpstreamUser; validated?: true } | { kind: 'notfound' };

/** Where users come from. The REST client implements it; unit tests may pass a fake. */
export interface UserSource {
  fetchByName(name: string): Promise<FetchResult>;
  /** upstream uid, i.e. local uid minus the uid shift */
  fetchByUid(upstreamUid: number): Promise<FetchResult>;
  /** last upstream error (message, epoch ms) for `latchkeyctl status`, or null */
  lastError(): { message: string; at: number } | null;
  /** token mode's state for `latchkeyctl status` (never a token); absent or null in the other modes */
  tokenStatus?(): TokenStatus | null;
  /** GETs [upstream] health_url for `latchkeyctl status`; null when none is configured (absent: a fake source) */
  probeHealth?(): Promise<ProbeResult | null>;
  /** the outcomes of past requests: state, since when, the last lookup (absent: a fake source) */
  healthSnapshot?(): HealthSnapshot;
  close(): Promise<void>;
}
