// The account-expiry rule on its own, apart from account.ts (which asks the resolver) so the
// resolver can apply it to what an upstream answer says without an import cycle.
import type { CachedUser } from '../types.js';

/** Expired at or after `accountExpiresAt`; 0 means disabled. */
export function accountExpiry(u: Pick<CachedUser, 'accountExpiresAt'>, now: number): { expired: false } | { expired: true; disabled: boolean; at: number } {
  const exp = u.accountExpiresAt;
  if (exp === null || exp === undefined || now < exp) return { expired: false };
  return { expired: true, disabled: exp === 0, at: exp };
}
