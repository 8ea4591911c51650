// What priv.sock answers for a login (pam_latchkey's auth and account phases): LOGIN_CHECK,
// AUTH_PASSWORD and ACCT_MGMT. The decisions are the domain's: the password check is
// verify/login.ts (shared with `latchkeyctl auth-test`), the account state directory/account.ts,
// the identity check directory/identity.ts. Sessions are priv-session.ts, ADMIN admin/.
import { ok, fail, type HandlerTable } from '../server/dispatch.js';
import { Status } from '../protocol/generated.js';
import type { Config } from '../config/types.js';
import type { Resolver } from '../directory/resolver.js';
import { accountState } from '../directory/account.js';
import type { LoginIdentity } from '../directory/identity.js';
import { checkPassword } from '../verify/login.js';
import type { CachedUser } from '../types.js';
import { hostKey, type Throttle } from '../verify/throttle.js';
import { hashInfo } from '../verify/hash.js';
import type { HashUsed, LoginDecisions } from '../verify/decisions.js';
import { log, logLimited } from '../log.js';
import { identityFailure, replyDetail, unavailable } from './replies.js';

/** Per hash kind: verifications that succeeded and failed, for `latchkeyctl stats`. */
export class AuthStats {
  readonly byKind: Record<string, { ok: number; failed: number; totalMs: number }> = {};
  throttled = 0;
  unknownUser = 0;
  /** told of every verification (the metrics' latency histogram, src/metrics/); must not throw */
  listener: ((kind: string, success: boolean, ms: number) => void) | null = null;
  record(kind: string, success: boolean, ms: number): void {
    const k = (this.byKind[kind] ??= { ok: 0, failed: 0, totalMs: 0 });
    if (success) k.ok++; else k.failed++;
    k.totalMs += ms;
    this.listener?.(kind, success, ms);
  }
}

/** Password checks one remote address may have running at once (sshd's MaxStartups lets one
 *  address hold 10 unauthenticated connections; a person logs in once at a time). */
export const MAX_CHECKS_IN_FLIGHT_PER_HOST = 4;

/** Kind and cost of the hash a verification used (never the hash), for `latchkeyctl why`. */
export function hashUsed(user: CachedUser | null): HashUsed | null {
  if (!user) return null;
  const h = hashInfo(user.passwordHash);
  return { kind: h.kind, cost: h.cost, cost_name: h.costName };
}

/**
 * `afterLogin`: told of every accepted password with the user it was checked against, after the
 * answer is decided and never awaited (the local users' hash upgrade, src/localusers/upgrade.ts).
 * `decisions`: where each phase's answer is recorded for `latchkeyctl why` (src/verify/decisions.ts).
 */
