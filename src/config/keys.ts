// The table of every config key: where it lives, its LocalEGA name, how its value is parsed and
// where it lands in Config. Parsing, conflict detection, suggestions and the INI dump all read
// this one table, so a key added here is known everywhere at once.
import type { Config, ContextAlgorithm, HashContext, MetricsListen } from './types.js';
import {
  ValueProblem, parseAbsolutePath, parseDaemonUser, parseBool, parseChoice, parseDirName, parseDurationMs,
  parseDurationSec, parseEndpoint, parseGroupName, parseInteger, parseJsonPrefix, parseNameRegex,
  parseOctal, parseOptionalPath, parseSize, formatDuration, formatOctal, formatSize,
} from './values.js';

export const SECTIONS = ['upstream', 'cache', 'users', 'homes', 'pam', 'daemon', 'local', 'events', 'cleanup', 'metrics', 'userdb'] as const;
export type Section = (typeof SECTIONS)[number];

/** Where a value was set: used to name both lines when a key is given twice. */
export interface Loc {
  file: string; line: number; key: string;
  /** the setting it stands for (`cache.ttl`), when known: a check about a setting whose value was refused is not made */
  target?: string;
}

/** Config under construction: credentials arrive in pieces (and from two files) before they pair up. */
export interface Draft {
  cfg: Config;
  username: string | null;
  password: string | null;
  secretsFile: string | null;
  /** [local] upgrade_username / upgrade_password, paired in finish() like the upstream's */
  upgradeUsername: string | null;
  upgradePassword: string | null;
  /** target → where it was set */
  setAt: Map<string, Loc>;
}

export interface KeySpec {
  section: Section;
  /** name inside [section]; null for LocalEGA-only keys */
  key: string | null;
  /** LocalEGA auth.conf name, accepted at top level */
  legacy: string | null;
  /** names older LocalEGA / EGA-auth releases gave the same setting, also accepted at top level */
  olderLegacy: readonly string[];
  /** free text (a password, a prompt): at top level LocalEGA's reading keeps the whole line, comment-like text included (scan.ts legacyValue) */
  wholeLine: boolean;
  secret: boolean;
  /** what this key sets; two keys sharing a target may not both be given */
  targets: string[];
  apply(d: Draft, raw: string): void;
  /** effective value as INI text, null when unset; secrets are never shown */
  show(c: Config): string | null;
}

interface Def<T> {
  key: string | null;
  legacy?: string;
  olderLegacy?: string[];
  wholeLine?: boolean;
  secret?: boolean;
  targets?: string[];
  parse(raw: string): T;
  set(d: Draft, v: T): void;
  get?(c: Config): T;
  fmt?(v: T): string | null;
}

// biome-ignore lint/suspicious/noExplicitAny: each entry has its own value type; section() only ever passes an entry's parse() result to the same entry's set().
function section(name: Section, defs: Def<any>[]): KeySpec[] {
  return defs.map((d) => ({
    section: name,
    key: d.key,
    legacy: d.legacy ?? null,
    olderLegacy: d.olderLegacy ?? [],
    wholeLine: d.wholeLine ?? false,
    secret: d.secret ?? false,
    targets: d.targets ?? [`${name}.${d.key}`],
    apply: (draft, raw) => d.set(draft, d.parse(raw)),
    show: (c) => (d.get ? (d.fmt ?? String)(d.get(c)) : null),
  }));
}

const MAX_ID = 4294967294; // (uid_t)-1 means "no id" to chown(2) and setreuid(2)
const MAX_SIGNED_ID = 2147483647;
/** 65534 is nobody/nogroup and 65535 is (uint16_t)-1: never handed to a user or used as their group. */
export const RESERVED_IDS: readonly number[] = [65534, 65535];

const bool = (v: boolean): string => (v ? 'yes' : 'no');
const orNull = (v: string | null): string | null => v;

function nonEmpty(what: string) {
  return (raw: string): string => {
    if (raw === '') throw new ValueProblem(`is empty; expected ${what}`);
    if (/[\0\r\n]/.test(raw)) throw new ValueProblem('must not contain NUL or newline');
    return raw;
  };
}

function basicUser(raw: string): string {
  const v = nonEmpty('a user name')(raw);
  // RFC 7617: the user-id of HTTP basic auth cannot contain a colon.
  if (v.includes(':')) throw new ValueProblem('must not contain ":" (HTTP basic auth, RFC 7617)');
  return v;
}

function creds(raw: string): { user: string; password: string } {
  const i = raw.indexOf(':');
  if (i <= 0 || i === raw.length - 1) throw new ValueProblem('is not of the form user:password');
  return { user: raw.slice(0, i), password: raw.slice(i + 1) };
}

function token(raw: string): string {
  if (raw === '' || /[\s\0]/.test(raw)) throw new ValueProblem('must be one non-empty word without spaces');
  return raw;
}

/** token_url / [events] url: http(s) without credentials in it (http:// is checked against insecure_http by load.ts). */
function tokenUrl(raw: string): string {
  let u: URL;
  try { u = new URL(raw.trim()); } catch { throw new ValueProblem('is not a URL; expected https://host/path'); }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new ValueProblem(`has scheme ${u.protocol}; expected https://`);
  if (u.username || u.password) throw new ValueProblem('must not carry credentials; put them in the secrets_file');
  return raw.trim();
}

