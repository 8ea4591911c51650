// systemd JSON user and group records (systemd docs/USER_RECORD.md, GROUP_RECORD.md) built from
// the same entries NSS hands out (directory/entries.ts), and checked by the rules systemd's own
// loader (src/shared/user-record.c, user-util.c) applies before one is sent. Pure.
import type { Config } from '../config/types.js';
import type { CachedUser, GroupEntry } from '../types.js';
import { passwdEntry } from '../directory/entries.js';

/** The name clients reach us by (the file in /run/systemd/userdb/) and every record's `service`. */
export const USERDB_SERVICE = 'io.latchkey';

export interface UserRecord {
  userName: string;
  uid: number;
  gid: number;
  realName?: string;
  homeDirectory: string;
  shell: string;
  memberOf?: string[];
  locked?: boolean;
  /** µs since the epoch after which the account may not log in (upstream expiresAt) */
  notAfterUSec?: number;
  service: string;
  disposition: 'regular';
  privileged?: { sshAuthorizedKeys: string[] };
}

export interface GroupRecord {
  groupName: string;
  gid: number;
  service: string;
  disposition: 'regular';
}

/**
 * The user's record. `privileged`: the caller is root (SO_PEERCRED uid 0), the only peer that
 * gets the SSH keys; the password hash is never in a record, for anyone. `group`: the one group
 * when latchkey serves it (null when the host's group file has it).
 */
export function userRecord(cfg: Pick<Config, 'users' | 'homes'>, u: CachedUser, group: GroupEntry | null, privileged: boolean): UserRecord {
  const p = passwdEntry(cfg, u);
  const r: UserRecord = { userName: p.name, uid: p.uid, gid: p.gid, homeDirectory: p.dir, shell: p.shell, service: USERDB_SERVICE, disposition: 'regular' };
  if (p.gecos !== '') r.realName = p.gecos;
  if (group) r.memberOf = [group.name];
  const exp = u.accountExpiresAt;
  // 0 is "enabled": false upstream (or a disabled local user): locked, with no date to give.
  if (exp === 0) r.locked = true;
  else if (typeof exp === 'number' && exp > 0) r.notAfterUSec = exp * 1000;
  if (privileged && u.sshPublicKeys.length > 0) r.privileged = { sshAuthorizedKeys: [...u.sshPublicKeys] };
  return r;
}

export function groupRecord(g: GroupEntry): GroupRecord {
  return { groupName: g.name, gid: g.gid, service: USERDB_SERVICE, disposition: 'regular' };
}

/** A field of a record that systemd would refuse (or that latchkey never hands out), and why. */
export interface RecordProblem { field: string; problem: string }

// C0 and C1 controls and DEL: systemd's string_has_cc() refuses them in names, GECOS and paths.
// And a lone UTF-16 surrogate (an upstream's "\ud800" survives JSON.parse and the memo, and
// JSON.stringify writes it back as "\ud800"): systemd's JSON parser refuses the whole message and
// drops the connection, so the client saw an I/O error instead of a refused record.
const CC_RE = /[\u0000-\u001f\u007f-\u009f]|\p{Cs}/u;

/**
 * systemd's relaxed user/group name rule (valid_user_group_name with VALID_USER_RELAX, what
 * user_record_load applies to userName, memberOf and groupName): not empty, no padding spaces,
 * no control characters, no ':' or '/', not all digits (nor '-' and digits), not "." or "..".
 */
export function nameProblem(name: unknown): string | null {
  if (typeof name !== 'string' || name === '') return 'empty or not a string';
  if (name.startsWith(' ') || name.endsWith(' ')) return 'starts or ends with a space';
  if (CC_RE.test(name)) return 'has a control character';
  if (/[:/]/.test(name)) return "has ':' or '/'";
  if (/^-?[0-9]+$/.test(name)) return 'is numeric (a uid)';
  if (name === '.' || name === '..') return 'is "." or ".."';
  if (Buffer.byteLength(name) > 255) return 'longer than 255 bytes';
  return null;
}

/** uid_is_valid() plus latchkey's own rule: never 0 (root). 65535 and 2^32-1 are "no id". */
function idProblem(id: unknown): string | null {
  if (typeof id !== 'number' || !Number.isInteger(id)) return 'not an integer';
  if (id <= 0 || id >= 0xffffffff) return 'outside 1 .. 4294967294';
  if (id === 0xffff) return '65535 is the 16-bit "no id"';
  return null;
}

