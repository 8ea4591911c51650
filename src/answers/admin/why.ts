// why: the last login decision latchkeyd recorded for a user (src/verify/decisions.ts), with what
// is true of the user now (throttle budget, cached account state, the session's fate).
import { accountExpiry } from '../../directory/expiry.js';
import { PHASES, type Decision } from '../../verify/decisions.js';
import type { AdminReplyData } from '../../protocol/admin.js';
import { type AdminContext, type AdminHandlers, refuse } from './context.js';
import { entryState } from './users.js';
import { notManaged, notManagedMessage } from './managed.js';

type WhyReply = AdminReplyData<'why'>;

export function whyCommands(ctx: AdminContext): AdminHandlers<'why'> {
  return {
    why(args) {
      const name = args.user;
      const nm = notManaged(ctx, name);
      // A host account is left to the rest of the PAM stack before latchkeyd is asked anything
      // (pam_latchkey's identity.c), so there is nothing of ours to explain.
      if (nm) throw refuse('why', 'not_found', notManagedMessage(name, nm), { not_managed: nm.reason });
      const rec = ctx.decisions?.get(name) ?? null;
      if (!rec) {
        throw refuse('why', 'not_found',
          `nothing recorded for ${name} since latchkeyd started (${new Date(ctx.startedAt).toISOString()}): no login, password check or key request reached it; the last decisions of the most recent users are kept in memory only`,
          { since: ctx.startedAt });
      }
      const phases = Object.fromEntries(PHASES.map((p) => [p, rec.phases[p] ?? null])) as Record<(typeof PHASES)[number], Decision | null>;
      const t = ctx.throttle.userState(name);
      const now = Date.now();
      const cached = ctx.cache.getByName(name);
      let account: WhyReply['account'] = null;
      if (cached) {
        const e = accountExpiry(cached, now);
        account = {
          state: !e.expired ? 'active' : e.disabled ? 'disabled' : 'expired', expired_at: e.expired ? e.at : null,
          cache_state: entryState(cached, now, ctx.config().cache), fetched_at: cached.fetchedAt, expires_at: cached.expiresAt,
        };
      }
      return {
        user: rec.name, since: ctx.startedAt, served: rec.served, phases,
        session: sessionFate(ctx, name, phases.session_open?.session_id ?? null),
        throttle: { failures: t.failures, limit: t.limit, in_flight: t.inFlight, locked_until: t.lockedUntil, retry_after_s: t.retryAfterSec },
        account,
      };
    },
  };
}

/** What became of the session the last SESSION_OPEN opened: still open, ended (when, why), or no longer known (ended more than 24 h ago). */
function sessionFate(ctx: AdminContext, user: string, id: string | null): WhyReply['session'] {
  if (id === null) return null;
  if (ctx.sessions.list(user).some((s) => s.id === id)) return { id, state: 'open', ended_at: null, end_reason: null, end_detail: null };
  const e = ctx.sessions.listEnded(user).find((s) => s.id === id);
  if (e) return { id, state: 'ended', ended_at: e.endedAt, end_reason: e.endReason, end_detail: e.endDetail };
  return { id, state: 'unknown', ended_at: null, end_reason: null, end_detail: null };
}
