// The REST client for the upstream user service (CentralEGA or anything speaking its format).
// One keep-alive connection pool of max_concurrent connections, a hard deadline per request, a
// capped body, and errors sorted into kinds the cache can act on (serve stale vs. "not found").
// Which lookup may send a request when is not decided here: the directory runs every fetch in a
// slot of the UpstreamScheduler (upstream/scheduler.ts), the one limit on requests in flight.

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { PeerCertificate } from 'node:tls';
import { Agent } from 'undici';
import type { UpstreamConfig, UsersConfig } from '../config/types.js';
import { ConfigError, UpstreamError } from '../errors.js';
import { log } from '../log.js';
import type { FetchResult, UserSource } from './types.js';
import { parseUserReply } from './validate.js';
import { MAX_TOKEN_REPLY_BYTES, type TokenLogin, TokenSource, type TokenStatus } from './token.js';
import { nameProblem, upstreamUidProblem } from '../users/rules.js';
import { type HealthSnapshot, outcomeOf, type ProbeResult, type UpstreamOutcome, UpstreamHealth } from './health.js';

type LookupKind = 'name' | 'uid';
type BodyStream = AsyncIterable<Buffer> & { destroy(err?: Error): unknown; dump(opts?: { limit: number }): Promise<void> };

/** Bytes of an error/404 body we read to keep the connection reusable; more and we drop it. */
const DRAIN_LIMIT = 64 * 1024;
/** How long an idle upstream connection is kept; the server's own Keep-Alive hint wins if shorter. */
const KEEPALIVE_MS = 30_000;
const USER_AGENT = 'latchkey/0.1';
/** The health probe's deadline at most: `latchkeyctl status` waits for it. */
const PROBE_TIMEOUT_MS = 5000;

export class RestUserSource implements UserSource {
  private readonly agent: Agent;
  private readonly authHeader: string | null;
  private readonly secrets: string[];
  private last: { message: string; at: number } | null = null;
  private closed = false;
  /** the configured endpoints' origins: credentials go nowhere else (see fetchUser) */
  private readonly nameOrigin: string;
  private readonly uidOrigin: string;
  /** token mode (token_url): where the bearer token comes from, and the pool it is fetched over */
  private readonly tokens: TokenSource | null = null;
  private readonly tokenAgent: Agent | null = null;

  /** `health`: the daemon's one record of upstream outcomes, carried from client to client over reloads */
  constructor(private readonly cfg: UpstreamConfig, private readonly users: UsersConfig, readonly health: UpstreamHealth = new UpstreamHealth()) {
    this.nameOrigin = checkUrl(cfg.byNameUrl, '%s', 'cega_endpoint_username');
    this.uidOrigin = checkUrl(cfg.byUidUrl, '%u', 'cega_endpoint_uid');

    ({ header: this.authHeader, secrets: this.secrets } = credentialHeader(cfg.basicAuth, cfg.bearerToken));

    const connect = {
      timeout: cfg.connectTimeoutMs,
      ca: cfg.caFile ? readPem(cfg.caFile, 'cacertfile') : undefined,
      cert: cfg.certFile ? readPem(cfg.certFile, 'certfile') : undefined,
      key: cfg.keyFile ? readPem(cfg.keyFile, 'keyfile') : undefined,
      rejectUnauthorized: cfg.verifyPeer,
      // Skipping only the name check still verifies the chain against the CA.
      ...(cfg.verifyHostname ? {} : { checkServerIdentity: (_h: string, _c: PeerCertificate) => undefined }),
    };
    this.agent = new Agent({
      connect,
      headersTimeout: cfg.requestTimeoutMs,
      bodyTimeout: cfg.requestTimeoutMs,
      keepAliveTimeout: KEEPALIVE_MS,
      keepAliveMaxTimeout: KEEPALIVE_MS,
      connections: Math.max(1, cfg.maxConcurrent),
      pipelining: 1,
    });

    if (cfg.healthUrl !== null) checkUrl(cfg.healthUrl, null, 'health_url');

    if (cfg.tokenUrl !== null) {
      // Token mode: the credentials go to token_url only; the user endpoints see the token. Its
      // own small pool with the same TLS settings, so a login never queues behind hung lookups.
      checkUrl(cfg.tokenUrl, null, 'token_url');
      const tokenUrl = new URL(cfg.tokenUrl);
      this.tokenAgent = new Agent({
        connect, headersTimeout: cfg.requestTimeoutMs, bodyTimeout: cfg.requestTimeoutMs,
        keepAliveTimeout: KEEPALIVE_MS, keepAliveMaxTimeout: KEEPALIVE_MS, connections: 2, pipelining: 1,
      });
      this.tokens = new TokenSource(tokenLogin(cfg), (body) => this.postToken(tokenUrl, body));
    }
  }

