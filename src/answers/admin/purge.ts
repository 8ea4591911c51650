// purge: the cleanup of temporary accounts (src/cleanup/run.ts) on demand, `latchkeyctl purge
// --expired [--dry-run]`. The periodic run and this one are the same code; runs never overlap.
import type { PurgedAccount } from '../../cleanup/run.js';
import type { PurgedAccountView } from '../../protocol/admin.js';
import { log } from '../../log.js';
import { type AdminContext, type AdminHandlers, AdminRefusal } from './context.js';

const view = (a: PurgedAccount): PurgedAccountView => ({ name: a.name, uid: a.uid, expired_at: a.expiredAt, home: a.home, home_exists: a.homeExists });

export function purgeCommands(ctx: AdminContext): AdminHandlers<'purge'> {
  return {
    async purge(args, peer) {
      if (!ctx.cleanup) throw new AdminRefusal('internal', 'this latchkeyd runs no cleanup; see its log', {});
      const dryRun = args.dry_run === true;
      const r = await ctx.cleanup.run({ dryRun });
      log('info', 'admin.purge', {
        who: 'latchkeyctl', peer_pid: peer.pid, dry_run: dryRun,
        cache_users: r.cache.length, local_users: r.stored.length, sessions_ended: r.sessionsEnded,
      });
      return {
        dry_run: dryRun, now: r.now, expired_grace_s: r.graceSec,
        cache_users: r.cache.map(view), local_users: r.stored.map(view), local_skipped: r.storedSkipped,
        sessions_ended: r.sessionsEnded, session_users: r.sessionUsers,
        homes_kept: [...r.cache, ...r.stored].filter((a) => a.homeExists).map((a) => a.home),
      };
    },
  };
}
