// What kind of password hash a user has, and how expensive it is — for choosing the verifier and
// for `latchkeyctl show` (kind and cost only: the hash itself never leaves the daemon).
// Pure: no I/O. Formats from crypt(5) (libxcrypt) and bcrypt's "$2b$NN$" modular format.

export type HashKind = 'bcrypt' | 'md5crypt' | 'sha256crypt' | 'sha512crypt' | 'yescrypt' | 'des' | 'none' | 'unknown';

export interface HashInfo {
  kind: HashKind;
  /** bcrypt log2 cost, sha*crypt rounds, yescrypt log2(N); null when not applicable or unparsable */
  cost: number | null;
  costName: 'cost' | 'rounds' | 'N_log2' | null;
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

export function hashKind(hash: string | null): HashKind {
  return hashInfo(hash).kind;
}

export function hashInfo(hash: string | null): HashInfo {
  // shadow(5): an empty field, or one starting with '!' or '*', means no password login.
  if (hash === null || hash === '' || hash.startsWith('!') || hash.startsWith('*')) {
    return { kind: 'none', cost: null, costName: null };
  }
  let m: RegExpExecArray | null;
  if ((m = BCRYPT.exec(hash))) {
    const cost = Number(m[1]);
    // bcrypt accepts cost 4..31 only; anything else is a corrupt hash, not a cheap one.
    return cost >= 4 && cost <= 31 ? { kind: 'bcrypt', cost, costName: 'cost' } : unknown();
  }
  if (MD5CRYPT.test(hash)) return { kind: 'md5crypt', cost: 1000, costName: 'rounds' };
  if ((m = SHA256CRYPT.exec(hash))) return { kind: 'sha256crypt', cost: shaRounds(m[1]), costName: 'rounds' };
  if ((m = SHA512CRYPT.exec(hash))) return { kind: 'sha512crypt', cost: shaRounds(m[1]), costName: 'rounds' };
  if ((m = YESCRYPT.exec(hash))) return { kind: 'yescrypt', cost: yescryptNLog2(m[1]!), costName: 'N_log2' };
  if (DES.test(hash)) return { kind: 'des', cost: 25, costName: 'rounds' };
  return unknown();
}

function unknown(): HashInfo {
  return { kind: 'unknown', cost: null, costName: null };
}

/** crypt(5): rounds are clamped to 1000..999999999. */
function shaRounds(text: string | undefined): number {
  if (text === undefined) return SHA_DEFAULT_ROUNDS;
  return Math.min(999_999_999, Math.max(1000, Number(text)));
}

/** yescrypt params ("j9T"): a flavor char, then N_log2 - 1 and r - 1 in yescrypt's base64.
 *  Only the common single-character encoding is decoded; anything else reports null. */
function yescryptNLog2(params: string): number | null {
  if (params.length < 2) return null;
  const v = ITOA64.indexOf(params[1]!);
  // Values past 47 use a multi-character encoding (yescrypt-common.c, decode64_uint32).
  return v >= 0 && v < 48 ? v + 1 : null;
}