  /**
   * A reload's new client takes the still-valid token of the one it replaces, when that token is
   * for the same service and login: same token_url, same credentials, same user endpoint
   * origins. Anything else changed means a new login, as it should.
   */
  adoptTokenOf(prev: RestUserSource): void {
    const a = this.cfg;
    const b = prev.cfg;
    if (!this.tokens || !prev.tokens || a.tokenUrl !== b.tokenUrl || this.nameOrigin !== prev.nameOrigin || this.uidOrigin !== prev.uidOrigin) return;
    if (JSON.stringify(tokenLogin(a)) !== JSON.stringify(tokenLogin(b))) return;
    const t = prev.tokens.current();
    if (t) this.tokens.adopt(t);
  }

  async fetchByName(name: string): Promise<FetchResult> {
    // A name that could never be accepted is not worth a round trip, and keeps odd bytes out of URLs.
    if (typeof name !== 'string' || nameProblem(name, this.users) !== null) {
      log('debug', 'upstream.skipped', { kind: 'name', reason: 'name fails the name rule' });
      return { kind: 'notfound' };
    }
    const url = expandUrl(this.cfg.byNameUrl, '%s', encodeURIComponent(name));
    // Defence in depth (the config parser refuses such URLs): a name must never decide which
    // host gets the credentials.
    if (url.origin !== this.nameOrigin) {
      throw new UpstreamError('invalid', `lookup by name ${JSON.stringify(name)}: the expanded URL leaves ${this.nameOrigin}; put %s in the path of the endpoint URL`);
    }
    return this.fetchUser('name', name, url, { askedName: name });
  }

  async fetchByUid(upstreamUid: number): Promise<FetchResult> {
    if (upstreamUidProblem(upstreamUid, this.users) !== null) {
      log('debug', 'upstream.skipped', { kind: 'uid', key: upstreamUid, reason: 'uid outside the configured range' });
      return { kind: 'notfound' };
    }
    const url = expandUrl(this.cfg.byUidUrl, '%u', String(upstreamUid));
    if (url.origin !== this.uidOrigin) {
      throw new UpstreamError('invalid', `lookup by uid ${upstreamUid}: the expanded URL leaves ${this.uidOrigin}; put %u in the path of the endpoint URL`);
    }
    return this.fetchUser('uid', String(upstreamUid), url, { askedUpstreamUid: upstreamUid });
  }

  lastError(): { message: string; at: number } | null {
    return this.last;
  }

  healthSnapshot(): HealthSnapshot {
    return this.health.snapshot();
  }

  /** Token mode's state for `status` (never a token); null in the other modes. */
  tokenStatus(): TokenStatus | null {
    return this.tokens?.status() ?? null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Stops the refresh timer too: a retired client (SIGHUP) must not keep logging in.
    this.tokens?.close();
    await this.tokenAgent?.destroy();
    // destroy, not close: a hung upstream must not hold up daemon shutdown. Requests still
    // waiting for a connection fail with UND_ERR_DESTROYED ("upstream client closed").
    await this.agent.destroy();
  }

