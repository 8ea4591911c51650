// Value parsers for config keys. Pure: each returns the parsed value or throws ValueProblem,
// whose text says what was expected; the caller adds file:line and the key name. A parser never
// puts the raw value in its message itself, so the caller decides whether it may be shown (secrets).

export class ValueProblem extends Error {}

/**
 * A value as a config error may quote it: never the password of a URL's userinfo
 * (`https://lega:***@host/`), nor its query string, where tokens travel (`?token=***`).
 * Errors reach the journal, `latchkeyctl status` and `systemctl reload`'s output.
 */
export function quotable(value: string): string {
  if (!/^\s*[a-z][a-z0-9+.-]*:\/\//i.test(value)) return JSON.stringify(value);
  const masked = value
    .replace(/(\/\/[^/@\s:]*):[^/@\s]*@/, '$1:***@')
    .replace(/\?[^#\s]+/, '?***');
  return JSON.stringify(masked);
}

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Longest duration accepted: the daemon arms timers with these values and Node's setTimeout
 * fires at once for delays above 2^31-1 ms (~24.8 days), which would turn a long TTL into none.
 */
export const MAX_DURATION_MS = 24 * 86_400_000;

/** `30` (seconds), `30s`, `500ms`, `5m`, `1h`, `1d` → milliseconds. */
export function parseDurationMs(raw: string, minMs = 0, maxMs = MAX_DURATION_MS): number {
  // A ".0" fraction is taken (LocalEGA's 2018 inbox wrote cache_ttl = 36000.0); any other is not.
  const m = /^(\d+)(?:\.0+)?\s*(ms|s|m|h|d)?$/i.exec(raw.trim());
  if (!m) throw new ValueProblem('is not a duration; expected e.g. 3600, 90s, 15m, 1h');
  const ms = Number(m[1]) * UNITS_MS[(m[2] ?? 's').toLowerCase()]!;
  if (ms < minMs) throw new ValueProblem(`is too short; the minimum is ${formatDuration(minMs)}`);
  if (ms > maxMs) throw new ValueProblem(`is too long; the maximum is ${formatDuration(maxMs)}`);
  return ms;
}

/** Like parseDurationMs, for keys stored in whole seconds. */
export function parseDurationSec(raw: string, minSec = 0, maxSec = MAX_DURATION_MS / 1000): number {
  const ms = parseDurationMs(raw, minSec * 1000, maxSec * 1000);
  if (ms % 1000 !== 0) throw new ValueProblem('must be a whole number of seconds; expected e.g. 30s, 5m, 1h');
  return ms / 1000;
}

/** The largest unit that divides exactly, so formatting then parsing gives the same number. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms % UNITS_MS[unit]! === 0) return `${ms / UNITS_MS[unit]!}${unit}`;
  }
  return `${ms}ms`;
}

const TRUE_WORDS = new Set(['yes', 'true', 'on', '1']);
const FALSE_WORDS = new Set(['no', 'false', 'off', '0']);

export function parseBool(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (TRUE_WORDS.has(v)) return true;
  if (FALSE_WORDS.has(v)) return false;
  throw new ValueProblem('is not a boolean; expected yes/no, true/false, on/off or 1/0');
}

export function parseInteger(raw: string, min: number, max: number): number {
  const v = raw.trim();
  if (!/^\d+$/.test(v)) throw new ValueProblem(`is not a whole number; expected a number from ${min} to ${max}`);
  const n = Number(v);
  if (n < min || n > max) throw new ValueProblem(`is out of range; expected a number from ${min} to ${max}`);
  return n;
}

/** Byte counts: `65536`, `64k`, `1M` (binary multiples). */
export function parseSize(raw: string, min: number, max: number): number {
  const m = /^(\d+)\s*([kKmM]?)[bB]?$/.exec(raw.trim());
  if (!m) throw new ValueProblem('is not a size; expected bytes, e.g. 65536, 64k or 1M');
  const n = Number(m[1]) * (m[2] === '' ? 1 : m[2]!.toLowerCase() === 'k' ? 1024 : 1024 * 1024);
  if (n < min || n > max) throw new ValueProblem(`is out of range; expected ${formatSize(min)} to ${formatSize(max)}`);
  return n;
}

export function formatSize(n: number): string {
  if (n > 0 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)}M`;
  if (n > 0 && n % 1024 === 0) return `${n / 1024}k`;
  return String(n);
}

/** Octal permission bits as written by chmod(1) and LocalEGA: `2750`, `0750`, `027`, `0o750`. */
export function parseOctal(raw: string, max: number): number {
  const v = raw.trim().replace(/^0o/i, '');
  if (!/^[0-7]{1,5}$/.test(v)) throw new ValueProblem(`is not an octal mode; expected octal digits up to 0${max.toString(8)}, e.g. 2750`);
  const n = parseInt(v, 8);
  if (n > max) throw new ValueProblem(`is out of range; expected an octal mode up to 0${max.toString(8)}`);
  return n;
}

export function formatOctal(n: number, width: number): string {
  return n.toString(8).padStart(width, '0');
}

export function parseAbsolutePath(raw: string): string {
  const v = raw.trim();
  if (!v.startsWith('/')) throw new ValueProblem('must be an absolute path (starting with /)');
  if (/[\0\n]/.test(v)) throw new ValueProblem('must not contain NUL or newline');
  return v;
}

/** [daemon] user: a system user name or a numeric uid; never root (the daemon holds no privilege). */
export function parseDaemonUser(raw: string): string {
  const v = raw.trim();
  if (v === 'root' || /^0+$/.test(v)) throw new ValueProblem('must not be root: latchkeyd runs unprivileged and latchkey-rootd does what needs root (default _latchkey)');
  if (/^\d+$/.test(v)) {
    if (Number(v) > 4294967294) throw new ValueProblem('must be a uid below 4294967295');
    return String(Number(v));
  }
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(v)) throw new ValueProblem('must be a system user name (lowercase letters, digits, _ and -) or a numeric uid');
  return v;
}

/** An optional path: empty means "not set", as in LocalEGA's `cacertfile =`. */
export function parseOptionalPath(raw: string): string | null {
  return raw.trim() === '' ? null : parseAbsolutePath(raw);
}

/**
 * An upstream endpoint. The string is kept as written (the client substitutes the placeholder),
 * so checking means parsing a copy with the placeholder filled in.
 */
export function parseEndpoint(raw: string, placeholder: '%s' | '%u'): string {
  const v = raw.trim();
  const other = placeholder === '%s' ? '%u' : '%s';
  if (v === '') throw new ValueProblem('is empty; expected an http:// or https:// URL');
  if (v.includes(other)) throw new ValueProblem(`contains ${other}; this endpoint takes ${placeholder} (or nothing, to append)`);
  if (v.split(placeholder).length > 2) throw new ValueProblem(`contains ${placeholder} more than once`);
  let url: URL;
  try {
    url = new URL(v.replace(placeholder, 'x'));
  } catch {
    throw new ValueProblem('is not a URL; expected e.g. https://users.example.org/users/%s');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ValueProblem('must start with http:// or https://');
  if (url.username || url.password) {
    // Credentials inside a URL would be printed wherever the URL is (logs, check-config).
    throw new ValueProblem('must not contain credentials; use [upstream] username/password or secrets_file');
  }
  if (url.hash) throw new ValueProblem('must not contain a #fragment');
  // A user name must only ever change the path or query. With the placeholder (or
  // the append point) in the host part — `https://users.example.org` without a path, or
  // `https://%s.example.org/` — a name chosen by any local user (`getent passwd x.evil.net`)
  // would pick the host that receives the upstream credentials.
  const fill = (value: string): string => (v.includes(placeholder) ? v.replace(placeholder, value) : v + value);
  let a: URL, b: URL;
  try { a = new URL(fill('a')); b = new URL(fill('b.example-x_1')); } catch { a = url; b = new URL('x:'); }
  if (a.origin !== b.origin) {
    throw new ValueProblem(`puts the ${placeholder === '%s' ? 'user name' : 'uid'} into the host part; it must go into the path or query, e.g. https://users.example.org/users/${placeholder}`);
  }
  return v;
}

/** Dotted path to the user object; a leading dot (jq style, as LocalEGA documents it) is accepted. */
export function parseJsonPrefix(raw: string): string {
  const v = raw.trim().replace(/^\./, '');
  if (v !== '' && !/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/.test(v)) {
    throw new ValueProblem('is not a dotted path; expected e.g. response.result, or empty for the top level');
  }
  return v;
}

/** A single directory name inside the home (never a path: it is joined under a root-owned home). */
export function parseDirName(raw: string): string {
  const v = raw.trim();
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(v) || v === '.' || v === '..') {
    throw new ValueProblem('must be one directory name (letters, digits, . _ -), not a path, e.g. inbox');
  }
  return v;
}

export function parseGroupName(raw: string): string {
  const v = raw.trim();
  if (!/^[a-z_][a-z0-9_.-]{0,31}$/.test(v)) throw new ValueProblem('is not a valid group name; expected e.g. latchkey');
  return v;
}

export function parseChoice<T extends string>(raw: string, choices: readonly T[]): T {
  const v = raw.trim().toLowerCase();
  const hit = choices.find((c) => c === v);
  if (!hit) throw new ValueProblem(`is not one of ${choices.join(', ')}`);
  return hit;
}

/** Names the daemon can be handed must never break a passwd line or a path (see DESIGN security rules). */
const FORBIDDEN_IN_NAMES = [':', '/', '\n', '\0'];
const PROBE_NAMES = ['a', 'z', 'ab', 'abc', 'user', 'user1', 'j.doe', 'a-b', 'a_b', '_a', 'ega-box-1', 'A', 'Abc', '1a', 'a'.repeat(32)];

/**
 * The user name rule. It must be anchored (^…$, no top-level |) because an unanchored rule
 * accepts any name containing one good substring. Whether a regex can match a forbidden
 * character is undecidable in general, so we probe it with plausible names around each one.
 */
export function parseNameRegex(raw: string): RegExp {
  const src = raw.trim();
  let re: RegExp;
  try {
    re = new RegExp(src);
  } catch (e) {
    throw new ValueProblem(`does not compile (${(e as Error).message}); expected e.g. ^[a-z_][a-z0-9_.-]{0,31}$`);
  }
  if (!src.startsWith('^') || !endsWithAnchor(src) || hasTopLevelAlternation(src)) {
    throw new ValueProblem('must be anchored: start with ^, end with $ and have no | outside a group, e.g. ^(a|b)[a-z]*$');
  }
  const probes = ['', '.', '..'];
  for (const bad of FORBIDDEN_IN_NAMES) {
    probes.push(bad, bad + bad);
    for (const n of PROBE_NAMES) {
      if (!re.test(n)) continue;
      probes.push(bad + n, n + bad, n.slice(0, 1) + bad + n.slice(1), n + bad + n);
    }
  }
  for (const p of probes) {
    if (re.test(p)) {
      throw new ValueProblem(`accepts ${JSON.stringify(p)}; a name must never be empty, . or .., nor contain : / newline or NUL`);
    }
  }
  return re;
}

function endsWithAnchor(src: string): boolean {
  if (!src.endsWith('$')) return false;
  let backslashes = 0;
  for (let i = src.length - 2; i >= 0 && src[i] === '\\'; i--) backslashes++;
  return backslashes % 2 === 0;
}

function hasTopLevelAlternation(src: string): boolean {
  let depth = 0;
  let inClass = false;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === '\\') { i++; continue; }
    if (inClass) { if (c === ']') inClass = false; continue; }
    if (c === '[') inClass = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) return true;
  }
  return false;
}
