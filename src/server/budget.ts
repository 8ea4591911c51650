// Connection budgets. nss.sock is world-connectable: with one shared cap, a user holding idle
// connections (or an ordinary program with hundreds of threads, each keeping one) made every
// other lookup fail. So each socket has its own budget (priv.sock, root only, always has room
// however busy nss.sock is), each peer uid may hold at most a share of nss.sock, and when a
// budget is full the oldest idle connection of the heaviest uid is closed to make room — a
// waiting client gets "unavailable" from its shim and reconnects, never "not found".
import { readFileSync } from 'node:fs';
import type { ConnectionHandle } from './connection.js';

export interface BudgetLimits {
  /** connections this socket may hold in all */
  total: number;
  /** connections one peer uid may hold */
  perUid: number;
}

export type Admission = { ok: true; evicted: ConnectionHandle | null } | { ok: false; reason: string };

export class ConnectionBudget {
  private readonly byUid = new Map<number, Set<ConnectionHandle>>();
  private count = 0;

  constructor(private readonly limits: () => BudgetLimits) {}

  get size(): number { return this.count; }
  uidCount(uid: number): number { return this.byUid.get(uid)?.size ?? 0; }

  /**
   * Makes room for a new connection of `uid` (before it is added): returns the idle connection
   * to close, if one had to go, or a refusal when nothing can be freed for this uid.
   */
  admit(uid: number): Admission {
    const { total, perUid } = this.limits();
    const mine = this.byUid.get(uid);
    if ((mine?.size ?? 0) >= perUid) {
      // Over its own share: only this uid's own idle connections may make room.
      const victim = oldestIdle(mine!);
      return victim ? { ok: true, evicted: victim } : { ok: false, reason: `uid ${uid} already holds ${perUid} busy connections` };
    }
    if (this.count < total) return { ok: true, evicted: null };
    // Full: the heaviest uids give up their oldest idle connection first.
    const heaviest = [...this.byUid.entries()].sort((a, b) => b[1].size - a[1].size);
    for (const [, set] of heaviest) {
      const victim = oldestIdle(set);
      if (victim) return { ok: true, evicted: victim };
    }
    return { ok: false, reason: `all ${total} connections are busy` };
  }

  /**
   * The oldest idle connection of the heaviest uid, to close when the process ran out of
   * descriptors (accept failed with EMFILE): null when every connection is busy.
   */
  shedIdle(): ConnectionHandle | null {
    const heaviest = [...this.byUid.entries()].sort((a, b) => b[1].size - a[1].size);
    for (const [, set] of heaviest) {
      const victim = oldestIdle(set);
      if (victim) return victim;
    }
    return null;
  }

  add(h: ConnectionHandle): void {
    let set = this.byUid.get(h.peer.uid);
    if (!set) { set = new Set(); this.byUid.set(h.peer.uid, set); }
    set.add(h);
    this.count++;
  }

  remove(h: ConnectionHandle): void {
    const set = this.byUid.get(h.peer.uid);
    if (!set?.delete(h)) return;
    this.count--;
    if (set.size === 0) this.byUid.delete(h.peer.uid);
  }
}

function oldestIdle(set: Set<ConnectionHandle>): ConnectionHandle | null {
  let best: ConnectionHandle | null = null;
  for (const h of set) if (!h.busy() && (!best || h.lastActive < best.lastActive)) best = h;
  return best;
}

/** Descriptors kept free for the cache, the upstream pool, logs and the listeners themselves. */
const FD_RESERVE = 256;
/** Above this the memory per connection (~10 KiB in Node) matters more than the fd limit. */
const MAX_TOTAL = 16_384;

/**
 * The nss.sock budget from the process's open-file limit (Node raises the soft limit to the hard
 * one at start; systemd's default hard limit is 524288): thousands of connections, not 256.
 * One uid may hold an eighth of it, at least 64, so no single user can fill it.
 */
export function nssBudgetFromFdLimit(fdLimit = openFileLimit()): BudgetLimits {
  const total = Math.max(64, Math.min(MAX_TOTAL, Math.floor((fdLimit - FD_RESERVE) * 0.75)));
  return { total, perUid: Math.max(64, Math.floor(total / 8)) };
}

/** RLIMIT_NOFILE soft limit from /proc/self/limits (Node has no getrlimit); 1024 if unreadable. */
export function openFileLimit(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m) return m[1] === 'unlimited' ? 1 << 20 : Number(m[1]);
  } catch { /* not Linux /proc */ }
  return 1024;
}

/**
 * Requests per second one peer uid may send on nss.sock (root is never paced: sshd, login and
 * the admin resolve through it). A uid over its rate is not refused: its connections wait for
 * their turn, which costs the daemon nothing, so one user's loop cannot take the event loop
 * from everybody else's lookups. The rate is far above what any program needs (glibc does not
 * cache, but `ls -l` over a big tree asks once per owner).
 */
export const REQUESTS_PER_UID_PER_SEC = 2000;
const PACED_UIDS_MAX = 10_000;

export class RequestPacer {
  private readonly buckets = new Map<number, { tokens: number; at: number }>();
  constructor(private readonly rate = REQUESTS_PER_UID_PER_SEC, private readonly now: () => number = Date.now) {}

  /** Milliseconds `uid` must wait before its next request is served (0: at once); takes the token. */
  delay(uid: number): number {
    if (uid === 0) return 0;
    const t = this.now();
    let b = this.buckets.get(uid);
    if (!b) {
      if (this.buckets.size >= PACED_UIDS_MAX) this.buckets.clear();
      b = { tokens: this.rate, at: t };
      this.buckets.set(uid, b);
    }
    // A wall clock stepped back is no elapsed time, not hours of debt that stall every request
    // of the uid for as long as the step.
    b.tokens = Math.min(this.rate, b.tokens + (Math.max(0, t - b.at) / 1000) * this.rate);
    b.at = t;
    b.tokens -= 1; // may go negative: the debt is the wait
    return b.tokens >= 0 ? 0 : Math.ceil((-b.tokens / this.rate) * 1000);
  }
}
