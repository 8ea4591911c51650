// A counting semaphore with a FIFO queue (the password hash slots, verify/password.ts). Waiters
// can give up (deadline passed, shutdown) without leaking their place: an abandoned waiter is
// removed, never granted a slot.

export class Semaphore {
  private inUse = 0;
  private readonly waiters: Array<{ grant: () => void; reject: (e: Error) => void }> = [];

  constructor(private readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`semaphore size must be a positive integer, got ${max}`);
  }

  get active(): number { return this.inUse; }
  get queued(): number { return this.waiters.length; }

  /**
   * Wait for a slot. Resolves to a release function (idempotent). Rejects with `signal.reason`
   * if the signal aborts while still queued.
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    if (this.inUse < this.max) {
      this.inUse++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.releaser());
        },
        reject,
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal!.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Reject every queued waiter (used on close). Slots already held stay held until released. */
  rejectAll(err: Error): void {
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      // Hand the slot straight to the next waiter: inUse stays the same, order stays FIFO.
      if (next) next.grant();
      else this.inUse--;
    };
  }
}
