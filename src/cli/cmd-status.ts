// latchkeyctl status and stats: the daemon's overview and its counters.
import { DaemonUnavailable } from './client.js';
import { type CommandDef, type Ctx, EXIT_OK, EXIT_UNAVAILABLE, num, obj, str } from './command.js';
import type { AdminOkReply, AdminReplyData } from '../protocol/admin.js';
import {
  bar, flatten, formatBytes, formatDuration, formatMs, formatRatio, formatTime, isoUtc, renderJson,
  renderPairs, renderTable, type TimeStyle,
} from './format.js';
import { expectPositionals } from './args.js';

type Pair = readonly [string, string];

/** Pairs shown for status; TSV gets machine values (bytes, epoch-free ISO times, plain numbers). */
export function statusPairs(r: AdminReplyData<'status'>, ctx: Pick<Ctx, 'mode' | 'time'>): Pair[] {
  const machine = ctx.mode === 'tsv';
  const t = (at: number | null): string => (machine ? (at === null ? '-' : isoUtc(at)) : formatTime(at, ctx.time));
  const { sockets, upstream: up, cache } = r;
  const { entries } = cache;
  const lastErr = up.last_error;
  // An older daemon sends no state: its probe's reachable is all there is.
  const h = up.health;
  const state = h?.state ?? (up.reachable === true ? 'reachable' : up.reachable === false ? 'unreachable' : 'unknown');
  const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, '; ');
  const pairs: Pair[] = [
    ['daemon', machine ? 'up' : `up (pid ${r.pid}, version ${r.version})`],
    ['version', r.version],
    ['pid', String(r.pid)],
    ['config', r.config_file],
    ...(r.config ? [['config loaded', machine ? `${t(r.config.loaded_at)} ${r.config.digest}` : `${t(r.config.loaded_at)}, sha256 ${r.config.digest || 'unknown'}…`] as Pair] : []),
    ...(r.config ? [['last reload', reloadText(r.config.last_reload, machine, t, oneLine)] as Pair] : []),
    ['started', t(r.started_at)],
    ['uptime', machine ? String(r.uptime_s) : formatDuration(r.uptime_s)],
    ['socket dir', sockets.dir],
    ['nss socket', sockets.nss],
    ['priv socket', sockets.priv],
    ['upstream', machine ? state : upstreamText(up, state, t)],
    ...(h ? [['upstream since', machine ? t(h.since) : h.since === null ? '-' : t(h.since)] as Pair] : []),
    ['upstream url', up.by_name_url],
    ...(h ? [
      ['health url', h.url ?? (machine ? '-' : 'none (status sends no request; it shows the last lookup)')] as Pair,
      ['last lookup', lastLookupText(h.last_lookup, machine, t)] as Pair,
    ] : []),
    ['last upstream error', lastErr ? (machine ? `${t(lastErr.at)}\t${lastErr.message}` : `${lastErr.message} (${t(lastErr.at)})`) : '-'],
    ...(up.auth ? authPairs(up.auth, machine, t) : []),
    // issue 19: while held off nothing is sent upstream; said on its own line so it is not missed.
    ...(up.holdoff !== undefined ? [['upstream holdoff', up.holdoff === null ? '-' : machine
      ? `${t(up.holdoff.until)}\t${up.holdoff.failures}\t${up.holdoff.half_open ? 'half-open' : 'held'}\t${oneLine(up.holdoff.reason)}`
      : `${up.holdoff.half_open ? `over at ${t(up.holdoff.until)}, one probe request allowed` : `nothing sent until ${t(up.holdoff.until)}`}: ${oneLine(up.holdoff.reason)}`] as Pair] : []),
    ['cache file', cache.file],
    ['cache size', machine ? String(cache.size_bytes) : formatBytes(cache.size_bytes)],
    ['entries', machine
      ? `${entries.fresh}\t${entries.stale}\t${entries.expired}\t${entries.negative}`
      : `${entries.fresh} fresh, ${entries.stale} stale, ${entries.expired} expired, ${entries.negative} negative`],
    ['hit ratio', machine ? str(cache.hit_ratio) : formatRatio(cache.hit_ratio)],
    ...(cache.jitter_pct !== undefined ? [['jitter', machine ? String(cache.jitter_pct) : `±${cache.jitter_pct}% on each ttl and refresh-ahead window`] as Pair] : []),
    ...(cache.warm_start ? [['warm start', ((w) => machine
      ? `${w.state}\t${w.total}\t${w.done}\t${w.refreshed}\t${w.failed}`
      : w.state === 'off' ? 'off' : `${w.state}: ${w.done} of ${w.total} done, ${w.refreshed} refreshed, ${w.failed} failed`)(cache.warm_start)] as Pair] : []),
    // issue 19: a cache file that refuses writes (its tmpfs full) or was made again while running.
    ...(cache.write_error ? [['cache writes', ((w) => machine
      ? `failing\t${w.code}\t${t(w.since)}\t${cache.held_in_memory ?? 0}`
      : `FAILING since ${t(w.since)} (${w.code}: ${oneLine(w.detail)}); ${cache.held_in_memory ?? 0} users held in memory. Fix: ${oneLine(w.fix)}`)(cache.write_error)] as Pair] : []),
    ...(cache.recreated ? [['cache recreated', machine
      ? `${t(cache.recreated.at)}\t${cache.recreated.restored_users}\t${oneLine(cache.recreated.reason)}`
      : `${t(cache.recreated.at)}: ${oneLine(cache.recreated.reason)}; ${cache.recreated.restored_users} users carried over`] as Pair] : []),
    ...(r.clock?.last_jump ? [['clock jump', ((j) => machine
      ? `${t(j.at)}\t${j.delta_ms}\t${r.clock!.jumps}`
      : `the wall clock stepped ${j.direction} by ${Math.round(Math.abs(j.delta_ms) / 1000)} s at ${t(j.at)} (${r.clock!.jumps} steps since start); check NTP`)(r.clock.last_jump)] as Pair] : []),
    ['open sessions', String(r.sessions.open)],
    ['rootd', machine ? (r.rootd.reachable ? 'reachable' : 'unreachable') : r.rootd.reachable ? `reachable (${r.rootd.socket})` : `unreachable: ${r.rootd.error ?? ''} (${r.rootd.socket})`],
    // The shared-memory map: "failed" says why; lookups then go over nss.sock.
    ['map', machine
      ? `${r.map.state}\t${r.map.users}\t${r.map.negative}\t${r.map.size_bytes}`
      : r.map.state === 'on'
        ? `on: ${r.map.users} users, ${r.map.negative} negative, ${formatBytes(r.map.size_bytes)} (${r.map.file})`
        : `${r.map.state}${r.map.reason ? `: ${r.map.reason}` : ''} (${r.map.file}); lookups go over nss.sock`],
  ];
  if (r.local) pairs.push(...localPairs(r.local, machine, t));
  // Session events: off, or the collector and what it took, lost and holds (never the token).
  if (r.events) {
    const e = r.events;
    pairs.push(['events', e.url === null ? 'off' : machine
      ? `${e.url}\t${e.sent}\t${e.failed_attempts}\t${e.dropped}\t${e.queued}`
      : `${e.url}: ${e.sent} sent, ${e.queued} queued (of ${e.queue_size}), ${e.dropped} dropped, ${e.failed_attempts} failed attempts${e.last_error ? `; last error: ${e.last_error.message} (${t(e.last_error.at)})` : ''}`]);
  }
  if (r.metrics) {
    const m = r.metrics;
    pairs.push(['metrics', m.listen === null ? 'off' : machine
      ? `${m.serving ? 'serving' : 'failed'} ${m.listen}${m.error ? ` ${oneLine(m.error)}` : ''}`
      : m.serving ? `serving at ${m.listen} (GET /metrics)` : `not serving: ${oneLine(m.error ?? 'unknown error')}`]);
  }
  if (r.userdb) {
    const u = r.userdb;
    pairs.push(['userdb', !u.enabled ? 'off ([userdb] enabled = no)' : machine
      ? `${u.path}\t${u.connections}\t${u.requests}\t${u.errors}\t${u.refused}\t${u.malformed}\t${u.records_refused}`
      : `serving io.systemd.UserDatabase at ${u.path}: ${u.connections} connections, ${u.requests} requests, ${u.errors} error replies, ${u.refused} connections refused, ${u.malformed} closed malformed${u.records_refused ? `, ${u.records_refused} records refused by systemd's rules (see the log)` : ''}`]);
  }
  // Weakened settings (insecure_http, insecure_tls) are shown every time, never only in a log
  // an admin may not read; no line at all when there are none.
  if (r.insecure.length > 0) pairs.push(['insecure', r.insecure.join(machine ? '\t' : '; ')]);
  // The summary line already carries version and pid on a terminal.
  return machine ? pairs.filter(([k]) => k !== 'daemon') : pairs.filter(([k]) => k !== 'version' && k !== 'pid');
}

type Upstream = AdminReplyData<'status'>['upstream'];
type Health = NonNullable<Upstream['health']>;
type State = Health['state'];
const STATE_WORDS: Record<State, string> = {
  reachable: 'reachable', unreachable: 'unreachable (no answer)', http_error: 'HTTP error', auth_failed: 'authentication failed',
  invalid_reply: 'invalid replies', unknown: 'unknown',
};

/** The upstream line on a terminal: the state in words, how it was learnt, since when, why. */
export function upstreamText(up: Upstream, state: State, t: (at: number | null) => string): string {
  const h = up.health;
  if (state === 'unknown') {
    return h?.url === null
      ? 'unknown: no request since the start (set [upstream] health_url for status to probe it)'
      : `unknown${up.probe_error ? `: ${up.probe_error}` : ''}`;
  }
  const how = up.probe_ms !== null ? ` (probe ${formatMs(up.probe_ms)})` : h?.url === null ? ' (last request)' : '';
  const since = h?.since ? ` since ${t(h.since)}` : '';
  const why = h?.detail ?? up.probe_error;
  return `${STATE_WORDS[state]}${how}${state === 'reachable' ? '' : since}${why ? `: ${why}` : ''}`;
}

function lastLookupText(l: Health['last_lookup'], machine: boolean, t: (at: number | null) => string): string {
  if (l === null) return machine ? '-' : 'none since the start';
  if (machine) return `${t(l.at)} ${l.outcome} ${l.ms}${l.message ? ` ${l.message}` : ''}`;
  return `${l.outcome === 'reachable' ? 'answered' : STATE_WORDS[l.outcome]} in ${formatMs(l.ms)} (${t(l.at)})${l.message ? `: ${l.message}` : ''}`;
}

function reloadText(r: NonNullable<AdminReplyData<'status'>['config']>['last_reload'], machine: boolean, t: (at: number | null) => string, oneLine: (s: string) => string): string {
  if (r === null) return machine ? '-' : 'none since the start';
  if (machine) return `${t(r.at)} ${r.ok ? 'ok' : 'refused'}${r.error ? ` ${oneLine(r.error)}` : ''}`;
  return r.ok ? `ok (${t(r.at)})` : `refused (${t(r.at)}), the previous config stays in force: ${oneLine(r.error ?? '')}`;
}

/** How the daemon authenticates to the user service; in token mode the token's validity and the last failure at token_url. */
export function authPairs(a: NonNullable<AdminReplyData<'status'>['upstream']['auth']>, machine: boolean, t: (at: number | null) => string): Pair[] {
  if (a.mode !== 'token') return [['upstream auth', a.mode]];
  const err = a.last_auth_error;
  return [
    ['upstream auth', machine
      ? `token\t${a.token_valid_for_s ?? '-'}\t${a.logins}\t${a.refreshes}`
      : `token: ${a.token_valid_for_s === null ? 'no valid token' : `valid for ${formatDuration(a.token_valid_for_s)} (until ${t(a.token_expires_at)})`}; `
        + `${a.logins} login${a.logins === 1 ? '' : 's'}, ${a.refreshes} refresh${a.refreshes === 1 ? '' : 'es'}`],
    ['last auth error', err ? (machine ? `${t(err.at)}\t${err.message}` : `${err.message} (${t(err.at)})`) : '-'],
  ];
}

/** The "local users" block: role, count, snapshot age in words, last sync, conflicts, upgrades. */
export function localPairs(l: NonNullable<AdminReplyData<'status'>['local']>, machine: boolean, t: (at: number | null) => string): Pair[] {
  const ctxs = Object.entries(l.contexts).map(([id, n]) => `${id} ${n}`).join(machine ? ',' : ', ') || '-';
  const snap = l.snapshot;
  const up = l.upgrades;
  const pairs: Pair[] = [
    ['local users', machine ? `${l.users} ${l.role} ${l.precedence}` : `${l.users} (${l.role}; a name both have is answered by the ${l.precedence === 'local' ? 'local store' : 'upstream'}) in ${l.db}`],
    ['local contexts', machine ? `${l.default_context} ${l.upgrade} ${ctxs}` : `default ${l.default_context}, upgrade ${l.upgrade}; users: ${ctxs}`],
  ];
  if (l.role !== 'standalone') {
    pairs.push(['local snapshot', snap === null ? (machine ? '-' : 'none yet')
      : machine ? `${t(snap.taken_at)} ${snap.taken_on ?? '-'} ${snap.users}`
        : `taken ${t(snap.taken_at)}${snap.taken_on ? ` on ${snap.taken_on}` : ''}, ${snap.users} users`]);
    pairs.push(['last sync', machine ? `${t(l.last_sync_at)} ${l.last_sync_error ?? 'ok'}`
      : l.last_sync_at === null ? 'never' : `${t(l.last_sync_at)}: ${l.last_sync_error ?? 'ok'}`]);
  }
  if (l.conflicts.length > 0) {
    pairs.push(['local conflicts', l.conflicts.map((c) => (machine ? `${c.name}:${c.with}` : `${c.name} (with ${c.with}: ${c.detail})`)).join(machine ? ',' : '; ')]);
  }
  pairs.push(['upgrades', machine
    ? `${up.local_ok} ${up.local_failed} ${up.remote_ok} ${up.remote_failed} ${up.remote_skipped}`
    : `local ${up.local_ok} ok, ${up.local_failed} failed; remote ${up.remote_ok} ok, ${up.remote_failed} failed, ${up.remote_skipped} skipped`]);
  return pairs;
}

export const status: CommandDef = {
  async run(ctx, pos) {
    expectPositionals('status', pos, 0, 0, 'no arguments');
    let r: AdminOkReply<'status'>;
    try {
      r = await ctx.call({ cmd: 'status' });
    } catch (e) {
      if (!(e instanceof DaemonUnavailable)) throw e;
      // "down" is an answer, not only an error: print it where a script reads, then fail with 3.
      // ok/code: the shape of every --json failure (main.ts jsonFailure).
      if (ctx.mode === 'json') ctx.out(renderJson({ ok: false, code: 'daemon_unavailable', daemon: 'down', reason: e.reason, error: e.message }));
      else ctx.out(renderPairs([['daemon', 'down']], ctx.mode));
      ctx.err(`latchkeyctl: ${e.message}\n`);
      return EXIT_UNAVAILABLE;
    }
    const { ok: _ok, ...rest } = r;
    if (ctx.mode === 'json') ctx.out(renderJson({ daemon: 'up', ...rest }));
    else ctx.out(renderPairs(statusPairs(r, ctx), ctx.mode));
    return EXIT_OK;
  },
};

/** A latency histogram: upper bounds in ms (null = no bound) with counts, plus summary figures. */
interface Histogram { buckets: Array<{ le: number | null; count: number }>; count: number; mean: number | null; p50: number | null; p99: number | null }

/**
 * Recognises the daemon's histogram object (src/cache/stats.ts): {count, mean_ms, p50_ms, p99_ms,
 * buckets {"le_5ms": n, ..., "+inf": n}}; an array of {le, count} is accepted too.
 */
export function asHistogram(v: unknown): Histogram | null {
  const h = obj(v);
  let buckets: Histogram['buckets'];
  if (Array.isArray(h.buckets)) {
    buckets = (h.buckets as unknown[]).map(obj).map((b) => ({ le: num(b.le), count: num(b.count) ?? 0 }));
  } else if (h.buckets !== null && typeof h.buckets === 'object') {
    buckets = [];
    for (const [k, c] of Object.entries(h.buckets as Record<string, unknown>)) {
      const m = /^le_([0-9.]+)ms$/.exec(k);
      if (!m && k !== '+inf') return null;
      buckets.push({ le: m ? Number(m[1]) : null, count: num(c) ?? 0 });
    }
  } else {
    return null;
  }
  return {
    buckets, count: num(h.count) ?? buckets.reduce((a, b) => a + b.count, 0),
    mean: num(h.mean_ms), p50: num(h.p50_ms), p99: num(h.p99_ms),
  };
}

/** Any JSON value as text: "-" for null or absent. */
const cell = (v: unknown): string => (v === null || v === undefined ? '-' : String(v));

/** One counter cell: fractions to two places, lists (e.g. locked users) as "a 120, b 30" or "-". */
export function statValue(v: unknown): string {
  if (typeof v === 'number' && !Number.isInteger(v)) return v.toFixed(2);
  if (Array.isArray(v)) {
    if (v.length === 0) return '-';
    return v.map((item) => (item !== null && typeof item === 'object' ? Object.values(item).map(cell).join(' ') : cell(item))).join(', ');
  }
  return cell(v);
}

/**
 * Counter lines, with histograms drawn as bars underneath on a terminal. Apart from since and
 * uptime_s it walks whatever counters the (already checked) reply holds, so a counter the daemon
 * adds is shown without a change here.
 */
export function renderStats(r: { since?: number; uptime_s?: number; [counter: string]: unknown }, mode: 'table' | 'tsv', time: TimeStyle): string {
  const { ok: _ok, since, uptime_s: uptime, ...rest } = r;
  const counters: Array<[string, string]> = [];
  if (since !== undefined) counters.push(['since', mode === 'tsv' ? isoUtc(since) : formatTime(since, time)]);
  if (uptime !== undefined) counters.push(['uptime', mode === 'tsv' ? String(uptime) : formatDuration(uptime)]);
  const histograms: Array<[string, Histogram]> = [];
  const walk = (v: unknown, key: string): void => {
    const h = asHistogram(v);
    if (h) { histograms.push([key, h]); return; }
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, sub] of Object.entries(v as Record<string, unknown>)) walk(sub, key ? `${key}.${k}` : k);
      return;
    }
    for (const [k, val] of flatten(v, key)) {
      counters.push([k, mode === 'table' && k.endsWith('hit_ratio') ? formatRatio(num(val)) : statValue(val)]);
    }
  };
  walk(rest, '');
  if (mode === 'tsv') {
    const lines = counters.map(([k, v]) => `${k}\t${v}`);
    for (const [k, h] of histograms) {
      for (const b of h.buckets) lines.push(`${k}.le_${b.le === null ? 'inf' : b.le}\t${b.count}`);
    }
    return lines.length ? lines.join('\n') + '\n' : '';
  }
  let out = renderTable(counters, [{ header: 'COUNTER', cell: (c) => c[0] }, { header: 'VALUE', cell: (c) => c[1], right: true }]);
  for (const [k, h] of histograms) {
    const max = Math.max(0, ...h.buckets.map((b) => b.count));
    const figures = [['mean', h.mean], ['p50', h.p50], ['p99', h.p99]].filter(([, v]) => v !== null).map(([n, v]) => `${n} ${formatMs(v as number)}`);
    out += `\n${k} (${h.count} requests${figures.length ? ', ' + figures.join(', ') : ''})\n`;
    const label = (b: { le: number | null }, i: number): string => {
      if (b.le !== null) return `<= ${formatMs(b.le)}`;
      const prev = i > 0 ? h.buckets[i - 1]!.le : null;
      return prev === null ? 'all' : `> ${formatMs(prev)}`;
    };
    out += renderTable(h.buckets.map((b, i) => ({ ...b, label: label(b, i) })), [
      { header: '  LATENCY', cell: (b) => `  ${b.label}` },
      { header: 'COUNT', cell: (b) => String(b.count), right: true },
      { header: '', cell: (b) => bar(b.count, max) },
    ]);
  }
  return out;
}

export const stats: CommandDef = {
  async run(ctx, pos) {
    expectPositionals('stats', pos, 0, 0, 'no arguments');
    const r = await ctx.call({ cmd: 'stats' });
    if (ctx.mode === 'json') {
      const { ok: _ok, ...rest } = r;
      ctx.out(renderJson(rest));
    } else {
      ctx.out(renderStats(r, ctx.mode, ctx.time));
    }
    return EXIT_OK;
  },
};
