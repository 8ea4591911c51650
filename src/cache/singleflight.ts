// At most one call per key at a time: concurrent askers share the same promise, and the key is
// forgotten as soon as the call settles, so the next asker starts a new one.

export class SingleFlight<K, V> {
  private readonly inflight = new Map<K, Promise<V>>();

  do(key: K, fn: () => Promise<V>): Promise<V> {
    const running = this.inflight.get(key);
    if (running) return running;
    let started: Promise<V>;
    // A synchronous throw must not escape with the key half-registered.
    try { started = fn(); } catch (e) { started = Promise.reject(e); }
    const p = started.finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  has(key: K): boolean { return this.inflight.has(key); }
  get size(): number { return this.inflight.size; }
}
