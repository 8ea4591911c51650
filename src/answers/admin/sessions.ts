// sessions and kill-session: the open logins pam_latchkey recorded.
import { log } from '../../log.js';
import type { AdminReplyData } from '../../protocol/admin.js';
import type { SessionRecord } from '../../sessions/registry.js';
import { type AdminContext, type AdminHandlers, refuse } from './context.js';

type SessionView = AdminReplyData<'sessions'>['sessions'][number];

export function sessionView(s: SessionRecord): SessionView {
  return { id: s.id, user: s.user, uid: s.uid, service: s.service, rhost: s.rhost, tty: s.tty, pid: s.pid, started_at: s.startedAt };
}

export function sessionCommands(ctx: AdminContext): AdminHandlers<'sessions' | 'kill-session'> {
  return {
    sessions(args) {
      return { sessions: ctx.sessions.list(args.user).map(sessionView) };
    },

    async 'kill-session'(args, peer) {
      const ended = await ctx.sessions.kill('id' in args ? { id: args.id } : { user: args.user });
      const id = 'id' in args ? args.id : undefined;
      const user = 'user' in args ? args.user : undefined;
      log('info', 'admin.kill_session', { id, user, ended, peer_pid: peer.pid });
      if (ended === 0) throw refuse('kill-session', 'not_found', id !== undefined ? `no open session ${id}` : `${user} has no open sessions`);
      return { ended };
    },
  };
}
