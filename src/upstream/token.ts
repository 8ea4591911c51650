// Token mode ([upstream] token_url): the configured credentials (username/password or api_key)
// are exchanged at token_url for a short-lived bearer token, which the REST client (client.ts)
// then sends to the user endpoints instead of the credentials. The token lives in this object's
// memory only; it is refreshed in the background before it expires, so a lookup never waits for
// a refresh while the token it holds is still valid.
//
// The token service is as untrusted as the user service: its reply is size-capped by the
// client, then checked here field by field (parseTokenReply) before anything of it is used, and
// nothing it sends decides how often we ask it again (refreshDelayMs has a floor; failures back
// off exponentially, backoffMs). No token, refresh token, password or api key ever appears in
// a log line, an error or `status`: secrets() lists them for the client's redaction.
//
// HTTP is not done here: the client hands in `post` (its own agent, TLS settings and deadline),
// so this file holds only the lifecycle and the reply rules, and its tests need no network.

import { UpstreamError } from '../errors.js';
import { log } from '../log.js';

/** What is sent to token_url to log in. */
export type TokenLogin = { grant: 'password'; username: string; password: string } | { grant: 'api_key'; apiKey: string };

/** POSTs a JSON body to token_url: the HTTP status and the (capped) body; throws on transport failure. */
export type TokenPost = (jsonBody: string) => Promise<{ status: number; body: Buffer }>;

export interface IssuedToken {
  access: string;
  refresh: string | null;
  /** epoch ms when the token stops being valid (by the reply, its JWT exp, or the default) */
  expiresAt: number;
  issuedAt: number;
  /** where expiresAt came from, for the log */
  expiryFrom: 'expires_in' | 'jwt' | 'default';
}

export interface TokenStatus {
  token_expires_at: number | null;
  token_valid_for_s: number | null;
  logins: number;
  refreshes: number;
  last_auth_error: { message: string; at: number } | null;
}

/** Longest token (access or refresh) taken: JWTs with many claims run to a few KB, not more. */
export const MAX_TOKEN_CHARS = 8192;
/** A token reply has three small fields; a larger body is refused unread (client.ts caps it). */
export const MAX_TOKEN_REPLY_BYTES = 64 * 1024;
/** Lifetime assumed when neither expires_in nor a JWT exp says: short, so a guess errs safe. */
export const DEFAULT_LIFETIME_MS = 5 * 60_000;
/** A lifetime claimed longer than this is refreshed as if it were this long (a timer's range, and prudence). */
export const MAX_LIFETIME_MS = 24 * 3600_000;
/** No refresh sooner than this after a token arrived, whatever lifetime the token service claims. */
export const MIN_REFRESH_DELAY_MS = 500;
/**
 * A token valid for less than this is refused like a failed login (and backed off): it would
 * expire before a request could use it, and "successful" logins every few milliseconds would
 * never back off.
 */
export const MIN_LIFETIME_MS = 1000;
export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_MAX_MS = 5 * 60_000;
/** Old tokens kept in the redaction list: enough to cover any still in flight, bounded over months. */
const REDACT_KEEP = 16;

// Printable ASCII without space: a token goes into an HTTP header after "Bearer ", where a CR,
// LF or space would split or forge headers.
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

/**
 * Checks a 200 reply from token_url (RFC 6749 §5.1 shape): `access_token` required, `expires_in`
 * (seconds) and `refresh_token` optional, `token_type` if present must be bearer. Throws an
 * UpstreamError('auth') that never quotes the body: it may hold a token.
 */