  private async fetchUser(
    kind: LookupKind,
    key: string,
    url: URL,
    ask: { askedName?: string; askedUpstreamUid?: number },
  ): Promise<FetchResult> {
    const started = performance.now();
    // One deadline covers waiting for a pooled connection, connecting, headers and body.
    const dl = deadline(this.cfg.requestTimeoutMs, 'no complete reply');
    const ac = dl.ac;
    let status: number | undefined;
    try {
      if (this.closed) throw new UpstreamError('connect', 'upstream client closed');
      let res: Awaited<ReturnType<Agent['request']>>;
      for (let retried = false; ; retried = true) {
        const headers: Record<string, string> = { accept: 'application/json', 'user-agent': USER_AGENT };
        // Token mode: the login (if one is needed) counts against this request's deadline.
        const sent = this.tokens ? await untilAborted(this.tokens.get(), ac.signal) : null;
        if (sent !== null) headers.authorization = `Bearer ${sent}`;
        else if (this.authHeader) headers.authorization = this.authHeader;
        // undici's dispatcher API does not follow redirects, so credentials never leave this origin.
        res = await this.agent.request({
          origin: url.origin,
          path: url.pathname + url.search,
          method: 'GET',
          headers,
          signal: ac.signal,
        });
        status = res.statusCode;
        // A 401 to a token: it was revoked or expired early. Drop it, log in again (once for a
        // whole burst of such replies: TokenSource.rejected) and retry this request once.
        if (status === 401 && sent !== null && retried) this.tokens!.unaccepted(sent);
        if (status !== 401 || sent === null || retried) break;
        await drain(res.body as unknown as BodyStream);
        this.tokens!.rejected(sent);
        log('debug', 'upstream.request', { kind, key, status, outcome: 'retry with a new token', ms: elapsed(started) });
      }
      const body = res.body as unknown as BodyStream;
      let result: FetchResult;
      if (status === 200) {
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > this.cfg.maxBodyBytes) {
          body.destroy();
          throw tooLarge(this.cfg.maxBodyBytes, `declares ${declared} bytes`);
        }
        const bytes = await readCapped(body, this.cfg.maxBodyBytes);
        result = { kind: 'found', user: parseUserReply(bytes, { jsonPrefix: this.cfg.jsonPrefix, users: this.users, ...ask }), validated: true };
      } else if (status === 404) {
        await drain(body);
        result = { kind: 'notfound' };
      } else {
        await drain(body);
        // A 429 or 503 may say how long to stay away; the directory then sends nothing until then.
        const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(res.headers['retry-after'], Date.now()) : null;
        // 401/403 is a refusal of our credentials, not a failing service: `status` says which.
        throw new UpstreamError(status === 401 || status === 403 ? 'auth' : 'http', httpMessage(status, this.tokens !== null, retryAfterMs),
          retryAfterMs === null ? { status } : { status, retryAfterMs });
      }
      // debug, like the failure line below: the directory logs each fetch's outcome once
      // (resolver.fetch, with this error message); these add the HTTP status for debugging.
      log('debug', 'upstream.request', { kind, key, status, outcome: result.kind, ms: elapsed(started) });
      this.health.record('lookup', 'reachable', performance.now() - started);
      return result;
    } catch (e) {
      const err = this.classify(e, dl.timedOut);
      const message = this.redact(`lookup by ${kind} ${JSON.stringify(key)} at ${url.origin}${url.pathname}: ${err.message}`);
      this.last = { message, at: Date.now() };
      this.health.record('lookup', outcomeOf(err), performance.now() - started, message);
      log('debug', 'upstream.request', {
        kind, key, status, outcome: err.kind, error: this.redact(err.message), ms: elapsed(started),
      });
      throw new UpstreamError(err.kind, message, err.http);
    } finally {
      dl.clear();
    }
  }

  /**
   * GETs [upstream] health_url (null when none is configured): 2xx is reachable, 401/403
   * auth_failed, another status http_error. The upstream's TLS settings and pool; the
   * credentials only on an origin of the user endpoints (they are for that service alone), in
   * token mode the token (a login, if needed, counts against the probe's deadline). The body is
   * drained unread.
   */
  async probeHealth(): Promise<ProbeResult | null> {
    if (this.cfg.healthUrl === null) return null;
    const url = new URL(this.cfg.healthUrl);
    const timeoutMs = Math.min(this.cfg.requestTimeoutMs, PROBE_TIMEOUT_MS);
    const started = performance.now();
    const dl = deadline(timeoutMs, 'no answer');
    const ac = dl.ac;
    let outcome: UpstreamOutcome;
    let error: string | null = null;
    try {
      if (this.closed) throw new UpstreamError('connect', 'upstream client closed');
      const headers: Record<string, string> = { accept: 'application/json, text/plain, */*', 'user-agent': USER_AGENT };
      if (url.origin === this.nameOrigin || url.origin === this.uidOrigin) {
        const sent = this.tokens ? await untilAborted(this.tokens.get(), ac.signal) : null;
        if (sent !== null) headers.authorization = `Bearer ${sent}`;
        else if (this.authHeader) headers.authorization = this.authHeader;
      }
      const res = await this.agent.request({ origin: url.origin, path: url.pathname + url.search, method: 'GET', headers, signal: ac.signal });
      await drain(res.body as unknown as BodyStream);
      const st = res.statusCode;
      if (st >= 200 && st < 300) outcome = 'reachable';
      else {
        outcome = st === 401 || st === 403 ? 'auth_failed' : 'http_error';
        error = `HTTP ${st} from health_url${st === 401 || st === 403 ? ': credentials refused' : st >= 500 ? ': the user service is failing' : ''}`;
      }
    } catch (e) {
      const err = this.classify(e, false);
      outcome = dl.timedOut ? 'unreachable' : outcomeOf(err);
      error = dl.timedOut ? `no answer within ${timeoutMs} ms` : err.message;
    } finally {
      dl.clear();
    }
    const ms = performance.now() - started;
    if (error !== null) {
      error = this.redact(`health probe at ${url.origin}${url.pathname}: ${error}`);
      this.last = { message: error, at: Date.now() };
    }
    this.health.record('probe', outcome, ms, error);
    log('debug', 'upstream.probe', { outcome, ms: elapsed(started), ...(error ? { error } : {}) });
    return { outcome, ms: Math.round(ms * 100) / 100, error };
  }

  private classify(e: unknown, timedOut: boolean): UpstreamError {
    if (timedOut) return new UpstreamError('timeout', `no complete reply within ${this.cfg.requestTimeoutMs} ms (request_timeout_ms)`);
    if (e instanceof UpstreamError) return e;
    const code = errorCode(e);
    const msg = e instanceof Error ? e.message : String(e);
    switch (code) {
      case 'UND_ERR_CONNECT_TIMEOUT':
        return new UpstreamError('timeout', `could not connect within ${this.cfg.connectTimeoutMs} ms (connect_timeout_ms); is the upstream host reachable?`);
      case 'UND_ERR_HEADERS_TIMEOUT':
      case 'UND_ERR_BODY_TIMEOUT':
        return new UpstreamError('timeout', `upstream stopped answering (${msg})`);
      case 'ECONNREFUSED':
        return new UpstreamError('connect', 'connection refused: is the upstream service running and the URL\'s port right?');
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return new UpstreamError('connect', `host name did not resolve (${code}); check the endpoint URL and DNS`);
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
        return new UpstreamError('connect', `no route to the upstream host (${code})`);
      case 'UND_ERR_SOCKET':
      case 'ECONNRESET':
      case 'EPIPE':
        return new UpstreamError('connect', `upstream closed the connection (${msg})`);
      case 'UND_ERR_ABORTED':
      case 'UND_ERR_DESTROYED':
      case 'UND_ERR_CLOSED':
        return new UpstreamError('connect', this.closed ? 'upstream client closed' : `request aborted (${msg})`);
    }
    if (code && (TLS_CODES.has(code) || code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL'))) {
      return new UpstreamError('connect', `TLS verification failed (${code}: ${msg}); set cacertfile to the CA that signed the upstream certificate`);
    }
    return new UpstreamError('connect', `request failed (${code ?? 'no code'}: ${msg})`);
  }

  /** Defence in depth: no message built here should carry a credential, but make sure. */
  private redact(s: string): string {
    let out = s;
    for (const secret of [...this.secrets, ...(this.tokens?.secrets() ?? [])]) if (secret) out = out.split(secret).join('***');
    return out;
  }

  /** One exchange with token_url under the request deadline; the reply body capped before it is parsed. */
  private async postToken(url: URL, jsonBody: string): Promise<{ status: number; body: Buffer }> {
    const dl = deadline(this.cfg.requestTimeoutMs, 'no complete reply');
    const ac = dl.ac;
    try {
      const res = await this.tokenAgent!.request({
        origin: url.origin, path: url.pathname + url.search, method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', 'user-agent': USER_AGENT },
        body: jsonBody, signal: ac.signal,
      });
      const body = res.body as unknown as BodyStream;
      if (res.statusCode !== 200) {
        await drain(body);
        // token.ts words the refusal; the health record only needs which kind of failure it was.
        const st = res.statusCode;
        this.health.record('token', st === 400 || st === 401 || st === 403 ? 'auth_failed' : 'http_error', 0, `token_url answered HTTP ${st}`);
        return { status: res.statusCode, body: Buffer.alloc(0) };
      }
      const tooBig = (detail: string): UpstreamError => new UpstreamError('too_large', `reply larger than ${MAX_TOKEN_REPLY_BYTES} bytes (${detail})`);
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > MAX_TOKEN_REPLY_BYTES) {
        body.destroy();
        throw tooBig(`declares ${declared}`);
      }
      return { status: 200, body: await readCapped(body, MAX_TOKEN_REPLY_BYTES, (n) => tooBig(`exceeded after ${n}`)) };
    } catch (e) {
      const err = this.classify(e, dl.timedOut);
      this.health.record('token', outcomeOf(err), 0, this.redact(`token_url: ${err.message}`));
      throw err;
    } finally {
      dl.clear();
    }
  }
}

