// The fleet's load: every host gets `rate` operations a second, each on a user drawn from one
// Zipf distribution over the whole population (the popular users are popular everywhere): by
// name (PW_BY_NAME), by uid (PW_BY_UID, the uid as the host shows it) or a login (priv.sock
// AUTH_PASSWORD with the right password, what pam_latchkey sends for a password login).
// Every operation is logged with its time, host, user and outcome; the report replays that log.
import type { Host } from './hosts.js';
import type { Outcome } from './client.js';
import { seeded } from '../lib/random.js';

export { seeded };

export type OpKind = 'name' | 'uid' | 'login';

export interface Op { t: number; host: number; user: number; kind: OpKind; outcome: Outcome }


/** Draws ranks 0..n-1 with P(k) ∝ 1/(k+1)^s. */
export function zipf(n: number, s: number, rnd: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) { sum += 1 / Math.pow(k + 1, s); cdf[k] = sum; }
  for (let k = 0; k < n; k++) cdf[k]! /= sum;
  return () => {
    const u = rnd();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (cdf[mid]! < u) lo = mid + 1; else hi = mid; }
    return lo;
  };
}

export interface Population { names: string[]; upstreamUid(i: number): number; uidShift: number; password: string }

export interface LoadOptions { rate: number; loginShare: number; uidShare: number; zipfS: number; seed: number; maxInFlight: number }

export class Load {
  readonly ops: Op[] = [];
  skipped = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly inFlight: number[];
  private readonly owed: number[];
  private readonly draw: () => number;
  private readonly rnd: () => number;
  private last = 0;
  constructor(private readonly hosts: Host[], private readonly pop: Population, private readonly o: LoadOptions) {
    this.rnd = seeded(o.seed);
    this.draw = zipf(pop.names.length, o.zipfS, this.rnd);
    this.inFlight = hosts.map(() => 0);
    // staggered, so the hosts do not all send on the same tick
    this.owed = hosts.map(() => this.rnd());
  }

  start(): void {
    this.last = Date.now();
    this.timer = setInterval(() => this.tick(), 20);
  }

  stop(): void { if (this.timer) clearInterval(this.timer); this.timer = null; }

  /** Resolves when no operation is in flight (after stop()). */
  async drain(): Promise<void> {
    while (this.inFlight.some((n) => n > 0)) await new Promise((r) => setTimeout(r, 20));
  }

  private tick(): void {
    const now = Date.now();
    const dt = (now - this.last) / 1000;
    this.last = now;
    for (const h of this.hosts) {
      this.owed[h.index]! += this.o.rate * dt;
      while (this.owed[h.index]! >= 1) {
        this.owed[h.index]! -= 1;
        if (this.inFlight[h.index]! >= this.o.maxInFlight) { this.skipped++; continue; }
        const r = this.rnd();
        const kind: OpKind = r < this.o.loginShare ? 'login' : r < this.o.loginShare + this.o.uidShare ? 'uid' : 'name';
        void this.one(h, this.draw(), kind);
      }
    }
  }

  /** One operation of `kind` on user `user` at host `h`, logged. */
  async one(h: Host, user: number, kind: OpKind): Promise<Outcome> {
    const t = Date.now();
    this.inFlight[h.index]!++;
    try {
      const name = this.pop.names[user]!;
      const r = kind === 'name' ? await h.nss.call('PW_BY_NAME', { name })
        : kind === 'uid' ? await h.nss.call('PW_BY_UID', { uid: this.pop.upstreamUid(user) + this.pop.uidShift })
          : await h.priv.call('AUTH_PASSWORD', { user: name, password: this.pop.password, service: 'sshd', rhost: '10.77.255.254' });
      this.ops.push({ t, host: h.index, user, kind, outcome: r.outcome });
      return r.outcome;
    } finally {
      this.inFlight[h.index]!--;
    }
  }
}