export function parseTokenReply(bytes: Buffer, now: number): IssuedToken {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    // Not the parser's message: V8 quotes the input in it, and the input may be a token.
    throw new UpstreamError('auth', `token_url reply is not JSON (${bytes.length} bytes)`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new UpstreamError('auth', 'token_url reply is not a JSON object');
  const o = doc as Record<string, unknown>;
  const access = tokenField(o.access_token, 'access_token');
  if (access === null) throw new UpstreamError('auth', 'token_url reply has no access_token');
  const refresh = tokenField(o.refresh_token, 'refresh_token');
  if (o.token_type !== undefined && (typeof o.token_type !== 'string' || o.token_type.toLowerCase() !== 'bearer')) {
    throw new UpstreamError('auth', `token_url reply has token_type ${JSON.stringify(String(o.token_type).slice(0, 32))}; only bearer tokens are understood`);
  }
  if (o.expires_in !== undefined && o.expires_in !== null) {
    // Some services (Azure AD v1) send the number as a string: "3599".
    const s = typeof o.expires_in === 'string' && /^\d{1,12}(\.\d{1,6})?$/.test(o.expires_in) ? Number(o.expires_in) : o.expires_in;
    if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0) {
      throw new UpstreamError('auth', 'token_url reply has an expires_in that is not a positive number of seconds');
    }
    return longEnough({ access, refresh, issuedAt: now, expiresAt: now + Math.min(s * 1000, MAX_LIFETIME_MS), expiryFrom: 'expires_in' });
  }
  const exp = jwtExpiry(access);
  if (exp !== null && exp > now) return longEnough({ access, refresh, issuedAt: now, expiresAt: Math.min(exp, now + MAX_LIFETIME_MS), expiryFrom: 'jwt' });
  return { access, refresh, issuedAt: now, expiresAt: now + DEFAULT_LIFETIME_MS, expiryFrom: 'default' };
}

function longEnough(t: IssuedToken): IssuedToken {
  const ms = t.expiresAt - t.issuedAt;
  if (ms < MIN_LIFETIME_MS) {
    throw new UpstreamError('auth', `token_url issued a token valid for ${ms} ms (by its ${t.expiryFrom === 'jwt' ? 'JWT exp' : 'expires_in'}), under the ${MIN_LIFETIME_MS} ms a request needs; check the token service's clock and token lifetime`);
  }
  return t;
}

function tokenField(v: unknown, name: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || v.length === 0) throw new UpstreamError('auth', `token_url reply: ${name} is not a non-empty string`);
  if (v.length > MAX_TOKEN_CHARS) throw new UpstreamError('auth', `token_url reply: ${name} is ${v.length} characters, over ${MAX_TOKEN_CHARS}`);
  if (!TOKEN_CHARS.test(v)) throw new UpstreamError('auth', `token_url reply: ${name} holds characters a header cannot carry (only printable ASCII without spaces)`);
  return v;
}

/**
 * The `exp` claim of a JWT (epoch ms), or null when the token is not a JWT or has none. The
 * signature is not checked: the exp only tells when to refresh, it grants nothing here, and the
 * user endpoints are the ones that judge the token.
 */
export function jwtExpiry(token: string): number | null {
  const parts = token.split('.');
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[1]!)) return null;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown;
    const exp = claims !== null && typeof claims === 'object' ? (claims as { exp?: unknown }).exp : undefined;
    return typeof exp === 'number' && Number.isFinite(exp) && exp > 0 ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * How long after a token arrived to refresh it: at 80 % of its lifetime, but at least 30 s before
 * it ends when the lifetime allows (half of it when it is short), never sooner than
 * MIN_REFRESH_DELAY_MS. 1 h → at 48 min; 60 s → at 30 s; 2 s → at 1 s.
 */
export function refreshDelayMs(lifetimeMs: number): number {
  const ahead = Math.max(lifetimeMs * 0.2, Math.min(30_000, lifetimeMs * 0.5));
  return Math.max(MIN_REFRESH_DELAY_MS, Math.round(lifetimeMs - ahead));
}

/** The wait after the n-th failure in a row (n >= 1): 1 s doubling up to 5 min, with jitter down to half so a fleet spreads out. */
export function backoffMs(failures: number, random: () => number = Math.random): number {
  const full = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(30, Math.max(0, failures - 1)));
  return Math.round(full * (0.5 + 0.5 * random()));
}

/** What a refused exchange says, by HTTP status and grant; never the body (it may echo a credential). */
function refusedMessage(status: number, grant: string): string {
  if (status === 400 || status === 401 || status === 403) {
    return grant === 'api_key'
      ? `token_url refused the api_key (HTTP ${status}); check api_key in the secrets_file or the latchkey.secrets credential`
      : `token_url refused the login (HTTP ${status}); check username and password in the secrets_file or the latchkey.secrets credential`;
  }
  if (status >= 300 && status < 400) return `token_url answered HTTP ${status}: redirects are not followed; point token_url at the final location`;
  if (status >= 500) return `token_url answered HTTP ${status}: the token service is failing`;
  return `token_url answered HTTP ${status}: unexpected status (200 with a token is expected)`;
}

