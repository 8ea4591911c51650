// Turn one upstream reply body into an UpstreamUser, or refuse it. Everything that ends up in
// the cache, in a passwd line or in authorized_keys output passes through here first, so the
// checks are strict: a refused reply costs a login, an accepted bad one can cost the host.

import type { UsersConfig } from '../config/types.js';
import { UpstreamError } from '../errors.js';
import { log, unicodeEscape } from '../log.js';
import type { UpstreamUser } from '../types.js';
import { checkSshPublicKey } from './sshkeys.js';
import { FORBIDDEN_IN_FIELD, nameProblem, upstreamUidProblem } from '../users/rules.js';

export interface ParseOptions {
  /** dotted path to the user object ('' = top level), e.g. `response.result` */
  jsonPrefix: string;
  users: UsersConfig;
  /**
   * the name that was asked for; the reply must carry exactly this name. It passed the name rule
   * before it was asked (the directory's lookup gate, the client's own guard), so a reply equal to
   * it is not run through the rule again.
   */
  askedName?: string;
  /** the upstream uid that was asked for; the reply must carry exactly this uid */
  askedUpstreamUid?: number;
}

export interface DroppedKey {
  index: number;
  reason: string;
}

/** More keys than this is not a person, it is a misconfigured or hostile upstream. */
export const MAX_KEYS_PER_USER = 100;
/** passwd(5) has no hard limit, but nothing sane is longer and NSS buffers are finite. */
export const MAX_GECOS_LENGTH = 1024;
/** bcrypt is 60 chars, yescrypt/sha512crypt with rounds stay well under 200. */
export const MAX_HASH_LENGTH = 512;

// crypt(3) hashes are printable ASCII without spaces; ':' would split a shadow line.
const HASH_CHARS = /^[\u0021-\u0039\u003b-\u007e]+$/;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parse and validate a 200 reply. Throws UpstreamError('json') when the body is not JSON and
 * UpstreamError('invalid') when it is JSON but not an acceptable user. Bad SSH keys are dropped
 * (and logged) rather than failing the user, so one stale key does not lock someone out.
 */
export function parseUserReply(body: string | Buffer, opts: ParseOptions): UpstreamUser {
  const { user, dropped } = parseUserReplyDetailed(body, opts);
  for (const d of dropped) {
    log('warn', 'upstream.key_dropped', { user: user.username, index: d.index, reason: d.reason });
  }
  return user;
}

/** As parseUserReply, but returns the dropped keys instead of logging them (for tests and tools). */
export function parseUserReplyDetailed(
  body: string | Buffer,
  opts: ParseOptions,
): { user: UpstreamUser; dropped: DroppedKey[] } {
  const doc = parseJson(body);
  const record = descend(doc, opts.jsonPrefix);
  return validateRecord(record, opts);
}

function parseJson(body: string | Buffer): unknown {
  let text: string;
  try {
    text = typeof body === 'string' ? body : utf8.decode(body);
  } catch {
    throw new UpstreamError('json', `upstream reply is not valid UTF-8 (${body.length} bytes)`);
  }
  try {
    return JSON.parse(text);
  } catch {
    // JSON.parse's own message quotes the input, which may contain a password hash: not used.
    throw new UpstreamError('json', `upstream reply is not valid JSON (${text.length} characters)`);
  }
}

/**
 * Walk the dotted prefix. CentralEGA's v1 user API wraps the user as
 * `{"header":{…},"response":{"numTotalResults":1,"result":[{…}]}}` (a one-element list), while
 * other deployments return the object itself; a one-element list is unwrapped at every step.
 */
function descend(doc: unknown, prefix: string): unknown {
  const parts = prefix.split('.').filter((p) => p !== '');
  let cur = unwrapList(doc, '(top level)');
  const walked: string[] = [];
  for (const part of parts) {
    walked.push(part);
    if (!isPlainObject(cur) || !Object.prototype.hasOwnProperty.call(cur, part)) {
      throw new UpstreamError(
        'invalid',
        `upstream reply has no "${walked.join('.')}" (json prefix is "${prefix}"; check cega_json_prefix / json_prefix)`,
      );
    }
    cur = unwrapList(cur[part], walked.join('.'));
  }
  return cur;
}

