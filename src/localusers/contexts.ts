// Hash contexts (issue 16): an id in [local] contexts names an algorithm and a cost, and every
// stored hash carries the id it was made under. This file turns a context into the setting
// crypt(3)/bcrypt take, says whether the [pam] ceilings would refuse its hashes, and makes a new
// hash under it. Everything but newHash is pure.
import type { HashContext, LocalConfig } from '../config/types.js';
import { costProblem, parseHash, yescryptGensalt, type CostProblem, type HashCeilings, type ParsedHash } from '../verify/hash.js';
import { hashWithFreshSalt, MAX_PASSWORD_BYTES } from '../verify/password.js';
import { Semaphore } from '../verify/semaphore.js';

/** The kind and cost a context's hashes have: what parseHash returns for any of them. */
export function contextSetting(ctx: HashContext): Exclude<ParsedHash, { setting: null }> {
  switch (ctx.algorithm) {
    case 'bcrypt':
      // "$2b$": the OpenBSD spelling the bcrypt package writes; two digits, as the format requires.
      return { kind: 'bcrypt', cost: ctx.cost, setting: `$2b$${String(ctx.cost).padStart(2, '0')}$` };
    case 'sha512crypt':
      return { kind: 'sha512crypt', rounds: ctx.cost, setting: `$6$rounds=${ctx.cost}$` };
    case 'sha256crypt':
      return { kind: 'sha256crypt', rounds: ctx.cost, setting: `$5$rounds=${ctx.cost}$` };
    case 'yescrypt': {
      // The cost is crypt_gensalt's count, so a context means what `mkpasswd -m yescrypt -R N`
      // and PAM's pam_unix yescrypt_cost_factor mean by it.
      const y = yescryptGensalt(ctx.cost);
      return { kind: 'yescrypt', params: y.params, memory: y.memory, setting: y.setting };
    }
  }
}

/** Why the [pam] ceilings would refuse every hash of this context (it could never log in), or null. */
export function contextProblem(ctx: HashContext, ceilings: HashCeilings): CostProblem | null {
  return costProblem(contextSetting(ctx), ceilings);
}

/** The context a config defines under this id, or null. */
export function findContext(local: Pick<LocalConfig, 'contexts'>, id: string | null): HashContext | null {
  return id === null ? null : local.contexts.find((c) => c.id === id) ?? null;
}

/** A password newHash will not hash: crypt(3) and bcrypt stop at a NUL, and verifyPassword
 *  refuses anything longer than MAX_PASSWORD_BYTES, so such a hash could never log in. */
export class UnhashablePassword extends Error {}

/**
 * Hashes made outside a login (a password set by an admin, an upgrade after a login, an upgrade a
 * secondary asked for) run one at a time. They take no login hash slot (verify/password.ts), so
 * a burst of them never delays a login; one at a time keeps them to one threadpool thread.
 */
const background = new Semaphore(1);

/**
 * A new hash of `password` under `ctx`, with a fresh salt. Waits for the one background slot
 * (until `signal` aborts, which rejects with its reason). Throws UnhashablePassword for a password
 * that could never verify, and an Error when the library refuses the setting or makes a hash of
 * another setting than the context's (never stored: it would be filed under the wrong id).
 */
export async function newHash(password: string, ctx: HashContext, signal?: AbortSignal): Promise<string> {
  if (password.includes('\0')) throw new UnhashablePassword('the password contains a NUL byte, which crypt(3) would cut it at');
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) {
    throw new UnhashablePassword(`the password is longer than ${MAX_PASSWORD_BYTES} bytes, which no login accepts`);
  }
  const want = contextSetting(ctx);
  const release = await background.acquire(signal);
  let made: string | null;
  try {
    made = await hashWithFreshSalt(password, want);
  } finally {
    release();
  }
  if (made === null) throw new Error(`the crypt library refused the ${ctx.algorithm} setting of context ${ctx.id}; is libxcrypt built with ${ctx.algorithm}?`);
  const got = parseHash(made).setting;
  if (got !== want.setting) throw new Error(`context ${ctx.id} should make ${want.setting} hashes, the library made ${got ?? 'an unparsable one'}`);
  return made;
}
