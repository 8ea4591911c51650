// sessions, kill-session and renew-session: the logins pam_latchkey recorded.
import { log } from '../../log.js';
import type { AdminReplyData, EndedSessionInfo } from '../../protocol/admin.js';
import type { EndedRecord, SessionRecord } from '../../sessions/registry.js';
import { type AdminContext, type AdminHandlers, refuse } from './context.js';

type SessionView = AdminReplyData<'sessions'>['sessions'][number];

export function sessionView(s: SessionRecord): SessionView {
  return {
    id: s.id, user: s.user, uid: s.uid, service: s.service, rhost: s.rhost, tty: s.tty, pid: s.pid, started_at: s.startedAt,
    // Absent when never renewed: the field is new, and a reply of an older daemon has none.
    ...(s.renewedAt !== null ? { renewed_at: s.renewedAt } : {}),
  };
}

function endedView(s: EndedRecord): EndedSessionInfo {
  return { ...sessionView(s), ended_at: s.endedAt, end_reason: s.endReason, end_detail: s.endDetail };
}

export function sessionCommands(ctx: AdminContext): AdminHandlers<'sessions' | 'kill-session' | 'renew-session'> {
  return {
    sessions(args) {
      const open = ctx.sessions.list(args.user).map(sessionView);
      return args.ended ? { sessions: open, ended: ctx.sessions.listEnded(args.user).map(endedView) } : { sessions: open };
    },

    async 'kill-session'(args, peer) {
      const ended = await ctx.sessions.kill('id' in args ? { id: args.id } : { user: args.user });
      const id = 'id' in args ? args.id : undefined;
      const user = 'user' in args ? args.user : undefined;
      log('info', 'admin.kill_session', { id, user, ended, peer_pid: peer.pid });
      if (ended === 0) throw refuse('kill-session', 'not_found', id !== undefined ? `no open session ${id}` : `${user} has no open sessions`);
      return { ended };
    },

    'renew-session'(args, peer) {
      const r = ctx.sessions.renew('id' in args ? { id: args.id } : { user: args.user }, 'admin');
      log('info', 'admin.renew_session', { id: 'id' in args ? args.id : undefined, user: 'user' in args ? args.user : undefined, ok: r.ok, peer_pid: peer.pid });
      if (!r.ok) throw refuse('renew-session', r.reason === 'privileged' ? 'invalid' : 'not_found', r.detail);
      return { renewed: r.renewed };
    },
  };
}