function unwrapList(v: unknown, where: string): unknown {
  if (!Array.isArray(v)) return v;
  if (v.length !== 1) {
    throw new UpstreamError('invalid', `upstream reply: expected exactly one user at ${where}, got a list of ${v.length}`);
  }
  return v[0];
}

function validateRecord(record: unknown, opts: ParseOptions): { user: UpstreamUser; dropped: DroppedKey[] } {
  if (!isPlainObject(record)) {
    throw invalid(`the user record is ${describe(record)}, expected a JSON object`);
  }
  const username = checkName(record.username, opts);
  const ctx = `user ${JSON.stringify(username)}`;
  const upstreamUid = checkUid(record.uid, ctx, opts);
  const passwordHash = checkHash(record.passwordHash, ctx);
  const gecos = checkGecos(record.gecos, ctx);
  const { keys, dropped } = checkKeys(record, ctx);
  const accountExpiresAt = checkExpiry(record.expiresAt, record.enabled, ctx);
  const user: UpstreamUser = { username, upstreamUid, passwordHash, sshPublicKeys: keys, gecos };
  if (accountExpiresAt !== null) user.accountExpiresAt = accountExpiresAt;
  return { user, dropped };
}

/**
 * Optional account expiry (not part of the CentralEGA contract, accepted when present):
 * `expiresAt` as an ISO 8601 date or epoch seconds, `enabled: false` for a disabled account.
 */
function checkExpiry(expiresAt: unknown, enabled: unknown, ctx: string): number | null {
  if (enabled !== undefined && enabled !== null && typeof enabled !== 'boolean') {
    throw invalid(`${ctx}: "enabled" is ${describe(enabled)}, expected true or false`);
  }
  if (enabled === false) return 0;
  if (expiresAt === undefined || expiresAt === null) return null;
  if (typeof expiresAt === 'number' && Number.isFinite(expiresAt) && expiresAt >= 0) return Math.floor(expiresAt * 1000);
  if (typeof expiresAt === 'string' && /^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(expiresAt)) {
    const t = Date.parse(expiresAt);
    if (Number.isFinite(t)) return t;
  }
  throw invalid(`${ctx}: "expiresAt" is ${describe(expiresAt)}, expected an ISO 8601 date or epoch seconds`);
}

/** What a lookup asked upstream for; the reply must be for exactly this. */
export type Asked = { name: string } | { upstreamUid: number };

/**
 * "The reply is for what was asked, within the name and uid rules", for a record that did not
 * come through parseUserReply (FetchResult.validated unset: a source other than the REST client).
 * The same checks parseUserReply applies, so the rule has one owner whatever the source.
 */
export function checkAnswer(user: UpstreamUser, asked: Asked, users: UsersConfig): void {
  const opts: ParseOptions = { jsonPrefix: '', users, ...('name' in asked ? { askedName: asked.name } : { askedUpstreamUid: asked.upstreamUid }) };
  const username = checkName(user.username, opts);
  checkUid(user.upstreamUid, `user ${JSON.stringify(username)}`, opts);
}

function checkName(v: unknown, opts: ParseOptions): string {
  if (typeof v !== 'string') throw invalid(`"username" is ${describe(v)}, expected a string`);
  if (opts.askedName !== undefined) {
    if (v !== opts.askedName) {
      throw invalid(`asked for ${quote(opts.askedName)} but the reply is for ${quote(v)}; the upstream endpoint URL is probably wrong`);
    }
    return v;
  }
  const problem = nameProblem(v, opts.users);
  if (problem !== null) throw invalid(`"username" ${quote(v)} ${problem}`);
  return v;
}

