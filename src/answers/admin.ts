// The ADMIN opcode on priv.sock: latchkeyctl's one entry point into the daemon.
//
// Request: a JSON object {"cmd": NAME, ...arguments}. Reply: {"ok": true, ...data} or
// {"ok": false, "error": MESSAGE, "code": CODE}. The frame status is OK either way; a JSON
// error is the command's answer, not a protocol failure. Field names below are stable: add new
// ones, never rename or retype old ones (latchkeyctl --json output is these objects minus "ok").
//
// Conventions: times are epoch milliseconds in fields named *_at; durations are *_ms or *_s;
// a user argument is a NAME (string) or a local UID (number). No reply ever carries a password,
// a password hash (only its kind and cost) or an upstream credential (URLs lose their userinfo).
//
// Error codes:
//   bad_request      malformed JSON, missing or wrong-typed argument
//   unknown_command  "cmd" is not one of the commands below (a newer latchkeyctl, older daemon)
//   not_found        no such user / not cached / no such session
//   unavailable      the upstream user service failed and nothing stale could answer
//   internal         the daemon failed; details are in its log
//
// UserSummary = {name, uid, upstream_uid, gid, fetched_at, expires_at,
//                state: "fresh"|"stale"|"expired", keys (count), has_password, home, home_exists}
//   state: fresh before expires_at; stale after it but within cache.stale_grace (served only
//   while upstream fails); expired past the grace.
// Session = {id, user, uid, service, rhost, tty, pid, started_at}
//
// status        {} → {version, pid, started_at, uptime_s, config_file,
//                     sockets {dir, nss, priv},
//                     upstream {by_name_url, by_uid_url, reachable: bool|null, probe_ms, probe_error,
//                               last_error {message, at}|null},
//                     cache {file, size_bytes, ttl_s, negative_ttl_s, stale_grace_s,
//                            entries {fresh, stale, expired, negative, total}, hit_ratio: 0..1|null},
//                     sessions {open},
//                     insecure [TEXT]}   weakened settings in effect (insecure_http/_tls), [] when none
//               The upstream probe asks for a name that should not exist (PROBE_NAME) straight
//               from the source, bypassing the cache; "found" or "not found" both mean reachable.
// users         {stale?: bool, negative?: bool} → {now, users [UserSummary], negative [{key, kind, fetched_at, expires_at}]}
//               stale: only entries that are not fresh. negative: also the "no such user" entries.
// show          {user} → {user {UserSummary + gecos, shell, password {kind, cost, cost_name}|null,
//                                keys [{type, fingerprint, comment}]}, sessions [Session]}
//               cache only; not_found when not cached.
// lookup        {user, refresh?: bool} → {result: "found", source: "cache"|"upstream"|"stale", ms,
//                                         entry {name, uid, gid, gecos, dir, shell}}
//               not found: {ok: false, code: "not_found", result: "notfound", source, ms}
//               upstream down: {ok: false, code: "unavailable", result: "unavail", reason, ms}
// invalidate    {users: [user...]} | {all: true} → {invalidated, already_expired [user...], not_cached [user...]}
// flush         {negative_only?: bool} → {removed, negative_only}
// sessions      {user?: NAME} → {sessions [Session]}
// kill-session  {id} | {user: NAME} → {ended}; not_found when nothing was open
// stats         {} → {since, uptime_s,
//                     lookups {hit, miss, stale, negative, rule, unavail, notfound}, hit_ratio,
//                     upstream {found, notfound, error, background_refresh},
//                     upstream_latency {count, mean_ms, p50_ms, p99_ms, max_ms, buckets {le_1ms … le_5000ms, +inf}},
//                     verify {by_kind {KIND {ok, failed, avg_ms}}, unknown_user, throttled},
//                     throttle {trackedUsers, trackedHosts, lockedUsers [{user, retryAfterSec}],
//                               lockedHosts [{rhost, retryAfterSec}], failures, lockouts, refused, evictions,
//                               inFlight}}
//               (lookups/upstream come from src/cache/stats.ts, throttle from src/verify/throttle.ts)
// throttle      {} → {now, max_failures, host_max_failures, window_s, lockout_s,
//                     entries [{scope: "user"|"host", key, failures, limit, in_flight,
//                               window_started_at|null, locked_until|null, retry_after_s, refused}],
//                     total, truncated,
//                     counters {tracked_users, tracked_hosts, in_flight, failures, lockouts, refused, evictions}}
//               entries: counters holding failures, reservations in flight or a lockout; locked
//               first, then most failures; at most THROTTLE_LIST_MAX (total counts them all).
//               refused: attempts refused during the current lockout.
// throttle-reset {user: NAME} | {host: RHOST} | {all: true} → {users, hosts}
//               clears failures and lockouts (counts of the counters that held any);
//               not_found when the named user or host has nothing recorded. Logged (admin.throttle_reset).
// auth-test     {user: NAME, password} → {user, authenticated, result: "ok"|"wrong_password"|
//                     "no_password"|"unknown_user"|"throttled"|"unavailable", reason,
//                     hash {kind, cost, cost_name}|null, source, ms}
//               Same steps as AUTH_PASSWORD, but a test is neither counted in stats nor recorded
//               by the throttle (an admin testing must not lock the user out).
import { createHash } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { ok, type HandlerTable, type Peer } from '../server/dispatch.js';
import type { Fields } from '../protocol/codec.js';
import type { Config } from '../config/types.js';
import { insecureSettings } from '../config/safety.js';
import type { CachedUser } from '../types.js';
import type { Lookup } from '../cache/types.js';
import { classify, type FreshnessConfig } from '../cache/policy.js';
import type { UserCache } from '../cache/db.js';
import type { Resolver } from '../directory/resolver.js';
import type { UserSource } from '../upstream/types.js';
import type { SessionRecord, SessionRegistry } from '../sessions/registry.js';
import type { Throttle } from '../verify/throttle.js';
import { hashInfo } from '../verify/hash.js';
import { checkPassword } from '../verify/login.js';
import { homePath } from '../homes/home.js';
import type { AuthStats } from './auth.js';
import { log } from '../log.js';

