// One JSON object per line on stderr (journald keeps each line as one record).
// Callers pass fields, never secrets: passwords, hashes and credentials must not reach here.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let threshold: LogLevel = (process.env.LATCHKEY_LOG_LEVEL as LogLevel) in order
  ? (process.env.LATCHKEY_LOG_LEVEL as LogLevel)
  : 'info';
let sink: (line: string) => void = (line) => process.stderr.write(line + '\n');

export function setLogLevel(level: LogLevel): void { threshold = level; }
/** Tests capture log lines through this. */
export function setLogSink(fn: (line: string) => void): void { sink = fn; }

/** Lets hot paths skip building fields for a line that would be dropped. */
export function logEnabled(level: LogLevel): boolean { return order[level] >= order[threshold]; }

export function log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
  if (order[level] < order[threshold]) return;
  const rec: Record<string, unknown> = { ts: new Date().toISOString(), level, event };
  for (const [k, v] of Object.entries(fields)) {
    rec[k] = v instanceof Error ? v.message : v;
  }
  sink(JSON.stringify(rec));
}
