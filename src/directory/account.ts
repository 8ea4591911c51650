// Whether an account may log in now: the one decision behind PAM's account phase (ACCT_MGMT)
// and anything else that asks "is this account still usable". Upstream may mark an account
// expired (`expiresAt`) or disabled (`enabled: false`, stored as expiry 0; upstream/validate.ts);
// a user the directory had cached and upstream no longer knows was removed upstream. A persistent
// local user (src/localusers/) is disabled or expired by `latchkeyctl local` the same way.
import type { CachedUser } from '../types.js';
import type { Resolver } from './resolver.js';
import { accountExpiry } from './expiry.js';

export { accountExpiry } from './expiry.js';

export type AccountState =
  | { state: 'active'; user: CachedUser }
  /** expired or disabled upstream; `detail` is what PAM logs */
  | { state: 'expired'; detail: string; expiredAt: number }
  /** the directory served this name before and upstream now says it does not exist */
  | { state: 'removed'; detail: string }
  | { state: 'unknown' }
  | { state: 'unavailable'; reason: string };

/**
 * Looks the account up (an expired cache entry is refetched, so a removal or an expiry set
 * upstream takes effect) and decides. `peerUid` as for Resolver.byName.
 */
export async function accountState(resolver: Resolver, name: string, now: () => number = Date.now, peerUid = 0): Promise<AccountState> {
  const knownBefore = resolver.isCached(name);
  const l = await resolver.byName(name, peerUid);
  if (l.status === 'unavail') return { state: 'unavailable', reason: l.reason };
  if (l.status === 'notfound') {
    return knownBefore ? { state: 'removed', detail: 'account no longer exists upstream' } : { state: 'unknown' };
  }
  const e = accountExpiry(l.user, now());
  if (!e.expired) return { state: 'active', user: l.user };
  if (l.user.local) {
    return { state: 'expired', detail: e.disabled ? 'local account disabled (latchkeyctl local enable NAME)' : 'local account expired (latchkeyctl local show NAME)', expiredAt: e.at };
  }
  return { state: 'expired', detail: e.disabled ? 'account disabled upstream' : 'account expired', expiredAt: e.at };
}
