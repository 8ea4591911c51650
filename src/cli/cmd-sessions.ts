// latchkeyctl sessions [NAME] / sessions kill ID|--user NAME.
import { type CommandDef, type Ctx, EXIT_FAIL, EXIT_OK } from './command.js';
import { type Column, formatTime, isoUtc, renderJson, renderListing } from './format.js';
import { UsageError, expectPositionals, userArg } from './args.js';
import type { SessionInfo } from '../protocol/admin.js';

export function sessionColumns(ctx: Pick<Ctx, 'time'>): Array<Column<SessionInfo> & { tsv?: (r: SessionInfo) => string }> {
  return [
    { header: 'ID', cell: (r) => r.id },
    { header: 'USER', cell: (r) => r.user },
    { header: 'UID', cell: (r) => String(r.uid), right: true },
    { header: 'SERVICE', cell: (r) => r.service },
    { header: 'RHOST', cell: (r) => r.rhost || '-' },
    { header: 'TTY', cell: (r) => r.tty || '-' },
    { header: 'PID', cell: (r) => String(r.pid), right: true },
    { header: 'STARTED', cell: (r) => formatTime(r.started_at, ctx.time), tsv: (r) => isoUtc(r.started_at) },
  ];
}

async function kill(ctx: Ctx, pos: string[], flags: Record<string, string | boolean>): Promise<number> {
  const user = typeof flags.user === 'string' ? flags.user : undefined;
  if (user !== undefined && pos.length > 0) throw new UsageError('sessions kill takes an ID or --user NAME, not both', 'sessions');
  if (user === undefined) expectPositionals('sessions kill', pos, 1, 1, 'a session ID or --user NAME');
  const name = user !== undefined ? userArg(user, 'sessions') : undefined;
  if (typeof name === 'number') throw new UsageError('--user takes a NAME', 'sessions');
  const r = await ctx.call(name !== undefined ? { cmd: 'kill-session', user: name } : { cmd: 'kill-session', id: pos[0]! });
  const { ok: _ok, ...json } = r;
  if (ctx.mode === 'json') ctx.out(renderJson(json));
  else if (ctx.mode === 'tsv') ctx.out(`${r.ended}\n`);
  else ctx.out(`ended ${r.ended} ${r.ended === 1 ? 'session' : 'sessions'}\n`);
  return r.ended ? EXIT_OK : EXIT_FAIL;
}

export const sessions: CommandDef = {
  value: ['user'],
  async run(ctx, pos, flags) {
    if (pos[0] === 'kill') return kill(ctx, pos.slice(1), flags);
    if (flags.user !== undefined) throw new UsageError('--user is for "sessions kill"; to list one user\'s sessions: sessions NAME', 'sessions');
    expectPositionals('sessions', pos, 0, 1, 'at most one user NAME');
    const user = pos[0] === undefined ? undefined : userArg(pos[0], 'sessions');
    if (typeof user === 'number') throw new UsageError('sessions lists by user NAME, not uid', 'sessions');
    const r = await ctx.call(user === undefined ? { cmd: 'sessions' } : { cmd: 'sessions', user });
    const { ok: _ok, ...json } = r;
    ctx.out(renderListing(ctx.mode, r.sessions, sessionColumns(ctx), json));
    return EXIT_OK;
  },
};
