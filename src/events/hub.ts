// Where the registry's session events go: the log line always, the collector when [events] url
// is set. A reload that changes the collector's settings starts a new one, which takes over the
// events the old one had not delivered; the counters run on since start.
import type { EventsConfig } from '../config/types.js';
import { log } from '../log.js';
import { EventCollector, type EventCounters } from './collector.js';
import { logSessionEvent } from './log.js';
import type { SessionEvent } from './types.js';

/** What `latchkeyctl status` shows of the events (never the bearer token). */
export interface EventsStatus extends EventCounters { url: string | null; queue_size: number }

export class SessionEvents {
  private collector: EventCollector | null = null;
  private cfg: EventsConfig;
  private readonly counters: Omit<EventCounters, 'queued'> = { sent: 0, failed_attempts: 0, dropped: 0, last_error: null };

  /** Throws a ConfigError when [events] cacertfile cannot be read. */
  constructor(cfg: EventsConfig, private readonly opts: { random?: () => number } = {}) {
    this.cfg = cfg;
    if (cfg.url !== null) this.collector = this.make(cfg);
  }

  /** The registry's sink: never throws, never waits. */
  readonly emit = (e: SessionEvent): void => {
    logSessionEvent(e);
    this.collector?.enqueue(e);
  };

  /** Takes a reloaded [events]; throws (and keeps the running collector) when the new one cannot be made. */
  reconfigure(next: EventsConfig): void {
    const same = (a: EventsConfig, b: EventsConfig) => a.url === b.url && a.bearerToken === b.bearerToken && a.caFile === b.caFile && a.timeoutMs === b.timeoutMs;
    if (same(this.cfg, next) && this.collector) {
      // Only the queue size changed (or nothing): the running collector keeps its queue.
      (this.collector.cfg as EventsConfig).queueSize = next.queueSize;
      this.cfg = next;
      return;
    }
    const fresh = next.url === null ? null : this.make(next);
    const left = this.collector?.close() ?? [];
    this.collector = fresh;
    this.cfg = next;
    if (fresh) fresh.adopt(left);
    else if (left.length > 0) {
      this.counters.dropped += left.length;
      log('warn', 'events.dropped', { reason: '[events] url was removed by a reload', dropped: left.length });
    }
  }

  status(): EventsStatus {
    return {
      url: this.cfg.url, queue_size: this.cfg.queueSize,
      ...(this.collector?.snapshot() ?? { ...this.counters, queued: 0 }),
    };
  }

  close(): void {
    const left = this.collector?.close() ?? [];
    this.collector = null;
    if (left.length > 0) log('warn', 'events.dropped', { reason: 'latchkeyd stopped before the collector took them', dropped: left.length });
  }

  private make(cfg: EventsConfig): EventCollector {
    return new EventCollector({ ...cfg, url: cfg.url! }, { random: this.opts.random, counters: this.counters });
  }
}
