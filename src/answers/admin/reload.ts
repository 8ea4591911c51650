// reload: what SIGHUP does, asked over priv.sock so the caller learns whether the new config was
// taken (`systemctl reload` runs `latchkeyctl reload`: a refused config fails the reload).
import { log } from '../../log.js';
import { type AdminContext, type AdminHandlers, refuse } from './context.js';

export function reloadCommands(ctx: AdminContext): AdminHandlers<'reload'> {
  return {
    reload(args, peer) {
      const r = ctx.reload(args.credential);
      log(r.ok ? 'info' : 'warn', 'admin.reload', { peer_pid: peer.pid, ok: r.ok, credential: r.credential });
      if (!r.ok) throw refuse('reload', 'invalid', `${r.error}; the previous configuration stays in force`);
      return { file: ctx.configFile, credential: r.credential, reloaded_at: r.at };
    },
  };
}
