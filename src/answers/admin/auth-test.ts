// auth-test: a password check exactly as PAM's AUTH_PASSWORD makes it, as a dry run.
import { performance } from 'node:perf_hooks';
import { checkPassword } from '../../verify/login.js';
import { log } from '../../log.js';
import { type AdminContext, type AdminHandlers, roundMs } from './context.js';
import { hashFacts } from './users.js';

export function authTestCommands(ctx: AdminContext): AdminHandlers<'auth-test'> {
  return {
    async 'auth-test'(args, peer) {
      const { user, password } = args;
      const t0 = performance.now();
      // A dry run: the same decision as a PAM login, but it neither counts towards throttling
      // nor appears in the verification stats.
      const o = await checkPassword(ctx.resolver, ctx.throttle, { user, password, rhost: '' }, 'dry-run');
      const ms = roundMs(performance.now() - t0);
      // An audit line: who tested which user, and the outcome; never the password.
      log('info', 'admin.auth_test', { user, result: o.result, peer_pid: peer.pid, ms });
      return {
        user, authenticated: o.result === 'ok', result: o.result, reason: o.reason,
        hash: o.user && o.kind !== 'none' ? hashFacts(o.user.passwordHash) : null,
        source: o.source, ms,
      };
    },
  };
}
