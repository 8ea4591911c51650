// status and stats: the daemon's overview and its counters.
import { createHash } from 'node:crypto';
import { insecureSettings, upstreamAuthMode } from '../../config/safety.js';
import type { Config } from '../../config/types.js';
import type { TokenStatus } from '../../upstream/token.js';
import type { AdminReplyData } from '../../protocol/admin.js';
import { type AdminContext, type AdminHandlers, type ReloadOutcome, roundMs } from './context.js';

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

/** The first 16 hex digits of the sha256 of a config file's bytes: compare with `sha256sum`. */
export function configDigest(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

type UpstreamHealthView = Pick<AdminReplyData<'status'>['upstream'], 'reachable' | 'probe_ms' | 'probe_error' | 'health'>;

/**
 * The upstream's state: with [upstream] health_url, GET it now; without, no request at all (a
 * fake user asked on every `status` cost the user service a lookup and showed a 503 as
 * "unreachable"): the outcome of the last real request, and since when.
 */
async function upstreamHealth(ctx: AdminContext): Promise<UpstreamHealthView> {
  const healthUrl = ctx.config().upstream.healthUrl;
  const probe = healthUrl !== null ? (await ctx.source.probeHealth?.()) ?? null : null;
  const h = ctx.source.healthSnapshot?.() ?? { state: 'unknown' as const, since: null, detail: null, last_lookup: null };
  return {
    reachable: h.state === 'unknown' ? null : h.state === 'reachable',
    probe_ms: probe?.ms ?? null,
    probe_error: probe?.error ?? null,
    health: {
      state: h.state, since: h.since, detail: h.detail,
      url: healthUrl === null ? null : publicUrl(healthUrl),
      last_lookup: h.last_lookup,
    },
  };
}

/** The upstream's authentication for status: the mode from the config, token mode's state from the client. */
function authStatus(c: Config, t: TokenStatus | null): AdminReplyData<'status'>['upstream']['auth'] {
  return {
    mode: upstreamAuthMode(c),
    token_expires_at: t?.token_expires_at ?? null, token_valid_for_s: t?.token_valid_for_s ?? null,
    logins: t?.logins ?? 0, refreshes: t?.refreshes ?? 0, last_auth_error: t?.last_auth_error ?? null,
  };
}

function lastReloadView(r: ReloadOutcome | null): NonNullable<AdminReplyData<'status'>['config']>['last_reload'] {
  if (r === null) return null;
  return { at: r.at, ok: r.ok, credential: r.credential, error: r.ok ? null : r.error };
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
          ...(await upstreamHealth(ctx)),
          last_error: ctx.source.lastError(),
          auth: authStatus(c, ctx.source.tokenStatus?.() ?? null),
          holdoff: ctx.resolver.holdoff(),
        },
        cache: {
          file: c.cache.dbPath, size_bytes: ctx.cache.fileSize(),
          ttl_s: c.cache.ttlSec, negative_ttl_s: c.cache.negativeTtlSec, stale_grace_s: c.cache.staleGraceSec,
          entries: { fresh: counts.fresh, stale: counts.stale, expired: counts.expired, negative: counts.negative, total: counts.total },
          hit_ratio: typeof snap.hit_ratio === 'number' ? snap.hit_ratio : null,
          ...(({ write_error, recreated, unsaved }) => ({ write_error, recreated, held_in_memory: unsaved }))(ctx.cache.fileStatus()),
          jitter_pct: Math.round((c.cache.jitter ?? 0) * 10_000) / 100,
          warm_start: ctx.resolver.warmStart.status(),
        },
        ...(ctx.clock ? { clock: ctx.clock.status() } : {}),
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
        ...(ctx.configLoaded ? (({ at: loadedAt, digest }) => ({
          config: { file: ctx.configFile, loaded_at: loadedAt, digest, last_reload: lastReloadView(ctx.lastReload?.() ?? null) },
        }))(ctx.configLoaded()) : {}),
        ...(ctx.metrics ? { metrics: ctx.metrics.status() } : {}),
        ...(ctx.userdb ? { userdb: ctx.userdb.status() } : {}),
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