/** What token mode logs in with; load.ts insists on exactly one of the two. */
function tokenLogin(cfg: UpstreamConfig): TokenLogin {
  if (cfg.apiKey !== null) return { grant: 'api_key', apiKey: cfg.apiKey };
  if (cfg.basicAuth) return { grant: 'password', username: cfg.basicAuth.user, password: cfg.basicAuth.password };
  throw new ConfigError('[upstream]', 0, 'token_url', 'needs the credentials to log in with: username and password, or api_key');
}

/** `p`, or the signal's reason once it aborts: a wait for a token must not outlive the request's deadline. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e as Error); },
    );
  });
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH',
]);

function errorCode(e: unknown): string | undefined {
  // undici sometimes wraps the socket error; the interesting code may sit on the cause.
  for (let cur: unknown = e, depth = 0; cur && depth < 4; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'UND_ERR') return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * An AbortController that aborts with an UpstreamError('timeout') after `ms`; `timedOut` says
 * whether that is why a request failed. Each request (lookup, health probe, token exchange)
 * runs under one.
 */
function deadline(ms: number, what: string): { ac: AbortController; readonly timedOut: boolean; clear(): void } {
  const ac = new AbortController();
  let fired = false;
  const timer = setTimeout(() => {
    fired = true;
    ac.abort(new UpstreamError('timeout', `${what} within ${ms} ms`));
  }, ms);
  return { ac, get timedOut() { return fired; }, clear: () => clearTimeout(timer) };
}