function checkUid(v: unknown, ctx: string, opts: ParseOptions): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
    throw invalid(`${ctx}: "uid" is ${describe(v)}, expected an integer`);
  }
  if (v < 0) throw invalid(`${ctx}: "uid" ${v} is negative`);
  if (opts.askedUpstreamUid !== undefined && v !== opts.askedUpstreamUid) {
    throw invalid(`${ctx}: asked for uid ${opts.askedUpstreamUid} but the reply has uid ${v}`);
  }
  const problem = upstreamUidProblem(v, opts.users);
  if (problem !== null) throw invalid(`${ctx}: uid ${v} ${problem}`);
  return v;
}

function checkHash(v: unknown, ctx: string): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string') throw invalid(`${ctx}: "passwordHash" is ${describe(v)}, expected a string or null`);
  // An empty hash means "no password" to crypt(3)-based checks; we make that explicit as null
  // (password logins refused) rather than ever treating it as "any password works".
  if (v === '') return null;
  if (v.length > MAX_HASH_LENGTH) throw invalid(`${ctx}: "passwordHash" is longer than ${MAX_HASH_LENGTH} characters`);
  // The hash itself never goes into the message.
  if (!HASH_CHARS.test(v)) throw invalid(`${ctx}: "passwordHash" contains whitespace, ':', NUL or non-ASCII characters`);
  return v;
}

function checkGecos(v: unknown, ctx: string): string {
  if (v === null || v === undefined) return '';
  if (typeof v !== 'string') throw invalid(`${ctx}: "gecos" is ${describe(v)}, expected a string or null`);
  if (v.length > MAX_GECOS_LENGTH) throw invalid(`${ctx}: "gecos" is longer than ${MAX_GECOS_LENGTH} characters`);
  if (FORBIDDEN_IN_FIELD.test(v)) {
    throw invalid(`${ctx}: "gecos" contains ':', '/', a newline, NUL or another control character`);
  }
  return v;
}

/**
 * `sshPublicKeys` is the documented field. Older CentralEGA mocks sent a single string under
 * `sshPublicKey`; it is accepted (one key per line) only when the list field is absent.
 */
function checkKeys(record: Record<string, unknown>, ctx: string): { keys: string[]; dropped: DroppedKey[] } {
  let raw: unknown[];
  const list = record.sshPublicKeys;
  if (list === null || (list === undefined && (record.sshPublicKey === undefined || record.sshPublicKey === null))) {
    raw = [];
  } else if (list === undefined) {
    const single = record.sshPublicKey;
    if (typeof single !== 'string') throw invalid(`${ctx}: "sshPublicKey" is ${describe(single)}, expected a string`);
    raw = single.split(/\r?\n/).filter((l) => l.trim() !== '');
  } else if (Array.isArray(list)) {
    raw = list;
  } else {
    throw invalid(`${ctx}: "sshPublicKeys" is ${describe(list)}, expected a list of strings or null`);
  }

  const keys: string[] = [];
  const dropped: DroppedKey[] = [];
  raw.forEach((line, index) => {
    if (index >= MAX_KEYS_PER_USER) {
      dropped.push({ index, reason: `more than ${MAX_KEYS_PER_USER} keys` });
      return;
    }
    const r = checkSshPublicKey(line);
    if (r.ok) keys.push(r.key);
    else dropped.push({ index, reason: r.reason });
  });
  return { keys, dropped };
}

function invalid(msg: string): UpstreamError {
  return new UpstreamError('invalid', `upstream reply refused: ${msg}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'missing';
  if (Array.isArray(v)) return 'a list';
  return `a ${typeof v}`;
}

/** Quote an untrusted string for a log/error message: printable ASCII only (everything else,
 *  bidi overrides and line separators included, as \u escapes), capped, so it cannot forge a line. */
function quote(s: string): string {
  const capped = s.length > 64 ? s.slice(0, 64) : s;
  return JSON.stringify(capped).replace(/[^\x20-\x7e]/g, unicodeEscape) + (s.length > 64 ? '…' : '');
}