export class TokenSource {
  private token: IssuedToken | null = null;
  /** the login or refresh running now: everyone who needs a token waits for this one */
  private inflight: Promise<IssuedToken> | null = null;
  private failures = 0;
  /** no login before this (epoch ms) after failures; requests without a token fail at once until then */
  private nextAttemptAt = 0;
  private lastError: { message: string; at: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private logins = 0;
  private refreshes = 0;
  private readonly recent: string[] = [];

  constructor(
    private readonly login: TokenLogin,
    private readonly post: TokenPost,
    private readonly opts: { now?: () => number; random?: () => number } = {},
  ) {}

  private now(): number { return (this.opts.now ?? Date.now)(); }

  /**
   * The access token to send. A valid token is returned at once (a refresh running in the
   * background is not waited for). Without one: waits for the login in flight, or starts one;
   * during the backoff after failed logins it throws UpstreamError('auth') at once, so the
   * directory serves what it has cached and answers "unavailable" for the rest.
   */
  async get(): Promise<string> {
    if (this.closed) throw new UpstreamError('connect', 'upstream client closed');
    const t = this.token;
    const now = this.now();
    if (t && now < t.expiresAt) return t.access;
    if (this.inflight) return (await this.inflight).access;
    if (t) {
      this.token = null;
      log('info', 'upstream.token_expired', { detail: 'the token expired before a refresh succeeded; logging in again' });
    }
    if (now < this.nextAttemptAt) {
      throw new UpstreamError('auth', `no upstream token: ${this.failures} attempt(s) at token_url failed in a row, next in ${Math.ceil((this.nextAttemptAt - now) / 1000)} s; last: ${this.lastError?.message ?? 'unknown'}`);
    }
    return (await this.renew('login')).access;
  }

  /**
   * A user endpoint answered 401 to `token`: it is dropped, and the next get() logs in again.
   * A burst of 401s for the same token drops it once; the others find the new login in flight
   * (or done) and use its token, so they make no login of their own.
   */
  rejected(token: string): void {
    if (this.token?.access !== token) return;
    this.token = null;
    this.clearTimer();
    log('info', 'upstream.token_rejected', { detail: 'a user endpoint answered 401 to the current token; logging in again' });
  }

  /**
   * A user endpoint answered 401 to `token` although it was just issued (the request had already
   * been retried with a fresh one): the user endpoints do not take this service's tokens. That
   * counts as a failed login, backed off like one, so lookups fail at once meanwhile instead of
   * each making a login and two requests.
   */
  unaccepted(token: string): void {
    if (this.token?.access === token) {
      this.token = null;
      this.clearTimer();
    }
    if (this.now() < this.nextAttemptAt) return;
    this.failed(new UpstreamError('auth', 'the user endpoints answered 401 to a token token_url had just issued; check that token_url belongs to this user service'), this.login.grant);
  }

  /** The current token while it is valid (for a reload's new client: adopt()). */
  current(): IssuedToken | null {
    const t = this.token;
    return t !== null && this.now() < t.expiresAt ? t : null;
  }

  /**
   * Takes over a still-valid token of the client a reload replaces (same token_url, same login):
   * a reload must not drop a good token and make lookups depend on token_url being up right then.
   * Its refresh keeps the schedule it had.
   */
  adopt(t: IssuedToken): void {
    const now = this.now();
    if (this.closed || this.token !== null || t.expiresAt - now < MIN_LIFETIME_MS) return;
    this.remember(t);
    this.token = t;
    const due = t.issuedAt + refreshDelayMs(t.expiresAt - t.issuedAt);
    this.schedule(Math.max(MIN_REFRESH_DELAY_MS, due - now));
  }

  status(): TokenStatus {
    const t = this.token;
    const now = this.now();
    const valid = t !== null && t.expiresAt > now;
    return {
      token_expires_at: valid ? t.expiresAt : null,
      token_valid_for_s: valid ? Math.floor((t.expiresAt - now) / 1000) : null,
      logins: this.logins,
      refreshes: this.refreshes,
      last_auth_error: this.lastError,
    };
  }

  /** Every string no message may carry: the login secret and the recent tokens. */
  secrets(): string[] {
    return [this.login.grant === 'password' ? this.login.password : this.login.apiKey, ...this.recent];
  }

  close(): void {
    this.closed = true;
    this.clearTimer();
    this.token = null;
  }

  /** Single flight: a login or refresh already running is joined, never doubled. */
  private renew(want: 'login' | 'refresh'): Promise<IssuedToken> {
    if (!this.inflight) {
      this.inflight = this.exchange(want).finally(() => { this.inflight = null; });
    }
    return this.inflight;
  }

  private async exchange(want: 'login' | 'refresh'): Promise<IssuedToken> {
    const refreshToken = want === 'refresh' ? this.token?.refresh ?? null : null;
    const grant = refreshToken !== null ? 'refresh_token' : this.login.grant;
    const body = refreshToken !== null ? { grant_type: 'refresh_token', refresh_token: refreshToken }
      : this.login.grant === 'password' ? { grant_type: 'password', username: this.login.username, password: this.login.password }
        : { grant_type: 'api_key', api_key: this.login.apiKey };
    try {
      const r = await this.post(JSON.stringify(body));
      if (this.closed) throw new UpstreamError('connect', 'upstream client closed');
      if (r.status === 200) return this.accept(parseTokenReply(r.body, this.now()), grant);
      // RFC 6749 §5.2: a refused refresh token is invalid_grant (400); some services say 401.
      // Either way that refresh token is no good, and a clean login with the credentials follows.
      if (grant !== 'refresh_token' || (r.status !== 400 && r.status !== 401)) throw new UpstreamError('auth', refusedMessage(r.status, grant));
      log('info', 'upstream.token_refresh_refused', { status: r.status, detail: 'token_url refused the refresh token; logging in with the credentials' });
      if (this.token?.refresh === refreshToken) this.token = { ...this.token, refresh: null };
    } catch (e) {
      throw this.failed(e, grant);
    }
    // Outside the try: the login counts its own failure, once.
    return this.exchange('login');
  }

  private accept(tok: IssuedToken, grant: string): IssuedToken {
    this.remember(tok);
    this.token = tok;
    this.failures = 0;
    this.nextAttemptAt = 0;
    if (grant === 'refresh_token') this.refreshes++;
    else this.logins++;
    const lifetime = tok.expiresAt - tok.issuedAt;
    const delay = refreshDelayMs(lifetime);
    this.schedule(delay);
    log('info', 'upstream.token', {
      grant, expires_in_s: Math.round(lifetime / 1000), expiry_from: tok.expiryFrom,
      refresh_in_s: Math.round(delay / 1000), logins: this.logins, refreshes: this.refreshes,
    });
    return tok;
  }

  /** One failed exchange: counted, backed off, logged once, turned into the error callers get. */
  private failed(e: unknown, grant: string): UpstreamError {
    if (this.closed) return e instanceof UpstreamError ? e : new UpstreamError('connect', 'upstream client closed');
    const message = this.redact(`token_url (${grant}): ${e instanceof Error ? e.message : String(e)}`);
    const now = this.now();
    this.failures++;
    const wait = backoffMs(this.failures, this.opts.random);
    this.nextAttemptAt = now + wait;
    this.lastError = { message, at: now };
    const t = this.token;
    const left = t !== null ? t.expiresAt - now : 0;
    log('warn', 'upstream.token_failed', {
      grant, failures: this.failures, retry_in_s: Math.round(wait / 1000), error: message,
      token: left > 0 ? `current token valid for ${Math.floor(left / 1000)} s more` : 'none',
    });
    // While the current token lasts, keep trying in the background; once it is gone, the next
    // lookup after the backoff tries (a daemon nobody asks need not keep logging in).
    if (left > 0) this.schedule(Math.min(wait, left));
    return new UpstreamError('auth', message);
  }

  private schedule(delayMs: number): void {
    this.clearTimer();
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      // Failures are logged and counted in exchange(); nobody waits on this promise.
      this.renew('refresh').catch(() => undefined);
    }, delayMs);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private remember(t: IssuedToken): void {
    for (const s of [t.access, t.refresh]) {
      if (s === null || this.recent.includes(s)) continue;
      this.recent.push(s);
      if (this.recent.length > REDACT_KEEP) this.recent.shift();
    }
  }

  private redact(s: string): string {
    let out = s;
    for (const secret of this.secrets()) if (secret) out = out.split(secret).join('***');
    return out;
  }
}
