// A strict reader of the Prometheus text exposition format 0.0.4, for tests: every line must be
// a HELP, a TYPE or a sample; names, label names and escapes as the format allows; TYPE before
// a family's samples and once; a family's samples together; counters non-negative; a
// histogram's buckets ascending in le, cumulative, ending in +Inf equal to _count, with _sum.
// Throws on the first violation, naming the line.
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export interface Sample { name: string; labels: Record<string, string>; value: number }

export interface Exposition {
  samples: Sample[];
  type(family: string): string | undefined;
  value(name: string, labels?: Record<string, string>): number | undefined;
}

function parseValue(s: string, where: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`${where}: bad value ${JSON.stringify(s)}`);
  return Number(s);
}

/** name{a="x",b="y"} value — returns the parts, checking every escape. */
function parseSample(line: string, where: string): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{|\s)/.exec(line);
  if (!m) throw new Error(`${where}: not a sample: ${line}`);
  const name = m[1]!;
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    while (line[i] !== '}') {
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(i));
      if (!lm || !LABEL_NAME.test(lm[1]!)) throw new Error(`${where}: bad label at ${i}: ${line}`);
      i += lm[0].length;
      let v = '';
      for (;;) {
        const c = line[i];
        if (c === undefined) throw new Error(`${where}: unterminated label value`);
        if (c === '"') { i++; break; }
        if (c === '\\') {
          const e = line[i + 1];
          if (e === '\\') v += '\\'; else if (e === '"') v += '"'; else if (e === 'n') v += '\n';
          else throw new Error(`${where}: bad escape \\${e}`);
          i += 2;
          continue;
        }
        if (c === '\n') throw new Error(`${where}: raw newline in a label value`);
        v += c;
        i++;
      }
      if (lm[1]! in labels) throw new Error(`${where}: label ${lm[1]} twice`);
      labels[lm[1]!] = v;
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new Error(`${where}: expected , or } at ${i}: ${line}`);
    }
    i++;
  }
  const rest = line.slice(i);
  const vm = /^ (\S+)( -?\d+)?$/.exec(rest);
  if (!vm) throw new Error(`${where}: expected " VALUE [TIMESTAMP]" after the labels: ${JSON.stringify(rest)}`);
  return { name, labels, value: parseValue(vm[1]!, where) };
}

/** The family a sample belongs to: histogram samples carry _bucket/_sum/_count. */
function familyOf(name: string, types: Map<string, string>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      if (types.get(base) === 'histogram' || types.get(base) === 'summary') return base;
    }
  }
  return name;
}

export function parseExposition(text: string): Exposition {
  if (!text.endsWith('\n')) throw new Error('the body does not end with a newline');
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  const seenFamilies: string[] = [];
  const lines = text.slice(0, -1).split('\n');
  lines.forEach((line, n) => {
    const where = `line ${n + 1}`;
    if (line === '') throw new Error(`${where}: empty line`);
    if (line.startsWith('# HELP ')) {
      const m = /^# HELP (\S+) (.*)$/.exec(line);
      if (!m || !METRIC_NAME.test(m[1]!)) throw new Error(`${where}: bad HELP`);
      if (/\\[^\\n]/.test(m[2]!.replace(/\\\\/g, ''))) throw new Error(`${where}: bad escape in HELP`);
      if (helps.has(m[1]!)) throw new Error(`${where}: second HELP for ${m[1]}`);
      helps.add(m[1]!);
      return;
    }
    if (line.startsWith('# TYPE ')) {
      const m = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (!m || !METRIC_NAME.test(m[1]!) || !TYPES.has(m[2]!)) throw new Error(`${where}: bad TYPE: ${line}`);
      if (types.has(m[1]!)) throw new Error(`${where}: second TYPE for ${m[1]}`);
      if (seenFamilies.includes(m[1]!)) throw new Error(`${where}: TYPE for ${m[1]} after its samples`);
      types.set(m[1]!, m[2]!);
      return;
    }
    if (line.startsWith('#')) throw new Error(`${where}: a comment the daemon should not write: ${line}`);
    const s = parseSample(line, where);
    const fam = familyOf(s.name, types);
    if (seenFamilies.length && seenFamilies[seenFamilies.length - 1] !== fam && seenFamilies.includes(fam)) {
      throw new Error(`${where}: samples of ${fam} are not together`);
    }
    if (seenFamilies[seenFamilies.length - 1] !== fam) seenFamilies.push(fam);
    const type = types.get(fam);
    if (type === 'counter' && !(s.value >= 0)) throw new Error(`${where}: counter ${s.name} is ${s.value}`);
    samples.push(s);
  });
  // Histograms: per label set (without le), buckets ascending and cumulative, +Inf = _count.
  for (const [fam, type] of types) {
    if (type !== 'histogram') continue;
    const groups = new Map<string, { buckets: Array<[number, number]>; sum?: number; count?: number }>();
    const keyOf = (l: Record<string, string>): string => JSON.stringify(Object.entries(l).filter(([k]) => k !== 'le').sort());
    for (const s of samples) {
      if (s.name !== `${fam}_bucket` && s.name !== `${fam}_sum` && s.name !== `${fam}_count`) continue;
      const g = groups.get(keyOf(s.labels)) ?? { buckets: [] };
      groups.set(keyOf(s.labels), g);
      if (s.name.endsWith('_bucket')) {
        if (s.labels.le === undefined) throw new Error(`${fam}: a bucket without le`);
        g.buckets.push([parseValue(s.labels.le, fam), s.value]);
      } else if (s.name.endsWith('_sum')) g.sum = s.value;
      else g.count = s.value;
    }
    for (const [k, g] of groups) {
      if (g.sum === undefined || g.count === undefined) throw new Error(`${fam}${k}: _sum or _count missing`);
      for (let i = 1; i < g.buckets.length; i++) {
        if (!(g.buckets[i]![0] > g.buckets[i - 1]![0])) throw new Error(`${fam}${k}: le not ascending`);
        if (g.buckets[i]![1] < g.buckets[i - 1]![1]) throw new Error(`${fam}${k}: buckets not cumulative`);
      }
      const last = g.buckets[g.buckets.length - 1];
      if (!last || last[0] !== Infinity) throw new Error(`${fam}${k}: no +Inf bucket`);
      if (last[1] !== g.count) throw new Error(`${fam}${k}: +Inf bucket ${last[1]} != _count ${g.count}`);
    }
  }
  const same = (a: Record<string, string>, b: Record<string, string>): boolean =>
    Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);
  return {
    samples,
    type: (f) => types.get(f),
    value: (name, labels = {}) => samples.find((s) => s.name === name && same(s.labels, labels))?.value,
  };
}
