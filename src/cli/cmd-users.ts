// latchkeyctl users, show, lookup, invalidate, flush: the cache, seen and operated by user.
import type { AdminError } from './client.js';
import { type CommandDef, type Ctx, EXIT_FAIL, EXIT_OK } from './command.js';
import { type Column, formatHash, formatMs, formatTime, isoUtc, renderJson, renderListing, renderPairs, yesNo } from './format.js';
import { UsageError, expectPositionals, userArg } from './args.js';
import type { AdminReplyData, UserSummary } from '../protocol/admin.js';

type Pair = readonly [string, string];
type NegativeEntry = NonNullable<AdminReplyData<'users'>['negative']>[number];

const exact = (at: number | null): string => (at === null ? '-' : isoUtc(at));

/** Columns of `users`; TSV gets exact times and machine booleans. */
export function userColumns(ctx: Pick<Ctx, 'time'>): Array<Column<UserSummary> & { tsv?: (r: UserSummary) => string }> {
  return [
    { header: 'NAME', cell: (r) => r.name },
    { header: 'UID', cell: (r) => String(r.uid), right: true },
    { header: 'FETCHED', cell: (r) => formatTime(r.fetched_at, ctx.time), tsv: (r) => exact(r.fetched_at) },
    { header: 'EXPIRES', cell: (r) => formatTime(r.expires_at, ctx.time), tsv: (r) => exact(r.expires_at) },
    { header: 'STATE', cell: (r) => r.state },
    { header: 'KEYS', cell: (r) => String(r.keys), right: true },
    { header: 'PASSWORD', cell: (r) => yesNo(r.has_password) },
    { header: 'HOME', cell: (r) => yesNo(r.home_exists) },
  ];
}

export function negativeColumns(ctx: Pick<Ctx, 'time'>): Array<Column<NegativeEntry> & { tsv?: (r: NegativeEntry) => string }> {
  return [
    { header: 'NAME/UID', cell: (r) => r.key },
    { header: 'BY', cell: (r) => r.kind },
    { header: 'FETCHED', cell: (r) => formatTime(r.fetched_at, ctx.time), tsv: (r) => exact(r.fetched_at) },
    { header: 'EXPIRES', cell: (r) => formatTime(r.expires_at, ctx.time), tsv: (r) => exact(r.expires_at) },
  ];
}

export const users: CommandDef = {
  bool: ['stale', 'negative'],
  async run(ctx, pos, flags) {
    expectPositionals('users', pos, 0, 0, 'no arguments');
    const r = await ctx.call({ cmd: 'users', stale: flags.stale === true, negative: flags.negative === true });
    const { ok: _ok, ...json } = r;
    if (flags.negative === true) ctx.out(renderListing(ctx.mode, r.negative ?? [], negativeColumns(ctx), json));
    else ctx.out(renderListing(ctx.mode, r.users, userColumns(ctx), json));
    return EXIT_OK;
  },
};

/** The `show` view: one pair per fact, keys and sessions as indented lines. */
export function showPairs(r: AdminReplyData<'show'>, ctx: Pick<Ctx, 'mode' | 'time'>): Pair[] {
  const u = r.user;
  const t = (v: number): string => (ctx.mode === 'tsv' ? exact(v) : formatTime(v, ctx.time));
  const pairs: Pair[] = [
    ['name', u.name],
    ['uid', String(u.uid)],
    ['upstream uid', String(u.upstream_uid)],
    ['gid', String(u.gid)],
    ['gecos', u.gecos],
    ['shell', u.shell],
    ['home', `${u.home}${ctx.mode === 'tsv' ? '' : u.home_exists ? ' (exists)' : ' (not created yet)'}`],
    ...(ctx.mode === 'tsv' ? [['home exists', yesNo(u.home_exists)] as Pair] : []),
    ['fetched', t(u.fetched_at)],
    ['expires', t(u.expires_at)],
    ['state', u.state],
    ['password', formatHash(u.password)],
  ];
  if (u.keys.length === 0) pairs.push(['keys', 'none']);
  u.keys.forEach((k, i) => pairs.push([i === 0 ? 'keys' : '', `${k.type} ${k.fingerprint}${k.comment ? ' ' + k.comment : ''}`]));
  if (r.sessions.length === 0) pairs.push(['sessions', 'none']);
  r.sessions.forEach((s, i) => pairs.push([i === 0 ? 'sessions' : '',
    `${s.id} ${s.service} from ${s.rhost || '-'} pid ${s.pid} started ${t(s.started_at)}`]));
  // TSV lines need a key on every line so `grep ^keys` finds all of them.
  if (ctx.mode === 'tsv') {
    let last = '';
    return pairs.map(([k, v]) => { if (k) last = k; return [k || last, v] as Pair; });
  }
  return pairs;
}

