// What kind of password hash a user has, what its cost parameters are, and whether they are within
// the configured ceilings — for choosing the verifier, for refusing costly hashes before any work,
// and for `latchkeyctl show` (kind and cost only: the hash itself never leaves the daemon).
// Pure: no I/O. Formats from crypt(5) (libxcrypt) and bcrypt's "$2b$NN$" modular format.
import type { PamConfig } from '../config/types.js';

export type HashKind = 'bcrypt' | 'md5crypt' | 'sha256crypt' | 'sha512crypt' | 'yescrypt' | 'des' | 'none' | 'unknown';

export interface HashInfo {
  kind: HashKind;
  /** bcrypt log2 cost, sha*crypt rounds, yescrypt log2(N); null when not applicable or unparsable */
  cost: number | null;
  costName: 'cost' | 'rounds' | 'N_log2' | null;
}

/** yescrypt's parameters as "$y$" encodes them (libxcrypt lib/alg-yescrypt-common.c, yescrypt_r). */
export interface YescryptParams {
  /** 0 classic scrypt, 1 scrypt WORM, >= 2 yescrypt RW flavors (libxcrypt's own hashes: 47, "j") */
  flavor: number;
  nLog2: number;
  r: number;
  /** parallelism; 1 unless the optional "have" bit 1 is set (then encoded with minimum 2) */
  p: number;
  /** extra time factor without extra memory; 0 unless "have" bit 2 is set */
  t: number;
  /** hash-upgrade count; 0 unless "have" bit 4 is set */
  g: number;
  /** log2 of the ROM size; null unless "have" bit 8 is set */
  nromLog2: number | null;
}

/** A hash taken apart into what decides its cost. `setting` is the canonical cost prefix (kind and
 *  parameters, never the salt nor the hash): the same string for hashes that cost the same, and
 *  usable with a fresh salt appended to make a hash of that cost. */
export type ParsedHash =
  | { kind: 'none' | 'unknown' | 'des' | 'md5crypt'; setting: null }
  | { kind: 'bcrypt'; cost: number; setting: string }
  | { kind: 'sha256crypt' | 'sha512crypt'; rounds: number; setting: string }
  | { kind: 'yescrypt'; params: YescryptParams; memory: number; setting: string };

/** The configured ceilings on hash parameters ([pam] max_bcrypt_cost, max_sha_rounds, max_yescrypt_memory). */
export type HashCeilings = Pick<PamConfig, 'maxBcryptCost' | 'maxShaRounds' | 'maxYescryptMemory'>;

/** Why a hash's parameters are refused: the parameter, its value, the ceiling, and the config key
 *  that raises the ceiling (null for the fixed caps, with `why` saying why they are fixed). */
export interface CostProblem {
  param: string;
  value: number;
  ceiling: number;
  key: string | null;
  why: string;
}

const B64 = './0-9A-Za-z';
const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

const BCRYPT = new RegExp(`^\\$2[aby]\\$(\\d\\d)\\$[${B64}]{53}$`);
const MD5CRYPT = new RegExp(`^\\$1\\$[^$:\\n]{0,8}\\$[${B64}]{22}$`);
const SHA256CRYPT = new RegExp(`^\\$5\\$(?:rounds=(\\d{1,9})\\$)?[^$:\\n]{0,16}\\$[${B64}]{43}$`);
const SHA512CRYPT = new RegExp(`^\\$6\\$(?:rounds=(\\d{1,9})\\$)?[^$:\\n]{0,16}\\$[${B64}]{86}$`);
const YESCRYPT = new RegExp(`^\\$y\\$([${B64}]+)\\$[${B64}]*\\$[${B64}]{43}$`);
const DES = new RegExp(`^[${B64}]{13}$`);

/** crypt(5): sha*crypt without "rounds=" uses 5000. */
const SHA_DEFAULT_ROUNDS = 5000;

/**
 * Fixed caps on yescrypt parameters that the memory ceiling does not cover. None is configurable:
 * libxcrypt's crypt_gensalt (what makes "$y$" hashes on Linux) always writes p = 1, t = 0, g = 0
 * and no ROM, so only a hand-made or hostile hash goes beyond them.
 * - p: each lane adds its own S-box (~12 KiB) and B block beyond 128*N*r, so p up to N/4 would put
 *   gigabytes outside the memory ceiling; for classic scrypt flavors every lane is a full pass
 *   over N, multiplying the time by p.
 * - t: multiplies the time without touching memory (t >= 2 runs N*(t-1) extra loops), so the
 *   memory ceiling would no longer bound the time. t = 1 costs 1.25x t = 0, inside the ceiling's
 *   own margin; anything more is refused.
 * - g and NROM: libxcrypt refuses them itself (hash upgrades are unsupported; crypt(3) has no ROM),
 *   so such a hash can never verify; refusing them here says why instead of failing silently.
 */
const YESCRYPT_MAX_P = 1;
const YESCRYPT_MAX_T = 1;

export function hashKind(hash: string | null): HashKind {
  return parseHash(hash).kind;
}