/** Everything the admin commands read or operate; built by main.ts. */
export interface AdminContext {
  version: string;
  /** epoch ms */
  startedAt: number;
  config: () => Config;
  configFile: string;
  socketPaths: () => { dir: string; nss: string; priv: string };
  cache: UserCache;
  resolver: Resolver;
  source: UserSource;
  sessions: SessionRegistry;
  throttle: Throttle;
  authStats: AuthStats;
}

/** Most entries one `throttle` reply lists (the maps may hold 100 000 keys each). */
export const THROTTLE_LIST_MAX = 1000;

/** A throttle key as PAM sent it: any non-empty string up to the throttle's key length. */
function throttleKey(v: unknown, field: string): string {
  // eslint-disable-next-line no-control-regex
  if (typeof v === 'string' && v.length > 0 && v.length <= 256 && !/[\u0000-\u001f\u007f]/.test(v)) return v;
  throw badRequest(`"${field}" must be a non-empty string of at most 256 printable characters`);
}

/** Asked for by `status` to see whether the upstream answers; a 404 is the expected reply. */
export const PROBE_NAME = 'latchkey-probe';

type Json = Record<string, unknown>;
type UserRef = string | number;

class AdminFailure extends Error {
  constructor(readonly code: 'bad_request' | 'unknown_command' | 'not_found' | 'unavailable', message: string, readonly extra: Json = {}) {
    super(message);
  }
}

const badRequest = (m: string): AdminFailure => new AdminFailure('bad_request', m);

function userRef(v: unknown, field = 'user'): UserRef {
  if (typeof v === 'string' && v.length > 0 && v.length <= 256) return v;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return v;
  throw badRequest(`"${field}" must be a user name or a uid`);
}
function optBool(args: Json, field: string): boolean {
  const v = args[field];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw badRequest(`"${field}" must be true or false`);
  return v;
}
function optName(args: Json, field: string): string | undefined {
  const v = args[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > 256) throw badRequest(`"${field}" must be a user name`);
  return v;
}

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

/** fresh / stale (within the grace, served only if upstream fails) / expired, by the cache's own rule. */
export function entryState(u: Pick<CachedUser, 'expiresAt'>, now: number, cfg: FreshnessConfig): 'fresh' | 'stale' | 'expired' {
  const f = classify(u.expiresAt, now, cfg);
  return f === 'fresh' || f === 'refresh-ahead' ? 'fresh' : f === 'stale-servable' ? 'stale' : 'expired';
}

/** `type base64 [comment]` → type, OpenSSH-style SHA256 fingerprint, comment. */
export function keyInfo(line: string): { type: string; fingerprint: string; comment: string } {
  const [type = '', blob = '', ...rest] = line.trim().split(/\s+/);
  const digest = createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '');
  return { type, fingerprint: `SHA256:${digest}`, comment: rest.join(' ') };
}