export function authHandlers(
  resolver: Resolver, identity: LoginIdentity, throttle: Throttle, stats: AuthStats, cfg: () => Config,
  afterLogin: ((user: CachedUser, password: string) => void) | null = null,
  decisions: LoginDecisions | null = null,
): HandlerTable {
  const inFlight = new Map<string, number>();
  return {
    // pam_latchkey, before it asks for a password: is this (name, uid NSS resolved) ours?
    LOGIN_CHECK: async (f, peer) => {
      const user = f.user as string;
      const id = await identity.check(user, f.uid as number, 'pam', peer.uid);
      decisions?.record(user, 'login_check', id.kind === 'served', {
        result: id.kind, uid: f.uid as number,
        detail: id.kind === 'served' ? `latchkey serves ${user} with uid ${f.uid as number}` : id.kind === 'unavailable' ? id.reason : id.detail,
        source: id.kind === 'served' || id.kind === 'notfound' ? id.source : null,
      }, peer.uid);
      return id.kind === 'served' ? ok({ prompt: cfg().pam.prompt }) : identityFailure(id, peer);
    },

    AUTH_PASSWORD: async (f, peer) => {
      const user = f.user as string;
      const rhost = f.rhost as string;
      const service = f.service as string;
      const started = Date.now();
      // One source may have only a few password checks in flight: the hash slots are shared
      // by everyone, and a burst from one address must not hold them all.
      const source = hostKey(rhost);
      const busy = inFlight.get(source) ?? 0;
      if (busy >= MAX_CHECKS_IN_FLIGHT_PER_HOST) {
        logLimited(`auth.host_busy:${source}`, 'warn', 'auth.host_busy', { rhost, user, service, in_flight: busy, limit: MAX_CHECKS_IN_FLIGHT_PER_HOST, detail: 'password checks from this address are already running; answered unavailable' });
        return fail(Status.UNAVAIL, 'too many password checks from this address at once; try again');
      }
      inFlight.set(source, busy + 1);
      let o: Awaited<ReturnType<typeof checkPassword>>;
      try {
        o = await checkPassword(resolver, throttle, { user, password: f.password as string, rhost }, 'login');
        if (o.result === 'ok' && o.user && afterLogin) {
          // A failing hook must cost the login nothing: it is the upgrade's to log.
          try { afterLogin(o.user, f.password as string); } catch (e) { log('error', 'auth.after_login_failed', { user, error: e instanceof Error ? e.message : String(e) }); }
        }
      } finally {
        const n = (inFlight.get(source) ?? 1) - 1;
        if (n <= 0) inFlight.delete(source); else inFlight.set(source, n);
      }
      const ms = Date.now() - started;
      const fields = { user, rhost, service, result: o.result, ...(o.kind ? { kind: o.kind } : {}), ms };
      // The throttle's part is in the reason (which budget, how many failures, for how long);
      // a failure that started a lockout says so too.
      const lockedNow = o.lockouts.map((l) => `; this failure locked ${l.scope} ${l.key} out for ${l.retryAfterSec}s (${l.failures} of ${l.limit})`).join('');
      decisions?.record(user, 'auth_password', o.user !== null, {
        result: o.result, detail: o.reason + lockedNow, source: o.source, service, rhost, hash: hashUsed(o.user), ms,
      }, peer.uid);
      // One line per lockout start, after the failure that started it: which budget (a user, or
      // a source address for all users), so a refused right password from there is explained.
      const logLockouts = (): void => {
        for (const l of o.lockouts) {
          log('warn', 'auth.lockout', { scope: l.scope, key: l.key, failures: l.failures, limit: l.limit, retry_after_s: l.retryAfterSec, user, rhost, service });
        }
      };
      switch (o.result) {
        case 'ok':
          stats.record(o.kind!, true, ms);
          log('info', 'auth.result', fields);
          return ok();
        case 'wrong_password':
        case 'no_password':
          stats.record(o.kind!, false, ms);
          log('info', 'auth.result', fields);
          logLockouts();
          return fail(Status.AUTH_FAILED);
        case 'unknown_user':
          stats.unknownUser++;
          log('info', 'auth.result', fields);
          logLockouts();
          return fail(Status.NOTFOUND);
        case 'throttled': {
          stats.throttled++;
          const r = o.refusal;
          // Rate-limited per budget (verify/throttle.ts): `refused` counts this refusal and those
          // not logged since the previous line for the same key.
          if (r && r.report > 0) {
            log('warn', 'auth.throttled', {
              scope: r.scope, key: r.key, reason: r.reason, failures: r.failures, limit: r.limit,
              retry_after_s: r.retryAfterSec, refused: r.report, user, rhost, service,
            });
          }
          return fail(Status.THROTTLED, `too many failures; retry in ${o.retryAfterSec}s`);
        }
        case 'unavailable': {
          // A burst can make hundreds of these in a second: one line per cause per minute, with
          // the count of those left out. The detail names the cause for the PAM module's log.
          const busy = o.reason.startsWith('password checks are saturated');
          logLimited(`auth.unavailable:${busy ? 'busy' : 'upstream'}`, 'warn', 'auth.unavailable', { user, rhost, service, reason: o.reason });
          return fail(Status.UNAVAIL, replyDetail(o.reason));
        }
      }
    },

    ACCT_MGMT: async (f, peer) => {
      const user = f.user as string;
      const a = await accountState(resolver, user);
      decisions?.record(user, 'acct_mgmt', a.state === 'active' || a.state === 'expired' || a.state === 'removed', {
        result: a.state, service: f.service as string, rhost: f.rhost as string,
        detail: a.state === 'active' ? 'the account may log in'
          : a.state === 'expired' ? `${a.detail} (at ${new Date(a.expiredAt).toISOString()})`
            : a.state === 'removed' ? a.detail
              : a.state === 'unavailable' ? a.reason : 'latchkey does not serve this user',
      }, peer.uid);
      switch (a.state) {
        case 'active': return ok();
        case 'expired':
          log('info', 'account.expired', { user, service: f.service, rhost: f.rhost, expired_at: new Date(a.expiredAt).toISOString(), detail: a.detail });
          return fail(Status.EXPIRED, a.detail);
        case 'removed':
          log('info', 'account.removed_upstream', { user, service: f.service, rhost: f.rhost });
          return fail(Status.EXPIRED, a.detail);
        case 'unavailable': return unavailable(a.reason, peer);
        case 'unknown': return fail(Status.NOTFOUND);
      }
    },
  };
}