export function hashInfo(hash: string | null): HashInfo {
  const h = parseHash(hash);
  switch (h.kind) {
    case 'bcrypt': return { kind: h.kind, cost: h.cost, costName: 'cost' };
    case 'sha256crypt': case 'sha512crypt': return { kind: h.kind, cost: h.rounds, costName: 'rounds' };
    case 'yescrypt': return { kind: h.kind, cost: h.params.nLog2, costName: 'N_log2' };
    case 'md5crypt': return { kind: h.kind, cost: 1000, costName: 'rounds' };
    case 'des': return { kind: h.kind, cost: 25, costName: 'rounds' };
    default: return { kind: h.kind, cost: null, costName: null };
  }
}

export function parseHash(hash: string | null): ParsedHash {
  // shadow(5): an empty field, or one starting with '!' or '*', means no password login.
  if (hash === null || hash === '' || hash.startsWith('!') || hash.startsWith('*')) {
    return { kind: 'none', setting: null };
  }
  let m: RegExpExecArray | null;
  if ((m = BCRYPT.exec(hash))) {
    const cost = Number(m[1]);
    // bcrypt accepts cost 4..31 only; anything else is a corrupt hash, not a cheap one.
    // $2a$, $2b$ and $2y$ cost the same: one setting for all three.
    return cost >= 4 && cost <= 31 ? { kind: 'bcrypt', cost, setting: `$2b$${m[1]}$` } : UNKNOWN;
  }
  if (MD5CRYPT.test(hash)) return { kind: 'md5crypt', setting: null };
  if ((m = SHA256CRYPT.exec(hash))) return sha('sha256crypt', '$5$', m[1]);
  if ((m = SHA512CRYPT.exec(hash))) return sha('sha512crypt', '$6$', m[1]);
  if ((m = YESCRYPT.exec(hash))) {
    const params = decodeYescryptParams(m[1]!);
    if (params === null) return UNKNOWN;
    // libxcrypt allocates V = 128 * r * N bytes (alg-yescrypt-opt.c, yescrypt_kdf_body). A double
    // holds this exactly up to 2^53 and is only compared against a ceiling of at most 1 GiB.
    const memory = 128 * 2 ** params.nLog2 * params.r;
    return { kind: 'yescrypt', params, memory, setting: `$y$${m[1]}$` };
  }
  if (DES.test(hash)) return { kind: 'des', setting: null };
  // Also "$7$" (scrypt) and "$gy$" (gost-yescrypt): libxcrypt's crypt_r computes both, but they
  // are not formats upstream serves (DESIGN.md), so they stay unknown and are never computed.
  return UNKNOWN;
}

const UNKNOWN: ParsedHash = { kind: 'unknown', setting: null };

/** crypt(5): rounds are clamped to 1000..999999999; the setting carries the effective count. */
function sha(kind: 'sha256crypt' | 'sha512crypt', prefix: string, text: string | undefined): ParsedHash {
  const rounds = text === undefined ? SHA_DEFAULT_ROUNDS : Math.min(999_999_999, Math.max(1000, Number(text)));
  return { kind, rounds, setting: `${prefix}rounds=${rounds}$` };
}

/** The first parameter a hash exceeds, or null when every parameter is within its ceiling.
 *  md5crypt (1000 rounds) and DES (25) have fixed, cheap costs; none/unknown are never computed. */
export function costProblem(h: ParsedHash, c: HashCeilings): CostProblem | null {
  const configurable = (param: string, value: number, ceiling: number, key: string): CostProblem | null =>
    value > ceiling ? { param, value, ceiling, key, why: `above the configured ceiling [pam] ${key}` } : null;
  switch (h.kind) {
    case 'bcrypt': return configurable('cost', h.cost, c.maxBcryptCost, 'max_bcrypt_cost');
    case 'sha256crypt': case 'sha512crypt': return configurable('rounds', h.rounds, c.maxShaRounds, 'max_sha_rounds');
    case 'yescrypt': {
      const p = h.params;
      const fixed = (param: string, value: number, ceiling: number, why: string): CostProblem => ({ param, value, ceiling, key: null, why });
      if (p.g > 0) return fixed('g', p.g, 0, 'libxcrypt cannot verify upgraded (g > 0) yescrypt hashes');
      if (p.nromLog2 !== null) return fixed('NROM_log2', p.nromLog2, 0, 'crypt(3) has no yescrypt ROM, so a ROM hash cannot verify');
      if (p.p > YESCRYPT_MAX_P) return fixed('p', p.p, YESCRYPT_MAX_P, 'each extra lane adds memory outside 128*N*r (and time for scrypt flavors); crypt_gensalt writes p=1');
      if (p.t > YESCRYPT_MAX_T) return fixed('t', p.t, YESCRYPT_MAX_T, 't multiplies the time without memory, escaping the memory ceiling; crypt_gensalt writes t=0');
      return configurable('memory', h.memory, c.maxYescryptMemory, 'max_yescrypt_memory');
    }
    default: return null;
  }
}

/** yescrypt's alphabet value of one character; 64 for anything else (libxcrypt's atoi64). */
function atoi64(ch: string | undefined): number {
  const v = ch === undefined ? -1 : ITOA64.indexOf(ch);
  return v < 0 ? 64 : v;
}

