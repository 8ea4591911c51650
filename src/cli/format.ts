// Pure output formatting for latchkeyctl: tables, tab-separated lines, JSON, times, sizes.
// Nothing here touches a socket, the clock or the terminal: callers pass `now` and the mode,
// so every function is tested alone (test/unit/cli-format.test.ts).

/** How a listing is printed: aligned table (terminal), TSV (pipe), or JSON (--json). */
export type OutputMode = 'table' | 'tsv' | 'json';

export interface TimeStyle {
  /** epoch ms the relative times are measured from */
  now: number;
  /** exact ISO 8601 UTC instead of "in 42m" / "3h ago" */
  utc: boolean;
}

/** --json wins; otherwise a terminal gets a table and a pipe gets TSV. */
export function chooseMode(json: boolean, isTTY: boolean): OutputMode {
  if (json) return 'json';
  return isTTY ? 'table' : 'tsv';
}

/** 90 → "1m30s", 7200 → "2h", 90061 → "1d1h": the two largest units, no zero second unit. */
export function formatDuration(seconds: number): string {
  let s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const units: Array<[string, number]> = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];
  const parts: string[] = [];
  for (const [unit, size] of units) {
    if (parts.length === 2) break;
    const n = Math.floor(s / size);
    if (n > 0) { parts.push(`${n}${unit}`); s -= n * size; }
    else if (parts.length === 1) break;
  }
  return parts.join('');
}

/** A coarse single-unit duration for relative times: "42m", "3h", "2d", "now". */
function coarse(ms: number): string {
  const s = Math.abs(ms) / 1000;
  if (s < 1) return '';
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** "in 42m" for the future, "3h ago" for the past, "now" within a second. */
export function relativeTime(at: number, now: number): string {
  const d = at - now;
  const c = coarse(d);
  if (c === '') return 'now';
  return d > 0 ? `in ${c}` : `${c} ago`;
}

/** ISO 8601 UTC to the second: 2024-05-01T12:00:00Z. */
export function isoUtc(at: number): string {
  return new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A timestamp as the user asked: relative by default, exact with --utc; "-" when absent. */
export function formatTime(at: number | null | undefined, style: TimeStyle): string {
  if (at === null || at === undefined || !Number.isFinite(at)) return '-';
  return style.utc ? isoUtc(at) : relativeTime(at, style.now);
}

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  if (i === 0) return `${n} B`;
  return `${v >= 10 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

/** 0.8734 → "87.3%"; null (no lookups yet) → "-". */
export function formatRatio(r: number | null | undefined): string {
  if (r === null || r === undefined || !Number.isFinite(r)) return '-';
  return `${(r * 100).toFixed(1)}%`;
}

/** Milliseconds with a sensible precision: 0.42 → "0.42ms", 12.3 → "12.3ms", 1520 → "1.52s". */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)}s`;
  if (ms >= 100) return `${Math.round(ms)}ms`;
  if (ms >= 10) return `${ms.toFixed(1)}ms`;
  return `${ms.toFixed(2)}ms`;
}

export function yesNo(b: boolean | null | undefined): string {
  if (b === null || b === undefined) return '-';
  return b ? 'yes' : 'no';
}

/** Display width of a string: code points, not UTF-16 units (names are ASCII by rule anyway). */
function width(s: string): number {
  return [...s].length;
}

/** Cells must stay on one line and one column, whatever upstream put in a gecos field. */
export function cleanCell(v: unknown): string {
  if (v === null || v === undefined) return '-';
  const s = typeof v === 'string' ? v : String(v);
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f]/g, ' ');
}

export interface Column<R> {
  /** header shown in the table */
  header: string;
  /** the cell text for one row */
  cell: (row: R) => string;
  /** right-align (numbers) */
  right?: boolean;
}

/**
 * An aligned table: a header line, then one line per row; columns separated by two spaces,
 * trailing spaces trimmed. No rows prints the header only, so the shape is always visible.
 */
export function renderTable<R>(rows: readonly R[], columns: readonly Column<R>[]): string {
  const cells = rows.map((r) => columns.map((c) => cleanCell(c.cell(r))));
  const widths = columns.map((c, i) => Math.max(width(c.header), ...cells.map((row) => width(row[i]!))));
  const line = (vals: string[]): string =>
    vals.map((v, i) => {
      const pad = ' '.repeat(widths[i]! - width(v));
      return columns[i]!.right ? pad + v : v + pad;
    }).join('  ').replace(/\s+$/, '');
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

/** Tab-separated lines, no header; tabs and newlines inside a value become spaces. */
export function renderTsv(rows: readonly (readonly unknown[])[]): string {
  if (rows.length === 0) return '';
  return rows.map((r) => r.map((v) => cleanCell(v).replace(/\t/g, ' ')).join('\t')).join('\n') + '\n';
}

/** Key/value pairs for a single object (status, show): "key:  value" aligned on a terminal. */
export function renderPairs(pairs: ReadonlyArray<readonly [string, string]>, mode: Exclude<OutputMode, 'json'>): string {
  if (mode === 'tsv') return renderTsv(pairs.map(([k, v]) => [k, v]));
  // An empty key continues the previous one (a second key, a second session): no colon.
  const w = Math.max(0, ...pairs.map(([k]) => width(k)));
  return pairs.map(([k, v]) => `${k ? k + ':' : ' '}${' '.repeat(w - width(k) + 2)}${cleanCell(v)}`.replace(/\s+$/, '')).join('\n') + '\n';
}

/** Stable JSON for --json: two-space indent, one trailing newline. */
export function renderJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (v instanceof RegExp ? v.source : typeof v === 'bigint' ? Number(v) : v), 2) + '\n';
}

/**
 * Prints a listing in the chosen mode. JSON gets `json` verbatim; the table the columns with
 * headers; TSV the same columns without header, with `tsvCell` used where a column wants a
 * machine-friendly value (exact times, bytes) instead of the human one.
 */
export function renderListing<R>(
  mode: OutputMode, rows: readonly R[], columns: readonly (Column<R> & { tsv?: (row: R) => string })[], json: unknown,
): string {
  if (mode === 'json') return renderJson(json);
  if (mode === 'table') return renderTable(rows, columns);
  return renderTsv(rows.map((r) => columns.map((c) => (c.tsv ?? c.cell)(r))));
}

/** Flattens nested counters into dotted keys: {a: {b: 1}} → [["a.b", 1]]; arrays are kept whole. */
export function flatten(obj: unknown, prefix = ''): Array<[string, unknown]> {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return prefix ? [[prefix, obj]] : [];
  const out: Array<[string, unknown]> = [];
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) out.push(...flatten(v, key));
    else out.push([key, v]);
  }
  return out;
}

/** A one-line bar for a histogram bucket, `width` cells for the largest count. */
export function bar(count: number, max: number, cells = 20): string {
  if (max <= 0 || count <= 0) return '';
  return '#'.repeat(Math.max(1, Math.round((count / max) * cells)));
}

/** A hash as admins may see it: "bcrypt (cost 10)", "sha512crypt (rounds 5000)", "none". */
export function formatHash(h: { kind?: unknown; cost?: unknown; cost_name?: unknown } | null | undefined): string {
  if (!h || typeof h.kind !== 'string') return 'none';
  if (typeof h.cost !== 'number') return h.kind;
  return `${h.kind} (${typeof h.cost_name === 'string' ? h.cost_name : 'cost'} ${h.cost})`;
}
