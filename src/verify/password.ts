// Password verification. Every outcome costs at least one dummy verification, and the dummy costs
// what the hashes latchkey actually serves cost: an unknown user, a user without a password, an
// unparsable or too costly hash and a wrong password are indistinguishable by timing from a right
// password (DESIGN.md, security rules). Nothing here logs or returns a hash.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { availableParallelism } from 'node:os';
import bcrypt from 'bcrypt';
import unixCryptTD from 'unix-crypt-td-js';
import { crypt } from '../native/addon.js';
import { costProblem, encodeYescryptSalt, parseHash, type HashCeilings, type ParsedHash } from './hash.js';
import { defaultConfig } from '../config/load.js';
import { log } from '../log.js';
import { Semaphore } from './semaphore.js';

export type { HashCeilings } from './hash.js';

/**
 * Hash work runs on the libuv threadpool (4 threads). On a 2-core host four concurrent bcrypts
 * starve the event-loop thread, and NSS lookups wait behind them (bench: lookup p99 8 ms during
 * 100 concurrent logins; 0.2 ms with one slot). Leave one core to the event loop.
 */
const hashSlots = new Semaphore(Math.max(1, availableParallelism() - 1));

/**
 * The slots are few and any remote client can queue hashes (unknown names
 * pay the dummy). An unbounded queue let a burst of wrong passwords from many sources make a right
 * password wait past the PAM module's deadline. A verification now waits at most HASH_WAIT_MS
 * for a slot (the answer deadline minus the time of a hash at the ceilings); past it the caller
 * is told "busy" (PAM: unavailable, try again), logged, and no work is queued for a client that
 * has given up.
 */
export const HASH_WAIT_MS = 2500;

/** The hash slots are saturated; the login is answered "unavailable", never counted as a failure. */
export class HashBusy extends Error {
  constructor(readonly waiting: number) {
    super(`password checks are saturated (${waiting} waiting for a hash slot); try again`);
  }
}

async function onHashSlot<T>(work: () => Promise<T>): Promise<T> {
  let release: () => void;
  try {
    release = await hashSlots.acquire(AbortSignal.timeout(HASH_WAIT_MS));
  } catch {
    throw new HashBusy(hashSlots.queued);
  }
  try { return await work(); } finally { release(); }
}

/**
 * sha*crypt cost grows with the password length (0.35 s at 5 bytes, 2.5 s at 511 bytes for 1M
 * rounds, measured): longer passwords are refused before any work, with a dummy of the same
 * length. No passphrase a person types is near 256 bytes (UTF-8).
 */
export const MAX_PASSWORD_BYTES = 256;

/** The ceilings a caller gets when it passes none: the shipped defaults of [pam]. The daemon passes
 *  its live config so an admin's change applies to the next login. */
const DEFAULT_CEILINGS: HashCeilings = (() => {
  const { maxBcryptCost, maxShaRounds, maxYescryptMemory } = defaultConfig().pam;
  return { maxBcryptCost, maxShaRounds, maxYescryptMemory };
})();

/**
 * The settings (kind + cost parameters, never salt or hash) of the hashes verified recently, one
 * entry per distinct hash, so the dummy can cost what a real user costs. Keyed by an HMAC of the
 * hash under a per-process random key: it tells two hashes apart and nothing else, and it makes
 * the record count users rather than attempts — hammering one user with a costly hash (which any
 * local user can do through su) must not make every unknown-user attempt pay that cost.
 * Map order is recency: the oldest entry goes first once SERVED_MAX is reached.
 */
const SERVED_MAX = 1024;
const servedKey = randomBytes(32);
const servedById = new Map<string, string>();
const servedSettings = new Map<string, { parsed: ParsedHash; count: number }>();

/** With nothing served yet, the dummy is bcrypt cost 10: CentralEGA's and most libraries' default. */
const FALLBACK: ParsedHash = { kind: 'bcrypt', cost: 10, setting: '$2b$10$' };

/**
 * Dummy hashes, one per setting, each of a random password nobody knows, made on first use (that
 * first computation is itself the dummy work, so it costs nothing extra). Settings come from
 * upstream hashes, so the cache is small and the oldest entry is dropped beyond it.
 */
const DUMMY_CACHE_MAX = 16;
const dummyHashes = new Map<string, string>();
const DUMMY_PASSWORD = 'latchkey-dummy-password';

/**
 * Records the setting of a hash latchkey serves, for the dummy to follow. verifyPassword calls it
 * for every real hash it computes; other paths that hand out a user may call it too. Hashes that
 * are always padded with the dummy (md5crypt, DES), unusable, or above the ceilings are ignored:
 * they never cost more than the dummy, or are never computed.
 */
