// Session events POSTed to a collector ([events] url): how a fleet hears that a session ended on
// one host. The login path only appends to a bounded in-memory queue (enqueue never waits, never
// throws); one sender drains it in small batches with a request timeout, and a failed batch is
// retried with exponential backoff and jitter. A full queue drops the new event and counts it: a
// collector that is slow or down costs events, never logins. Delivery is at least once (a batch
// whose reply was lost is sent again); the collector deduplicates by session_id + event.
// The bearer token goes in the Authorization header only, never in a log line or status.
import { Agent, request } from 'undici';
import type { EventsConfig } from '../config/types.js';
import { log, logLimited } from '../log.js';
import type { SessionEvent } from './types.js';
import { readPem } from '../upstream/client.js';

/** Events per POST: small enough that one request stays small, large enough for a burst. */
export const MAX_BATCH = 50;
/** Backoff after a failed batch: BASE · 2^(failures-1), capped, with ±50 % jitter. */
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 60_000;
/** What is read of a reply (it is discarded: only the status counts). */
const MAX_REPLY_BYTES = 64 * 1024;

export interface EventCounters {
  /** events accepted by the collector (2xx) */
  sent: number;
  /** POSTs that failed (timeout, connection, non-2xx) */
  failed_attempts: number;
  /** events lost: the queue was full, or the collector refused the batch as malformed (400, 413, 422) */
  dropped: number;
  /** events waiting, including the batch being sent */
  queued: number;
  last_error: { message: string; at: number } | null;
}

export class EventCollector {
  private queue: SessionEvent[] = [];
  /** how many at the head of the queue are in the current POST */
  private inFlight = 0;
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private abort: AbortController | null = null;
  private readonly agent: Agent;
  readonly counters: Omit<EventCounters, 'queued'>;

  /** `counters`: shared with the collector this one replaces on a reload, so status counts since start. */
  constructor(
    readonly cfg: EventsConfig & { url: string },
    private readonly opts: { now?: () => number; random?: () => number; counters?: Omit<EventCounters, 'queued'> } = {},
  ) {
    this.counters = opts.counters ?? { sent: 0, failed_attempts: 0, dropped: 0, last_error: null };
    this.agent = new Agent({
      connect: { ca: cfg.caFile ? readPem(cfg.caFile, 'cacertfile', '[events]') : undefined, timeout: cfg.timeoutMs },
      headersTimeout: cfg.timeoutMs, bodyTimeout: cfg.timeoutMs,
    });
  }

  /** Queues one event; drops it (counted, logged at most once a minute) when the queue is full. */
  enqueue(e: SessionEvent): void {
    if (this.closed) return;
    if (this.queue.length >= Math.max(1, this.cfg.queueSize)) {
      this.counters.dropped++;
      logLimited('events.queue_full', 'warn', 'events.dropped', {
        url: this.cfg.url, queue_size: this.cfg.queueSize, dropped_total: this.counters.dropped,
        last_error: this.counters.last_error?.message ?? null,
        fix: 'the collector is slow or down; events are counted in `latchkeyctl status` and still logged here',
      });
      return;
    }
    this.queue.push(e);
    if (this.inFlight === 0 && this.timer === null) this.schedule(0);
  }

  snapshot(): EventCounters { return { ...this.counters, queued: this.queue.length }; }

  /** Stops sending; returns what was not delivered (a reload hands it to the next collector). */
  close(): SessionEvent[] {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
    void this.agent.close().catch(() => undefined);
    const left = this.queue;
    this.queue = [];
    return left;
  }

  /** Takes over events left by a previous collector (oldest first, within this queue's size). */
  adopt(events: SessionEvent[]): void {
    for (const e of events) this.enqueue(e);
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.sendBatch();
    }, ms);
    this.timer.unref();
  }

  private async sendBatch(): Promise<void> {
    if (this.closed || this.queue.length === 0) return;
    const batch = this.queue.slice(0, MAX_BATCH);
    this.inFlight = batch.length;
    this.abort = new AbortController();
    const timeout = setTimeout(() => this.abort?.abort(), this.cfg.timeoutMs);
    let error: string | null = null;
    let permanent = false;
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (this.cfg.bearerToken) headers.authorization = `Bearer ${this.cfg.bearerToken}`;
      const r = await request(this.cfg.url, {
        method: 'POST', body: JSON.stringify({ events: batch }), headers, dispatcher: this.agent, signal: this.abort.signal,
      });
      await drain(r.body);
      if (r.statusCode < 200 || r.statusCode > 299) {
        error = `the collector answered HTTP ${r.statusCode}`;
        // 400, 413 and 422 say this batch will never be taken: retrying it would block every
        // later event behind it. Anything else (401/403 while a rotated token is on its way,
        // 404 during a collector's deploy, 408, 429, 5xx) may pass later: retried with backoff.
        permanent = r.statusCode === 400 || r.statusCode === 413 || r.statusCode === 422;
      }
    } catch (e) {
      error = this.abort.signal.aborted && !this.closed ? `no answer within ${this.cfg.timeoutMs} ms` : errorText(e);
    } finally {
      clearTimeout(timeout);
      this.abort = null;
      this.inFlight = 0;
    }
    if (this.closed) return;
    if (error === null || permanent) {
      // close() + adopt() may have replaced the queue meanwhile; the batch is its head otherwise.
      this.queue.splice(0, batch.length);
      if (error === null) {
        this.counters.sent += batch.length;
        if (this.failures > 0) log('info', 'events.recovered', { url: this.cfg.url, after_failures: this.failures });
        this.failures = 0;
      } else {
        this.counters.failed_attempts++;
        this.counters.dropped += batch.length;
        this.counters.last_error = { message: error, at: this.now() };
        log('error', 'events.refused', { url: this.cfg.url, error, dropped: batch.length, fix: 'the collector refuses the events\' format; check its log' });
        this.failures = 0;
      }
      if (this.queue.length > 0) this.schedule(0);
      return;
    }
    this.failures++;
    this.counters.failed_attempts++;
    this.counters.last_error = { message: error, at: this.now() };
    const backoff = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(this.failures - 1, 20));
    const delay = Math.round(backoff * (0.5 + (this.opts.random ?? Math.random)()));
    logLimited('events.send_failed', 'warn', 'events.send_failed', {
      url: this.cfg.url, error, failures: this.failures, retry_in_ms: delay, queued: this.queue.length,
    });
    this.schedule(delay);
  }

  private now(): number { return (this.opts.now ?? Date.now)(); }
}

async function drain(body: AsyncIterable<Buffer> & { destroy?: () => void }): Promise<void> {
  let n = 0;
  for await (const chunk of body) {
    n += chunk.length;
    if (n > MAX_REPLY_BYTES) { body.destroy?.(); return; }
  }
}

function errorText(e: unknown): string {
  const err = e as { message?: string; code?: string; cause?: { code?: string; message?: string } };
  const code = err?.cause?.code ?? err?.code;
  const msg = err?.cause?.message ?? err?.message ?? String(e);
  return code ? `${code}: ${msg}` : msg;
}