/** Kind and cost of a hash (what `show` may reveal); null when the user has no password. */
function hashJson(hash: string | null): Json | null {
  const h = hashInfo(hash);
  return h.kind === 'none' ? null : { kind: h.kind, cost: h.cost, cost_name: h.costName };
}

function sessionJson(s: SessionRecord): Json {
  return { id: s.id, user: s.user, uid: s.uid, service: s.service, rhost: s.rhost, tty: s.tty, pid: s.pid, started_at: s.startedAt };
}

function homeExists(path: string): boolean {
  try { lstatSync(path); return true; } catch { return false; }
}

export function adminHandlers(ctx: AdminContext): HandlerTable {
  const cfg = (): Config => ctx.config();
  const now = (): number => Date.now();

  const summary = (u: CachedUser, at: number): Json => {
    const c = cfg();
    const home = homePath(c.homes, u.username);
    return {
      name: u.username, uid: u.uid, upstream_uid: u.upstreamUid, gid: c.users.gid,
      fetched_at: u.fetchedAt, expires_at: u.expiresAt, state: entryState(u, at, c.cache),
      keys: u.sshPublicKeys.length, has_password: hashInfo(u.passwordHash).kind !== 'none', home, home_exists: homeExists(home),
    };
  };

  const cached = (ref: UserRef): CachedUser | null =>
    typeof ref === 'number' ? ctx.cache.getByUid(ref) : ctx.cache.getByName(ref);

  const probeUpstream = async (): Promise<{ reachable: boolean | null; probe_ms: number | null; probe_error: string | null }> => {
    const re = cfg().users.nameRegex;
    re.lastIndex = 0;
    // A probe name the name rule rejects would never leave the daemon: no answer either way.
    if (!re.test(PROBE_NAME)) return { reachable: null, probe_ms: null, probe_error: 'probe skipped: the name rule rejects the probe name' };
    const t0 = performance.now();
    try {
      await ctx.source.fetchByName(PROBE_NAME);
      return { reachable: true, probe_ms: round(performance.now() - t0), probe_error: null };
    } catch (e) {
      return { reachable: false, probe_ms: round(performance.now() - t0), probe_error: e instanceof Error ? e.message : String(e) };
    }
  };

  const commands: Record<string, (args: Json, peer: Peer) => Promise<Json> | Json> = {
    async status() {
      const c = cfg();
      const at = now();
      const counts = ctx.cache.counts(at, c.cache.staleGraceSec);
      const snap = ctx.resolver.stats.snapshot();
      return {
        version: ctx.version, pid: process.pid, started_at: ctx.startedAt,
        uptime_s: Math.floor((at - ctx.startedAt) / 1000), config_file: ctx.configFile,
        sockets: ctx.socketPaths(),
        upstream: {
          by_name_url: publicUrl(c.upstream.byNameUrl), by_uid_url: publicUrl(c.upstream.byUidUrl),
          ...(await probeUpstream()),
          last_error: ctx.source.lastError(),
        },
        cache: {
          file: c.cache.dbPath, size_bytes: ctx.cache.fileSize(),
          ttl_s: c.cache.ttlSec, negative_ttl_s: c.cache.negativeTtlSec, stale_grace_s: c.cache.staleGraceSec,
          entries: { fresh: counts.fresh, stale: counts.stale, expired: counts.expired, negative: counts.negative, total: counts.total },
          hit_ratio: typeof snap.hit_ratio === 'number' ? snap.hit_ratio : null,
        },
        sessions: { open: ctx.sessions.countOpen() },
        insecure: insecureSettings(c),
      };
    },

    users(args) {
      const staleOnly = optBool(args, 'stale');
      const negative = optBool(args, 'negative');
      const at = now();
      const list = ctx.cache.all().map((u) => summary(u, at)).filter((s) => !staleOnly || s.state !== 'fresh');
      const out: Json = { now: at, users: list };
      if (negative) {
        // The cache keys negatives as "name:NAME" / "uid:UID"; the kind says which, the key is the value.
        out.negative = ctx.cache.negatives().map((n) => ({ key: n.key.slice(n.key.indexOf(':') + 1), kind: n.kind, fetched_at: n.fetchedAt, expires_at: n.expiresAt }));
      }
      return out;
    },

    show(args) {
      const ref = userRef(args.user);
      const u = cached(ref);
      if (!u) throw new AdminFailure('not_found', `${ref} is not cached (latchkeyctl lookup ${ref} fetches it)`);
      return {
        user: {
          ...summary(u, now()), gecos: u.gecos, shell: cfg().users.shell,
          password: hashJson(u.passwordHash),
          keys: u.sshPublicKeys.map(keyInfo),
        },
        sessions: ctx.sessions.list(u.username).map(sessionJson),
      };
    },

    async lookup(args) {
      const ref = userRef(args.user);
      const refresh = optBool(args, 'refresh');
      const t0 = performance.now();
      let l: Lookup;
      if (refresh) {
        // Upstream is asked by name; a uid is refreshed through the name it is cached under.
        const name = typeof ref === 'string' ? ref : ctx.cache.getByUid(ref)?.username;
        l = name !== undefined ? await ctx.resolver.refreshByName(name) : await ctx.resolver.byUid(ref as number);
      } else {
        l = typeof ref === 'number' ? await ctx.resolver.byUid(ref) : await ctx.resolver.byName(ref);
      }
      const ms = round(performance.now() - t0);
      if (l.status === 'notfound') throw new AdminFailure('not_found', `no such user: ${ref}`, { result: 'notfound', source: l.source, ms });
      if (l.status === 'unavail') throw new AdminFailure('unavailable', `user service unavailable: ${l.reason}`, { result: 'unavail', reason: l.reason, ms });
      return { result: 'found', source: l.source, ms, entry: { ...ctx.resolver.toPasswd(l.user) } };
    },

    invalidate(args, peer) {
      if (args.all === true) {
        const n = ctx.cache.invalidate('all');
        log('info', 'admin.invalidate', { all: true, count: n, peer_pid: peer.pid });
        return { invalidated: n, already_expired: [], not_cached: [] };
      }
      if (!Array.isArray(args.users) || args.users.length === 0) throw badRequest('"users" must be a non-empty list, or "all": true');
      const refs = args.users.map((v) => userRef(v, 'users'));
      let n = 0;
      const missing: UserRef[] = [];
      const already: UserRef[] = [];
      for (const ref of refs) {
        const k = ctx.cache.invalidate(typeof ref === 'number' ? { uid: ref } : { name: ref });
        // 0 changes: not cached at all, or cached but already past its TTL (nothing to do).
        if (k === 0) (cached(ref) ? already : missing).push(ref);
        n += k;
      }
      log('info', 'admin.invalidate', { users: refs, count: n, peer_pid: peer.pid });
      return { invalidated: n, already_expired: already, not_cached: missing };
    },

    flush(args, peer) {
      const negativeOnly = optBool(args, 'negative_only');
      const n = ctx.cache.flush({ negativeOnly });
      log('info', 'admin.flush', { negative_only: negativeOnly, removed: n, peer_pid: peer.pid });
      return { removed: n, negative_only: negativeOnly };
    },

    sessions(args) {
      return { sessions: ctx.sessions.list(optName(args, 'user')).map(sessionJson) };
    },

    'kill-session'(args, peer) {
      const user = optName(args, 'user');
      const id = typeof args.id === 'string' && args.id.length > 0 ? args.id : undefined;
      if ((user === undefined) === (id === undefined)) throw badRequest('give exactly one of "id" or "user"');
      const ended = ctx.sessions.kill(id !== undefined ? { id } : { user: user! });
      log('info', 'admin.kill_session', { id, user, ended, peer_pid: peer.pid });
      if (ended === 0) throw new AdminFailure('not_found', id !== undefined ? `no open session ${id}` : `${user} has no open sessions`);
      return { ended };
    },

    stats() {
      const byKind: Json = {};
      for (const [kind, k] of Object.entries(ctx.authStats.byKind)) {
        const n = k.ok + k.failed;
        byKind[kind] = { ok: k.ok, failed: k.failed, avg_ms: n > 0 ? round(k.totalMs / n) : null };
      }
      const snap = ctx.resolver.stats.snapshot();
      return {
        since: ctx.startedAt, uptime_s: Math.floor((now() - ctx.startedAt) / 1000),
        ...snap,
        verify: { by_kind: byKind, unknown_user: ctx.authStats.unknownUser, throttled: ctx.authStats.throttled },
        throttle: ctx.throttle.snapshot(),
      };
    },

    throttle() {
      const c = cfg();
      const { entries, total } = ctx.throttle.list(THROTTLE_LIST_MAX);
      const snap = ctx.throttle.snapshot();
      return {
        now: now(),
        max_failures: c.pam.maxFailures, host_max_failures: c.pam.hostMaxFailures,
        window_s: c.pam.throttleWindowSec, lockout_s: c.pam.throttleLockoutSec,
        entries: entries.map((e) => ({
          scope: e.scope, key: e.key, failures: e.failures, limit: e.limit, in_flight: e.inFlight,
          window_started_at: e.windowStartedAt, locked_until: e.lockedUntil, retry_after_s: e.retryAfterSec, refused: e.refused,
        })),
        total, truncated: total > entries.length,
        counters: {
          tracked_users: snap.trackedUsers, tracked_hosts: snap.trackedHosts, in_flight: snap.inFlight,
          failures: snap.failures, lockouts: snap.lockouts, refused: snap.refused, evictions: snap.evictions,
        },
      };
    },

    'throttle-reset'(args, peer) {
      const given = ['user', 'host', 'all'].filter((k) => args[k] !== undefined && args[k] !== null);
      if (given.length !== 1) throw badRequest('give exactly one of "user", "host" or "all": true');
      let target: { user: string } | { host: string } | { all: true };
      if (args.all !== undefined && args.all !== null) {
        if (args.all !== true) throw badRequest('"all" must be true');
        target = { all: true };
      } else if (args.user !== undefined && args.user !== null) {
        target = { user: throttleKey(args.user, 'user') };
      } else {
        target = { host: throttleKey(args.host, 'host') };
      }
      const r = ctx.throttle.reset(target);
      // An audit line: who lifted which lockout.
      log('info', 'admin.throttle_reset', { ...target, users: r.users, hosts: r.hosts, peer_pid: peer.pid });
      if ('user' in target && r.users === 0) throw new AdminFailure('not_found', `no failures recorded for user ${target.user}`);
      if ('host' in target && r.hosts === 0) throw new AdminFailure('not_found', `no failures recorded from host ${target.host}`);
      return { users: r.users, hosts: r.hosts };
    },

    async 'auth-test'(args, peer) {
      const user = optName(args, 'user');
      if (user === undefined) throw badRequest('"user" is required');
      if (typeof args.password !== 'string') throw badRequest('"password" must be a string');
      const password = args.password;
      const t0 = performance.now();
      const done = (result: string, authenticated: boolean, reason: string, extra: Json = {}): Json => {
        const ms = round(performance.now() - t0);
        // An audit line: who tested which user, and the outcome; never the password.
        log('info', 'admin.auth_test', { user, result, peer_pid: peer.pid, ms });
        return { user, authenticated, result, reason, hash: null, source: null, ms, ...extra };
      };
      // A dry run: the same decision as a PAM login, but it neither counts towards throttling
      // nor appears in the verification stats.
      const o = await checkPassword(ctx.resolver, ctx.throttle, { user, password, rhost: '' }, 'dry-run');
      const extra: Json = { source: o.source };
      if (o.user && o.kind !== 'none') extra.hash = hashJson(o.user.passwordHash);
      return done(o.result, o.result === 'ok', o.reason, extra);
    },
  };

  return {
    ADMIN: async (f: Fields, peer: Peer) => {
      let reply: Json;
      let cmd = '?';
      try {
        let args: unknown;
        try {
          args = JSON.parse((f.json as Buffer).toString('utf8'));
        } catch {
          throw badRequest('the admin request is not JSON');
        }
        if (args === null || typeof args !== 'object' || Array.isArray(args)) throw badRequest('the admin request must be a JSON object');
        const a = args as Json;
        if (typeof a.cmd !== 'string') throw badRequest('"cmd" is required');
        cmd = a.cmd;
        const run = Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
        if (!run) throw new AdminFailure('unknown_command', `unknown command "${cmd}"; known: ${Object.keys(commands).join(', ')}`);
        reply = { ok: true, ...(await run(a, peer)) };
      } catch (e) {
        if (e instanceof AdminFailure) {
          reply = { ok: false, error: e.message, code: e.code, ...e.extra };
        } else {
          log('error', 'admin.failed', { cmd, error: e instanceof Error ? e.message : String(e) });
          reply = { ok: false, error: 'internal error; see the latchkeyd log', code: 'internal' };
        }
      }
      return ok({ json: Buffer.from(JSON.stringify(reply), 'utf8') });
    },
  };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