function dbPath(raw: string): string {
  return raw.trim() === ':memory:' ? ':memory:' : parseAbsolutePath(raw);
}

/** [cache] jitter: a percentage with its sign, 0% .. 50% (a bare 0.1 or 10 is refused: which one was meant?). */
function percent(raw: string): number {
  const m = /^(\d{1,2}(?:\.\d{1,2})?)\s*%$/.exec(raw.trim());
  if (!m) throw new ValueProblem('is not a percentage; expected e.g. 10% (0% turns jitter off)');
  const v = Number(m[1]);
  if (v > 50) throw new ValueProblem('must be at most 50%: more lets two fetches of one user live three times as long as each other');
  return v / 100;
}

const formatPercent = (v: number): string => `${Math.round(v * 10_000) / 100}%`;

/** [cache] recent_file: an absolute path, or none (no list: a warm start after a reboot has nothing to go on). */
function recentFile(raw: string): string | null {
  const v = raw.trim();
  return v === '' || v === 'none' ? null : parseAbsolutePath(v);
}

function homeBase(raw: string): string {
  const v = parseAbsolutePath(raw).replace(/\/+$/, '');
  if (v === '') throw new ValueProblem('must not be /; expected a directory such as /ega/inbox');
  return v;
}

function dirMode(raw: string): number {
  const m = parseOctal(raw, 0o7777);
  // Any local account could drop files into, or replace files in, someone else's upload area.
  if (m & 0o002) throw new ValueProblem('is world-writable; expected e.g. 2750 or 0750');
  if ((m & 0o700) !== 0o700) throw new ValueProblem('must give the owner rwx (7 in the owner digit), e.g. 2750');
  return m;
}

/** `root, admin backup`: names separated by commas and/or spaces; empty = none. */
function parseNameList(raw: string): string[] {
  const names = raw.split(/[\s,]+/).filter((n) => n !== '');
  for (const n of names) {
    if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}\$?$/.test(n)) {
      throw new ValueProblem(`holds ${JSON.stringify(n)}, which is not a user name; expected names separated by commas, e.g. root, admin`);
    }
  }
  return [...new Set(names)];
}

function gidValue(raw: string): number {
  const n = parseInteger(raw, 1, MAX_SIGNED_ID);
  if (RESERVED_IDS.includes(n)) throw new ValueProblem(`is reserved (${RESERVED_IDS.join(', ')} are nobody/invalid); choose another gid`);
  return n;
}

const us = (c: Config) => c.upstream;
const lc = (c: Config) => c.local;

/** Ranges of each context algorithm's cost (bcrypt: log2 rounds; yescrypt: crypt_gensalt's
 *  count; sha*crypt: rounds, as crypt(5) accepts them). */
export const CONTEXT_COST: Record<ContextAlgorithm, [number, number]> = {
  bcrypt: [4, 31], yescrypt: [1, 11], sha512crypt: [1000, 999_999_999], sha256crypt: [1000, 999_999_999],
};
const CONTEXT_ID = /^[A-Za-z0-9_-]{1,16}$/;

/** `y5=yescrypt:5, b12=bcrypt:12`: id=algorithm:cost, separated by commas. */
export function parseContexts(raw: string): HashContext[] {
  const out: HashContext[] = [];
  for (const part of raw.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const m = /^([^=\s]+)\s*=\s*([a-z0-9]+)\s*:\s*(\d{1,9})$/.exec(part);
    if (!m) throw new ValueProblem(`holds ${JSON.stringify(part)}; expected ID=ALGORITHM:COST entries separated by commas, e.g. y5=yescrypt:5, b12=bcrypt:12`);
    const [, id, alg, costText] = m as unknown as [string, string, string, string];
    if (!CONTEXT_ID.test(id)) throw new ValueProblem(`has the context id ${JSON.stringify(id)}; an id is 1 to 16 letters, digits, _ or -`);
    if (!(alg in CONTEXT_COST)) throw new ValueProblem(`names the algorithm ${JSON.stringify(alg)} (context ${id}); expected one of ${Object.keys(CONTEXT_COST).join(', ')}`);
    const [lo, hi] = CONTEXT_COST[alg as ContextAlgorithm];
    const cost = Number(costText);
    if (cost < lo || cost > hi) throw new ValueProblem(`gives context ${id} the ${alg} cost ${cost}; expected ${lo} .. ${hi}`);
    if (out.some((c) => c.id === id)) throw new ValueProblem(`defines the context ${id} twice; an id names one algorithm and cost for good`);
    out.push({ id, algorithm: alg as ContextAlgorithm, cost });
  }
  if (out.length === 0) throw new ValueProblem('is empty; expected at least one context, e.g. y5=yescrypt:5');
  return out;
}

/** `host:port` for a listener; the host may be an IPv4 address, [IPv6] or a name. */
function parseListen(raw: string): string {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(raw.trim());
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new ValueProblem('is not of the form ADDRESS:PORT, e.g. 192.0.2.10:8443 or [::]:8443');
  return raw.trim();
}

