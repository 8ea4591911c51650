// The last login decision of each PAM phase (and of the keys helper), per user, kept in memory for
// `latchkeyctl why NAME`: what was asked, what latchkeyd answered and why, from which source, with
// which hash kind and cost, which session. Nothing secret is ever recorded: no password, no hash
// (only its kind and cost), no upstream credential; details are latchkeyd's own messages.
//
// Bounded both ways an attacker could push it. Names come from whoever talks to the sockets: a
// remote ssh client picks the name PAM asks about, and any local user may send KEYS_FOR_LOGIN on
// nss.sock for any name. So records live in three LRU tiers: users latchkey serves, as root (the
// PAM module, sshd's keys helper when it runs as root) saw them; names it does not serve, from
// root only, in a small tier; and served users as an unprivileged peer (the keys helper as
// AuthorizedKeysCommandUser, or anyone) saw them. Made-up names and a local user enumerating
// every real name each churn only their own tier, never the PAM record of a real user.

/** The phases recorded, as `latchkeyctl why` names them. */
export const PHASES = ['login_check', 'auth_password', 'acct_mgmt', 'session_open', 'keys_for_login'] as const;
export type Phase = (typeof PHASES)[number];

/** Kind and cost of the password hash a verification used; never the hash. */
export interface HashUsed { kind: string; cost: number | null; cost_name: string | null }

export interface Decision {
  /** epoch ms */
  at: number;
  /** the phase's answer: served, notfound, mismatch, unavailable (login_check, keys_for_login);
   *  ok, wrong_password, no_password, unknown_user, throttled, unavailable (auth_password);
   *  active, expired, removed, unknown, unavailable (acct_mgmt); opened, limit, home_refused,
   *  notfound, unavailable (session_open) */
  result: string;
  /** why, in latchkeyd's words */
  detail: string;
  /** where the user record came from: cache, upstream, stale, local (the store), rule (refused
   *  by the name rule, a host account or the deny list); null when no lookup answered */
  source: string | null;
  service: string | null;
  rhost: string | null;
  /** the uid NSS resolved (login_check, keys_for_login) or the user's (session_open) */
  uid: number | null;
  hash: HashUsed | null;
  session_id: string | null;
  /** keys_for_login: how many keys were handed out */
  keys: number | null;
  /** who asked (SO_PEERCRED uid): 0 for pam_latchkey, AuthorizedKeysCommandUser's for the keys helper */
  peer_uid: number;
  ms: number | null;
}

export type DecisionInput = Pick<Decision, 'result' | 'detail'> & Partial<Omit<Decision, 'at' | 'result' | 'detail' | 'peer_uid'>>;

export interface UserDecisions { name: string; served: boolean; phases: Partial<Record<Phase, Decision>> }

/** Users whose records are kept; 4096 × 5 phases of bounded fields is a few MB at most. */
export const SERVED_CAPACITY = 4096;
/** Names latchkey does not serve: a small tier, so a flood of made-up names stays cheap. */
export const UNSERVED_CAPACITY = 256;
/** Longest name, detail, service or rhost kept; no valid one is near these lengths. */
const MAX_NAME = 256;
const MAX_DETAIL = 480;
const MAX_FIELD = 256;

const cut = (s: string, n: number): string => (s.length > n ? s.slice(0, n - 1) + '…' : s);
const cutOrNull = (s: string | null | undefined, n: number): string | null => (s === null || s === undefined ? null : cut(s, n));

/** A Map used as an LRU: iteration follows insertion, so the first key is the least recent. */
class Tier {
  private readonly m = new Map<string, UserDecisions>();
  constructor(readonly capacity: number) {}
  take(key: string): UserDecisions | undefined {
    const e = this.m.get(key);
    if (e) this.m.delete(key);
    return e;
  }
  put(key: string, e: UserDecisions): void {
    this.m.set(key, e);
    while (this.m.size > this.capacity) this.m.delete(this.m.keys().next().value!);
  }
  peek(key: string): UserDecisions | undefined { return this.m.get(key); }
  get size(): number { return this.m.size; }
}

