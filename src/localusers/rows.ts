// What one stored local user must be before it is stored or served (issue 16). Pure: the store
// applies it on add, at open (a bad row is skipped, not served) and to every row of a snapshot
// before it may replace the store, so a hand-edited or hostile file cannot hand out a uid
// outside the range, a name the name rule refuses, or a passwd field that breaks a line.
import type { Config, UsersConfig } from '../config/types.js';
import { nameProblem } from '../users/rules.js';
import { parseHash } from '../verify/hash.js';
import { checkSshPublicKey } from '../upstream/sshkeys.js';
import type { LocalUser } from './types.js';

/** What a row must pass: the name rule, the local uid range, and the contexts ids. */
export interface RowRules {
  users: Pick<UsersConfig, 'nameRegex'>;
  /** [local] min_uid .. max_uid; both 0: no local users may exist */
  minUid: number;
  maxUid: number;
  /** at most this many keys per user, as upstream users */
  maxKeys?: number;
}

/** The rules of a loaded config. */
export function rowRules(c: Pick<Config, 'users' | 'local'>): RowRules {
  return { users: c.users, minUid: c.local.minUid, maxUid: c.local.maxUid };
}

/** Far more keys than anyone has; bounds what a snapshot row may carry. */
export const MAX_KEYS_PER_USER = 64;
/** gecos and shell: passwd(5) fields; longer than this is no real value. */
export const MAX_FIELD_LENGTH = 1024;

/** A row as the store keeps it (the LocalUser fields that are checked). */
export type RowFields = Pick<LocalUser, 'name' | 'uid' | 'gecos' | 'shell' | 'passwordHash' | 'context' | 'expiresAt'> & { keys: readonly string[] };

/** Why the range allows no uid at all, naming the keys to set; null when it has one. */
export function rangeProblem(rules: RowRules): string | null {
  if (rules.minUid === 0 && rules.maxUid === 0) {
    return 'no local users: [local] min_uid and max_uid are not set and the default range 9000 .. 9999 overlaps the upstream\'s; '
      + 'set [local] min_uid and max_uid to a range outside [users] uid_shift .. max_uid';
  }
  return null;
}

// eslint-disable-next-line no-control-regex
const FIELD_BREAKERS = /[:\u0000-\u001f\u007f]/;

/** Why `gecos` or `shell` may not be a passwd field, or null. */
function fieldProblem(what: string, v: string): string | null {
  if (v.length > MAX_FIELD_LENGTH) return `${what} is longer than ${MAX_FIELD_LENGTH} characters`;
  // FORBIDDEN_IN_FIELD without '/': a shell is a path and gecos may hold one ("room 1/2");
  // only ':' and control characters break a passwd(5) line.
  if (FIELD_BREAKERS.test(v)) return `${what} contains ':', a newline or another control character`;
  return null;
}

/** Why this row may not be stored or served, or null when it may. */
export function rowProblem(row: RowFields, rules: RowRules): string | null {
  if (typeof row.name !== 'string') return 'the name is not a string';
  const np = nameProblem(row.name, rules.users as UsersConfig);
  if (np) return `the name ${JSON.stringify(row.name.slice(0, 64))} ${np}`;
  const rp = rangeProblem(rules);
  if (rp) return rp;
  if (!Number.isSafeInteger(row.uid) || row.uid < rules.minUid || row.uid > rules.maxUid) {
    return `uid ${String(row.uid)} is outside the local range [local] min_uid .. max_uid (${rules.minUid} .. ${rules.maxUid})`;
  }
  if (typeof row.gecos !== 'string') return 'gecos is not a string';
  const gp = fieldProblem('gecos', row.gecos);
  if (gp) return gp;
  if (row.shell !== null) {
    if (typeof row.shell !== 'string') return 'the shell is not a string';
    const sp = fieldProblem('shell', row.shell);
    if (sp) return sp;
    if (!row.shell.startsWith('/')) return `the shell ${JSON.stringify(row.shell.slice(0, 64))} is not an absolute path`;
  }
  if (row.passwordHash !== null) {
    if (typeof row.passwordHash !== 'string' || row.passwordHash === '') return 'the password hash is empty (store null for key logins only)';
    const kind = parseHash(row.passwordHash).kind;
    if (kind === 'unknown') return 'the password hash is of no format latchkey verifies';
  }
  if (row.context !== null && (typeof row.context !== 'string' || !/^[A-Za-z0-9_-]{1,16}$/.test(row.context))) {
    return 'the hash context is not a context id (1 to 16 letters, digits, _ or -)';
  }
  if (!Array.isArray(row.keys)) return 'the keys are not a list';
  const maxKeys = rules.maxKeys ?? MAX_KEYS_PER_USER;
  if (row.keys.length > maxKeys) return `it has ${row.keys.length} keys; at most ${maxKeys}`;
  for (const [i, k] of row.keys.entries()) {
    const c = checkSshPublicKey(k);
    if (!c.ok) return `key ${i + 1} is refused: ${c.reason}`;
    if (c.key !== k) return `key ${i + 1} is not in its normal form (TYPE BASE64 [comment], single spaces)`;
  }
  if (row.expiresAt !== null && (!Number.isSafeInteger(row.expiresAt) || row.expiresAt < 0)) return 'expires_at is not a time (epoch ms)';
  return null;
}
