// latchkeyctl throttle / throttle reset USER | --host RHOST | --all.
import { type CommandDef, type Ctx, EXIT_OK } from './command.js';
import { type Column, formatTime, isoUtc, renderJson, renderListing } from './format.js';
import { UsageError, expectPositionals } from './args.js';
import type { AdminReplyData } from '../protocol/admin.js';

type Row = AdminReplyData<'throttle'>['entries'][number];

/** A throttle key as the daemon takes it: what PAM sent, so any printable string. */
function keyArg(s: string, what: string): string {
  // eslint-disable-next-line no-control-regex
  if (s.length === 0 || s.length > 256 || /[\u0000-\u001f\u007f]/.test(s)) throw new UsageError(`"${s}" is not a ${what}`, 'throttle');
  return s;
}

export function throttleColumns(ctx: Pick<Ctx, 'time'>): Array<Column<Row> & { tsv?: (r: Row) => string }> {
  const exact = (at: number | null): string => (at === null ? '-' : isoUtc(at));
  return [
    { header: 'SCOPE', cell: (r) => r.scope },
    { header: 'KEY', cell: (r) => r.key },
    { header: 'FAILURES', cell: (r) => String(r.failures), right: true },
    { header: 'LIMIT', cell: (r) => String(r.limit), right: true },
    { header: 'PENDING', cell: (r) => String(r.in_flight), right: true },
    { header: 'WINDOW', cell: (r) => formatTime(r.window_started_at, ctx.time), tsv: (r) => exact(r.window_started_at) },
    { header: 'LOCKED_UNTIL', cell: (r) => formatTime(r.locked_until, ctx.time), tsv: (r) => exact(r.locked_until) },
    { header: 'REFUSED', cell: (r) => String(r.refused), right: true },
  ];
}

async function reset(ctx: Ctx, pos: string[], flags: Record<string, string | boolean>): Promise<number> {
  const host = typeof flags.host === 'string' ? flags.host : undefined;
  const all = flags.all === true;
  const forms = (pos.length > 0 ? 1 : 0) + (host !== undefined ? 1 : 0) + (all ? 1 : 0);
  if (forms !== 1) throw new UsageError('throttle reset takes one of: USER, --host RHOST, --all', 'throttle');
  if (pos.length > 0) expectPositionals('throttle reset', pos, 1, 1, 'one USER');
  const target = all ? { all: true as const } : host !== undefined ? { host: keyArg(host, 'host') } : { user: keyArg(pos[0]!, 'user name') };
  const r = await ctx.call({ cmd: 'throttle-reset', ...target });
  const { ok: _ok, ...json } = r;
  if (ctx.mode === 'json') ctx.out(renderJson(json));
  else if (ctx.mode === 'tsv') ctx.out(`${r.users}\t${r.hosts}\n`);
  else if ('user' in target) ctx.out(`cleared the failures and lockout of user ${target.user}\n`);
  else if ('host' in target) ctx.out(`cleared the failures and lockout of host ${target.host}\n`);
  else ctx.out(`cleared ${r.users} user and ${r.hosts} host counters\n`);
  return EXIT_OK;
}

export const throttle: CommandDef = {
  bool: ['all'],
  value: ['host'],
  async run(ctx, pos, flags) {
    if (pos[0] === 'reset') return reset(ctx, pos.slice(1), flags);
    if (flags.all !== undefined || flags.host !== undefined) throw new UsageError('--all and --host are for "throttle reset"', 'throttle');
    expectPositionals('throttle', pos, 0, 0, 'no arguments (or "reset")');
    const r = await ctx.call({ cmd: 'throttle' });
    const { ok: _ok, ...json } = r;
    ctx.out(renderListing(ctx.mode, r.entries, throttleColumns(ctx), json));
    // The daemon lists at most its first entries (locked first); say so rather than hide it.
    if (r.truncated && ctx.mode !== 'json') ctx.err(`latchkeyctl: showing ${r.entries.length} of ${r.total} entries (locked first)\n`);
    return EXIT_OK;
  },
};
