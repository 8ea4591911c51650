// Reply pieces every socket shares: how a lookup that found nothing is answered.
import { fail, type HandlerResult } from '../server/dispatch.js';
import { Status } from '../protocol/generated.js';
import type { Lookup } from '../cache/types.js';
import type { ServedIdentity } from '../directory/identity.js';

/** Longest detail an UNAVAIL reply carries; the shims keep 255 bytes of it (lk_priv.h). */
const MAX_DETAIL_CHARS = 480;

/**
 * A reply detail: the shims log it (PAM to auth.log), so it says the cause an admin can act on.
 * Details are built by latchkeyd from its own messages, which never hold a secret (the upstream
 * client redacts its errors, and endpoint URLs cannot carry userinfo: the config refuses it);
 * control characters are replaced so the frame always encodes, and the length is capped.
 */
export function replyDetail(text: string): string {
  const clean = text.replace(/\p{Cc}/gu, ' ');
  return clean.length > MAX_DETAIL_CHARS ? clean.slice(0, MAX_DETAIL_CHARS - 1) + '…' : clean;
}

/** UNAVAIL with Lookup.reason ("HTTP 401 from upstream: credentials refused; check cega_creds", a timeout, "busy: ..."). */
export function unavailable(reason: string): HandlerResult {
  return fail(Status.UNAVAIL, replyDetail(`user service unavailable: ${reason}`));
}

export function lookupFailure(l: Exclude<Lookup, { status: 'found' }>): HandlerResult {
  if (l.status === 'notfound') return fail(Status.NOTFOUND);
  return unavailable(l.reason);
}

/** A login identity check (directory/identity.ts) that did not find the account served as asked. */
export function identityFailure(id: Exclude<ServedIdentity, { kind: 'served' }>): HandlerResult {
  return id.kind === 'unavailable' ? unavailable(id.reason) : fail(Status.NOTFOUND, id.detail);
}
