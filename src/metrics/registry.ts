// Counters, gauges and histograms rendered in the Prometheus text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/). Constant memory: every metric
// has fixed label names and at most MAX_SERIES label combinations; a value past that is counted
// under "other", so no input (a hostile upstream's status codes, a hash kind we never heard of)
// can grow it. Label values are never user names: cardinality, and a scrape is no place for them.

/** Label combinations one metric may hold; past it new combinations go to "other". */
export const MAX_SERIES = 64;

type Labels = Record<string, string>;

/** A label value in the exposition format: backslash, double quote and newline escaped. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text: backslash and newline escaped. */
function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value: integers as is, +Inf/-Inf/NaN by their names. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function labelText(names: readonly string[], values: readonly string[], extra?: [string, string]): string {
  const parts = names.map((n, i) => `${n}="${escapeLabel(values[i]!)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

interface Metric {
  readonly name: string;
  render(): string;
}

/** Series keyed by their label values, bounded by MAX_SERIES. */
class Series<T> {
  private readonly map = new Map<string, { values: string[]; v: T }>();
  constructor(private readonly labelNames: readonly string[], private readonly init: () => T) {}
  get(labels: Labels): T {
    let values = this.labelNames.map((n) => labels[n] ?? '');
    let key = values.join('\u0000');
    let s = this.map.get(key);
    if (!s) {
      if (this.map.size >= MAX_SERIES - 1) {
        values = this.labelNames.map(() => 'other');
        key = values.join('\u0000');
        s = this.map.get(key);
      }
      if (!s) {
        s = { values, v: this.init() };
        this.map.set(key, s);
      }
    }
    return s.v;
  }
  entries(): Array<{ values: string[]; v: T }> {
    return [...this.map.values()];
  }
}

export class Counter implements Metric {
  private readonly series: Series<{ n: number }>;
  constructor(readonly name: string, private readonly help: string, private readonly labelNames: readonly string[] = []) {
    this.series = new Series(labelNames, () => ({ n: 0 }));
  }
  inc(labels: Labels = {}, by = 1): void {
    this.series.get(labels).n += by;
  }
  /** Declares a series at 0, so a rate() sees it before its first event. */
  touch(labels: Labels): void {
    this.series.get(labels);
  }
  render(): string {
    let out = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} counter\n`;
    for (const { values, v } of this.series.entries()) out += `${this.name}${labelText(this.labelNames, values)} ${formatValue(v.n)}\n`;
    return out;
  }
}

/** A value read at scrape time from the daemon's own state (counters it already keeps, gauges). */
export class Collected implements Metric {
  constructor(
    readonly name: string, private readonly help: string, private readonly type: 'counter' | 'gauge',
    private readonly labelNames: readonly string[], private readonly read: () => Array<[string[], number]>,
  ) {}
  render(): string {
    let out = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
    for (const [values, v] of this.read().slice(0, MAX_SERIES)) out += `${this.name}${labelText(this.labelNames, values)} ${formatValue(v)}\n`;
    return out;
  }
}

export class Histogram implements Metric {
  private readonly series: Series<{ counts: number[]; sum: number; n: number }>;
  /** upper bounds in the metric's unit (seconds for durations), ascending; +Inf is implied */
  constructor(readonly name: string, private readonly help: string, private readonly bounds: readonly number[], private readonly labelNames: readonly string[] = []) {
    this.series = new Series(labelNames, () => ({ counts: new Array<number>(bounds.length).fill(0), sum: 0, n: 0 }));
  }
  observe(v: number, labels: Labels = {}): void {
    if (!(v >= 0)) v = 0; // NaN or a clock step backwards: counted, in the first bucket
    const s = this.series.get(labels);
    for (let i = 0; i < this.bounds.length; i++) if (v <= this.bounds[i]!) s.counts[i]!++;
    s.sum += v;
    s.n++;
  }
  render(): string {
    let out = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} histogram\n`;
    for (const { values, v } of this.series.entries()) {
      this.bounds.forEach((b, i) => { out += `${this.name}_bucket${labelText(this.labelNames, values, ['le', formatValue(b)])} ${v.counts[i]}\n`; });
      out += `${this.name}_bucket${labelText(this.labelNames, values, ['le', '+Inf'])} ${v.n}\n`;
      out += `${this.name}_sum${labelText(this.labelNames, values)} ${formatValue(Math.round(v.sum * 1e6) / 1e6)}\n`;
      out += `${this.name}_count${labelText(this.labelNames, values)} ${v.n}\n`;
    }
    return out;
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];
  add<M extends Metric>(m: M): M {
    if (this.metrics.some((x) => x.name === m.name)) throw new Error(`metric ${m.name} registered twice`);
    this.metrics.push(m);
    return m;
  }
  /** The whole exposition; a collector that throws costs its own metric only (logged by the caller). */
  render(onError: (name: string, e: unknown) => void = () => undefined): string {
    let out = '';
    for (const m of this.metrics) {
      try { out += m.render(); } catch (e) { onError(m.name, e); }
    }
    return out;
  }
}