/** An ssh destination user@host (no options, nothing a shell or ssh would read as a flag). */
function parseSshDestination(raw: string): string {
  const v = raw.trim();
  if (!/^[a-z_][a-z0-9_.-]{0,31}@[A-Za-z0-9][A-Za-z0-9.-]{0,252}$|^[a-z_][a-z0-9_.-]{0,31}@\[[0-9A-Fa-f:.]+\]$/.test(v)) {
    throw new ValueProblem('is not an ssh destination of the form USER@HOST, e.g. latchkey-sync@primary.example.org');
  }
  return v;
}

function httpsUrl(raw: string): string {
  let u: URL;
  try { u = new URL(raw.trim()); } catch { throw new ValueProblem('is not a URL; expected https://primary.example.org:8443/latchkey/v1/upgrade'); }
  if (u.protocol !== 'https:') throw new ValueProblem('must be https://: it carries a password (the one just typed at the login)');
  if (u.username || u.password) throw new ValueProblem('must not carry credentials; use upgrade_username/upgrade_password or upgrade_bearer_token');
  return u.toString();
}

/** [upstream] health_url: an http(s) URL like token_url, or none (the default: status sends no request). */
function healthUrl(raw: string): string | null {
  const v = raw.trim();
  return v === '' || v === 'none' ? null : tokenUrl(v);
}

/**
 * [metrics] listen: unix:/ABSOLUTE/PATH, 127.0.0.1:PORT or [::1]:PORT; off (or none) = no metrics.
 * Loopback only: the counters say how busy logins are and when the upstream fails, which is
 * nobody else's business, and the endpoint has no TLS or authentication of its own.
 */
function metricsListen(raw: string): MetricsListen | null {
  const v = raw.trim();
  if (v === '' || v === 'off' || v === 'none') return null;
  if (v.startsWith('unix:')) {
    const path = parseAbsolutePath(v.slice(5));
    // sun_path holds 108 bytes with the NUL (unix(7)).
    if (Buffer.byteLength(path) > 107) throw new ValueProblem('names a socket path longer than 107 bytes (the limit of a Unix socket address)');
    return { unix: path };
  }
  const m = /^(127\.0\.0\.1|\[::1\]):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new ValueProblem('must be unix:/run/latchkey/metrics.sock, 127.0.0.1:PORT or [::1]:PORT: metrics are served on loopback or a Unix socket only (put a TLS proxy in front for a remote scraper)');
  }
  return { host: m[1] === '127.0.0.1' ? '127.0.0.1' : '::1', port: Number(m[2]) };
}

function formatMetricsListen(l: MetricsListen | null): string | null {
  if (l === null) return null;
  return 'unix' in l ? `unix:${l.unix}` : l.host === '::1' ? `[::1]:${l.port}` : `${l.host}:${l.port}`;
}