/**
 * A reply body, at most `max` bytes; past that the stream is dropped and `over(n)` thrown. Also
 * what the local users' upgrade client reads the primary's reply with (localusers/upgrade.ts).
 */
export async function readCapped(
  body: Pick<BodyStream, 'destroy'> & AsyncIterable<Buffer>, max: number,
  over: (n: number) => Error = (n) => tooLarge(max, `exceeded after ${n} bytes`),
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of body) {
    n += chunk.length;
    if (n > max) {
      // Stop reading now: the rest of a hostile body must not reach memory.
      body.destroy();
      throw over(n);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, n);
}

async function drain(body: BodyStream): Promise<void> {
  try {
    await body.dump({ limit: DRAIN_LIMIT });
  } catch {
    // A broken error body changes nothing about the answer.
  }
}

function tooLarge(max: number, detail: string): UpstreamError {
  return new UpstreamError('too_large', `reply body larger than max_body_bytes ${max} (${detail})`);
}

/**
 * Bounds of an honoured Retry-After. At least a second: "0" or a date in the past must not turn
 * into a retry loop. At most ten minutes, not [upstream] backoff_max: the service's own word
 * usually knows better than our guess and may ask for longer, but a hostile or broken header
 * (a day, a year) must not silence the upstream past what the stale grace can bridge; after it,
 * one probe asks again and a still-busy service simply says so again.
 */
