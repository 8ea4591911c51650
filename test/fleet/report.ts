// What the fleet run reports: the numbers of issue 19, each with its goal and whether it is met,
// as a Markdown table (with a "before" column when an earlier run's JSON is given) and JSON.
import type { UserServiceStats } from '../../src/example/userservice.js';
import type { Op } from './load.js';

export interface Row {
  key: string;
  label: string;
  goal: string;
  value: number | null;
  /** how the value is shown */
  unit: '' | 'x' | 's' | 'n';
  /** null: a number without a goal, shown for context */
  met: boolean | null;
}

/**
 * How many upstream requests a perfect cache would have made for the operations in [from, to):
 * per host and user, a fetch at the first operation and at the first one after each nominal TTL
 * has passed since the last fetch. Replayed from the first operation of the run, so what was
 * cached before `from` counts as cached. Operations the daemon never saw (it was down, or the
 * reply timed out) are left out.
 */
export function idealFetches(ops: Op[], ttlMs: number, from: number, to: number, hosts: number): number[] {
  const validUntil = new Map<number, number>();
  const perHost = new Array<number>(hosts).fill(0);
  for (const o of ops) {
    if (o.t >= to) continue;
    if (o.outcome === 'DOWN' || o.outcome === 'TIMEOUT') continue;
    const k = o.host * 1_000_000 + o.user;
    const until = validUntil.get(k) ?? -Infinity;
    if (o.t >= until) {
      validUntil.set(k, o.t + ttlMs);
      if (o.t >= from) perHost[o.host]!++;
    }
  }
  return perHost;
}

/** The counters of `b` minus those of `a` (a null `a`: the service restarted in between). */
export function statsDiff(a: UserServiceStats | null, b: UserServiceStats): { requests: number; byHost: Record<string, number>; byUser: Record<string, number>; byStatus: Record<string, number> } {
  const byHost: Record<string, number> = {};
  for (const [ip, h] of Object.entries(b.byHost)) byHost[ip] = h.requests - (a?.byHost[ip]?.requests ?? 0);
  const byUser: Record<string, number> = {};
  for (const [u, n] of Object.entries(b.byUser)) byUser[u] = n - (a?.byUser[u] ?? 0);
  const byStatus: Record<string, number> = {};
  for (const [s, n] of Object.entries(b.byStatus)) byStatus[s] = n - (a?.byStatus[s] ?? 0);
  return { requests: b.requests - (a?.requests ?? 0), byHost, byUser, byStatus };
}

/** Requests per second over consecutive samples of the service's total. */
export interface Sample { t: number; requests: number }

export function rates(samples: Sample[], from: number, to: number): number[] {
  const out: number[] = [];
  samples = [...samples].sort((a, b) => a.t - b.t);
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    if (a.t < from || b.t > to || b.requests < a.requests) continue;
    out.push((b.requests - a.requests) / ((b.t - a.t) / 1000));
  }
  return out;
}

export function show(r: Row | undefined): string {
  if (!r || r.value === null) return 'n/a';
  const v = r.unit === 'x' ? `${r.value.toFixed(2)}×` : r.unit === 's' ? `${r.value.toFixed(1)} s` : r.unit === 'n' ? r.value.toLocaleString('en-US') : r.value.toFixed(3);
  return r.met === null ? v : `${v} ${r.met ? '(met)' : '(**not met**)'}`;
}

export function table(rows: Row[], before: Row[] | null, beforeLabel: string, label: string): string {
  const b = new Map((before ?? []).map((r) => [r.key, r]));
  const head = before ? `| number | goal | ${beforeLabel} | ${label} |\n|---|---|---|---|` : `| number | goal | ${label} |\n|---|---|---|`;
  const body = rows.map((r) => before ? `| ${r.label} | ${r.goal} | ${show(b.get(r.key))} | ${show(r)} |` : `| ${r.label} | ${r.goal} | ${show(r)} |`);
  return [head, ...body].join('\n') + '\n';
}
