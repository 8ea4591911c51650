// One JSON object per line on stderr (journald keeps each line as one record).
// Callers pass fields, never secrets: passwords, hashes and credentials must not reach here.
import { fstatSync } from 'node:fs';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let threshold: LogLevel = (process.env.LATCHKEY_LOG_LEVEL as LogLevel) in order
  ? (process.env.LATCHKEY_LOG_LEVEL as LogLevel)
  : 'info';

/** syslog priorities (journalctl -p): err, warning, info, debug */
export const JOURNAL_PRIORITY: Record<LogLevel, number> = { error: 3, warn: 4, info: 6, debug: 7 };

/**
 * Whether stderr is connected to the journal: systemd sets JOURNAL_STREAM to the device and inode
 * of that stream, which we compare with fd 2 itself (an inherited variable must not count when
 * stderr was redirected elsewhere; systemd.exec(5)).
 */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const js = env.JOURNAL_STREAM;
  if (!js) return false;
  const [dev, ino] = js.split(':');
  try {
    const st = fstatSync(2, { bigint: true });
    return String(st.dev) === dev && String(st.ino) === ino;
  } catch {
    return false;
  }
}

// journald takes a "<N>" prefix as the line's priority (SyslogLevelPrefix=, on by default), so
// `journalctl -p warning -u latchkeyd` finds the warnings and errors. Elsewhere lines stay plain JSON.
const toJournal = stderrIsJournal();
let sink: (line: string, level: LogLevel) => void = (line, level) => {
  process.stderr.write(toJournal ? `<${JOURNAL_PRIORITY[level]}>${line}\n` : line + '\n');
};

export function setLogLevel(level: LogLevel): void { threshold = level; }
/** Tests capture log lines through this. */
export function setLogSink(fn: (line: string, level: LogLevel) => void): void { sink = fn; }

/** Lets hot paths skip building fields for a line that would be dropped. */
export function logEnabled(level: LogLevel): boolean { return order[level] >= order[threshold]; }

// JSON.stringify leaves DEL, C1 controls, line/paragraph separators and bidi/zero-width format
// characters as they are; escaped, a value from upstream cannot break or disguise a log line
// (and the line stays valid JSON with the same meaning).
const UNSAFE_IN_LOG = /[\u007f-\u009f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;

/** A character as its JSON/JS escape (\u followed by four hex digits): same meaning, printable ASCII. */
export function unicodeEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

export function log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
  if (order[level] < order[threshold]) return;
  const rec: Record<string, unknown> = { ts: new Date().toISOString(), level, event };
  for (const [k, v] of Object.entries(fields)) {
    rec[k] = v instanceof Error ? v.message : v;
  }
  sink(JSON.stringify(rec).replace(UNSAFE_IN_LOG, unicodeEscape), level);
}

/** At most one line per key per this interval from logLimited. */
export const LIMITED_INTERVAL_MS = 60_000;
export const LIMITED_KEYS_MAX = 4096;
const limited = new Map<string, { at: number; suppressed: number }>();

/**
 * For events an unprivileged peer can cause at will (garbage frames, floods, refused lookups):
 * one line per key (say event + peer uid) per interval, carrying how many were suppressed since
 * the last one, so a flood costs the journal one line a minute instead of one per frame.
 */
export function logLimited(key: string, level: LogLevel, event: string, fields: Record<string, unknown> = {}, now = Date.now()): void {
  if (order[level] < order[threshold]) return;
  const prev = limited.get(key);
  if (prev && now - prev.at < LIMITED_INTERVAL_MS) { prev.suppressed++; return; }
  if (limited.size >= LIMITED_KEYS_MAX) limited.clear();
  limited.set(key, { at: now, suppressed: 0 });
  log(level, event, { ...fields, ...(prev && prev.suppressed > 0 ? { suppressed_since_last: prev.suppressed } : {}) });
}

/**
 * One line per key for the life of the instance (a refusal that only changes when the data
 * does: a local namesake, a uid collision). The key set is bounded: when full it starts over,
 * so a flood of distinct keys costs memory of at most `max` keys and a repeat line per `max`.
 */
export class LogOnce {
  private readonly seen = new Set<string>();
  constructor(private readonly max = 4096) {}
  log(key: string, level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
    if (this.seen.has(key)) return;
    if (this.seen.size >= this.max) this.seen.clear();
    this.seen.add(key);
    log(level, event, fields);
  }
}