export const show: CommandDef = {
  async run(ctx, pos) {
    expectPositionals('show', pos, 1, 1, 'a user NAME or UID');
    const r = await ctx.call({ cmd: 'show', user: userArg(pos[0]!, 'show') });
    const { ok: _ok, ...json } = r;
    ctx.out(ctx.mode === 'json' ? renderJson(json) : renderPairs(showPairs(r, ctx), ctx.mode));
    return EXIT_OK;
  },
};

export const lookup: CommandDef = {
  bool: ['refresh'],
  async run(ctx, pos, flags) {
    expectPositionals('lookup', pos, 1, 1, 'a user NAME or UID');
    const r = await ctx.call({ cmd: 'lookup', user: userArg(pos[0]!, 'lookup'), refresh: flags.refresh === true });
    const { ok: _ok, ...json } = r;
    if (ctx.mode === 'json') { ctx.out(renderJson(json)); return EXIT_OK; }
    const e = r.entry;
    // The passwd line as getent would print it, then where it came from and how long it took.
    const passwd = [e.name, 'x', e.uid, e.gid, e.gecos, e.dir, e.shell].join(':');
    if (ctx.mode === 'tsv') {
      ctx.out(`${passwd}\t${r.source}\t${r.ms}\n`);
    } else {
      ctx.out(`${passwd}\n`);
      ctx.out(renderPairs([['source', r.source], ['time', formatMs(r.ms)]], 'table'));
    }
    return EXIT_OK;
  },
};

export const invalidate: CommandDef = {
  bool: ['all'],
  async run(ctx, pos, flags) {
    const all = flags.all === true;
    if (all && pos.length > 0) throw new UsageError('give either --all or user names, not both', 'invalidate');
    if (!all && pos.length === 0) throw new UsageError('invalidate needs NAME|UID... or --all', 'invalidate');
    const r = await ctx.call(all ? { cmd: 'invalidate', all: true } : { cmd: 'invalidate', users: pos.map((p) => userArg(p, 'invalidate')) });
    const { ok: _ok, ...json } = r;
    if (ctx.mode === 'json') ctx.out(renderJson(json));
    else if (ctx.mode === 'tsv') ctx.out(`${r.invalidated}\n`);
    else ctx.out(`invalidated ${r.invalidated} ${r.invalidated === 1 ? 'entry' : 'entries'}\n`);
    for (const m of r.already_expired) ctx.err(`latchkeyctl: ${m}: already expired (the next lookup refetches it)\n`);
    for (const m of r.not_cached) ctx.err(`latchkeyctl: ${m}: not cached\n`);
    return r.not_cached.length > 0 ? EXIT_FAIL : EXIT_OK;
  },
};

export const flush: CommandDef = {
  bool: ['negative'],
  async run(ctx, pos, flags) {
    expectPositionals('flush', pos, 0, 1, 'at most one user NAME or UID');
    const negative = flags.negative === true;
    if (negative && pos.length > 0) throw new UsageError('give either --negative or a user, not both (a user\'s flush drops its negative entries too)', 'flush');
    const user = pos.length > 0 ? userArg(pos[0]!, 'flush') : undefined;
    const r = await ctx.call(user !== undefined ? { cmd: 'flush', user } : { cmd: 'flush', negative_only: negative });
    const { ok: _ok, ...json } = r;
    const entries = `${r.removed} ${negative ? 'negative ' : ''}${r.removed === 1 ? 'entry' : 'entries'}`;
    if (ctx.mode === 'json') ctx.out(renderJson(json));
    else if (ctx.mode === 'tsv') ctx.out(`${r.removed}\n`);
    else ctx.out(user !== undefined ? `removed ${entries} of ${user} (its next lookup asks the user service)\n` : `removed ${entries}\n`);
    // Like invalidate: naming a user the cache does not hold is worth an exit code.
    if (user !== undefined && r.removed === 0) {
      ctx.err(`latchkeyctl: ${user}: nothing cached\n`);
      return EXIT_FAIL;
    }
    return EXIT_OK;
  },
};

/** For main: an AdminError from lookup carries where the "not found" came from. */
export function describeLookupFailure(e: AdminError<'lookup'>): string {
  const r = e.reply;
  if (r?.not_managed) return e.message;
  const src = r?.source ? ` (answered by ${r.source}${r.ms !== undefined ? ` in ${formatMs(r.ms)}` : ''})` : '';
  return `${e.message}${src}`;
}
