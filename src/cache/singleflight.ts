// At most one upstream request per key: concurrent askers share the same promise.

export class SingleFlight<K, V> {
  private readonly inflight = new Map<K, Promise<V>>();

  do(key: K, fn: () => Promise<V>): Promise<V> {
    const running = this.inflight.get(key);
    if (running) return running;
    const p = fn().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  get size(): number { return this.inflight.size; }
}
