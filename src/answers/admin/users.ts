// users, show, lookup, invalidate, flush: the cache, seen and operated by user. A name or uid
// the host keeps is answered as such (managed.ts), not as a bare "not found".
import { createHash } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { CachedUser } from '../../types.js';
import type { Lookup } from '../../cache/types.js';
import { classify, type FreshnessConfig } from '../../cache/policy.js';
import { hashInfo } from '../../verify/hash.js';
import { homePath } from '../../homes/home.js';
import { passwdEntry } from '../../directory/entries.js';
import { log } from '../../log.js';
import type { AdminReplyData } from '../../protocol/admin.js';
import { type AdminContext, type AdminHandlers, refuse, roundMs } from './context.js';
import { sessionView } from './sessions.js';
import { notManaged, notManagedMessage } from './managed.js';

type UserSummary = AdminReplyData<'users'>['users'][number];
type HashFacts = AdminReplyData<'auth-test'>['hash'];
type UserRef = string | number;

/** fresh / stale (within the grace, served only if upstream fails) / expired, by the cache's own rule. */
export function entryState(u: Pick<CachedUser, 'expiresAt'> & { fetchedAt?: number }, now: number, cfg: FreshnessConfig): UserSummary['state'] {
  const f = classify(u.expiresAt, now, cfg, u.fetchedAt);
  return f === 'fresh' || f === 'refresh-ahead' ? 'fresh' : f === 'stale-servable' ? 'stale' : 'expired';
}

/** `type base64 [comment]` → type, OpenSSH-style SHA256 fingerprint, comment. */
export function keyInfo(line: string): { type: string; fingerprint: string; comment: string } {
  const [type = '', blob = '', ...rest] = line.trim().split(/\s+/);
  const digest = createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '');
  return { type, fingerprint: `SHA256:${digest}`, comment: rest.join(' ') };
}

/** Kind and cost of a hash (what `show` and `auth-test` may reveal); null when the user has no password. */
export function hashFacts(hash: string | null): HashFacts {
  const h = hashInfo(hash);
  return h.kind === 'none' ? null : { kind: h.kind, cost: h.cost, cost_name: h.costName };
}

function homeExists(path: string): boolean {
  try { lstatSync(path); return true; } catch { return false; }
}

export function userCommands(ctx: AdminContext): AdminHandlers<'users' | 'show' | 'lookup' | 'invalidate' | 'flush'> {
  const summary = (u: CachedUser, at: number): UserSummary => {
    const c = ctx.config();
    const home = homePath(c.homes, u.username);
    return {
      name: u.username, uid: u.uid, upstream_uid: u.upstreamUid, gid: c.users.gid,
      fetched_at: u.fetchedAt, expires_at: u.expiresAt, state: entryState(u, at, c.cache),
      keys: u.sshPublicKeys.length, has_password: hashInfo(u.passwordHash).kind !== 'none', home, home_exists: homeExists(home),
    };
  };

  const cached = (ref: UserRef): CachedUser | null =>
    typeof ref === 'number' ? ctx.cache.getByUid(ref) : ctx.cache.getByName(ref);

  return {
    users(args) {
      const at = Date.now();
      const users = ctx.cache.all().map((u) => summary(u, at)).filter((s) => !args.stale || s.state !== 'fresh');
      if (!args.negative) return { now: at, users };
      // The cache keys negatives as "name:NAME" / "uid:UID"; the kind says which, the key is the value.
      const negative = ctx.cache.negatives().map((n) => ({ key: n.key.slice(n.key.indexOf(':') + 1), kind: n.kind, fetched_at: n.fetchedAt, expires_at: n.expiresAt }));
      return { now: at, users, negative };
    },

    show(args) {
      const u = cached(args.user);
      if (!u) {
        const nm = notManaged(ctx, args.user);
        if (nm) throw refuse('show', 'not_found', notManagedMessage(args.user, nm), { not_managed: nm.reason });
        throw refuse('show', 'not_found', `${args.user} is not cached (latchkeyctl lookup ${args.user} fetches it)`);
      }
      return {
        user: {
          ...summary(u, Date.now()), gecos: u.gecos, shell: ctx.config().users.shell,
          password: hashFacts(u.passwordHash),
          keys: u.sshPublicKeys.map(keyInfo),
        },
        sessions: ctx.sessions.list(u.username).map(sessionView),
      };
    },

    async lookup(args) {
      const ref = args.user;
      const t0 = performance.now();
      let l: Lookup;
      if (args.refresh) {
        // Upstream is asked by name; a uid is refreshed through the name it is cached under.
        const name = typeof ref === 'string' ? ref : ctx.cache.getByUid(ref)?.username;
        l = name !== undefined ? await ctx.resolver.refreshByName(name) : await ctx.resolver.byUid(ref as number);
      } else {
        l = typeof ref === 'number' ? await ctx.resolver.byUid(ref) : await ctx.resolver.byName(ref);
      }
      const ms = roundMs(performance.now() - t0);
      if (l.status === 'notfound') {
        // Refused by the rules before any cache or upstream access: say whose the name is.
        const nm = l.source === 'rule' ? notManaged(ctx, ref) : null;
        if (nm) throw refuse('lookup', 'not_found', notManagedMessage(ref, nm), { result: 'notfound', source: l.source, ms, not_managed: nm.reason });
        throw refuse('lookup', 'not_found', `no such user: ${ref}`, { result: 'notfound', source: l.source, ms });
      }
      if (l.status === 'unavail') throw refuse('lookup', 'unavailable', `user service unavailable: ${l.reason}`, { result: 'unavail', reason: l.reason, ms });
      return { result: 'found', source: l.source, ms, entry: passwdEntry(ctx.config(), l.user) };
    },

    invalidate(args, peer) {
      if ('all' in args) {
        const n = ctx.cache.invalidate('all');
        log('info', 'admin.invalidate', { all: true, count: n, peer_pid: peer.pid });
        return { invalidated: n, already_expired: [], not_cached: [] };
      }
      let n = 0;
      const missing: UserRef[] = [];
      const already: UserRef[] = [];
      for (const ref of args.users) {
        const k = ctx.cache.invalidate(typeof ref === 'number' ? { uid: ref } : { name: ref });
        // 0 changes: not cached at all, or cached but already past its TTL (nothing to do).
        if (k === 0) (cached(ref) ? already : missing).push(ref);
        n += k;
      }
      log('info', 'admin.invalidate', { users: args.users, count: n, peer_pid: peer.pid });
      return { invalidated: n, already_expired: already, not_cached: missing };
    },

    flush(args, peer) {
      const negativeOnly = args.negative_only === true;
      if (args.user !== undefined) {
        if (negativeOnly) throw refuse('flush', 'bad_request', '"user" and "negative_only" do not go together: a user\'s flush drops its negative entries too');
        const ref = args.user;
        const n = ctx.cache.flushUser(typeof ref === 'number' ? { uid: ref } : { name: ref });
        log('info', 'admin.flush', { user: ref, removed: n, peer_pid: peer.pid });
        return { removed: n, negative_only: false, user: ref };
      }
      const n = ctx.cache.flush({ negativeOnly });
      log('info', 'admin.flush', { negative_only: negativeOnly, removed: n, peer_pid: peer.pid });
      return { removed: n, negative_only: negativeOnly };
    },
  };
}
