// The one password decision, shared by PAM's AUTH_PASSWORD and `latchkeyctl auth-test`:
// throttle reservation, user lookup, verification. A real login takes a failure slot before
// anything is looked up or hashed (verify/throttle.ts: parallel attempts cannot all pass the
// gate), pays a dummy verification when there is nothing to verify (unknown user), so every
// outcome costs the same, and settles the slot in every path; a dry run (auth-test) changes no
// state.
import type { Resolver } from '../directory/resolver.js';
import type { CachedUser } from '../types.js';
import type { Lockout, Refusal, Throttle } from './throttle.js';
import { hashKind, type HashKind } from './hash.js';
import { dummyVerify, verifyPassword, HashBusy } from './password.js';

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
  /** which budget refused a throttled login (null for a dry run, which only peeks) */
  refusal: Refusal | null;
  /** lockouts this failure started (the caller logs each once) */
  lockouts: Lockout[];
}

/** "too many recent failures for alice" / "... from 192.0.2.7 (all users)" */
export function refusalReason(r: Pick<Refusal, 'scope' | 'key' | 'reason' | 'failures' | 'limit' | 'retryAfterSec'>): string {
  const whose = r.scope === 'host' ? `from ${r.key} (all users)` : `for ${r.key}`;
  return r.reason === 'busy'
    ? `the failure budget ${whose} stayed full of attempts still being checked; retry in ${r.retryAfterSec}s`
    : `too many recent failures ${whose} (${r.failures} of ${r.limit}); logins are refused for ${r.retryAfterSec}s more`;
}

export async function checkPassword(
  resolver: Resolver, throttle: Throttle,
  login: { user: string; password: string; rhost: string }, mode: 'login' | 'dry-run',
): Promise<LoginOutcome> {
  const out = (result: LoginResult, reason: string, extra: Partial<LoginOutcome> = {}): LoginOutcome =>
    ({ result, reason, kind: null, user: null, source: null, retryAfterSec: 0, refusal: null, lockouts: [], ...extra });

  if (mode === 'dry-run') {
    const gate = throttle.peek(login.user);
    if (!gate.allowed) {
      return out('throttled', `too many recent failures for ${login.user}; logins are refused for ${gate.retryAfterSec}s more`, { retryAfterSec: gate.retryAfterSec });
    }
    const l = await resolver.byName(login.user);
    if (l.status === 'unavail') return out('unavailable', `the user service is unavailable (${l.reason}) and nothing usable is cached`);
    if (l.status === 'notfound') return out('unknown_user', `the user service does not know ${login.user}`, { source: l.source });
    return judge(l.user, l.source, await verifyPassword(login.password, l.user.passwordHash, throttle.cfg()), out);
  }

  const adm = await throttle.admit(login.user, login.rhost);
  if (!adm.allowed) {
    // Refused before any lookup or hash: a refusal costs the daemon almost nothing.
    return out('throttled', refusalReason(adm.refusal), { retryAfterSec: adm.refusal.retryAfterSec, refusal: adm.refusal });
  }
  const ticket = adm.ticket;
  try {
    const l = await resolver.byName(login.user);
    // An unavailable upstream is not a guess: the slot is given back (finally), nothing counted.
    if (l.status === 'unavail') {
      return out('unavailable', `the user service is unavailable (${l.reason}) and nothing usable is cached`);
    }
    if (l.status === 'notfound') {
      await dummyVerify(throttle.cfg(), Buffer.byteLength(login.password, 'utf8'));
      return out('unknown_user', `the user service does not know ${login.user}`, { source: l.source, lockouts: ticket.fail() });
    }
    // verifyPassword pays a dummy verification itself when there is no usable hash.
    const good = await verifyPassword(login.password, l.user.passwordHash, throttle.cfg());
    // A right password gives back only its own slot: the failures of the window stay.
    const o = judge(l.user, l.source, good, out);
    if (!good) o.lockouts = ticket.fail();
    return o;
  } catch (e) {
    // No hash slot within the answer deadline: "unavailable" (try again), not a failure.
    if (e instanceof HashBusy) return out('unavailable', e.message);
    throw e;
  } finally {
    ticket.release(); // no-op after fail(); gives the slot back on every other path, throws included
  }
}

function judge(
  user: CachedUser, source: string, good: boolean,
  out: (result: LoginResult, reason: string, extra?: Partial<LoginOutcome>) => LoginOutcome,
): LoginOutcome {
  const found = { kind: hashKind(user.passwordHash), user, source };
  if (good) return out('ok', 'password accepted', found);
  return found.kind === 'none'
    ? out('no_password', 'the user has no password upstream (key login only)', found)
    : out('wrong_password', 'wrong password', found);
}
