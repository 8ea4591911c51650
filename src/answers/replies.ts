// Reply pieces every socket shares: how a lookup that found nothing is answered.
import { fail, type HandlerResult, type Peer } from '../server/dispatch.js';
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
  // Controls, format characters (bidi overrides, zero-width) and line/paragraph separators: an
  // upstream-chosen string must not forge or hide a line in auth.log once a shim logs the detail.
  const clean = text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, ' ');
  return clean.length > MAX_DETAIL_CHARS ? clean.slice(0, MAX_DETAIL_CHARS - 1) + '…' : clean;
}

/**
 * The cause as an unprivileged nss.sock peer may see it: the endpoint (host, port, path — a path
 * may even carry an api key) is the admin's to know, so every URL becomes "<user service>".
 * priv.sock peers (root: pam_latchkey logs to auth.log) get the whole cause.
 */
export function publicReason(reason: string): string {
  // A URL runs to the next space, comma, semicolon or parenthesis; a colon right after it is the
  // message's ("... at URL: HTTP 401"), not the URL's.
  return reason.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s,;)]*[^\s,;):]/gi, '<user service>');
}

/** UNAVAIL with Lookup.reason ("HTTP 401 from upstream: credentials refused; check cega_creds", a timeout, "busy: ..."). */
export function unavailable(reason: string, peer: Pick<Peer, 'socket'>): HandlerResult {
  const shown = peer.socket === 'priv' ? reason : publicReason(reason);
  return fail(Status.UNAVAIL, replyDetail(`user service unavailable: ${shown}`));
}

export function lookupFailure(l: Exclude<Lookup, { status: 'found' }>, peer: Pick<Peer, 'socket'>): HandlerResult {
  if (l.status === 'notfound') return fail(Status.NOTFOUND);
  return unavailable(l.reason, peer);
}

/** A login identity check (directory/identity.ts) that did not find the account served as asked. */
export function identityFailure(id: Exclude<ServedIdentity, { kind: 'served' }>, peer: Pick<Peer, 'socket'>): HandlerResult {
  return id.kind === 'unavailable' ? unavailable(id.reason, peer) : fail(Status.NOTFOUND, id.detail);
}
