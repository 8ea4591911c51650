// Who gets the next upstream slot. Pure bookkeeping, no I/O: the resolver wraps each fetch in
// run(). Any local user can make the daemon ask upstream by looking up never-seen names; without
// a scheduler one uid's flood of random names fills every slot and every other user's first
// lookup waits behind it. So:
//   - two lanes: 'known' (a name or uid already cached, a refresh, a login's account check) is
//     always served first; 'new' (never-seen names) may use at most `max - reserve` slots, so the
//     known lane always has room;
//   - the 'new' lane is fair between peer uids (round robin over per-uid queues), each uid has a
//     token bucket of new names per second and a bounded queue; over either, the caller gets
//     "busy" at once (NSS TRYAGAIN), never "not found";
//   - waiting is bounded by the caller's deadline and is never an upstream failure: the caller
//     gets "busy", the upstream's health is untouched.

/** The caller is refused a slot: rate, queue or deadline. Never counts against the upstream. */
export class SchedulerBusy extends Error {
  constructor(readonly reason: 'rate' | 'queue' | 'deadline' | 'closed', message: string) {
    super(message);
  }
}

export type Lane = 'known' | 'new';

export interface SchedulerLimits {
  /** slots in all (the upstream's max_concurrent) */
  maxConcurrent: number;
  /** never-seen names a peer uid may start per second, and the burst it may save up */
  newPerUidPerSec: number;
  newPerUidBurst: number;
  /** never-seen names a peer uid may have waiting for a slot */
  newPerUidQueued: number;
}

interface Waiter { lane: Lane; uid: number; grant: () => void; refuse: (e: Error) => void; timer: NodeJS.Timeout }
interface Bucket { tokens: number; at: number }

/** Per-uid state kept for at most this many uids; the idlest go first. */
export const MAX_TRACKED_UIDS = 10_000;

export class UpstreamScheduler {
  private inFlight = 0;
  private closed = false;
  private newInFlight = 0;
  private readonly known: Waiter[] = [];
  private readonly fresh = new Map<number, Waiter[]>();
  /** uids with waiting never-seen names, in round-robin order */
  private readonly turn: number[] = [];
  private readonly buckets = new Map<number, Bucket>();
  readonly stats = { granted: 0, busyRate: 0, busyQueue: 0, busyDeadline: 0 };

  constructor(
    private readonly limits: () => SchedulerLimits,
    private readonly now: () => number = Date.now,
    /** uid 0's token bucket is this many times larger (it resolves whatever names sshd is sent) */
    private readonly rootFactor = 1,
  ) {}

  get active(): number { return this.inFlight; }
  get queued(): number { return this.known.length + [...this.fresh.values()].reduce((n, q) => n + q.length, 0); }

  /**
   * Admission of a never-seen name for peer `uid`: its token bucket and queue bound. Called
   * before the request joins a shared (single-flight) fetch, so one uid's refusal is never
   * handed to another uid waiting for the same name. Throws SchedulerBusy.
   */
  admit(lane: Lane, uid: number): void {
    if (lane !== 'new') return;
    if ((this.fresh.get(uid)?.length ?? 0) >= this.limits().newPerUidQueued) {
      this.stats.busyQueue++;
      throw new SchedulerBusy('queue', `too many never-seen names from uid ${uid} waiting for the user service`);
    }
    this.takeToken(uid);
  }

  /** Runs `work` in a slot of `lane` (queued under peer `uid`), waiting at most `waitMs` for it. */
  async run<T>(lane: Lane, uid: number, waitMs: number, work: () => Promise<T>): Promise<T> {
    await this.acquire(lane, uid, waitMs);
    try {
      return await work();
    } finally {
      this.release(lane);
    }
  }

  private newSlots(): number {
    const max = Math.max(1, this.limits().maxConcurrent);
    const reserve = max >= 4 ? Math.ceil(max / 4) : max > 1 ? 1 : 0;
    return Math.max(1, max - reserve);
  }

