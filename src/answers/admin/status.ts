// status and stats: the daemon's overview and its counters.
import { performance } from 'node:perf_hooks';
import { insecureSettings, upstreamAuthMode } from '../../config/safety.js';
import type { Config } from '../../config/types.js';
import type { TokenStatus } from '../../upstream/token.js';
import type { AdminReplyData } from '../../protocol/admin.js';
import { type AdminContext, type AdminHandlers, roundMs } from './context.js';

/** Asked for by `status` to see whether the upstream answers; a 404 is the expected reply. */
export const PROBE_NAME = 'latchkey-probe';

/** Drops user:password@ from a URL before it is shown anywhere. */
export function publicUrl(url: string): string {
  try {
    // The %s / %u placeholders are not valid URL escapes; park them while URL parses.
    const u = new URL(url.replace(/%s/g, '__LK_S__').replace(/%u/g, '__LK_U__'));
    if (!u.username && !u.password) return url;
    u.username = '';
    u.password = '';
    return u.toString().replace(/__LK_S__/g, '%s').replace(/__LK_U__/g, '%u');
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//');
  }
}

type Probe = Pick<AdminReplyData<'status'>['upstream'], 'reachable' | 'probe_ms' | 'probe_error'>;

async function probeUpstream(ctx: AdminContext): Promise<Probe> {
  const re = ctx.config().users.nameRegex;
  re.lastIndex = 0;
  // A probe name the name rule rejects would never leave the daemon: no answer either way.
  if (!re.test(PROBE_NAME)) return { reachable: null, probe_ms: null, probe_error: 'probe skipped: the name rule rejects the probe name' };
  const t0 = performance.now();
  try {
    await ctx.source.fetchByName(PROBE_NAME);
    return { reachable: true, probe_ms: roundMs(performance.now() - t0), probe_error: null };
  } catch (e) {
    return { reachable: false, probe_ms: roundMs(performance.now() - t0), probe_error: e instanceof Error ? e.message : String(e) };
  }
}

/** The upstream's authentication for status: the mode from the config, token mode's state from the client. */
function authStatus(c: Config, t: TokenStatus | null): AdminReplyData<'status'>['upstream']['auth'] {
  return {
    mode: upstreamAuthMode(c),
    token_expires_at: t?.token_expires_at ?? null, token_valid_for_s: t?.token_valid_for_s ?? null,
    logins: t?.logins ?? 0, refreshes: t?.refreshes ?? 0, last_auth_error: t?.last_auth_error ?? null,
  };
}

export function statusCommands(ctx: AdminContext): AdminHandlers<'status' | 'stats'> {
  return {
    async status() {
      const c = ctx.config();
      const at = Date.now();
      const counts = ctx.cache.counts(at, c.cache.staleGraceSec);
      const snap = ctx.resolver.stats.snapshot();
      return {
        version: ctx.version, pid: process.pid, started_at: ctx.startedAt,
        uptime_s: Math.floor((at - ctx.startedAt) / 1000), config_file: ctx.configFile,
        sockets: ctx.socketPaths(),
        upstream: {
          by_name_url: publicUrl(c.upstream.byNameUrl), by_uid_url: publicUrl(c.upstream.byUidUrl),
          ...(await probeUpstream(ctx)),
          last_error: ctx.source.lastError(),
          auth: authStatus(c, ctx.source.tokenStatus?.() ?? null),
        },
        cache: {
          file: c.cache.dbPath, size_bytes: ctx.cache.fileSize(),
          ttl_s: c.cache.ttlSec, negative_ttl_s: c.cache.negativeTtlSec, stale_grace_s: c.cache.staleGraceSec,
          entries: { fresh: counts.fresh, stale: counts.stale, expired: counts.expired, negative: counts.negative, total: counts.total },
          hit_ratio: typeof snap.hit_ratio === 'number' ? snap.hit_ratio : null,
        },
        sessions: { open: ctx.sessions.countOpen() },
        rootd: await (async () => {
          const error = await ctx.rootd.probe();
          return { socket: ctx.rootd.socketPath, reachable: error === null, error };
        })(),
        map: (() => {
          const m = ctx.map.status();
          const st = m.stats;
          return {
            file: m.path, state: m.state, reason: m.reason,
            users: st?.users ?? 0, negative: (st?.negNames ?? 0) + (st?.negUids ?? 0),
            size_bytes: st?.fileSize ?? 0, rebuilds: st?.rebuilds ?? 0, not_published: st?.notPublished ?? 0,
          };
        })(),
        insecure: insecureSettings(c),
        ...(ctx.local ? { local: ctx.local.status() } : {}),
        ...(ctx.events ? { events: ctx.events.status() } : {}),
      };
    },

    stats() {
      const byKind: AdminReplyData<'stats'>['verify']['by_kind'] = {};
      for (const [kind, k] of Object.entries(ctx.authStats.byKind)) {
        const n = k.ok + k.failed;
        byKind[kind] = { ok: k.ok, failed: k.failed, avg_ms: n > 0 ? roundMs(k.totalMs / n) : null };
      }
      return {
        since: ctx.startedAt, uptime_s: Math.floor((Date.now() - ctx.startedAt) / 1000),
        ...ctx.resolver.stats.snapshot(),
        verify: { by_kind: byKind, unknown_user: ctx.authStats.unknownUser, throttled: ctx.authStats.throttled },
        throttle: ctx.throttle.snapshot(),
        ...(ctx.local ? { upgrades: ctx.local.status().upgrades } : {}),
        ...(ctx.events ? (({ sent, failed_attempts, dropped, queued }) => ({ events: { sent, failed_attempts, dropped, queued } }))(ctx.events.status()) : {}),
      };
    },
  };
}