export function noteServedHash(hash: string | null, ceilings: HashCeilings = DEFAULT_CEILINGS): void {
  const parsed = parseHash(hash);
  if (hash === null || parsed.setting === null || costProblem(parsed, ceilings) !== null) return;
  const id = createHmac('sha256', servedKey).update(hash).digest('base64url');
  const known = servedById.get(id);
  servedById.delete(id);
  servedById.set(id, parsed.setting);
  if (known !== undefined) return;
  const entry = servedSettings.get(parsed.setting);
  if (entry) entry.count++;
  else servedSettings.set(parsed.setting, { parsed, count: 1 });
  if (servedById.size > SERVED_MAX) {
    const [oldId, oldSetting] = servedById.entries().next().value as [string, string];
    servedById.delete(oldId);
    const old = servedSettings.get(oldSetting)!;
    if (--old.count === 0) servedSettings.delete(oldSetting);
  }
}

/** The setting the dummy uses now: the most common served one still within the ceilings (the
 *  ceilings may have been lowered since it was noted), else bcrypt cost 10. */
export function dummySetting(ceilings: HashCeilings = DEFAULT_CEILINGS): string {
  return currentDummy(ceilings).setting!;
}

function currentDummy(ceilings: HashCeilings): ParsedHash {
  let best = FALLBACK, bestCount = 0;
  for (const { parsed, count } of servedSettings.values()) {
    if (count > bestCount && costProblem(parsed, ceilings) === null) { best = parsed; bestCount = count; }
  }
  return best;
}

/** The work of one verification of the current dummy setting, result ignored. */
export async function dummyVerify(ceilings: HashCeilings = DEFAULT_CEILINGS, passwordBytes = DUMMY_PASSWORD.length): Promise<void> {
  const dummy = currentDummy(ceilings);
  const setting = dummy.setting!;
  try {
    const cached = dummyHashes.get(setting);
    if (cached !== undefined) {
      // As long as the attempt: sha*crypt's cost grows with the password length.
      const len = Math.min(MAX_PASSWORD_BYTES, Math.max(1, passwordBytes));
      await computeLike(len === DUMMY_PASSWORD.length ? DUMMY_PASSWORD : DUMMY_PASSWORD.padEnd(len, 'x').slice(0, len), cached);
      return;
    }
    const made = await computeLike(randomBytes(16).toString('base64'), await withFreshSalt(dummy));
    if (made === null) return;
    dummyHashes.set(setting, made);
    if (dummyHashes.size > DUMMY_CACHE_MAX) dummyHashes.delete(dummyHashes.keys().next().value!);
  } catch (e) {
    if (e instanceof HashBusy) throw e;
    /* the cost is the point, not the result */
  }
}

/** The setting followed by a random salt in the form its algorithm requires. */
async function withFreshSalt(parsed: ParsedHash): Promise<string> {
  // bcrypt's own generator: 16 random bytes in bcrypt's base64 (its last character carries
  // only 2 bits, which a hand-rolled salt easily gets wrong).
  if (parsed.kind === 'bcrypt') return bcrypt.genSalt(parsed.cost);
  // yescrypt: 16 random bytes in libxcrypt's encode64, as crypt_gensalt makes them.
  if (parsed.kind === 'yescrypt') return parsed.setting + encodeYescryptSalt(randomBytes(16));
  // sha*crypt: up to 16 salt characters, any but '$' and ':'; crypt(5) base64 is what tools use.
  return parsed.setting + Array.from(randomBytes(16), (b) => CRYPT_B64[b & 63]).join('');
}

const CRYPT_B64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Computes `password` with the setting (and salt) of `hash`, on a hash slot; the computed hash,
 *  or null when the algorithm refuses the setting. */
async function computeLike(password: string, hash: string): Promise<string | null> {
  return onHashSlot(() => computeOffSlot(password, hash));
}

/** computeLike without a hash slot: still on the libuv threadpool, never on the event loop. */
function computeOffSlot(password: string, hash: string): Promise<string | null> {
  if (hash.startsWith('$2')) {
    // The bcrypt package rejects "$2y$" (PHP's name for the fixed algorithm, identical to "$2b$"),
    // so it is given the "$2b$" spelling; "$2a$" and "$2b$" it takes as they are.
    const setting = hash.startsWith('$2y$') ? '$2b$' + hash.slice(4, 29) : hash.slice(0, 29);
    return bcrypt.hash(password, setting);
  }
  return crypt(password, hash);
}

/**
 * A new hash of `password` with the kind and cost of `parsed` and a fresh salt (a password set by
 * an admin, or re-hashed under another context: src/localusers/contexts.ts). It takes no hash
 * slot: those are the logins' budget (HASH_WAIT_MS), and this work is never part of a login's
 * answer; callers bound how many run at once. Null when the algorithm refuses the setting.
 */