  private acquire(lane: Lane, uid: number, waitMs: number): Promise<void> {
    if (this.closed) return Promise.reject(new SchedulerBusy('closed', 'daemon stopping'));
    if (this.canStart(lane)) {
      this.start(lane);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        lane, uid,
        grant: () => { clearTimeout(w.timer); resolve(); },
        refuse: (e) => { clearTimeout(w.timer); reject(e); },
        timer: setTimeout(() => {
          this.remove(w);
          this.stats.busyDeadline++;
          reject(new SchedulerBusy('deadline', `no upstream slot within ${waitMs} ms (${this.inFlight} requests in flight)`));
        }, Math.max(0, waitMs)),
      };
      if (lane === 'known') this.known.push(w);
      else {
        let q = this.fresh.get(uid);
        if (!q) { q = []; this.fresh.set(uid, q); this.turn.push(uid); }
        q.push(w);
      }
    });
  }

  private canStart(lane: Lane): boolean {
    if (this.inFlight >= Math.max(1, this.limits().maxConcurrent)) return false;
    if (lane === 'known') return this.known.length === 0;
    // a never-seen name starts only when no known lookup waits and its lane has room
    return this.known.length === 0 && this.turn.length === 0 && this.newInFlight < this.newSlots();
  }

  private start(lane: Lane): void {
    this.inFlight++;
    if (lane === 'new') this.newInFlight++;
    this.stats.granted++;
  }

  private release(lane: Lane): void {
    this.inFlight--;
    if (lane === 'new') this.newInFlight--;
    this.dispatch();
  }

  private dispatch(): void {
    const max = Math.max(1, this.limits().maxConcurrent);
    while (this.inFlight < max) {
      const k = this.known.shift();
      if (k) { this.start('known'); k.grant(); continue; }
      if (this.turn.length === 0 || this.newInFlight >= this.newSlots()) return;
      const uid = this.turn.shift()!;
      const q = this.fresh.get(uid)!;
      const w = q.shift()!;
      if (q.length > 0) this.turn.push(uid); // back of the line: one name per uid per round
      else this.fresh.delete(uid);
      this.start('new');
      w.grant();
    }
  }

  private remove(w: Waiter): void {
    if (w.lane === 'known') {
      const i = this.known.indexOf(w);
      if (i >= 0) this.known.splice(i, 1);
      return;
    }
    const q = this.fresh.get(w.uid);
    if (!q) return;
    const i = q.indexOf(w);
    if (i >= 0) q.splice(i, 1);
    if (q.length === 0) {
      this.fresh.delete(w.uid);
      const t = this.turn.indexOf(w.uid);
      if (t >= 0) this.turn.splice(t, 1);
    }
  }

  /** Token bucket per peer uid for never-seen names; throws when empty. */
  private takeToken(uid: number): void {
    const f = uid === 0 ? this.rootFactor : 1;
    const newPerUidPerSec = this.limits().newPerUidPerSec * f;
    const newPerUidBurst = this.limits().newPerUidBurst * f;
    const t = this.now();
    let b = this.buckets.get(uid);
    if (!b) {
      b = { tokens: newPerUidBurst, at: t };
      while (this.buckets.size >= MAX_TRACKED_UIDS) this.buckets.delete(this.buckets.keys().next().value as number);
    } else {
      // Never less than nothing elapsed: `now` is the wall clock, and a step back must not put
      // every uid (sshd's root first) into hours of debt, refusing each never-seen name.
      b.tokens = Math.min(newPerUidBurst, b.tokens + (Math.max(0, t - b.at) / 1000) * newPerUidPerSec);
      b.at = t;
      this.buckets.delete(uid); // re-insert: Map order is least recently used first
    }
    this.buckets.set(uid, b);
    if (b.tokens < 1) {
      this.stats.busyRate++;
      throw new SchedulerBusy('rate', `uid ${uid} looks up more than ${newPerUidPerSec} never-seen names per second`);
    }
    b.tokens -= 1;
  }

  /** Refuses every waiter (daemon stopping). */
  close(): void {
    this.closed = true;
    for (const w of [...this.known, ...[...this.fresh.values()].flat()]) {
      w.refuse(new SchedulerBusy('closed', 'daemon stopping'));
    }
    this.known.length = 0;
    this.fresh.clear();
    this.turn.length = 0;
  }
}
