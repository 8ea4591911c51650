// The identity rules every part applies to a user before it is asked for, cached or handed out
// (DESIGN.md, security rules). One place, so the resolver, the upstream client and the reply
// validation cannot disagree about what a valid name or uid is.
import type { UsersConfig } from '../config/types.js';
import { RESERVED_IDS } from '../config/load.js';

// `:` and newline break passwd(5)/shadow(5) lines, NUL truncates C strings, `/` would let a
// name walk out of the home base. Other control characters have no business in a name or any
// other passwd field either.
export const FORBIDDEN_IN_FIELD = /[:/\u0000-\u001f\u007f]/;
/** glibc and shadow-utils cap login names at 32 bytes (LOGIN_NAME_MAX is 256, useradd uses 32). */
export const MAX_NAME_BYTES = 32;

/** Why `name` may not be a user name, or null when it may. */
export function nameProblem(name: string, users: UsersConfig): string | null {
  if (name.length === 0) return 'is empty';
  if (FORBIDDEN_IN_FIELD.test(name)) return "contains ':', '/', a newline, NUL or another control character";
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) return `is longer than ${MAX_NAME_BYTES} bytes`;
  const re = users.nameRegex;
  re.lastIndex = 0; // a /g or /y regex from the config would otherwise remember the last match
  return re.test(name) ? null : `does not match the name rule ${re.source}`;
}

/** Why an upstream uid may not be handed out (after the shift), or null when it may. */
export function upstreamUidProblem(upstreamUid: number, users: UsersConfig): string | null {
  if (!Number.isSafeInteger(upstreamUid)) return 'is not an integer';
  if (upstreamUid < 0) return 'is negative';
  const { uidShift, minUid, maxUid } = users;
  const local = upstreamUid + uidShift;
  if (local === 0) return `+ shift ${uidShift} is 0 (root); refused`;
  if (local < minUid) return `+ shift ${uidShift} = ${local} is below min_uid ${minUid} (check ega_uid_shift / min_uid)`;
  if (local > maxUid) return `+ shift ${uidShift} = ${local} is above max_uid ${maxUid} (check ega_uid_shift / max_uid)`;
  if (RESERVED_IDS.includes(local)) return `+ shift ${uidShift} = ${local} is a reserved id (${RESERVED_IDS.join(', ')})`;
  return null;
}

/** A local uid latchkey may hand out: its upstream uid (uid - shift) passes the rules above. */
export function localUidAllowed(uid: number, users: UsersConfig): boolean {
  return Number.isSafeInteger(uid) && upstreamUidProblem(uid - users.uidShift, users) === null;
}
