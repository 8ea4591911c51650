// Handlers for priv.sock that decide logins: password verification and the account check.
// Every outcome of AUTH_PASSWORD costs one full verification, so timing does not tell an
// attacker whether a user exists or has a password.
import { ok, fail, type HandlerTable } from '../server/dispatch.js';
import { Status } from '../protocol/generated.js';
import type { Resolver } from '../cache/resolver.js';
import type { UserCache } from '../cache/db.js';
import { verifyPassword, dummyVerify } from '../verify/password.js';
import { hashKind } from '../verify/hash.js';
import type { Throttle } from '../verify/throttle.js';
import { log } from '../log.js';

/** Per hash kind: verifications that succeeded and failed, for `latchkeyctl stats`. */
export class AuthStats {
  readonly byKind: Record<string, { ok: number; failed: number; totalMs: number }> = {};
  throttled = 0;
  unknownUser = 0;
  record(kind: string, success: boolean, ms: number): void {
    const k = (this.byKind[kind] ??= { ok: 0, failed: 0, totalMs: 0 });
    if (success) k.ok++; else k.failed++;
    k.totalMs += ms;
  }
}

export function authHandlers(resolver: Resolver, cache: UserCache, throttle: Throttle, stats: AuthStats): HandlerTable {
  return {
    AUTH_PASSWORD: async (f) => {
      const user = f.user as string;
      const rhost = f.rhost as string;
      const service = f.service as string;
      const started = Date.now();
      const gate = throttle.check(user, rhost);
      if (!gate.allowed) {
        stats.throttled++;
        log('warn', 'auth.throttled', { user, rhost, service, retry_after_s: gate.retryAfterSec });
        return fail(Status.THROTTLED, `too many failures; retry in ${gate.retryAfterSec}s`);
      }
      const l = await resolver.byName(user);
      if (l.status === 'unavail') {
        log('warn', 'auth.unavailable', { user, rhost, service, reason: l.reason });
        return fail(Status.UNAVAIL, 'user service unavailable');
      }
      if (l.status === 'notfound') {
        await dummyVerify();
        throttle.recordFailure(user, rhost);
        stats.unknownUser++;
        log('info', 'auth.result', { user, rhost, service, result: 'unknown_user', ms: Date.now() - started });
        return fail(Status.NOTFOUND);
      }
      const kind = hashKind(l.user.passwordHash);
      const good = await verifyPassword(f.password as string, l.user.passwordHash);
      const ms = Date.now() - started;
      stats.record(kind, good, ms);
      if (good) {
        throttle.recordSuccess(user);
        log('info', 'auth.result', { user, rhost, service, result: 'ok', kind, ms });
        return ok();
      }
      throttle.recordFailure(user, rhost);
      log('info', 'auth.result', { user, rhost, service, result: kind === 'none' ? 'no_password' : 'wrong_password', kind, ms });
      return fail(Status.AUTH_FAILED);
    },

    ACCT_MGMT: async (f) => {
      const user = f.user as string;
      const knownBefore = cache.getByName(user) !== null;
      // byName refetches an expired entry, so a password reset or removal upstream takes effect.
      const l = await resolver.byName(user);
      if (l.status === 'found') {
        const exp = l.user.accountExpiresAt;
        if (exp !== null && exp !== undefined && Date.now() >= exp) {
          log('info', 'account.expired', { user, service: f.service, rhost: f.rhost, expired_at: new Date(exp).toISOString() });
          return fail(Status.EXPIRED, exp === 0 ? 'account disabled upstream' : 'account expired');
        }
        return ok();
      }
      if (l.status === 'unavail') return fail(Status.UNAVAIL, 'user service unavailable');
      if (knownBefore) {
        log('info', 'account.removed_upstream', { user, service: f.service, rhost: f.rhost });
        return fail(Status.EXPIRED, 'account no longer exists upstream');
      }
      return fail(Status.NOTFOUND);
    },
  };
}