export async function hashWithFreshSalt(password: string, parsed: ParsedHash): Promise<string | null> {
  if (parsed.setting === null) throw new RangeError(`no new ${parsed.kind} hash is ever made`);
  return computeOffSlot(password, await withFreshSalt(parsed));
}

/**
 * Whether `password` matches `hash`, without a hash slot and without the dummy: for work that is
 * no login (the primary's update endpoint, localusers/endpoint.ts), which bounds its own
 * concurrency and must never take the logins' slots. Same refusals as verifyPassword: too long,
 * NUL, above the ceilings, no usable hash.
 */
export async function verifyOffSlot(password: string, hash: string | null, ceilings: HashCeilings = DEFAULT_CEILINGS): Promise<boolean> {
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES || password.includes('\0')) return false;
  const parsed = parseHash(hash);
  if (hash === null || parsed.kind === 'none' || parsed.kind === 'unknown' || costProblem(parsed, ceilings) !== null) return false;
  if (parsed.kind === 'des') return verifyDes(password, hash);
  return equal(await computeOffSlot(password, hash), normalized(hash));
}

/**
 * A hash's cost parameters come from upstream. bcrypt cost 31 is ~40 h, a
 * sha512crypt of 999999999 rounds hours, a yescrypt with a large r gigabytes of RSS: a handful of
 * attempts against such a user holds every hash slot. The parameters are checked against the
 * [pam] ceilings before any work; a refused hash is logged (what and which key raises it, never the
 * hash), costs the dummy, and never verifies.
 */
export async function verifyPassword(password: string, hash: string | null, ceilings: HashCeilings = DEFAULT_CEILINGS): Promise<boolean> {
  const bytes = Buffer.byteLength(password, 'utf8');
  // Before anything else, whatever the user: the check costs the same for every name.
  if (bytes > MAX_PASSWORD_BYTES || password.includes('\0')) {
    // crypt(3) and bcrypt stop at the first NUL, so "secret\0junk" would pass as "secret".
    await dummyVerify(ceilings, MAX_PASSWORD_BYTES);
    return false;
  }
  const parsed = parseHash(hash);
  const { kind } = parsed;
  const problem = costProblem(parsed, ceilings);
  if (problem !== null) {
    log('warn', 'verify.cost_refused', {
      kind, param: problem.param, value: problem.value, ceiling: problem.ceiling,
      key: problem.key === null ? null : `[pam] ${problem.key}`,
      hint: problem.key === null
        ? `${problem.why}; the hash must be remade upstream with standard parameters`
        : `raise [pam] ${problem.key} to accept it, or have the hash remade upstream with a lower cost`,
    });
    await dummyVerify(ceilings, bytes);
    return false;
  }
  if (hash === null || kind === 'none' || kind === 'unknown') {
    await dummyVerify(ceilings, bytes);
    return false;
  }
  noteServedHash(hash, ceilings);
  try {
    const verifyReal = async (): Promise<boolean> =>
      kind === 'des' ? verifyDes(password, hash) : equal(await computeLike(password, hash), normalized(hash));
    // A hash of the dummy's own setting costs what the dummy costs. Any other (DES and md5crypt
    // always, a cheaper bcrypt or sha*crypt, a costlier minority) runs beside a dummy, so no user
    // answers faster than an unknown one.
    if (parsed.setting === currentDummy(ceilings).setting) return await verifyReal();
    // allSettled, not all — with Promise.all a crypt that throws (addon error)
    // returned before the dummy finished, making that outcome measurably faster.
    const [good, pad] = await Promise.allSettled([verifyReal(), dummyVerify(ceilings, bytes)]);
    if (good.status === 'rejected') throw good.reason;
    if (pad.status === 'rejected') throw pad.reason;
    return good.value;
  } catch (e) {
    if (e instanceof HashBusy) throw e;
    log('warn', 'verify.error', { kind, error: e instanceof Error ? e.message : String(e) });
    return false;
  }
}

/** The stored hash in the spelling computeLike returns ("$2y$" comes back as "$2b$"). */
function normalized(hash: string): string {
  return hash.startsWith('$2y$') ? '$2b$' + hash.slice(4) : hash;
}

/** Traditional DES crypt: the first two characters are the salt; DES is cheap, so synchronous. */
function verifyDes(password: string, hash: string): boolean {
  // Bytes, as crypt(3) sees them, so a non-ASCII password hashes like it does in libxcrypt.
  const computed = unixCryptTD(Array.from(Buffer.from(password, 'utf8')), hash.slice(0, 2));
  return equal(computed, hash);
}

function equal(computed: string | null, stored: string): boolean {
  if (computed === null) return false;
  const a = Buffer.from(computed, 'utf8');
  const b = Buffer.from(stored, 'utf8');
  // Lengths of well-formed hashes of one kind are public and fixed; only the bytes need hiding.
  return a.length === b.length && timingSafeEqual(a, b);
}
