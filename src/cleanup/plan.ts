// What the cleanup of temporary accounts removes and whose sessions it ends, decided from facts
// alone (no I/O, no clock): run.ts gathers the facts, asks this, and carries the plan out.
//
// Temporary accounts are the two kinds with an expiry: upstream users whose record carries
// `expiresAt` (cached with accountExpiresAt > 0) and persistent local users added with
// `latchkeyctl local add --expires`. An account expired more than [cleanup] expired_grace ago
// is removed: from the cache (the next lookup asks the upstream again, which may have extended
// it) or from the local users' store (on a host that writes it; a secondary receives the
// removal with the primary's next snapshot). Homes are never deleted, only listed.
//
// A disabled account is not temporary: an upstream `"enabled": false` (accountExpiresAt 0) is
// dropped by the cache's own TTL like any entry, and a local user disabled by the admin stays
// until the admin removes it (`latchkeyctl local remove`). Both still lose their open sessions:
// an account that may not log in must not keep a login, whatever told us so.
//
// Sessions are matched by name and uid: a session of another account of the same name (a local
// user shadowing an upstream one, [local] precedence) is not this account's.

/** A cached upstream user whose record says when its account ends (0: disabled upstream). */
export interface CachedAccount { name: string; uid: number; accountExpiresAt: number }
/** A served persistent local user. */
export interface StoredAccount { name: string; uid: number; expiresAt: number | null; disabled: boolean }
/** An open session's owner, as the session registry recorded it. */
export interface SessionOwner { user: string; uid: number }

export interface PlanInput {
  /** epoch ms */
  now: number;
  /** [cleanup] expired_grace in ms */
  graceMs: number;
  /** cached users whose accountExpiresAt is set (null ones can never be planned) */
  cached: readonly CachedAccount[];
  stored: readonly StoredAccount[];
  sessions: readonly SessionOwner[];
  /** false on a secondary: its store is the primary's snapshot, changed only by the next one */
  mayRemoveStored: boolean;
}

/** An account to remove, and since when it has been expired. */
export interface ExpiredAccount { name: string; uid: number; expiredAt: number }

export type EndReason = 'expired' | 'disabled';
export interface SessionsToEnd { user: string; uid: number; reason: EndReason; detail: string; open: number }

export interface CleanupPlan {
  cache: ExpiredAccount[];
  stored: ExpiredAccount[];
  /** one entry per account with open sessions that may no longer log in */
  sessions: SessionsToEnd[];
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** Expired past the grace: `at + grace <= now`, written so a huge grace cannot overflow past now. */
const pastGrace = (at: number, now: number, graceMs: number): boolean => at <= now - graceMs;

export function planCleanup(p: PlanInput): CleanupPlan {
  const cache: ExpiredAccount[] = [];
  const stored: ExpiredAccount[] = [];
  const ending = new Map<string, Omit<SessionsToEnd, 'open'>>();
  const key = (name: string, uid: number): string => `${uid}:${name}`;

  for (const c of p.cached) {
    if (c.accountExpiresAt > p.now) continue;
    if (c.accountExpiresAt === 0) {
      ending.set(key(c.name, c.uid), { user: c.name, uid: c.uid, reason: 'disabled', detail: 'account disabled upstream' });
      continue;
    }
    ending.set(key(c.name, c.uid), { user: c.name, uid: c.uid, reason: 'expired', detail: `account expired upstream at ${iso(c.accountExpiresAt)}` });
    if (pastGrace(c.accountExpiresAt, p.now, p.graceMs)) cache.push({ name: c.name, uid: c.uid, expiredAt: c.accountExpiresAt });
  }

  for (const s of p.stored) {
    const expired = s.expiresAt !== null && s.expiresAt <= p.now;
    if (expired) {
      ending.set(key(s.name, s.uid), { user: s.name, uid: s.uid, reason: 'expired', detail: `local account expired at ${iso(s.expiresAt!)}` });
      if (p.mayRemoveStored && pastGrace(s.expiresAt!, p.now, p.graceMs)) stored.push({ name: s.name, uid: s.uid, expiredAt: s.expiresAt! });
    } else if (s.disabled) {
      ending.set(key(s.name, s.uid), { user: s.name, uid: s.uid, reason: 'disabled', detail: 'local account disabled (latchkeyctl local disable)' });
    }
  }

  const open = new Map<string, number>();
  for (const s of p.sessions) {
    const k = key(s.user, s.uid);
    if (ending.has(k)) open.set(k, (open.get(k) ?? 0) + 1);
  }
  const sessions = [...open].map(([k, n]) => ({ ...ending.get(k)!, open: n }));

  const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return { cache: cache.sort(byName), stored: stored.sort(byName), sessions: sessions.sort((a, b) => byName({ name: a.user }, { name: b.user })) };
}
