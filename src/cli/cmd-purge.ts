// latchkeyctl purge --expired [--dry-run]: the cleanup of temporary accounts, now (the daemon
// also runs it every [cleanup] interval). Lists every account removed (or that would be) with
// its home, which latchkey never deletes: what to archive or remove by hand is printed.
import { type CommandDef, EXIT_OK } from './command.js';
import { type Column, formatTime, isoUtc, renderJson, renderTable, renderTsv, yesNo } from './format.js';
import { UsageError, expectPositionals } from './args.js';
import type { PurgedAccountView } from '../protocol/admin.js';

type Row = PurgedAccountView & { source: 'upstream' | 'local' };

export const purge: CommandDef = {
  bool: ['expired', 'dry-run'],
  async run(ctx, pos, flags) {
    expectPositionals('purge', pos, 0, 0, 'no arguments');
    // Only one kind of purge exists; the flag says which, so a later kind never runs by default.
    if (flags.expired !== true) throw new UsageError('purge needs --expired (remove temporary accounts expired past [cleanup] expired_grace)', 'purge');
    const dryRun = flags['dry-run'] === true;
    const r = await ctx.call(dryRun ? { cmd: 'purge', expired: true, dry_run: true } : { cmd: 'purge', expired: true });
    const { ok: _ok, ...json } = r;
    if (ctx.mode === 'json') { ctx.out(renderJson(json)); return EXIT_OK; }
    const rows: Row[] = [
      ...r.cache_users.map((u) => ({ ...u, source: 'upstream' as const })),
      ...r.local_users.map((u) => ({ ...u, source: 'local' as const })),
    ];
    if (ctx.mode === 'tsv') {
      ctx.out(renderTsv(rows.map((u) => [u.source, u.name, u.uid, isoUtc(u.expired_at), u.home, u.home_exists ? 'yes' : 'no'])));
      return EXIT_OK;
    }
    const columns: Array<Column<Row>> = [
      { header: 'SOURCE', cell: (u) => u.source },
      { header: 'NAME', cell: (u) => u.name },
      { header: 'UID', cell: (u) => String(u.uid), right: true },
      { header: 'EXPIRED', cell: (u) => formatTime(u.expired_at, ctx.time) },
      { header: 'HOME', cell: (u) => u.home },
      { header: 'HOME EXISTS', cell: (u) => yesNo(u.home_exists) },
    ];
    const verb = dryRun ? 'would remove' : 'removed';
    ctx.out(`${dryRun ? 'dry run: nothing changed. ' : ''}${verb} ${rows.length} expired ${rows.length === 1 ? 'account' : 'accounts'} (expired more than ${r.expired_grace_s}s ago)\n`);
    if (rows.length > 0) ctx.out(renderTable(rows, columns));
    if (r.local_skipped !== null) ctx.out(`local users not removed here: ${r.local_skipped}\n`);
    const sessions = `${r.sessions_ended} open ${r.sessions_ended === 1 ? 'session' : 'sessions'}`;
    if (r.sessions_ended > 0) ctx.out(`${dryRun ? 'would end' : 'ended'} ${sessions} of ${r.session_users.join(', ')}\n`);
    if (r.homes_kept.length > 0) ctx.out(`homes kept (latchkey never deletes a home; archive or remove them by hand):\n${r.homes_kept.map((h) => `  ${h}\n`).join('')}`);
    return EXIT_OK;
  },
};
