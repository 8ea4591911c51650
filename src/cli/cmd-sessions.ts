// latchkeyctl sessions [NAME] [--ended] / sessions kill ID|--user NAME / sessions renew ID|--user NAME.
import { type CommandDef, type Ctx, EXIT_FAIL, EXIT_OK } from './command.js';
import { type Column, formatTime, isoUtc, renderJson, renderListing } from './format.js';
import { UsageError, expectPositionals, userArg } from './args.js';
import type { EndedSessionInfo, SessionInfo } from '../protocol/admin.js';

type SessionColumn<T> = Column<T> & { tsv?: (r: T) => string };
/** What an open and an ended session both have. */
type SessionBase = Pick<SessionInfo, 'id' | 'user' | 'uid' | 'service' | 'rhost' | 'pid' | 'started_at'>;

/** The columns both listings share, with `extra` (TTY for open sessions) after RHOST. */
function baseColumns<T extends SessionBase>(ctx: Pick<Ctx, 'time'>, extra: Array<SessionColumn<T>> = []): Array<SessionColumn<T>> {
  return [
    { header: 'ID', cell: (r) => r.id },
    { header: 'USER', cell: (r) => r.user },
    { header: 'UID', cell: (r) => String(r.uid), right: true },
    { header: 'SERVICE', cell: (r) => r.service },
    { header: 'RHOST', cell: (r) => r.rhost || '-' },
    ...extra,
    { header: 'PID', cell: (r) => String(r.pid), right: true },
    { header: 'STARTED', cell: (r) => formatTime(r.started_at, ctx.time), tsv: (r) => isoUtc(r.started_at) },
  ];
}

export function sessionColumns(ctx: Pick<Ctx, 'time'>): Array<SessionColumn<SessionInfo>> {
  return [
    ...baseColumns<SessionInfo>(ctx, [{ header: 'TTY', cell: (r) => r.tty || '-' }]),
    { header: 'RENEWED', cell: (r) => (r.renewed_at ? formatTime(r.renewed_at, ctx.time) : '-'), tsv: (r) => (r.renewed_at ? isoUtc(r.renewed_at) : '-') },
  ];
}

export function endedColumns(ctx: Pick<Ctx, 'time'>): Array<SessionColumn<EndedSessionInfo>> {
  return [
    ...baseColumns<EndedSessionInfo>(ctx),
    { header: 'ENDED', cell: (r) => formatTime(r.ended_at, ctx.time), tsv: (r) => isoUtc(r.ended_at) },
    { header: 'REASON', cell: (r) => r.end_reason },
    { header: 'DETAIL', cell: (r) => r.end_detail ?? '-' },
  ];
}

/** ID or --user NAME, for kill and renew. */
function target(sub: string, pos: string[], flags: Record<string, string | boolean>): { id: string } | { user: string } {
  const user = typeof flags.user === 'string' ? flags.user : undefined;
  if (user !== undefined && pos.length > 0) throw new UsageError(`sessions ${sub} takes an ID or --user NAME, not both`, 'sessions');
  if (user === undefined) expectPositionals(`sessions ${sub}`, pos, 1, 1, 'a session ID or --user NAME');
  const name = user !== undefined ? userArg(user, 'sessions') : undefined;
  if (typeof name === 'number') throw new UsageError('--user takes a NAME', 'sessions');
  return name !== undefined ? { user: name } : { id: pos[0]! };
}

async function kill(ctx: Ctx, pos: string[], flags: Record<string, string | boolean>): Promise<number> {
  const r = await ctx.call({ cmd: 'kill-session', ...target('kill', pos, flags) });
  const { ok: _ok, ...json } = r;
  if (ctx.mode === 'json') ctx.out(renderJson(json));
  else if (ctx.mode === 'tsv') ctx.out(`${r.ended}\n`);
  else ctx.out(`ended ${r.ended} ${r.ended === 1 ? 'session' : 'sessions'}\n`);
  return r.ended ? EXIT_OK : EXIT_FAIL;
}

async function renew(ctx: Ctx, pos: string[], flags: Record<string, string | boolean>): Promise<number> {
  const r = await ctx.call({ cmd: 'renew-session', ...target('renew', pos, flags) });
  const { ok: _ok, ...json } = r;
  if (ctx.mode === 'json') ctx.out(renderJson(json));
  else if (ctx.mode === 'tsv') ctx.out(`${r.renewed}\n`);
  else ctx.out(`renewed ${r.renewed} ${r.renewed === 1 ? 'session' : 'sessions'}\n`);
  return EXIT_OK;
}

export const sessions: CommandDef = {
  value: ['user'],
  bool: ['ended'],
  async run(ctx, pos, flags) {
    if (pos[0] === 'kill') return kill(ctx, pos.slice(1), flags);
    if (pos[0] === 'renew') return renew(ctx, pos.slice(1), flags);
    if (flags.user !== undefined) throw new UsageError('--user is for "sessions kill" and "sessions renew"; to list one user\'s sessions: sessions NAME', 'sessions');
    expectPositionals('sessions', pos, 0, 1, 'at most one user NAME');
    const user = pos[0] === undefined ? undefined : userArg(pos[0], 'sessions');
    if (typeof user === 'number') throw new UsageError('sessions lists by user NAME, not uid', 'sessions');
    const ended = flags.ended === true;
    const r = await ctx.call({ cmd: 'sessions', ...(user === undefined ? {} : { user }), ...(ended ? { ended: true } : {}) });
    const { ok: _ok, ...json } = r;
    if (!ended || ctx.mode === 'json') {
      ctx.out(renderListing(ctx.mode, r.sessions, sessionColumns(ctx), json));
      return EXIT_OK;
    }
    // A pipe gets the ended rows alone (one table, one row shape); a terminal both, titled.
    if (ctx.mode === 'table') ctx.out(`${renderListing(ctx.mode, r.sessions, sessionColumns(ctx), json)}\nended in the last 24 hours:\n`);
    ctx.out(renderListing(ctx.mode, r.ended ?? [], endedColumns(ctx), json));
    return EXIT_OK;
  },
};
