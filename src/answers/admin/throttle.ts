// throttle and throttle-reset: the login throttle's counters, listed and cleared.
import { log } from '../../log.js';
import { THROTTLE_LIST_MAX } from '../../protocol/admin.js';
import { type AdminContext, type AdminHandlers, refuse } from './context.js';

export function throttleCommands(ctx: AdminContext): AdminHandlers<'throttle' | 'throttle-reset'> {
  return {
    throttle() {
      const c = ctx.config();
      const { entries, total } = ctx.throttle.list(THROTTLE_LIST_MAX);
      const snap = ctx.throttle.snapshot();
      return {
        now: Date.now(),
        max_failures: c.pam.maxFailures, host_max_failures: c.pam.hostMaxFailures,
        window_s: c.pam.throttleWindowSec, lockout_s: c.pam.throttleLockoutSec,
        entries: entries.map((e) => ({
          scope: e.scope, key: e.key, failures: e.failures, limit: e.limit, in_flight: e.inFlight,
          window_started_at: e.windowStartedAt, locked_until: e.lockedUntil, retry_after_s: e.retryAfterSec, refused: e.refused,
        })),
        total, truncated: total > entries.length,
        counters: {
          tracked_users: snap.trackedUsers, tracked_hosts: snap.trackedHosts, in_flight: snap.inFlight,
          failures: snap.failures, lockouts: snap.lockouts, refused: snap.refused, evictions: snap.evictions,
        },
      };
    },

    'throttle-reset'(args, peer) {
      const target = 'all' in args ? { all: true as const } : 'user' in args ? { user: args.user } : { host: args.host };
      const r = ctx.throttle.reset(target);
      // An audit line: who lifted which lockout.
      log('info', 'admin.throttle_reset', { ...target, users: r.users, hosts: r.hosts, peer_pid: peer.pid });
      if ('user' in target && r.users === 0) throw refuse('throttle-reset', 'not_found', `no failures recorded for user ${target.user}`);
      if ('host' in target && r.hosts === 0) throw refuse('throttle-reset', 'not_found', `no failures recorded from host ${target.host}`);
      return { users: r.users, hosts: r.hosts };
    },
  };
}
