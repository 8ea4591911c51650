// Which sshd settings apply to latchkey users, decided the way sshd decides at login:
//   - sshd_config(5): "for each keyword, the first obtained value will be used"; the keywords
//     of a Match block whose criteria are all satisfied override the global section, and when
//     several satisfied blocks set a keyword, only the first one counts;
//   - `Match Group` tests the user's groups with ga_match_pattern_list(): comma-separated
//     patterns with `*` and `?`, a `!` pattern that matches wins over everything (match.c).
// Latchkey users are not known in advance, but everything sshd matches on is: their only group
// is [users] group_name, and their names are never local (/etc/passwd) or denied names. So each
// Match line is, for latchkey users, `always`, `never` or `conditional` (depends on the address,
// the port, which user...).
import type { MatchCriterion, MatchLine, SshdConfigText, SshdSetting } from './parse.js';

export type Applies = 'always' | 'never' | 'conditional';

/** What is known about every latchkey user. */
export interface LatchkeyUsers {
  /** [users] group_name: the primary (and only) group of every latchkey user */
  groupName: string;
  /** names that are never latchkey users: local passwd names and [users] deny_names */
  notLatchkey: ReadonlySet<string>;
}

/** OpenSSH match_pattern(): `*` any run, `?` one character, case-sensitive. */
export function matchPattern(s: string, pattern: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\/]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 's').test(s);
}

/** OpenSSH match_pattern_list(): 1 = a pattern matched, -1 = a negated one did, 0 = none. */
export function matchPatternList(s: string, list: string): -1 | 0 | 1 {
  let got: 0 | 1 = 0;
  for (const raw of list.split(',')) {
    const negated = raw.startsWith('!');
    const p = negated ? raw.slice(1) : raw;
    if (p === '' || !matchPattern(s, p)) continue;
    if (negated) return -1;
    got = 1;
  }
  return got;
}

const hasWildcard = (p: string): boolean => /[*?]/.test(p);

/** `Match User LIST` for a user about whom we know only that the name is not local. */
function userCriterion(list: string, who: LatchkeyUsers): Applies {
  let anyone = false;
  let someone = false;
  for (const raw of list.split(',')) {
    const negated = raw.startsWith('!');
    const p = negated ? raw.slice(1) : raw;
    if (p === '') continue;
    if (negated) {
      // `!alice` excludes a latchkey user unless alice is local; `!a*` may exclude some.
      if (hasWildcard(p) || !who.notLatchkey.has(p)) return 'conditional';
      continue;
    }
    if (p === '*') anyone = true;
    else if (hasWildcard(p) || !who.notLatchkey.has(p)) someone = true;
  }
  if (anyone) return 'always';
  return someone ? 'conditional' : 'never';
}

export function criterionApplies(c: MatchCriterion, who: LatchkeyUsers): Applies {
  switch (c.name) {
    case 'all': return 'always';
    case 'group': return matchPatternList(who.groupName, c.value) === 1 ? 'always' : 'never';
    case 'user': return userCriterion(c.value, who);
    // A latchkey user sshd cannot resolve gets no login at all; these settings never matter.
    case 'invalid-user': return 'never';
    // Address, Host, LocalAddress, LocalPort, RDomain, Version...: depends on the connection.
    default: return 'conditional';
  }
}

/** A Match line (and the lines it is nested under) for latchkey users. */
export function matchApplies(lines: readonly MatchLine[], who: LatchkeyUsers): Applies {
  let result: Applies = 'always';
  for (const m of lines) {
    for (const c of m.criteria) {
      const a = criterionApplies(c, who);
      if (a === 'never') return 'never';
      if (a === 'conditional') result = 'conditional';
    }
  }
  return result;
}

export interface AppliedSetting { setting: SshdSetting; applies: 'always' | 'conditional' }

/**
 * The settings of `keyword` that may take effect for a latchkey user, in sshd's precedence
 * order: Match blocks that apply only sometimes, then the one that always wins (the first
 * always-matching block, else the first global value). Empty = sshd's built-in default.
 */
export function settingsFor(cfg: SshdConfigText, keyword: string, who: LatchkeyUsers): AppliedSetting[] {
  const k = keyword.toLowerCase();
  const out: AppliedSetting[] = [];
  for (const s of cfg.settings) {
    if (s.keyword !== k || s.match.length === 0) continue;
    const a = matchApplies(s.match, who);
    if (a === 'never') continue;
    out.push({ setting: s, applies: a });
    if (a === 'always') return out;
  }
  const global = cfg.settings.find((s) => s.keyword === k && s.match.length === 0);
  if (global) out.push({ setting: global, applies: 'always' });
  return out;
}

/** The first global value of a keyword (sshd's "first obtained value"), or undefined. */
export function globalSetting(cfg: SshdConfigText, keyword: string): SshdSetting | undefined {
  const k = keyword.toLowerCase();
  return cfg.settings.find((s) => s.keyword === k && s.match.length === 0);
}

/**
 * Whether a keyword whose value `none` switches it off (ChrootDirectory, ForceCommand) is in
 * effect for latchkey users: `always`, `never`, or `conditional`, with the settings involved.
 */
export function activeFor(cfg: SshdConfigText, keyword: string, who: LatchkeyUsers): { applies: Applies; settings: AppliedSetting[] } {
  const all = settingsFor(cfg, keyword, who);
  const on = all.filter((a) => (a.setting.args[0] ?? '').toLowerCase() !== 'none');
  if (on.length === 0) return { applies: 'never', settings: [] };
  const last = all[all.length - 1]!;
  const always = on.length === all.length && last.applies === 'always';
  return { applies: always ? 'always' : 'conditional', settings: on };
}

export function where(s: { file: string; line: number }): string {
  return `${s.file}:${s.line}`;
}