/** Asking uids kept per name: sshd's keys helper and a few others. */
const PEER_UIDS_PER_NAME = 4;
const peerKey = (uid: number, name: string): string => `${uid}:${name}`;

export class LoginDecisions {
  /** name → the uids (most recent first) whose lookups of it are in the peers tier */
  private readonly byName = new Map<string, number[]>();
  private readonly root: Tier;
  private readonly unserved: Tier;
  private readonly peers: Tier;

  constructor(
    capacity = { served: SERVED_CAPACITY, unserved: UNSERVED_CAPACITY },
    private readonly now: () => number = Date.now,
  ) {
    this.root = new Tier(capacity.served);
    this.unserved = new Tier(capacity.unserved);
    this.peers = new Tier(capacity.served);
  }

  /**
   * Records `phase`'s decision for `name`, as asked by `peerUid`. `served`: latchkey serves this
   * user (a lookup found it); a name already in the served tier stays there whatever this
   * decision says (an unavailable upstream does not make alice a stranger). An unprivileged
   * peer's decision about a name latchkey does not serve is not recorded: nothing to explain.
   */
  record(name: string, phase: Phase, served: boolean, d: DecisionInput, peerUid = 0): void {
    const key = cut(name, MAX_NAME);
    let tier: Tier;
    let entry: UserDecisions | undefined;
    if (peerUid !== 0) {
      // Only names latchkey serves (now, or as root saw them): any local user can ask about any
      // name, and those must not push out real records. Kept per asking uid, so one local user's
      // lookups never replace the record of another's (sshd's keys helper runs as its own user);
      // `why` shows which uid asked.
      if (!served && !this.root.peek(key)) return;
      tier = this.peers;
      entry = tier.take(peerKey(peerUid, key));
      this.peerUids(key, peerUid);
    } else {
      entry = this.root.take(key);
      if (entry || served) {
        tier = this.root;
        entry ??= this.unserved.take(key);
      } else {
        tier = this.unserved;
        entry = tier.take(key);
      }
    }
    entry ??= { name: key, served, phases: {} };
    if (tier === this.root) entry.served = true;
    entry.phases[phase] = {
      at: this.now(), result: d.result, detail: cut(d.detail, MAX_DETAIL), source: d.source ?? null,
      service: cutOrNull(d.service, MAX_FIELD), rhost: cutOrNull(d.rhost, MAX_FIELD), uid: d.uid ?? null,
      hash: d.hash ?? null, session_id: d.session_id ?? null, keys: d.keys ?? null,
      peer_uid: peerUid, ms: d.ms ?? null,
    };
    tier.put(tier === this.peers ? peerKey(peerUid, key) : key, entry);
  }

  /** The uids whose lookups of `name` are kept (the latest few), for get(). */
  private peerUids(name: string, uid?: number): number[] {
    const uids = this.byName.get(name) ?? [];
    if (uid !== undefined) {
      const next = [uid, ...uids.filter((u) => u !== uid)].slice(0, PEER_UIDS_PER_NAME);
      this.byName.delete(name);
      this.byName.set(name, next);
      while (this.byName.size > this.peers.capacity) this.byName.delete(this.byName.keys().next().value!);
      return next;
    }
    return uids;
  }

  /** What was recorded for this name (copies; of each phase the latest), or null when nothing was. */
  get(name: string): UserDecisions | null {
    const found = [this.root.peek(name), this.unserved.peek(name), ...this.peerUids(name).map((u) => this.peers.peek(peerKey(u, name)))]
      .filter((e): e is UserDecisions => e !== undefined);
    if (found.length === 0) return null;
    const phases: Partial<Record<Phase, Decision>> = {};
    for (const e of found) {
      for (const p of PHASES) {
        const d = e.phases[p];
        if (d && (!phases[p] || d.at > phases[p].at)) phases[p] = { ...d };
      }
    }
    return { name: found[0]!.name, served: found.some((e) => e.served), phases };
  }

  size(): { served: number; unserved: number; peers: number } {
    return { served: this.root.size, unserved: this.unserved.size, peers: this.peers.size };
  }
}
