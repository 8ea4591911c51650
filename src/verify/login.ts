// The one password decision, shared by PAM's AUTH_PASSWORD and `latchkeyctl auth-test`:
// throttle gate, user lookup, verification. A real login counts towards throttling and pays a
// dummy verification when there is nothing to verify (unknown user), so every outcome costs
// the same; a dry run (auth-test) changes no state.
import type { Resolver } from '../cache/resolver.js';
import type { CachedUser } from '../types.js';
import type { Throttle } from './throttle.js';
import { hashKind, type HashKind } from './hash.js';
import { dummyVerify, verifyPassword } from './password.js';

export type LoginResult = 'ok' | 'wrong_password' | 'no_password' | 'unknown_user' | 'throttled' | 'unavailable';

export interface LoginOutcome {
  result: LoginResult;
  /** why, in words an admin can act on; never contains the password or the hash */
  reason: string;
  kind: HashKind | null;
  user: CachedUser | null;
  /** where the user record came from: cache, upstream, stale, rule */
  source: string | null;
  retryAfterSec: number;
}

export async function checkPassword(
  resolver: Resolver, throttle: Throttle,
  login: { user: string; password: string; rhost: string }, mode: 'login' | 'dry-run',
): Promise<LoginOutcome> {
  const counts = mode === 'login';
  const out = (result: LoginResult, reason: string, extra: Partial<LoginOutcome> = {}): LoginOutcome =>
    ({ result, reason, kind: null, user: null, source: null, retryAfterSec: 0, ...extra });

  const gate = counts ? throttle.check(login.user, login.rhost) : throttle.peek(login.user);
  if (!gate.allowed) {
    return out('throttled', `too many recent failures; logins are refused for ${gate.retryAfterSec}s more`, { retryAfterSec: gate.retryAfterSec });
  }
  const l = await resolver.byName(login.user);
  if (l.status === 'unavail') {
    return out('unavailable', `the user service is unavailable (${l.reason}) and nothing usable is cached`);
  }
  if (l.status === 'notfound') {
    if (counts) {
      await dummyVerify();
      throttle.recordFailure(login.user, login.rhost);
    }
    return out('unknown_user', `the user service does not know ${login.user}`, { source: l.source });
  }
  const kind = hashKind(l.user.passwordHash);
  // verifyPassword pays a dummy verification itself when there is no usable hash.
  const good = await verifyPassword(login.password, l.user.passwordHash);
  const found = { kind, user: l.user, source: l.source };
  if (good) {
    if (counts) throttle.recordSuccess(login.user);
    return out('ok', 'password accepted', found);
  }
  if (counts) throttle.recordFailure(login.user, login.rhost);
  return kind === 'none'
    ? out('no_password', 'the user has no password upstream (key login only)', found)
    : out('wrong_password', 'wrong password', found);
}
