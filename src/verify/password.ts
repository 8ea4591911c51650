// Password verification. Every outcome costs about one real verification: an unknown user, a user
// without a password, an unparsable hash and a wrong password are indistinguishable by timing
// from a right password (DESIGN.md, security rules). Nothing here logs or returns a hash.
import { timingSafeEqual } from 'node:crypto';
import { availableParallelism } from 'node:os';
import bcrypt from 'bcrypt';
import unixCryptTD from 'unix-crypt-td-js';
import { crypt } from '../native/addon.js';
import { hashInfo, type HashKind } from './hash.js';
import { log } from '../log.js';
import { Semaphore } from '../upstream/semaphore.js';

/**
 * Hash work runs on the libuv threadpool (4 threads). On a 2-core host four concurrent bcrypts
 * starve the event-loop thread, and NSS lookups wait behind them (bench: lookup p99 8 ms during
 * 100 concurrent logins; 0.2 ms with one slot). Leave one core to the event loop.
 */
const hashSlots = new Semaphore(Math.max(1, availableParallelism() - 1));
async function onHashSlot<T>(work: () => Promise<T>): Promise<T> {
  const release = await hashSlots.acquire();
  try { return await work(); } finally { release(); }
}

/** sha*crypt cost grows with the password length; a password this long is an attack, not a user. */
const MAX_PASSWORD_LENGTH = 1024;

/**
 * Review fix: the cost is part of the hash, and the hash comes from upstream. bcrypt accepts cost
 * 31 (~40 h per verification) and sha*crypt 999999999 rounds: each login attempt against such a
 * user would hold a hash slot (and a libuv thread, shared with home creation) for hours, so a
 * handful of attempts stops every password login. Costs far above anything deployed are refused
 * (logged, dummy-verified, never accepted) instead of computed.
 */
const MAX_COST: Partial<Record<HashKind, number>> = {
  bcrypt: 16, sha256crypt: 5_000_000, sha512crypt: 5_000_000, yescrypt: 18,
};

/** bcrypt cost 10 of a random string nobody knows: the work done when there is nothing to verify.
 *  Cost 10 is what CentralEGA and most bcrypt libraries use by default. */
const DUMMY_HASH = '$2b$10$Guty1uRfU8AsR.8GN616xO78jfeHxRd6h6UCBN06MfeqCAuIb.kVi';

/** The work of one bcrypt cost-10 verification, result ignored. */
export async function dummyVerify(): Promise<void> {
  try {
    await verifyBcrypt('latchkey-dummy-password', DUMMY_HASH);
  } catch { /* the cost is the point, not the result */ }
}

export async function verifyPassword(password: string, hash: string | null): Promise<boolean> {
  const { kind, cost } = hashInfo(hash);
  const maxCost = MAX_COST[kind];
  if (cost !== null && maxCost !== undefined && cost > maxCost) {
    log('warn', 'verify.cost_refused', { kind, cost, max: maxCost });
    await dummyVerify();
    return false;
  }
  // crypt(3) and bcrypt stop at the first NUL, so "secret\0junk" would pass as "secret".
  if (hash === null || kind === 'none' || kind === 'unknown'
      || password.includes('\0') || password.length > MAX_PASSWORD_LENGTH) {
    await dummyVerify();
    return false;
  }
  try {
    if (kind === 'bcrypt') return await verifyBcrypt(password, hash);
    // DES, md5crypt and default-round sha*crypt/yescrypt are far cheaper than bcrypt cost 10:
    // alone they would tell a timing observer "this user exists". Running the dummy beside them
    // makes every outcome cost at least one dummy verification.
    // Review fix: allSettled, not all — with Promise.all a crypt that throws (addon error)
    // returned before the dummy finished, making that outcome measurably faster.
    const [good] = await Promise.allSettled([
      (async () => (kind === 'des' ? verifyDes(password, hash) : equal(await onHashSlot(() => crypt(password, hash)), hash)))(),
      dummyVerify(),
    ]);
    if (good.status === 'rejected') throw good.reason;
    return good.value;
  } catch (e) {
    log('warn', 'verify.error', { kind, error: e instanceof Error ? e.message : String(e) });
    return false;
  }
}

/** The bcrypt package rejects "$2y$" (PHP's name for the fixed algorithm, identical to "$2b$"),
 *  so both sides are compared in "$2b$" spelling. "$2a$" and "$2b$" it takes as they are. */
async function verifyBcrypt(password: string, hash: string): Promise<boolean> {
  const stored = hash.startsWith('$2y$') ? '$2b$' + hash.slice(4) : hash;
  const computed = await onHashSlot(() => bcrypt.hash(password, stored.slice(0, 29)));
  return equal(computed, stored);
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
