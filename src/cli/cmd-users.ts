// latchkeyctl users, show, lookup, invalidate, flush: the cache, seen and operated by user.
import { AdminError } from './client.js';
import { type CommandDef, type Ctx, EXIT_FAIL, EXIT_OK, arr, num, obj, str } from './command.js';
import { type Column, formatHash, formatMs, formatTime, isoUtc, renderJson, renderListing, renderPairs, yesNo } from './format.js';
import { UsageError, expectPositionals, userArg } from './args.js';

type Row = Record<string, unknown>;
type Pair = readonly [string, string];

const exact = (v: unknown): string => (num(v) === null ? '-' : isoUtc(num(v)!));

/** Columns of `users`; TSV gets exact times and machine booleans. */
export function userColumns(ctx: Pick<Ctx, 'time'>): Array<Column<Row> & { tsv?: (r: Row) => string }> {
  return [
    { header: 'NAME', cell: (r) => str(r.name) },
    { header: 'UID', cell: (r) => str(r.uid), right: true },
    { header: 'FETCHED', cell: (r) => formatTime(num(r.fetched_at), ctx.time), tsv: (r) => exact(r.fetched_at) },
    { header: 'EXPIRES', cell: (r) => formatTime(num(r.expires_at), ctx.time), tsv: (r) => exact(r.expires_at) },
    { header: 'STATE', cell: (r) => str(r.state) },
    { header: 'KEYS', cell: (r) => str(r.keys), right: true },
    { header: 'PASSWORD', cell: (r) => yesNo(r.has_password as boolean | null) },
    { header: 'HOME', cell: (r) => yesNo(r.home_exists as boolean | null) },
  ];
}

export function negativeColumns(ctx: Pick<Ctx, 'time'>): Array<Column<Row> & { tsv?: (r: Row) => string }> {
  return [
    { header: 'NAME/UID', cell: (r) => str(r.key) },
    { header: 'BY', cell: (r) => str(r.kind) },
    { header: 'FETCHED', cell: (r) => formatTime(num(r.fetched_at), ctx.time), tsv: (r) => exact(r.fetched_at) },
    { header: 'EXPIRES', cell: (r) => formatTime(num(r.expires_at), ctx.time), tsv: (r) => exact(r.expires_at) },
  ];
}

export const users: CommandDef = {
  bool: ['stale', 'negative'],
  async run(ctx, pos, flags) {
    expectPositionals('users', pos, 0, 0, 'no arguments');
    const r = await ctx.call({ cmd: 'users', stale: flags.stale === true, negative: flags.negative === true });
    const { ok: _ok, ...json } = r;
    if (flags.negative === true) ctx.out(renderListing(ctx.mode, arr(r.negative), negativeColumns(ctx), json));
    else ctx.out(renderListing(ctx.mode, arr(r.users), userColumns(ctx), json));
    return EXIT_OK;
  },
};

/** The `show` view: one pair per fact, keys and sessions as indented lines. */
export function showPairs(r: Row, ctx: Pick<Ctx, 'mode' | 'time'>): Pair[] {
  const u = obj(r.user);
  const t = (v: unknown): string => (ctx.mode === 'tsv' ? exact(v) : formatTime(num(v), ctx.time));
  const pairs: Pair[] = [
    ['name', str(u.name)],
    ['uid', str(u.uid)],
    ['upstream uid', str(u.upstream_uid)],
    ['gid', str(u.gid)],
    ['gecos', str(u.gecos)],
    ['shell', str(u.shell)],
    ['home', `${str(u.home)}${ctx.mode === 'tsv' ? '' : u.home_exists === true ? ' (exists)' : ' (not created yet)'}`],
    ...(ctx.mode === 'tsv' ? [['home exists', yesNo(u.home_exists as boolean)] as Pair] : []),
    ['fetched', t(u.fetched_at)],
    ['expires', t(u.expires_at)],
    ['state', str(u.state)],
    ['password', formatHash(u.password ? obj(u.password) : null)],
  ];
  const keys = arr(u.keys);
  if (keys.length === 0) pairs.push(['keys', 'none']);
  keys.forEach((k, i) => pairs.push([i === 0 ? 'keys' : '', `${str(k.type)} ${str(k.fingerprint)}${k.comment ? ' ' + str(k.comment) : ''}`]));
  const sessions = arr(r.sessions);
  if (sessions.length === 0) pairs.push(['sessions', 'none']);
  sessions.forEach((s, i) => pairs.push([i === 0 ? 'sessions' : '',
    `${str(s.id)} ${str(s.service)} from ${str(s.rhost) || '-'} pid ${str(s.pid)} started ${t(s.started_at)}`]));
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
    const e = obj(r.entry);
    // The passwd line as getent would print it, then where it came from and how long it took.
    const passwd = [e.name, 'x', e.uid, e.gid, e.gecos, e.dir, e.shell].map(str).join(':');
    if (ctx.mode === 'tsv') {
      ctx.out(`${passwd}\t${str(r.source)}\t${str(r.ms)}\n`);
    } else {
      ctx.out(`${passwd}\n`);
      ctx.out(renderPairs([['source', str(r.source)], ['time', formatMs(num(r.ms))]], 'table'));
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
    const missing = Array.isArray(r.not_cached) ? (r.not_cached as unknown[]).map(str) : [];
    if (ctx.mode === 'json') ctx.out(renderJson(json));
    else if (ctx.mode === 'tsv') ctx.out(`${str(r.invalidated)}\n`);
    else ctx.out(`invalidated ${str(r.invalidated)} ${r.invalidated === 1 ? 'entry' : 'entries'}\n`);
    const already = Array.isArray(r.already_expired) ? (r.already_expired as unknown[]).map(str) : [];
    for (const m of already) ctx.err(`latchkeyctl: ${m}: already expired (the next lookup refetches it)\n`);
    for (const m of missing) ctx.err(`latchkeyctl: ${m}: not cached\n`);
    return missing.length > 0 ? EXIT_FAIL : EXIT_OK;
  },
};

export const flush: CommandDef = {
  bool: ['negative'],
  async run(ctx, pos, flags) {
    expectPositionals('flush', pos, 0, 0, 'no arguments');
    const negative = flags.negative === true;
    const r = await ctx.call({ cmd: 'flush', negative_only: negative });
    const { ok: _ok, ...json } = r;
    if (ctx.mode === 'json') ctx.out(renderJson(json));
    else if (ctx.mode === 'tsv') ctx.out(`${str(r.removed)}\n`);
    else ctx.out(`removed ${str(r.removed)} ${negative ? 'negative ' : ''}${r.removed === 1 ? 'entry' : 'entries'}\n`);
    return EXIT_OK;
  },
};

/** For main: an AdminError from lookup carries where the "not found" came from. */
export function describeLookupFailure(e: AdminError): string {
  const src = e.reply.source ? ` (answered by ${str(e.reply.source)}${num(e.reply.ms) !== null ? ` in ${formatMs(num(e.reply.ms))}` : ''})` : '';
  return `${e.message}${src}`;
}
