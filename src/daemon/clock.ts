// Clock jumps: the wall clock (Date.now) decides every expiry, the monotonic clock
// (performance.now) does not move when an admin or NTP steps the time. Comparing how far each
// moved between two looks tells a step from elapsed time. A step forward expires cache entries
// early (fail closed); a step back makes entries look younger than they are (cache/policy.ts
// refuses to call one fresh whose fetch lies in the future). Either way the admin is told: one
// `clock.jump` line per step, and `latchkeyctl status` shows the last one.
import { log } from '../log.js';

/** A difference between wall and monotonic time larger than this is a step, not drift. */
export const CLOCK_JUMP_MS = 60_000;
/**
 * How often the clocks are compared. The daemon's sweep runs every 30 s; a step is wanted in the
 * log within seconds (it explains a burst of refetches or "unavailable" answers at once), and a
 * look costs two clock reads.
 */
export const CLOCK_CHECK_MS = 5_000;

export interface ClockJump {
  /** wall-clock time when the step was seen (after it) */
  at: number;
  /** how far the wall clock stepped, beyond elapsed time: positive forward, negative back */
  delta_ms: number;
  direction: 'forward' | 'back';
}

export class ClockWatch {
  private wall: number;
  private mono: number;
  private timer: NodeJS.Timeout | null = null;
  last: ClockJump | null = null;
  jumps = 0;
  /** told of every step after it is logged (the daemon rebuilds the shared-memory map on a step back); must not throw */
  onJump: ((j: ClockJump) => void) | null = null;

  constructor(
    private readonly wallNow: () => number = Date.now,
    private readonly monoNow: () => number = () => performance.now(),
  ) {
    this.wall = wallNow();
    this.mono = monoNow();
  }

  /** Compares the clocks since the last look; returns the step seen, if any. */
  check(): ClockJump | null {
    const wall = this.wallNow();
    const mono = this.monoNow();
    const delta = Math.round((wall - this.wall) - (mono - this.mono));
    this.wall = wall;
    this.mono = mono;
    if (Math.abs(delta) <= CLOCK_JUMP_MS) return null;
    const jump: ClockJump = { at: wall, delta_ms: delta, direction: delta > 0 ? 'forward' : 'back' };
    this.last = jump;
    this.jumps++;
    log('warn', 'clock.jump', {
      delta_ms: delta, direction: jump.direction, now: new Date(wall).toISOString(),
      detail: delta > 0
        ? 'the wall clock stepped forward: cached users expire early and are fetched again (or answered "unavailable" while the user service is down)'
        : 'the wall clock stepped back: users fetched "in the future" are not fresh; they are fetched again and served stale only within their grace',
      fix: 'check NTP (timedatectl, chronyc tracking); steps this large lock users out or keep entries longer than intended',
    });
    this.onJump?.(jump);
    return jump;
  }

  status(): { last_jump: ClockJump | null; jumps: number } {
    this.check();
    return { last_jump: this.last, jumps: this.jumps };
  }

  start(intervalMs = CLOCK_CHECK_MS): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