/**
 * One variable-length number (libxcrypt decode64_uint32): the first character's value says how
 * many characters follow. Values 0..47 stand alone; 48..55 take one more character, 56..59 two,
 * 60..61 three, 62 four, 63 five, each range adding the size of the ranges before it.
 * Returns the number and the index after it, or null when a character is not in the alphabet.
 */
function decode64Uint32(s: string, pos: number, min: number): { value: number; next: number } | null {
  let start = 0, end = 47, chars = 1, bits = 0;
  let c = atoi64(s[pos++]);
  if (c > 63) return null;
  let value = min;
  while (c > end) {
    value += (end + 1 - start) * 2 ** bits;
    start = end + 1;
    end = start + Math.floor((62 - end) / 2);
    chars++;
    bits += 6;
  }
  value += (c - start) * 2 ** bits;
  while (--chars) {
    c = atoi64(s[pos++]);
    if (c > 63) return null;
    bits -= 6;
    value += c * 2 ** bits;
  }
  return { value, next: pos };
}

/**
 * The "$y$" parameter field (between the second and third '$'), decoded as libxcrypt's yescrypt_r
 * does: flavor (min 0), N_log2 (min 1), r (min 1), then, if anything is left, a "have" bit set
 * (min 1) followed by p (min 2), t (min 1), g (min 1) and NROM_log2 (min 1) for bits 1, 2, 4, 8.
 * Anything libxcrypt would reject as malformed is null (an unknown hash, never computed).
 */
export function decodeYescryptParams(field: string): YescryptParams | null {
  let pos = 0;
  const next = (min: number): number | null => {
    const d = decode64Uint32(field, pos, min);
    if (d === null) return null;
    pos = d.next;
    return d.value;
  };
  const flavor = next(0);
  // libxcrypt: flavors 0 and 1, or 2 + (RW flavor bits >> 2) with the mask 0x3fc.
  if (flavor === null || flavor > 2 + (0x3fc >> 2)) return null;
  const nLog2 = next(1);
  if (nLog2 === null || nLog2 > 63) return null;
  const r = next(1);
  if (r === null) return null;
  const out: YescryptParams = { flavor, nLog2, r, p: 1, t: 0, g: 0, nromLog2: null };
  if (pos < field.length) {
    const have = next(1);
    if (have === null) return null;
    if (have & 1) { const v = next(2); if (v === null) return null; out.p = v; }
    if (have & 2) { const v = next(1); if (v === null) return null; out.t = v; }
    if (have & 4) { const v = next(1); if (v === null) return null; out.g = v; }
    if (have & 8) {
      const v = next(1);
      if (v === null || v > 63) return null;
      out.nromLog2 = v;
    }
  }
  // The field must end exactly here: libxcrypt requires '$' right after the last parameter.
  return pos === field.length ? out : null;
}

/**
 * libxcrypt's encode64 for a salt: little-endian groups of up to 3 bytes, 6 bits per character,
 * low bits first. "$y$" salts must be in this exact form (decode64 refuses stray high bits).
 */
export function encodeYescryptSalt(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length;) {
    let value = 0, bits = 0;
    do {
      value |= bytes[i++]! << bits;
      bits += 8;
    } while (bits < 24 && i < bytes.length);
    for (let b = 0; b < bits; b += 6) {
      out += ITOA64[value & 0x3f];
      value >>>= 6;
    }
  }
  return out;
}

/**
 * The yescrypt parameters crypt_gensalt("$y$", count) writes (libxcrypt lib/crypt-yescrypt.c,
 * gensalt_yescrypt_rn): counts 1 and 2 use 1 KiB blocks (r = 8) with N = 2^(count + 9); counts
 * 3 .. 11 use 4 KiB blocks (r = 32, the yescrypt author's advice above 2 MiB) with
 * N = 2^(count + 7); count 0 means 5. Always flavor 47 (YESCRYPT_DEFAULTS), p = 1, no t, g or ROM.
 * `setting` is the "$y$" prefix without a salt; `memory` is 128 * r * N bytes, as parseHash says.
 * Count 5 is "$y$j9T$", 16 MiB; count 11 is 1 GiB.
 */
export function yescryptGensalt(count: number): { setting: string; params: YescryptParams; memory: number } {
  if (!Number.isInteger(count) || count < 0 || count > 11) throw new RangeError(`yescrypt cost ${count} is outside crypt_gensalt's 0 .. 11`);
  const c = count === 0 ? 5 : count;
  const [nLog2, r] = c < 3 ? [c + 9, 8] : [c + 7, 32];
  const params: YescryptParams = { flavor: 47, nLog2, r, p: 1, t: 0, g: 0, nromLog2: null };
  // Each value is below 48 + its minimum, so libxcrypt's encode64_uint32 writes one character.
  const setting = `$y$${ITOA64[params.flavor]}${ITOA64[nLog2 - 1]}${ITOA64[r - 1]}$`;
  return { setting, params, memory: 128 * 2 ** nLog2 * r };
}
