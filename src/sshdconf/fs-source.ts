// The file-system side of the sshd_config reader: reads files and expands Include globs the way
// glob(3) does for sshd (`*`, `?`, `[...]` per path component; a leading '.' must be matched
// explicitly; results sorted byte-wise, as in the C locale sshd runs in).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import type { ConfigSource } from './parse.js';

/** Files larger than this are not sshd configs; reading stops there (bounded memory). */
const MAX_FILE_BYTES = 4 * 1024 * 1024;

function hasMagic(s: string): boolean {
  return /[*?[]/.test(s);
}

/** One glob(3) path component as a RegExp. */
export function componentRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 2);
      if (close < 0) { re += '\\['; continue; }
      let body = pattern.slice(i + 1, close);
      const negate = body.startsWith('!') || body.startsWith('^');
      if (negate) body = body.slice(1);
      re += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, (m) => '\\' + m)}]`;
      i = close;
    } else if (c === '\\' && i + 1 < pattern.length) {
      re += pattern[++i]!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function isDir(p: string): boolean {
  try { return statSync(p).isDirectory(); } catch { return false; }
}

function exists(p: string): boolean {
  try { statSync(p); return true; } catch { return false; }
}

/** Paths matching an absolute glob pattern, sorted. */
export function globPaths(pattern: string): string[] {
  if (!pattern.startsWith('/')) return [];
  const parts = pattern.split('/').filter((p) => p !== '');
  let current = ['/'];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const last = i === parts.length - 1;
    const next: string[] = [];
    for (const dir of current) {
      if (!hasMagic(part)) {
        const p = posix.join(dir, part.replace(/\\(.)/g, '$1'));
        if (last ? exists(p) : isDir(p)) next.push(p);
        continue;
      }
      let names: string[];
      try { names = readdirSync(dir); } catch { continue; }
      const re = componentRegExp(part);
      for (const name of names) {
        if (name.startsWith('.') && !part.startsWith('.')) continue;
        if (!re.test(name)) continue;
        const p = posix.join(dir, name);
        if (last || isDir(p)) next.push(p);
      }
    }
    current = next;
  }
  return current.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export const fileSystemSource: ConfigSource = {
  read(path) {
    try {
      const buf = readFileSync(path);
      return buf.subarray(0, MAX_FILE_BYTES).toString('utf8');
    } catch {
      return null;
    }
  },
  glob: globPaths,
};
