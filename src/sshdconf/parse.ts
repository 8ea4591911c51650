// Pure reader of sshd_config(5) text, following OpenSSH's servconf.c so that latchkey sees the
// same settings sshd does:
//   - keywords are case-insensitive; keyword and arguments are separated by whitespace or one
//     '=' (strdelim); arguments are split like argv_split(): single or double quotes, backslash
//     escapes of quotes, backslash and (outside quotes) space, and an unquoted '#' at the start
//     of an argument ends the line;
//   - `Include` takes one or more paths or globs, relative ones under /etc/ssh, expanded in
//     glob(3) order; an included file starts in the Match context of the Include line, a Match
//     inside it lasts until the end of that file only ("Don't let included files clobber the
//     containing file's Match state"), and a Match in a file included from inside a Match block
//     applies only when both match;
//   - every line after `Match` belongs to that block until the next Match or the end of file.
// Which value wins (first one, Match over global) is decided in resolve.ts; this file only
// records every setting with its file:line and the Match lines it sits under.
import { posix } from 'node:path';

export interface Origin { file: string; line: number }

/** One criterion of a Match line, name lower-cased ("group", "user", "all", "address"...). */
export interface MatchCriterion { name: string; value: string }

export interface MatchLine extends Origin { criteria: MatchCriterion[] }

export interface SshdSetting extends Origin {
  /** lower-cased keyword */
  keyword: string;
  /** the keyword as written, for messages */
  written: string;
  args: string[];
  /** Match lines this setting sits under, outermost first; empty = global section */
  match: MatchLine[];
}

export interface ParseProblem extends Origin { message: string }

export interface SshdConfigText {
  /** the file parsing started from */
  file: string;
  /** every keyword line in the order sshd reads them, Include expanded; Match/Include lines excluded */
  settings: SshdSetting[];
  /** every Match line, in reading order */
  matches: MatchLine[];
  /** files read, in order */
  files: string[];
  /** lines sshd would refuse (bad quotes, missing argument, Include loop): sshd -t names them too */
  problems: ParseProblem[];
}

/** Where the text comes from; tests use an in-memory map, the daemon the file system. */
export interface ConfigSource {
  /** the file's text, or null when it does not exist or cannot be read */
  read(path: string): string | null;
  /** existing paths matching a glob(3) pattern (`*`, `?`, `[...]`), sorted */
  glob(pattern: string): string[];
}

/** sshd's SSHDIR: relative Include paths are taken from here (sshd_config(5) Include). */
export const SSHD_DIR = '/etc/ssh';
/** servconf.c SERVCONF_MAX_DEPTH */
const MAX_INCLUDE_DEPTH = 16;

/**
 * Splits the keyword off a line like strdelim(): returns null for blank and comment lines.
 * `rest` is the argument text after the separator (whitespace, or at most one '=').
 */
export function splitKeyword(line: string): { keyword: string; rest: string } | null {
  const s = line.replace(/[ \t\r\f]+$/, '').replace(/^[ \t]+/, '');
  if (s === '' || s.startsWith('#')) return null;
  const m = /^([^ \t="']+)[ \t]*(?:=[ \t]*)?(.*)$/.exec(s);
  if (!m) return { keyword: s, rest: '' };
  return { keyword: m[1]!, rest: m[2]! };
}

/** argv_split(s, terminate_on_comment = 1); null when a quote is not closed. */
export function splitArgs(s: string): string[] | null {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === ' ' || c === '\t') { i++; continue; }
    if (c === '#') break;
    let arg = '';
    let quote = '';
    for (; i < s.length; i++) {
      const ch = s[i]!;
      const next = s[i + 1];
      if (ch === '\\') {
        if (next === "'" || next === '"' || next === '\\' || (quote === '' && next === ' ')) {
          arg += next;
          i++;
        } else {
          arg += ch; // unrecognised escape is kept as written
        }
      } else if (quote === '' && (ch === ' ' || ch === '\t')) {
        break;
      } else if (quote === '' && (ch === '"' || ch === "'")) {
        quote = ch;
      } else if (quote !== '' && ch === quote) {
        quote = '';
      } else {
        arg += ch;
      }
    }
    if (quote !== '') return null;
    out.push(arg);
  }
  return out;
}

/** Match criteria that take no argument (servconf.c match_cfg_line). */
const BARE_CRITERIA = new Set(['all', 'invalid-user']);

/** Parses the arguments of a Match line; a string is the problem sshd would report. */
export function parseMatchArgs(args: string[]): MatchCriterion[] | string {
  const out: MatchCriterion[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.indexOf('=');
    const name = (eq > 0 ? a.slice(0, eq) : a).toLowerCase();
    if (BARE_CRITERIA.has(name)) {
      if (name === 'all' && (out.length > 0 || i + 1 < args.length)) return "'all' cannot be combined with other Match attributes";
      out.push({ name, value: '' });
      continue;
    }
    const value = eq > 0 ? a.slice(eq + 1) : args[++i];
    if (value === undefined || value === '') return `Missing Match criteria for ${name}`;
    out.push({ name, value });
  }
  if (out.length === 0) return 'Match needs at least one criterion';
  return out;
}

/** Resolves an Include argument the way sshd does: relative to /etc/ssh. */
export function includePattern(arg: string): string {
  return arg.startsWith('/') || arg.startsWith('~') ? arg : posix.join(SSHD_DIR, arg);
}

/** Reads `file` and everything it includes. Never throws; a missing top file gives no settings. */
export function parseSshdConfig(file: string, source: ConfigSource): SshdConfigText {
  const result: SshdConfigText = { file, settings: [], matches: [], files: [], problems: [] };
  const text = source.read(file);
  if (text === null) {
    result.problems.push({ file, line: 0, message: 'cannot be read' });
    return result;
  }
  parseFile(file, text, [], 0, source, result);
  return result;
}

function parseFile(file: string, text: string, outer: MatchLine[], depth: number, source: ConfigSource, out: SshdConfigText): void {
  out.files.push(file);
  let context = outer;
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const at = { file, line: n + 1 };
    const kw = splitKeyword(lines[n]!);
    if (kw === null) continue;
    const keyword = kw.keyword.toLowerCase();
    const args = splitArgs(kw.rest);
    if (args === null) { out.problems.push({ ...at, message: 'invalid quotes' }); continue; }
    if (args.length === 0) { out.problems.push({ ...at, message: `no argument after keyword "${kw.keyword}"` }); continue; }
    if (keyword === 'match') {
      const criteria = parseMatchArgs(args);
      if (typeof criteria === 'string') { out.problems.push({ ...at, message: criteria }); continue; }
      const m: MatchLine = { ...at, criteria };
      out.matches.push(m);
      // A Match in an included file is evaluated only when the Include line's context matched.
      context = [...outer, m];
    } else if (keyword === 'include') {
      if (depth + 1 > MAX_INCLUDE_DEPTH) {
        out.problems.push({ ...at, message: `Include nested too deep (more than ${MAX_INCLUDE_DEPTH} levels: a loop?)` });
        continue;
      }
      for (const arg of args) {
        for (const path of source.glob(includePattern(arg))) {
          const inc = source.read(path);
          if (inc === null) { out.problems.push({ ...at, message: `cannot read included file ${path}` }); continue; }
          parseFile(path, inc, context, depth + 1, source, out);
        }
      }
    } else {
      out.settings.push({ ...at, keyword, written: kw.keyword, args, match: context });
    }
  }
}
