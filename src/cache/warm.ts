// Warm start: after a start, the recently used users the cache cannot serve at all (no row after
// a reboot emptied it, or a row past its grace) are fetched in the background, most recent
// first, at a bounded rate, so the first logins after a reboot find them cached instead of each
// waiting for the upstream, and an outage right after a reboot locks none of them out. And the
// names-only list that carries "recently used" across a reboot (the cache file lives on tmpfs).
//
// A fleet restarted at once must not multiply the upstream's load: a row the cache can still
// serve (fresh, or stale within its grace) is never refetched here (after a plain restart the
// cache file is still there and nothing is asked), each host waits a random [0, 5 s) before its
// first request, and sends at most [cache] warm_start_rate a second, nothing while the
// upstream is held off (upstream/backoff.ts).
import { closeSync, constants, fstatSync, openSync, readSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { log, LogOnce } from '../log.js';

/** The random delay before the first warm-start request is uniform in [0, this). */
export const WARM_START_SPREAD_MS = 5_000;
/** warm-start requests in flight at most: a slow upstream must not collect a pile of them */
export const WARM_START_IN_FLIGHT = 4;
/** How long the warm start waits before asking again whether a hold-off is over. */
const HELD_RETRY_MS = 1_000;
/** The recent file is read up to this many bytes (33-byte names, 100,000 at most: 3.3 MB). */
export const RECENT_FILE_MAX_BYTES = 4 * 1024 * 1024;

/** What a refresh of one name came to. */
export type WarmResult = 'refreshed' | 'cached' | 'failed' | 'skipped' | 'held';

export interface WarmDeps {
  /** the names to consider, most recent first, at most `limit` */
  names(limit: number): string[];
  /** fetches one name in the known lane unless the cache can serve it ('cached': fresh, or stale within grace; directory/resolver.ts warm()) */
  refresh(name: string): Promise<WarmResult>;
  /** [cache] warm_start (0: off) and warm_start_rate (per second), read at start */
  limit(): number;
  rate(): number;
  random?: () => number;
}

export interface WarmStatus {
  state: 'off' | 'waiting' | 'running' | 'done' | 'stopped';
  /** names considered */
  total: number;
  /** names dealt with: refreshed, found servable in the cache, or skipped by the rules */
  done: number;
  /** of those, refreshed from the upstream */
  refreshed: number;
  failed: number;
}

export class WarmStart {
  private st: WarmStatus = { state: 'off', total: 0, done: 0, refreshed: 0, failed: 0 };
  private timer: NodeJS.Timeout | null = null;
  private queue: string[] = [];
  private inFlight = 0;
  private stopped = false;

  constructor(private readonly d: WarmDeps) {}

  status(): WarmStatus { return { ...this.st }; }

  /** Starts once, after the random spread delay; a second call does nothing. */
  start(): void {
    if (this.st.state !== 'off' || this.stopped) return;
    const limit = this.d.limit();
    if (limit <= 0) return;
    let names: string[];
    try {
      names = this.d.names(limit);
    } catch (e) {
      log('error', 'cache.warm_start', { phase: 'failed', error: e instanceof Error ? e.message : String(e) });
      return;
    }
    this.queue = names;
    this.st = { state: 'waiting', total: names.length, done: 0, refreshed: 0, failed: 0 };
    if (names.length === 0) { this.st.state = 'done'; return; }
    const delay = Math.floor((this.d.random ?? Math.random)() * WARM_START_SPREAD_MS);
    log('info', 'cache.warm_start', { phase: 'begin', names: names.length, delay_ms: delay, rate_per_s: this.d.rate() });
    this.schedule(delay);
  }

  /** Stops for good (shutdown): no timer is left behind, requests in flight finish on their own. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.st.state === 'waiting' || this.st.state === 'running') {
      this.st.state = 'stopped';
      log('info', 'cache.warm_start', { phase: 'stopped', ...this.counts() });
    }
  }

  private counts(): Omit<WarmStatus, 'state'> {
    const { total, done, refreshed, failed } = this.st;
    return { total, done, refreshed, failed };
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => { this.timer = null; this.tick(); }, ms);
    this.timer.unref();
  }

  /** One name per tick, a tick every 1/rate s: the rate holds however fast the upstream answers. */
  private tick(): void {
    if (this.stopped) return;
    this.st.state = 'running';
    const gap = 1000 / Math.max(1, this.d.rate());
    if (this.queue.length === 0) {
      if (this.inFlight === 0) this.finish();
      return;
    }
    if (this.inFlight >= WARM_START_IN_FLIGHT) { this.schedule(gap); return; }
    const name = this.queue.shift()!;
    this.inFlight++;
    this.d.refresh(name).then((r) => this.settle(name, r), (e: unknown) => {
      log('error', 'cache.warm_start', { phase: 'refresh_failed', name, error: e instanceof Error ? e.message : String(e) });
      this.settle(name, 'failed');
    });
    this.schedule(gap);
  }

  private settle(name: string, r: WarmResult): void {
    this.inFlight--;
    if (r === 'held') {
      // The upstream is held off: nothing was sent; this name waits its turn again.
      this.queue.unshift(name);
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.schedule(HELD_RETRY_MS);
      return;
    }
    this.st.done++;
    if (r === 'refreshed') this.st.refreshed++;
    if (r === 'failed') this.st.failed++;
    if (this.queue.length === 0 && this.inFlight === 0 && !this.stopped) this.finish();
  }

  private finish(): void {
    if (this.st.state === 'done') return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.st.state = 'done';
    log('info', 'cache.warm_start', { phase: 'end', ...this.counts() });
  }
}

/**
 * The names-only list of recently used users ([cache] recent_file): never a secret, one name a
 * line, most recent first, 0600 the daemon's. Written by the sweep (every 30 s) only when it
 * changed, by rename, so a reader never sees half of it.
 */
export class RecentFile {
  private last = '';
  private readonly once = new LogOnce();

  constructor(private readonly path: () => string | null | undefined) {}

  /** Writes `names` if they differ from what was written last; a failure is logged once per path and cause. */
  write(names: string[]): void {
    const path = this.path();
    if (!path) return;
    const text = names.length ? names.join('\n') + '\n' : '';
    if (text === this.last) return;
    const tmp = join(dirname(path), `.${process.pid}.recent-users.tmp`);
    try {
      writeFileSync(tmp, text, { mode: 0o600, flag: 'w' });
      renameSync(tmp, path);
      this.last = text;
    } catch (e) {
      try { unlinkSync(tmp); } catch { /* never created */ }
      const code = (e as NodeJS.ErrnoException).code ?? 'error';
      this.once.log(`${path}:${code}`, 'warn', 'cache.recent_file_failed', {
        path, error: e instanceof Error ? e.message : String(e),
        fix: 'make its directory writable by the daemon account (/var/lib/latchkey), or set [cache] recent_file = none',
      });
    }
  }

  /**
   * The names of the file, in order, each passing `valid` (the name rule: the file is ours, but a
   * name read back is checked like any other), at most `limit`. Missing: none. Refused (and
   * logged) when it is not a regular file owned by this process's uid without group or other
   * access, or a symlink: someone else's list must not steer the daemon's requests.
   */
  read(limit: number, valid: (name: string) => boolean): string[] {
    const path = this.path();
    if (!path || limit <= 0) return [];
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') log('warn', 'cache.recent_file_refused', { path, reason: e instanceof Error ? e.message : String(e) });
      return [];
    }
    try {
      const st = fstatSync(fd);
      const uid = process.geteuid?.() ?? st.uid;
      if (!st.isFile() || st.uid !== uid || (st.mode & 0o077) !== 0) {
        log('warn', 'cache.recent_file_refused', { path, reason: `not a regular file of uid ${uid} with mode 0600`, fix: 'remove it; the daemon writes a new one' });
        return [];
      }
      const buf = Buffer.alloc(Math.min(st.size, RECENT_FILE_MAX_BYTES));
      let n = 0;
      while (n < buf.length) {
        const r = readSync(fd, buf, n, buf.length - n, n);
        if (r === 0) break;
        n += r;
      }
      const lines = buf.subarray(0, n).toString('utf8').split('\n');
      // Cut short at the size bound: the last line may be part of a name.
      if (n < st.size) lines.pop();
      const out: string[] = [];
      const seen = new Set<string>();
      for (const line of lines) {
        if (out.length >= limit) break;
        if (line === '' || seen.has(line) || !valid(line)) continue;
        seen.add(line);
        out.push(line);
      }
      return out;
    } finally {
      closeSync(fd);
    }
  }
}