export const KEYS: readonly KeySpec[] = [
  ...section('upstream', [
    { key: 'by_name_url', legacy: 'cega_endpoint_username', olderLegacy: ['cega_endpoint'], parse: (r) => parseEndpoint(r, '%s'),
      set: (d, v: string) => { d.cfg.upstream.byNameUrl = v; }, get: (c) => us(c).byNameUrl },
    { key: 'by_uid_url', legacy: 'cega_endpoint_uid', parse: (r) => parseEndpoint(r, '%u'),
      set: (d, v: string) => { d.cfg.upstream.byUidUrl = v; }, get: (c) => us(c).byUidUrl },
    { key: 'username', parse: basicUser, set: (d, v: string) => { d.username = v; },
      get: (c) => us(c).basicAuth?.user ?? null, fmt: orNull },
    { key: 'password', secret: true, parse: nonEmpty('a password'), set: (d, v: string) => { d.password = v; },
      get: (c) => (us(c).basicAuth ? '<redacted>' : null), fmt: orNull },
    { key: null, legacy: 'cega_creds', wholeLine: true, secret: true, targets: ['upstream.username', 'upstream.password'], parse: creds,
      set: (d, v: { user: string; password: string }) => { d.username = basicUser(v.user); d.password = v.password; } },
    { key: 'bearer_token', secret: true, parse: token, set: (d, v: string) => { d.cfg.upstream.bearerToken = v; },
      get: (c) => (us(c).bearerToken ? '<redacted>' : null), fmt: orNull },
    { key: 'token_url', parse: tokenUrl, set: (d, v: string) => { d.cfg.upstream.tokenUrl = v; }, get: (c) => us(c).tokenUrl, fmt: orNull },
    { key: 'api_key', secret: true, parse: token, set: (d, v: string) => { d.cfg.upstream.apiKey = v; },
      get: (c) => (us(c).apiKey ? '<redacted>' : null), fmt: orNull },
    { key: 'secrets_file', parse: parseAbsolutePath, set: (d, v: string) => { d.secretsFile = v; } },
    { key: 'json_prefix', legacy: 'cega_json_prefix', parse: parseJsonPrefix,
      set: (d, v: string) => { d.cfg.upstream.jsonPrefix = v; }, get: (c) => us(c).jsonPrefix },
    { key: 'connect_timeout', parse: (r) => parseDurationMs(r, 1, 600_000),
      set: (d, v: number) => { d.cfg.upstream.connectTimeoutMs = v; }, get: (c) => us(c).connectTimeoutMs, fmt: formatDuration },
    { key: 'request_timeout', parse: (r) => parseDurationMs(r, 1, 600_000),
      set: (d, v: number) => { d.cfg.upstream.requestTimeoutMs = v; }, get: (c) => us(c).requestTimeoutMs, fmt: formatDuration },
    { key: 'max_body', parse: (r) => parseSize(r, 1024, 64 * 1024 * 1024),
      set: (d, v: number) => { d.cfg.upstream.maxBodyBytes = v; }, get: (c) => us(c).maxBodyBytes, fmt: formatSize },
    { key: 'max_concurrent', parse: (r) => parseInteger(r, 1, 1024),
      set: (d, v: number) => { d.cfg.upstream.maxConcurrent = v; }, get: (c) => us(c).maxConcurrent },
    { key: 'cacertfile', legacy: 'cacertfile', parse: parseOptionalPath,
      set: (d, v: string | null) => { d.cfg.upstream.caFile = v; }, get: (c) => us(c).caFile, fmt: orNull },
    { key: 'certfile', legacy: 'certfile', parse: parseOptionalPath,
      set: (d, v: string | null) => { d.cfg.upstream.certFile = v; }, get: (c) => us(c).certFile, fmt: orNull },
    { key: 'keyfile', legacy: 'keyfile', parse: parseOptionalPath,
      set: (d, v: string | null) => { d.cfg.upstream.keyFile = v; }, get: (c) => us(c).keyFile, fmt: orNull },
    { key: 'verify_peer', legacy: 'verify_peer', parse: parseBool,
      set: (d, v: boolean) => { d.cfg.upstream.verifyPeer = v; }, get: (c) => us(c).verifyPeer, fmt: bool },
    { key: 'verify_hostname', legacy: 'verify_hostname', parse: parseBool,
      set: (d, v: boolean) => { d.cfg.upstream.verifyHostname = v; }, get: (c) => us(c).verifyHostname, fmt: bool },
    { key: 'insecure_http', legacy: 'insecure_http', parse: parseBool,
      set: (d, v: boolean) => { d.cfg.upstream.insecureHttp = v; }, get: (c) => us(c).insecureHttp, fmt: bool },
    { key: 'insecure_tls', legacy: 'insecure_tls', parse: parseBool,
      set: (d, v: boolean) => { d.cfg.upstream.insecureTls = v; }, get: (c) => us(c).insecureTls, fmt: bool },
    { key: 'health_url', parse: healthUrl, set: (d, v: string | null) => { d.cfg.upstream.healthUrl = v; }, get: (c) => us(c).healthUrl, fmt: orNull },
    { key: 'backoff_max', parse: (r) => parseDurationMs(r, 1000, 3_600_000),
      set: (d, v: number) => { d.cfg.upstream.backoffMaxMs = v; }, get: (c) => us(c).backoffMaxMs ?? 30_000, fmt: formatDuration },
  ]),
  ...section('cache', [
    { key: 'db_path', legacy: 'db_path', parse: dbPath, set: (d, v: string) => { d.cfg.cache.dbPath = v; }, get: (c) => c.cache.dbPath },
    { key: 'ttl', legacy: 'cache_ttl', parse: (r) => parseDurationSec(r, 1),
      set: (d, v: number) => { d.cfg.cache.ttlSec = v; }, get: (c) => c.cache.ttlSec * 1000, fmt: formatDuration },
    { key: 'negative_ttl', parse: (r) => parseDurationSec(r),
      set: (d, v: number) => { d.cfg.cache.negativeTtlSec = v; }, get: (c) => c.cache.negativeTtlSec * 1000, fmt: formatDuration },
    { key: 'stale_grace', parse: (r) => parseDurationSec(r),
      set: (d, v: number) => { d.cfg.cache.staleGraceSec = v; }, get: (c) => c.cache.staleGraceSec * 1000, fmt: formatDuration },
    { key: 'refresh_ahead', parse: (r) => parseDurationSec(r),
      set: (d, v: number) => { d.cfg.cache.refreshAheadSec = v; }, get: (c) => c.cache.refreshAheadSec * 1000, fmt: formatDuration },
    { key: 'map_name_misses', parse: parseBool,
      set: (d, v: boolean) => { d.cfg.cache.mapNameMisses = v; }, get: (c) => c.cache.mapNameMisses !== false, fmt: bool },
    { key: 'jitter', parse: percent, set: (d, v: number) => { d.cfg.cache.jitter = v; }, get: (c) => c.cache.jitter ?? 0, fmt: formatPercent },
    { key: 'warm_start', parse: (r) => parseInteger(r, 0, 100_000),
      set: (d, v: number) => { d.cfg.cache.warmStart = v; }, get: (c) => c.cache.warmStart ?? 0 },
    { key: 'warm_start_rate', parse: (r) => parseInteger(r, 1, 1000),
      set: (d, v: number) => { d.cfg.cache.warmStartRate = v; }, get: (c) => c.cache.warmStartRate ?? 20 },
    { key: 'recent_file', parse: recentFile,
      set: (d, v: string | null) => { d.cfg.cache.recentFile = v; }, get: (c) => c.cache.recentFile ?? null, fmt: (v: string | null) => v ?? 'none' },
  ]),
  ...section('users', [
    { key: 'uid_shift', legacy: 'ega_uid_shift', parse: (r) => parseInteger(r, 0, MAX_SIGNED_ID),
      set: (d, v: number) => { d.cfg.users.uidShift = v; }, get: (c) => c.users.uidShift },
    { key: 'gid', legacy: 'ega_gid', olderLegacy: ['gid'], parse: gidValue, set: (d, v: number) => { d.cfg.users.gid = v; }, get: (c) => c.users.gid },
    { key: 'group_name', parse: parseGroupName, set: (d, v: string) => { d.cfg.users.groupName = v; }, get: (c) => c.users.groupName },
    { key: 'min_uid', parse: (r) => parseInteger(r, 1, MAX_ID),
      set: (d, v: number) => { d.cfg.users.minUid = v; }, get: (c) => c.users.minUid },
    { key: 'max_uid', parse: (r) => parseInteger(r, 1, MAX_ID),
      set: (d, v: number) => { d.cfg.users.maxUid = v; }, get: (c) => c.users.maxUid },
    { key: 'name_regex', parse: parseNameRegex, set: (d, v: RegExp) => { d.cfg.users.nameRegex = v; },
      get: (c) => c.users.nameRegex, fmt: (v: RegExp) => v.source },
    { key: 'shell', legacy: 'ega_shell', olderLegacy: ['shell'], parse: parseAbsolutePath, set: (d, v: string) => { d.cfg.users.shell = v; }, get: (c) => c.users.shell },
    { key: 'deny_names', parse: parseNameList, set: (d, v: string[]) => { d.cfg.users.denyNames = v; },
      get: (c) => c.users.denyNames, fmt: (v: string[]) => v.join(', ') },
    { key: 'local_passwd', parse: parseAbsolutePath, set: (d, v: string) => { d.cfg.users.localPasswdFile = v; }, get: (c) => c.users.localPasswdFile },
    { key: 'local_group', parse: parseAbsolutePath, set: (d, v: string) => { d.cfg.users.localGroupFile = v; }, get: (c) => c.users.localGroupFile },
  ]),
  ...section('homes', [
    { key: 'base', legacy: 'ega_dir', olderLegacy: ['homedir_prefix'], parse: homeBase, set: (d, v: string) => { d.cfg.homes.base = v; }, get: (c) => c.homes.base },
    { key: 'layout', parse: (r) => parseChoice(r, ['chroot', 'plain'] as const),
      set: (d, v: 'chroot' | 'plain') => { d.cfg.homes.layout = v; }, get: (c) => c.homes.layout },
    { key: 'mode', legacy: 'ega_dir_attrs', parse: dirMode,
      set: (d, v: number) => { d.cfg.homes.mode = v; }, get: (c) => c.homes.mode, fmt: (v: number) => formatOctal(v, 4) },
    { key: 'umask', legacy: 'ega_dir_umask', parse: (r) => parseOctal(r, 0o777),
      set: (d, v: number) => { d.cfg.homes.umask = v; }, get: (c) => c.homes.umask, fmt: (v: number) => formatOctal(v, 3) },
    { key: 'upload_dir', parse: parseDirName, set: (d, v: string) => { d.cfg.homes.uploadDir = v; }, get: (c) => c.homes.uploadDir },
  ]),
  ...section('pam', [
    { key: 'prompt', legacy: 'prompt', wholeLine: true, parse: nonEmpty('the password prompt text'),
      set: (d, v: string) => { d.cfg.pam.prompt = v; }, get: (c) => c.pam.prompt },
    { key: 'chroot_sessions', legacy: 'chroot_sessions', parse: parseBool,
      set: (d, v: boolean) => { d.cfg.pam.chrootSessions = v; }, get: (c) => c.pam.chrootSessions, fmt: bool },
    { key: 'max_failures', parse: (r) => parseInteger(r, 1, 1000),
      set: (d, v: number) => { d.cfg.pam.maxFailures = v; }, get: (c) => c.pam.maxFailures },
    { key: 'host_max_failures', parse: (r) => parseInteger(r, 1, 100_000),
      set: (d, v: number) => { d.cfg.pam.hostMaxFailures = v; }, get: (c) => c.pam.hostMaxFailures },
    { key: 'throttle_window', parse: (r) => parseDurationSec(r, 1),
      set: (d, v: number) => { d.cfg.pam.throttleWindowSec = v; }, get: (c) => c.pam.throttleWindowSec * 1000, fmt: formatDuration },
    { key: 'throttle_lockout', parse: (r) => parseDurationSec(r),
      set: (d, v: number) => { d.cfg.pam.throttleLockoutSec = v; }, get: (c) => c.pam.throttleLockoutSec * 1000, fmt: formatDuration },
    { key: 'max_sessions', targets: ['pam.max_sessions'], parse: (r) => parseInteger(r, 0, 100_000),
      set: (d, v: number) => { d.cfg.pam.maxSessionsPerUser = v; }, get: (c) => c.pam.maxSessionsPerUser },
    // The name before session_limit existed; the same setting (both may not be given).
    { key: 'max_sessions_per_user', targets: ['pam.max_sessions'], parse: (r) => parseInteger(r, 0, 100_000),
      set: (d, v: number) => { d.cfg.pam.maxSessionsPerUser = v; } },
    { key: 'session_limit', parse: (r) => parseChoice(r, ['per-user', 'per-user-service', 'per-user-service-host'] as const),
      set: (d, v: Config['pam']['sessionLimit']) => { d.cfg.pam.sessionLimit = v; }, get: (c) => c.pam.sessionLimit },
    { key: 'on_limit', parse: (r) => parseChoice(r, ['refuse', 'replace-oldest'] as const),
      set: (d, v: Config['pam']['onLimit']) => { d.cfg.pam.onLimit = v; }, get: (c) => c.pam.onLimit },
    { key: 'max_session_age', parse: (r) => parseDurationSec(r),
      set: (d, v: number) => { d.cfg.pam.maxSessionAgeSec = v; }, get: (c) => c.pam.maxSessionAgeSec * 1000, fmt: formatDuration },
    { key: 'session_renewal', parse: (r) => parseChoice(r, ['off', 'on-login'] as const),
      set: (d, v: Config['pam']['sessionRenewal']) => { d.cfg.pam.sessionRenewal = v; }, get: (c) => c.pam.sessionRenewal },
    { key: 'privileged_groups', parse: parseNameList, set: (d, v: string[]) => { d.cfg.pam.privilegedGroups = v; },
      get: (c) => c.pam.privilegedGroups, fmt: (v: string[]) => v.join(', ') },
    { key: 'privileged_users', parse: parseNameList, set: (d, v: string[]) => { d.cfg.pam.privilegedUsers = v; },
      get: (c) => c.pam.privilegedUsers, fmt: (v: string[]) => v.join(', ') },
    // bcrypt accepts 4..31; 13 is ~0.5 s here. sha*crypt: 1000..999999999 rounds, 1M is ~0.2 s.
    { key: 'max_bcrypt_cost', parse: (r) => parseInteger(r, 4, 31),
      set: (d, v: number) => { d.cfg.pam.maxBcryptCost = v; }, get: (c) => c.pam.maxBcryptCost },
    { key: 'max_sha_rounds', parse: (r) => parseInteger(r, 1000, 999_999_999),
      set: (d, v: number) => { d.cfg.pam.maxShaRounds = v; }, get: (c) => c.pam.maxShaRounds },
    { key: 'max_yescrypt_memory', parse: (r) => parseSize(r, 1024 * 1024, 1024 * 1024 * 1024),
      set: (d, v: number) => { d.cfg.pam.maxYescryptMemory = v; }, get: (c) => c.pam.maxYescryptMemory, fmt: formatSize },
  ]),
  ...section('daemon', [
    { key: 'socket_dir', parse: parseAbsolutePath, set: (d, v: string) => { d.cfg.daemon.socketDir = v; }, get: (c) => c.daemon.socketDir },
    { key: 'max_connections', parse: (r) => parseInteger(r, 0, 65_536),
      set: (d, v: number) => { d.cfg.daemon.maxConnections = v; }, get: (c) => c.daemon.maxConnections },
    { key: 'max_connections_per_uid', parse: (r) => parseInteger(r, 0, 65_536),
      set: (d, v: number) => { d.cfg.daemon.maxConnectionsPerUid = v; }, get: (c) => c.daemon.maxConnectionsPerUid },
    { key: 'idle_timeout', parse: (r) => parseDurationMs(r, 100, 3_600_000),
      set: (d, v: number) => { d.cfg.daemon.idleTimeoutMs = v; }, get: (c) => c.daemon.idleTimeoutMs, fmt: formatDuration },
    { key: 'log_level', parse: (r) => parseChoice(r, ['debug', 'info', 'warn', 'error'] as const),
      set: (d, v: Config['daemon']['logLevel']) => { d.cfg.daemon.logLevel = v; }, get: (c) => c.daemon.logLevel },
    { key: 'sshd_config', parse: parseAbsolutePath, set: (d, v: string) => { d.cfg.daemon.sshdConfig = v; }, get: (c) => c.daemon.sshdConfig },
    { key: 'user', parse: parseDaemonUser, set: (d, v: string) => { d.cfg.daemon.user = v; }, get: (c) => c.daemon.user },
    { key: 'rootd_socket', parse: parseAbsolutePath, set: (d, v: string) => { d.cfg.daemon.rootdSocket = v; }, get: (c) => c.daemon.rootdSocket },
  ]),
  ...section('local', [
    { key: 'db_path', parse: parseAbsolutePath, set: (d, v: string) => { d.cfg.local.dbPath = v; }, get: (c) => lc(c).dbPath },
    { key: 'min_uid', parse: (r) => parseInteger(r, 1000, MAX_SIGNED_ID),
      set: (d, v: number) => { d.cfg.local.minUid = v; }, get: (c) => lc(c).minUid },
    { key: 'max_uid', parse: (r) => parseInteger(r, 1000, MAX_SIGNED_ID),
      set: (d, v: number) => { d.cfg.local.maxUid = v; }, get: (c) => lc(c).maxUid },
    { key: 'precedence', parse: (r) => parseChoice(r, ['local', 'upstream'] as const),
      set: (d, v: 'local' | 'upstream') => { d.cfg.local.precedence = v; }, get: (c) => lc(c).precedence },
    { key: 'contexts', parse: parseContexts, set: (d, v: HashContext[]) => { d.cfg.local.contexts = v; },
      get: (c) => lc(c).contexts, fmt: (v: HashContext[]) => v.map((x) => `${x.id}=${x.algorithm}:${x.cost}`).join(', ') },
    { key: 'default_context', parse: (r) => { if (!CONTEXT_ID.test(r)) throw new ValueProblem('is not a context id (1 to 16 letters, digits, _ or -)'); return r; },
      set: (d, v: string) => { d.cfg.local.defaultContext = v; }, get: (c) => lc(c).defaultContext },
    { key: 'upgrade', parse: (r) => parseChoice(r, ['off', 'local', 'remote'] as const),
      set: (d, v: 'off' | 'local' | 'remote') => { d.cfg.local.upgrade = v; }, get: (c) => lc(c).upgrade },
    { key: 'role', parse: (r) => parseChoice(r, ['standalone', 'primary', 'secondary'] as const),
      set: (d, v: 'standalone' | 'primary' | 'secondary') => { d.cfg.local.role = v; }, get: (c) => lc(c).role },
    { key: 'primary', parse: parseSshDestination, set: (d, v: string) => { d.cfg.local.primary = v; }, get: (c) => lc(c).primary, fmt: orNull },
    { key: 'sync_port', parse: (r) => parseInteger(r, 1, 65535), set: (d, v: number) => { d.cfg.local.syncPort = v; }, get: (c) => lc(c).syncPort },
    { key: 'sync_key', parse: parseAbsolutePath, set: (d, v: string) => { d.cfg.local.syncKey = v; }, get: (c) => lc(c).syncKey },
    { key: 'sync_known_hosts', parse: parseAbsolutePath, set: (d, v: string) => { d.cfg.local.syncKnownHosts = v; }, get: (c) => lc(c).syncKnownHosts },
    { key: 'upgrade_url', parse: httpsUrl, set: (d, v: string) => { d.cfg.local.upgradeUrl = v; }, get: (c) => lc(c).upgradeUrl, fmt: orNull },
    { key: 'upgrade_username', parse: basicUser, set: (d, v: string) => { d.upgradeUsername = v; },
      get: (c) => lc(c).upgradeBasicAuth?.user ?? null, fmt: orNull },
    { key: 'upgrade_password', secret: true, parse: nonEmpty('a password'), set: (d, v: string) => { d.upgradePassword = v; },
      get: (c) => (lc(c).upgradeBasicAuth ? '<redacted>' : null), fmt: orNull },
    { key: 'upgrade_bearer_token', secret: true, parse: token, set: (d, v: string) => { d.cfg.local.upgradeBearerToken = v; },
      get: (c) => (lc(c).upgradeBearerToken ? '<redacted>' : null), fmt: orNull },
    { key: 'upgrade_cacertfile', parse: parseOptionalPath, set: (d, v: string | null) => { d.cfg.local.upgradeCaFile = v; }, get: (c) => lc(c).upgradeCaFile, fmt: orNull },
    { key: 'upgrade_certfile', parse: parseOptionalPath, set: (d, v: string | null) => { d.cfg.local.upgradeCertFile = v; }, get: (c) => lc(c).upgradeCertFile, fmt: orNull },
    { key: 'upgrade_keyfile', parse: parseOptionalPath, set: (d, v: string | null) => { d.cfg.local.upgradeKeyFile = v; }, get: (c) => lc(c).upgradeKeyFile, fmt: orNull },
    { key: 'upgrade_timeout', parse: (r) => parseDurationMs(r, 100, 60_000),
      set: (d, v: number) => { d.cfg.local.upgradeTimeoutMs = v; }, get: (c) => lc(c).upgradeTimeoutMs, fmt: formatDuration },
    { key: 'upgrade_max_concurrent', parse: (r) => parseInteger(r, 1, 64),
      set: (d, v: number) => { d.cfg.local.upgradeMaxConcurrent = v; }, get: (c) => lc(c).upgradeMaxConcurrent },
    { key: 'upgrade_listen', parse: parseListen, set: (d, v: string) => { d.cfg.local.upgradeListen = v; }, get: (c) => lc(c).upgradeListen, fmt: orNull },
    { key: 'upgrade_listen_cert', parse: parseOptionalPath, set: (d, v: string | null) => { d.cfg.local.upgradeListenCert = v; }, get: (c) => lc(c).upgradeListenCert, fmt: orNull },
    { key: 'upgrade_listen_key', parse: parseOptionalPath, set: (d, v: string | null) => { d.cfg.local.upgradeListenKey = v; }, get: (c) => lc(c).upgradeListenKey, fmt: orNull },
    { key: 'upgrade_listen_token', secret: true, parse: token, set: (d, v: string) => { d.cfg.local.upgradeListenToken = v; },
      get: (c) => (lc(c).upgradeListenToken ? '<redacted>' : null), fmt: orNull },
  ]),
  ...section('events', [
    { key: 'url', parse: tokenUrl, set: (d, v: string) => { d.cfg.events.url = v; }, get: (c) => c.events.url, fmt: orNull },
    { key: 'bearer_token', secret: true, parse: token, set: (d, v: string) => { d.cfg.events.bearerToken = v; },
      get: (c) => (c.events.bearerToken ? '<redacted>' : null), fmt: orNull },
    { key: 'cacertfile', parse: parseOptionalPath, set: (d, v: string | null) => { d.cfg.events.caFile = v; }, get: (c) => c.events.caFile, fmt: orNull },
    { key: 'queue_size', parse: (r) => parseInteger(r, 1, 1_000_000),
      set: (d, v: number) => { d.cfg.events.queueSize = v; }, get: (c) => c.events.queueSize },
    { key: 'timeout', parse: (r) => parseDurationMs(r, 100, 60_000),
      set: (d, v: number) => { d.cfg.events.timeoutMs = v; }, get: (c) => c.events.timeoutMs, fmt: formatDuration },
  ]),
  ...section('cleanup', [
    // 0 (or 0s) turns the periodic run off; `latchkeyctl purge --expired` still works.
    { key: 'interval', parse: (r) => { const v = parseDurationSec(r); if (v !== 0 && v < 10) throw new ValueProblem('is below 10s; expected 0 (off) or a duration such as 1h'); return v; },
      set: (d, v: number) => { d.cfg.cleanup.intervalSec = v; }, get: (c) => c.cleanup.intervalSec * 1000, fmt: formatDuration },
    { key: 'expired_grace', parse: (r) => parseDurationSec(r),
      set: (d, v: number) => { d.cfg.cleanup.expiredGraceSec = v; }, get: (c) => c.cleanup.expiredGraceSec * 1000, fmt: formatDuration },
  ]),
  ...section('metrics', [
    { key: 'listen', parse: metricsListen, set: (d, v: MetricsListen | null) => { d.cfg.metrics.listen = v; }, get: (c) => c.metrics.listen, fmt: formatMetricsListen },
  ]),
  ...section('userdb', [
    { key: 'enabled', parse: parseBool, set: (d, v: boolean) => { d.cfg.userdb.enabled = v; }, get: (c) => c.userdb.enabled, fmt: bool },
  ]),
];