/** valid_home()/valid_shell(): absolute, normalized, no ':', no control characters. */
function pathProblem(p: unknown): string | null {
  if (typeof p !== 'string' || p === '') return 'empty or not a string';
  if (CC_RE.test(p)) return 'has a control character';
  if (!p.startsWith('/')) return 'not absolute';
  if (p.includes(':')) return "has ':'";
  if (Buffer.byteLength(p) >= 4096) return 'longer than PATH_MAX';
  if (p !== '/' && (p.endsWith('/') || p.split('/').slice(1).some((c) => c === '' || c === '.' || c === '..'))) return 'not normalized (//, /./, /../ or a trailing /)';
  return null;
}

/** valid_gecos(): no control characters, no ':' (the passwd field separator). */
function gecosProblem(g: unknown): string | null {
  if (typeof g !== 'string') return 'not a string';
  if (CC_RE.test(g)) return 'has a control character';
  if (g.includes(':')) return "has ':'";
  return null;
}

const USER_FIELDS = new Set(['userName', 'uid', 'gid', 'realName', 'homeDirectory', 'shell', 'memberOf', 'locked', 'notAfterUSec', 'service', 'disposition', 'privileged']);

/**
 * Null when systemd's user_record_load() would take the record and it holds only what latchkey
 * may say: the first problem otherwise. Run on every record before it is sent; the fields come
 * from the upstream (name, GECOS, keys, expiry) and from the config (home, shell, gid).
 */
export function validateUserRecord(r: Record<string, unknown>): RecordProblem | null {
  for (const k of Object.keys(r)) if (!USER_FIELDS.has(k)) return { field: k, problem: 'not a field latchkey sends' };
  const checks: [string, string | null][] = [
    ['userName', nameProblem(r.userName)],
    ['uid', idProblem(r.uid)],
    ['gid', idProblem(r.gid)],
    ['realName', r.realName === undefined ? null : gecosProblem(r.realName)],
    ['homeDirectory', pathProblem(r.homeDirectory)],
    ['shell', pathProblem(r.shell)],
    ['service', r.service === USERDB_SERVICE ? null : `not ${USERDB_SERVICE}`],
    ['disposition', r.disposition === 'regular' ? null : 'not "regular"'],
    ['locked', r.locked === undefined || typeof r.locked === 'boolean' ? null : 'not a boolean'],
    ['notAfterUSec', r.notAfterUSec === undefined || (Number.isSafeInteger(r.notAfterUSec) && (r.notAfterUSec as number) > 0) ? null : 'not a positive integer of µs'],
  ];
  for (const [field, problem] of checks) if (problem) return { field, problem };
  if (r.memberOf !== undefined) {
    if (!Array.isArray(r.memberOf)) return { field: 'memberOf', problem: 'not an array' };
    for (const g of r.memberOf) { const p = nameProblem(g); if (p) return { field: 'memberOf', problem: `a group name ${p}` }; }
  }
  if (r.privileged !== undefined) {
    const pv = r.privileged as Record<string, unknown>;
    if (typeof pv !== 'object' || pv === null || Array.isArray(pv)) return { field: 'privileged', problem: 'not an object' };
    for (const k of Object.keys(pv)) if (k !== 'sshAuthorizedKeys') return { field: `privileged.${k}`, problem: 'not a field latchkey sends (never a password hash)' };
    const keys = pv.sshAuthorizedKeys;
    if (!Array.isArray(keys)) return { field: 'privileged.sshAuthorizedKeys', problem: 'not an array' };
    // One authorized_keys line each: a newline would make one upstream string several keys.
    for (const k of keys) if (typeof k !== 'string' || k === '' || CC_RE.test(k)) return { field: 'privileged.sshAuthorizedKeys', problem: 'a key is empty or has a control character' };
  }
  return null;
}

export function validateGroupRecord(r: Record<string, unknown>): RecordProblem | null {
  for (const k of Object.keys(r)) if (!['groupName', 'gid', 'service', 'disposition'].includes(k)) return { field: k, problem: 'not a field latchkey sends' };
  const p = nameProblem(r.groupName);
  if (p) return { field: 'groupName', problem: p };
  const g = idProblem(r.gid);
  if (g) return { field: 'gid', problem: g };
  if (r.service !== USERDB_SERVICE) return { field: 'service', problem: `not ${USERDB_SERVICE}` };
  if (r.disposition !== 'regular') return { field: 'disposition', problem: 'not "regular"' };
  return null;
}
