// Line scan of an INI file. The `ini` package decodes values (quotes, escapes, inline comments)
// but drops blank lines and reports no positions, and it quietly turns malformed lines into
// keys; this scan finds each key's line and rejects what `ini` would misread, before decoding.
import ini from 'ini';
import { ConfigError } from '../errors.js';

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

export interface Scanned { entries: Entry[]; headers: Header[] }

// Same shapes `ini` matches, so both sides agree on what is a section and what is a key.
const SECTION_RE = /^\[([^\]]*)\]\s*$/;
const KEY_RE = /^([^=]+)(=(.*))?$/;

export function scanIni(text: string, file: string): Scanned {
  const entries: Entry[] = [];
  const headers: Header[] = [];
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
    if (/^\s*\[/.test(line)) {
      throw new ConfigError(file, no, '', 'malformed section header; write it alone on its line, starting in column 1, e.g. [upstream]');
    }
    const kv = KEY_RE.exec(line);
    if (!kv) throw new ConfigError(file, no, '', 'missing key name before "="; expected key = value');
    const key = ini.unsafe(kv[1]!);
    if (kv[2] === undefined) {
      throw new ConfigError(file, no, key, 'has no "="; expected key = value');
    }
    if (key === '') throw new ConfigError(file, no, '', 'missing key name before "="; expected key = value');
    entries.push({ section, key, line: no, rawValue: kv[3]! });
  }
  return { entries, headers };
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
 * Decodes every entry's value with `ini`. Call only after the entries are known to be valid
 * (plain section and key names, no duplicates), so `ini`'s dotted-section nesting and `[]`
 * arrays never come into play.
 */
export function decodeValues(text: string, entries: Entry[], file: string): string[] {
  const decoded = ini.decode(text) as Record<string, unknown>;
  return entries.map((e) => {
    const holder = e.section === null ? decoded : (decoded[e.section] as Record<string, unknown> | undefined);
    const v = holder?.[e.key];
    if (typeof v === 'string') {
      const raw = e.rawValue.trim();
      if (raw.length > 1 && raw.startsWith('"') && raw.endsWith('"') && v === raw) {
        throw new ConfigError(file, e.line, e.display ?? e.key, 'bad double-quoted value (it is read as JSON: write \\\\ for a backslash), or use single quotes');
      }
      return v;
    }
    if (typeof v === 'boolean' || v === null) return String(v);
    throw new ConfigError(file, e.line, e.display ?? e.key, 'could not be read; expected key = value');
  });
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