/**
 * The keys a secrets_file (or the systemd credential latchkey.secrets) may hold, and the
 * [section] key each stands for: one flat file, so names that repeat across sections get a prefix.
 */
export const SECRETS_FILE_MAP = {
  username: ['upstream', 'username'], password: ['upstream', 'password'], bearer_token: ['upstream', 'bearer_token'],
  api_key: ['upstream', 'api_key'],
  upgrade_password: ['local', 'upgrade_password'], upgrade_bearer_token: ['local', 'upgrade_bearer_token'],
  upgrade_listen_token: ['local', 'upgrade_listen_token'], events_bearer_token: ['events', 'bearer_token'],
} as const satisfies Record<string, readonly [Section, string]>;
export const SECRETS_FILE_KEYS = Object.keys(SECRETS_FILE_MAP) as Array<keyof typeof SECRETS_FILE_MAP>;

export function findNative(sec: string, key: string): KeySpec | undefined {
  return KEYS.find((k) => k.section === sec && k.key === key);
}

/** The key a top-level (LocalEGA) name stands for: its current name or an older one. */
export function findLegacy(key: string): KeySpec | undefined {
  return KEYS.find((k) => k.legacy === key) ?? KEYS.find((k) => k.olderLegacy.includes(key));
}

/**
 * Keys of older LocalEGA / EGA-auth releases that latchkey has no setting for, with what to do
 * instead: refused with this text (never silently dropped), and listed by `latchkeyctl import-ega`.
 * Found in EGA-archive/EGA-auth src/config.c (its history) and the auth.conf LocalEGA's inbox
 * image wrote in 2018 (docs/…/inbox.rst, LocalEGA-auth's auth.conf.sample).
 */
