// Line scan of an INI file. The `ini` package decodes values (quotes, escapes, inline comments)
// but drops blank lines and reports no positions, and it quietly turns malformed lines into
// keys; this scan finds each key's line and rejects what `ini` would misread, before decoding.
import ini from 'ini';
import { ConfigError } from '../errors.js';
import { KEYS } from './keys.js';

export interface Entry {
  /** null at top level (before any [section]) */
  section: string | null;
  key: string;
  line: number;
  /** the name shown in messages (set by the caller once the key is resolved) */
  display?: string;
  /** text after the first '=', as written */
  rawValue: string;
}

export interface Header { name: string; line: number }

/** `problems`: the lines that are neither a comment, a section header nor `key = value`; the scan goes on past them. */
export interface Scanned { entries: Entry[]; headers: Header[]; problems: ConfigError[] }

// Same shapes `ini` matches, so both sides agree on what is a section and what is a key.
const SECTION_RE = /^\[([^\]]*)\]\s*$/;
const KEY_RE = /^([^=]+)(=(.*))?$/;

export function scanIni(text: string, file: string): Scanned {
  const entries: Entry[] = [];
  const headers: Header[] = [];
  const problems: ConfigError[] = [];
  let section: string | null = null;
  const lines = text.split(/\r\n|\n|\r/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const no = i + 1;
    if (/^\s*([;#]|$)/.test(line)) continue;
    const sec = SECTION_RE.exec(line);
    if (sec) {
      section = ini.unsafe(sec[1]!);
      headers.push({ name: section, line: no });
      continue;
    }
    // A line without "=" can only be a problem, and past 50 the loader stops reporting them
    // (MAX_REPORTED_ERRORS in load.ts): a file of garbage costs no more than that.
    if (problems.length > 50 && !line.includes('=')) continue;
    if (/^\s*\[/.test(line)) {
      problems.push(new ConfigError(file, no, '', 'malformed section header; write it alone on its line, starting in column 1, e.g. [upstream]'));
      continue;
    }
    const kv = KEY_RE.exec(line);
    const key = kv ? ini.unsafe(kv[1]!) : '';
    if (kv && kv[2] === undefined) {
      // The line is echoed only when it is a key's name: anything else may be a secret typed
      // without its key (`hunter2`, `password hunter2`), and this message reaches logs and terminals.
      const known = KEYS.some((k) => k.key === key || k.legacy === key);
      problems.push(new ConfigError(file, no, known ? key : '', `${known ? '' : 'the line (not shown) '}has no "="; expected key = value`));
    } else if (!kv || key === '') {
      problems.push(new ConfigError(file, no, '', 'missing key name before "="; expected key = value'));
    } else {
      entries.push({ section, key, line: no, rawValue: kv[3]! });
    }
  }
  return { entries, headers, problems };
}

/**
 * A `#` or `;` glued to the text before it (`pa#ss`, `/users;v=2`) starts an inline comment for
 * `ini`, so the value would be silently cut; a real comment is preceded by a space, as LocalEGA
 * writes `ega_dir_attrs = 2750 # rwxr-s---`.
 */
export function hasGluedCommentChar(rawValue: string): boolean {
  const v = rawValue.trim();
  if (v.length > 1 && (v[0] === '"' || v[0] === "'") && v.endsWith(v[0])) return false;
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (c === '\\') { i++; continue; }
    if (c === '#' || c === ';') return i > 0 && !/\s/.test(v[i - 1]!);
  }
  return false;
}

/**
 * Decodes every entry's value: a ConfigError in place of a value that cannot be read. Sectioned
 * entries go through `ini`, one line at a time, so its sections, dotted nesting and `[]` arrays
 * never come into play.
 * `legacy(entry)` says which entries are LocalEGA auth.conf keys (a config file's top level),
 * read as LocalEGA reads them (legacyValue); null for the others.
 */
export function decodeValues(entries: Entry[], file: string, legacy: (e: Entry) => { wholeLine: boolean } | null): Array<string | ConfigError> {
  return entries.map((e) => {
    const flat = legacy(e);
    if (flat) {
      const v = legacyValue(e.rawValue, flat.wholeLine);
      return v.ok ? v.value : new ConfigError(file, e.line, e.display ?? e.key, v.problem);
    }
    // Line by line (`ini` reads values line-local), so each line's own value is judged: a key
    // given twice is not read as its last line's value on both.
    const v = (ini.decode(`x=${e.rawValue}`) as Record<string, unknown>).x;
    if (typeof v === 'string') {
      const raw = e.rawValue.trim();
      if (raw.length > 1 && raw.startsWith('"') && raw.endsWith('"') && v === raw) {
        return new ConfigError(file, e.line, e.display ?? e.key, 'bad double-quoted value (it is read as JSON: write \\\\ for a backslash), or use single quotes');
      }
      return v;
    }
    if (typeof v === 'boolean' || v === null) return String(v);
    return new ConfigError(file, e.line, e.display ?? e.key, 'could not be read; expected key = value');
  });
}

/**
 * A LocalEGA auth.conf value, as EGA-auth's readconfig() (src/config.c) takes it: everything after
 * the first "=" to the end of the line, leading blanks skipped; no quotes, no escapes, no inline
 * comments. So `cega_creds = lega:pa#ss` keeps its `#`, as it did under LocalEGA.
 * - Free-text keys (`wholeLine`: cega_creds, prompt) keep the whole line, trailing blanks aside.
 * - For the other keys (numbers, paths, URLs, yes/no) a comment after a blank is dropped, as
 *   LocalEGA's samples write `ega_dir_attrs = 2750 # rwxr-s---` (its strtol stopped there; such
 *   text in a path or URL would have broken LocalEGA, so no working file has it).
 * - Quotes around the value, or a backslash before # ; or \, were part of the value for LocalEGA
 *   but an earlier latchkey read them as quoting: refused, so neither reading is guessed.
 */
export function legacyValue(rawValue: string, wholeLine: boolean): { ok: true; value: string } | { ok: false; problem: string } {
  let v = rawValue.trim();
  if (v.length > 1 && (v[0] === '"' || v[0] === "'") && v.endsWith(v[0])) {
    return { ok: false, problem: 'is in quotes; in a LocalEGA auth.conf (a key above any [section]) a value runs to the end of the line, '
      + 'so LocalEGA took the quotes as part of it: write the value without quotes (# and ; need no quoting here)' };
  }
  if (/\\[#;\\]/.test(v)) {
    return { ok: false, problem: 'has a backslash before #, ; or \\; in a LocalEGA auth.conf (a key above any [section]) a value runs to the end '
      + 'of the line and LocalEGA kept the backslash: write the value without escapes (# and ; need none here)' };
  }
  if (!wholeLine) {
    const m = /\s[#;]/.exec(v);
    if (m) v = v.slice(0, m.index).trimEnd();
  }
  return { ok: true, value: v };
}

/** Levenshtein distance, for "did you mean" hints on misspelt keys and sections. */
export function closest(word: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c);
    if (d < bestDist) { best = c; bestDist = d; }
  }
  return best !== null && bestDist <= Math.max(2, Math.floor(word.length / 3)) ? best : null;
}

function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