export const RETRY_AFTER_MIN_MS = 1_000;
export const RETRY_AFTER_MAX_MS = 600_000;

/**
 * A Retry-After header (RFC 9110 10.2.3: delta-seconds or an HTTP-date) as milliseconds from
 * `now`, clamped to [RETRY_AFTER_MIN_MS, RETRY_AFTER_MAX_MS]; null when absent or unreadable
 * (the caller then backs off on its own). Only the first value counts when it is repeated.
 */
export function parseRetryAfter(header: string | string[] | undefined, now: number): number | null {
  const raw = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!raw || raw.length > 64) return null;
  let ms: number;
  if (/^\d+$/.test(raw)) ms = Number(raw) * 1000;
  else if (/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(raw)) {
    // IMF-fixdate only (the form a sender must use); Date.parse reads it as UTC.
    const at = Date.parse(raw);
    if (!Number.isFinite(at)) return null;
    ms = at - now;
  } else return null;
  if (!Number.isFinite(ms)) return null;
  return Math.min(RETRY_AFTER_MAX_MS, Math.max(RETRY_AFTER_MIN_MS, ms));
}

function httpMessage(status: number, tokenMode = false, retryAfterMs: number | null = null): string {
  if (status === 429 || (status === 503 && retryAfterMs !== null)) {
    const wait = retryAfterMs === null ? 'no Retry-After; backing off' : `Retry-After ${Math.round(retryAfterMs / 1000)} s`;
    return `HTTP ${status} from upstream: ${status === 429 ? 'too many requests' : 'the user service is overloaded'} (${wait})`;
  }
  if (status === 401 && tokenMode) return 'HTTP 401 from upstream to a token just issued by token_url: the user endpoints do not accept its tokens; check that token_url belongs to this user service';
  if (status === 401 || status === 403) return `HTTP ${status} from upstream: credentials refused; check cega_creds / the bearer token`;
  if (status >= 300 && status < 400) return `HTTP ${status} from upstream: redirects are not followed; point the endpoint URL at the final location`;
  if (status >= 500) return `HTTP ${status} from upstream: the user service is failing`;
  return `HTTP ${status} from upstream: unexpected status (only 200 and 404 are understood)`;
}

/** `%s`/`%u` in the configured URL is replaced; otherwise the value is appended. */
export function expandUrl(template: string, placeholder: '%s' | '%u', value: string): URL {
  const s = template.includes(placeholder) ? template.split(placeholder).join(value) : template + value;
  return new URL(s);
}

/** Checks an endpoint template (null: a plain URL); returns the origin every expanded URL must keep. */
function checkUrl(template: string, placeholder: '%s' | '%u' | null, key: string): string {
  let u: URL;
  try {
    u = placeholder === null ? new URL(template) : expandUrl(template, placeholder, placeholder === '%s' ? 'name' : '1');
  } catch {
    throw new ConfigError('[upstream]', 0, key, 'not a valid URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new ConfigError('[upstream]', 0, key, `scheme ${u.protocol} is not supported; use http:// or https://`);
  }
  if (u.username || u.password) {
    throw new ConfigError('[upstream]', 0, key, 'credentials in the URL are not allowed; put them in cega_creds');
  }
  return u.origin;
}

/**
 * The Authorization header of basic or bearer credentials (null: none), and the strings no log
 * line or error text may carry. Also the local users' upgrade client's (localusers/upgrade.ts).
 */
export function credentialHeader(basic: { user: string; password: string } | null, bearer: string | null): { header: string | null; secrets: string[] } {
  if (basic) {
    const token = Buffer.from(`${basic.user}:${basic.password}`, 'utf8').toString('base64');
    return { header: `Basic ${token}`, secrets: [basic.password, token] };
  }
  if (bearer) return { header: `Bearer ${bearer}`, secrets: [bearer] };
  return { header: null, secrets: [] };
}

/** A PEM file a config key names, read now; unreadable is a ConfigError naming the key. */
export function readPem(path: string, key: string, section = '[upstream]'): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError(section, 0, key, `cannot read ${path}: ${(e as Error).message}`);
  }
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}
