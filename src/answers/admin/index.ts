// The ADMIN opcode on priv.sock: checks the request against the admin protocol
// (src/protocol/admin.ts), runs the command's handler and answers with its JSON reply.
// Handlers by command group: status.ts (status, stats), users.ts (users, show, lookup,
// invalidate, flush), sessions.ts (sessions, kill-session, renew-session), throttle.ts (throttle,
// throttle-reset), auth-test.ts, local.ts (local_*: the persistent local users), reload.ts,
// purge.ts (the cleanup of temporary accounts), why.ts (the last login decisions of a user).
import { ok, type HandlerTable, type Peer } from '../../server/dispatch.js';
import type { Fields } from '../../protocol/codec.js';
import { checkAdminRequest, type AdminArgs, type AdminCommand } from '../../protocol/admin.js';
import { log } from '../../log.js';
import { type AdminContext, type AdminHandlers, AdminRefusal } from './context.js';
import { statusCommands } from './status.js';
import { userCommands } from './users.js';
import { sessionCommands } from './sessions.js';
import { throttleCommands } from './throttle.js';
import { authTestCommands } from './auth-test.js';
import { localCommands } from './local.js';
import { reloadCommands } from './reload.js';
import { purgeCommands } from './purge.js';
import { whyCommands } from './why.js';

export type { AdminContext } from './context.js';

export function adminHandlers(ctx: AdminContext): HandlerTable {
  // Typed as every command of the protocol: a command without a handler does not compile.
  const commands: AdminHandlers<AdminCommand> = {
    ...statusCommands(ctx), ...userCommands(ctx), ...sessionCommands(ctx), ...throttleCommands(ctx), ...authTestCommands(ctx),
    ...localCommands(ctx), ...reloadCommands(ctx), ...purgeCommands(ctx), ...whyCommands(ctx),
  };
  const run = <C extends AdminCommand>(cmd: C, args: AdminArgs<C>, peer: Peer): ReturnType<AdminHandlers<AdminCommand>[C]> =>
    (commands[cmd] as (a: AdminArgs<C>, p: Peer) => ReturnType<AdminHandlers<AdminCommand>[C]>)(args, peer);

  return {
    ADMIN: async (f: Fields, peer: Peer) => {
      const req = checkAdminRequest((f.json as Buffer).toString('utf8'));
      let reply: object;
      if (!req.ok) {
        reply = { ok: false, error: req.error, code: req.code };
      } else {
        const { cmd } = req.request;
        try {
          reply = { ok: true, ...(await run(cmd, req.request, peer)) };
        } catch (e) {
          if (e instanceof AdminRefusal) {
            reply = { ok: false, error: e.message, code: e.code, ...e.fields };
          } else {
            log('error', 'admin.failed', { cmd, error: e instanceof Error ? e.message : String(e) });
            reply = { ok: false, error: 'internal error; see the latchkeyd log', code: 'internal' };
          }
        }
      }
      return ok({ json: Buffer.from(JSON.stringify(reply), 'utf8') });
    },
  };
}