export const RETIRED_LEGACY: Readonly<Record<string, string>> = {
  enable_cega: 'latchkey always asks the user service (by_name_url, by_uid_url); remove it',
  cega_json_passwd: 'the password hash is read from the reply\'s passwordHash field (under json_prefix); remove it',
  cega_json_pubkey: 'the keys are read from the reply\'s sshPublicKeys field (under json_prefix); remove it',
  ega_uid: 'latchkey gives every user their own uid (CentralEGA uid + ega_uid_shift), not one shared uid; remove it',
  ega_gecos: 'the GECOS field comes from the user service\'s record; remove it',
  cache_dir: 'latchkey keeps no per-user cache directory, only the SQLite cache (db_path); remove it',
  use_cache: 'latchkey always caches (db_path, cache_ttl); remove it',
  ega_fuse_exec: 'latchkey mounts no FUSE file system; remove it',
  ega_fuse_flags: 'latchkey mounts no FUSE file system; remove it',
  shadow_min: 'latchkey serves no shadow entries (password ageing does not apply: the hash is the user service\'s); remove it',
  shadow_max: 'latchkey serves no shadow entries (password ageing does not apply: the hash is the user service\'s); remove it',
  shadow_warn: 'latchkey serves no shadow entries (password ageing does not apply: the hash is the user service\'s); remove it',
  shadow_inact: 'latchkey serves no shadow entries (password ageing does not apply: the hash is the user service\'s); remove it',
  shadow_expire: 'latchkey serves no shadow entries; an expiry comes from the user service\'s record; remove it',
  ssl_cert: 'for the CA that signs the user service\'s certificate write cacertfile = PATH, for a client certificate certfile and keyfile',
  debug: 'use log_level = debug under [daemon] in a latchkey.conf; remove it',
};

/** The name an admin sees in messages: `cache.ttl`, or the LocalEGA name as written. */
export function displayName(spec: KeySpec, topLevel: boolean, written?: string): string {
  return topLevel ? written ?? spec.legacy! : `${spec.section}.${spec.key}`;
}
