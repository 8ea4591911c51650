// The primary's update endpoint (issue 16, [local] upgrade_listen): secondaries forward the
// password of a successful login here (upgrade.ts, upgrade = remote), and the primary re-hashes it
// under the asked context in its own store, which the next snapshot carries back to them.
//
// `POST /latchkey/v1/upgrade`, https only, `Authorization: Bearer <upgrade_listen_token>`, body
// `{"user": NAME, "password": PW, "context": ID}` (context optional). The password is checked
// against the stored hash (the same [pam] ceilings) and through the same Throttle as logins,
// keyed by the peer address, so a secondary's token is no password oracle: a wrong password is a
// failure that counts, and the answer says no more than 409.
//
// A token holder (a compromised secondary) must not be able to slow the primary's own logins nor
// weaken a hash: the check runs off the logins' hash slots, one request at a time; each peer has
// at most PEER_IN_FLIGHT requests open and each user one check per USER_INTERVAL_MS; a user
// already on the asked context is answered without any check; and only the default context, or
// one listed after it in [local] contexts (oldest first: a secondary may move ahead, never back),
// may be asked for. Disabled or expired users are refused unchecked.
//
// Replies: 200 {"upgraded": bool, "context": id} (the context the user is on now), 400 malformed,
// 401 no or wrong token, 403 disabled or expired user, 404 no such stored user (or another path),
// 405 another method, 409 wrong password, 413 body over 4 KiB, 429 throttled or too soon, 503 busy.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Config } from '../config/types.js';
import { log, logLimited } from '../log.js';
import type { Throttle } from '../verify/throttle.js';
import { verifyOffSlot } from '../verify/password.js';
import { Semaphore } from '../verify/semaphore.js';
import type { HashContext } from '../config/types.js';
import { contextProblem, newHash, UnhashablePassword } from './contexts.js';
import type { UpgradeStore } from './upgrade.js';

export const UPGRADE_PATH = '/latchkey/v1/upgrade';
export const MAX_BODY_BYTES = 4096;
/** A request's headers must arrive within this, and the whole request within REQUEST_TIMEOUT_MS. */
export const HEADERS_TIMEOUT_MS = 5000;
export const REQUEST_TIMEOUT_MS = 10_000;
/** Connections open at once (each secondary keeps at most its upgrade_max_concurrent). */
export const MAX_CONNECTIONS = 64;
/** Longest a request waits for the one background hash before it is answered 503. */
export const HASH_WAIT_MS = 5000;
/** Requests one peer address may have open at once (a secondary sends a few at most). */
export const PEER_IN_FLIGHT = 2;
/** TCP connections one peer address may hold, counted before TLS: a client without the token
 *  must not fill MAX_CONNECTIONS and shut the secondaries out. */
export const PEER_CONNECTIONS = 8;
/** One password check per user this often: a right password never counts as a failure. */
export const USER_INTERVAL_MS = 60_000;

/** A refusal with its HTTP status; the message goes to the client, so it never names a secret. */
class Reply extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

export class UpgradeEndpoint {
  private server: Server | null = null;
  /** one check (and re-hash) at a time, never on a login's hash slot */
  private readonly gate = new Semaphore(1);
  private readonly inFlight = new Map<string, number>();
  /** user → when its password was last checked here */
  private readonly lastCheck = new Map<string, number>();

  constructor(
    private readonly cfg: () => Config,
    private readonly store: UpgradeStore,
    private readonly throttle: Throttle,
    /** tests: another USER_INTERVAL_MS */
    private readonly userIntervalMs = USER_INTERVAL_MS,
  ) {}

  /** Listens on [local] upgrade_listen with upgrade_listen_cert/key. Throws with the cause
   *  (an unreadable file, an address in use) for the daemon to report. */
  async start(): Promise<void> {
    const l = this.cfg().local;
    if (l.upgradeListen === null || l.upgradeListenCert === null || l.upgradeListenKey === null) {
      throw new Error('[local] upgrade_listen needs upgrade_listen_cert and upgrade_listen_key');
    }
    const { host, port } = splitListen(l.upgradeListen);
    const server = createServer({
      cert: readFileSync(l.upgradeListenCert),
      key: readFileSync(l.upgradeListenKey),
      // Node's defaults (2 min handshake, 5 min request) would let a silent peer hold a
      // connection slot for minutes.
      handshakeTimeout: HEADERS_TIMEOUT_MS,
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: HEADERS_TIMEOUT_MS,
      maxHeaderSize: 8192,
    }, (req, res) => { void this.handle(req, res); });
    server.maxConnections = MAX_CONNECTIONS;
    const conns = new Map<string, number>();
    server.on('connection', (socket: Socket) => {
      const peer = socket.remoteAddress ?? '';
      const n = (conns.get(peer) ?? 0) + 1;
      if (n > PEER_CONNECTIONS) {
        logLimited(`upgrade_endpoint.peer_connections:${peer}`, 'warn', 'upgrade_endpoint.too_many_connections', { peer, limit: PEER_CONNECTIONS, detail: 'connection closed before TLS' });
        socket.destroy();
        return;
      }
      conns.set(peer, n);
      socket.once('close', () => {
        const left = (conns.get(peer) ?? 1) - 1;
        if (left <= 0) conns.delete(peer); else conns.set(peer, left);
      });
    });
    server.setTimeout(REQUEST_TIMEOUT_MS, (socket) => socket.destroy());
    server.on('tlsClientError', (e, socket) => {
      logLimited(`upgrade_endpoint.tls:${socket.remoteAddress ?? '?'}`, 'info', 'upgrade_endpoint.tls_error', { peer: socket.remoteAddress, error: e.message });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => { server.off('error', reject); resolve(); });
    });
    server.on('error', (e) => log('error', 'upgrade_endpoint.error', { error: e.message }));
    this.server = server;
  }

  address(): AddressInfo | null {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : null;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const peer = req.socket.remoteAddress ?? '';
    const open = this.inFlight.get(peer) ?? 0;
    this.inFlight.set(peer, open + 1);
    try {
      if (open >= PEER_IN_FLIGHT) throw new Reply(429, `at most ${PEER_IN_FLIGHT} requests at once per address`, { 'retry-after': '1' });
      const out = await this.answer(req, peer);
      send(res, 200, out);
    } catch (e) {
      if (e instanceof Reply) {
        // A request whose body was not read (refused before it) must not be read as the next one.
        send(res, e.status, { error: e.message }, e.headers, !req.complete);
        return;
      }
      log('error', 'upgrade_endpoint.failed', { peer, error: e instanceof Error ? e.message : String(e) });
      send(res, 503, { error: 'the upgrade failed; see the primary\'s log' }, {}, !req.complete);
    } finally {
      const n = (this.inFlight.get(peer) ?? 1) - 1;
      if (n <= 0) this.inFlight.delete(peer); else this.inFlight.set(peer, n);
    }
  }

  /** The context asked for if it is the default or listed after it (newer), else the default. */
  private target(c: Config, asked: string | null): HashContext | null {
    const list = c.local.contexts;
    const def = list.findIndex((x) => x.id === c.local.defaultContext);
    if (def < 0) return null;
    const i = asked === null ? -1 : list.findIndex((x) => x.id === asked);
    return i >= def ? list[i]! : list[def]!;
  }

  /** Seconds until this user's password may be checked again (0: now); one check per user per
   *  USER_INTERVAL_MS, counted from the check itself (checked(), once the gate is held). */
  private tooSoon(name: string): number {
    const last = this.lastCheck.get(name);
    const since = Date.now() - (last ?? 0);
    return last !== undefined && since < this.userIntervalMs ? Math.ceil((this.userIntervalMs - since) / 1000) : 0;
  }

  private checked(name: string): void {
    const now = Date.now();
    // The map holds at most the stored users (an unknown one is 404 before this).
    if (this.lastCheck.size > 10_000) for (const [k, at] of this.lastCheck) if (now - at >= this.userIntervalMs) this.lastCheck.delete(k);
    this.lastCheck.set(name, now);
  }

  private async answer(req: IncomingMessage, peer: string): Promise<{ upgraded: boolean; context: string }> {
    const url = (req.url ?? '').split('?')[0];
    if (url !== UPGRADE_PATH) throw new Reply(404, `not found; the endpoint is POST ${UPGRADE_PATH}`);
    if (req.method !== 'POST') throw new Reply(405, 'only POST', { allow: 'POST' });
    const c = this.cfg();
    if (!tokenMatches(req.headers.authorization, c.local.upgradeListenToken)) {
      logLimited(`upgrade_endpoint.unauthorized:${peer}`, 'warn', 'upgrade_endpoint.unauthorized', {
        peer, reason: req.headers.authorization ? 'wrong token' : 'no bearer token',
        hint: 'the secondary\'s upgrade_bearer_token must equal this primary\'s upgrade_listen_token',
      });
      throw new Reply(401, 'a valid bearer token is required', { 'www-authenticate': 'Bearer' });
    }
    const body = parseBody(await readBody(req));
    const user = this.store.get(body.user);
    if (user === null) throw new Reply(404, 'no such local user');
    if (user.disabled || (user.expiresAt !== null && Date.now() >= user.expiresAt)) throw new Reply(403, 'the user is disabled or expired here');
    const target = this.target(c, body.context);
    if (target === null) throw new Reply(503, 'no default context');
    // Nothing to do, and nothing to check: the answer does not depend on the password.
    if (user.context === target.id) return { upgraded: false, context: target.id };
    const wait = this.tooSoon(user.name);
    if (wait > 0) throw new Reply(429, 'this user\'s password was checked here moments ago; retry later', { 'retry-after': String(wait) });
    let release: () => void;
    try {
      release = await this.gate.acquire(AbortSignal.timeout(HASH_WAIT_MS));
    } catch {
      throw new Reply(503, 'busy; retry later');
    }
    try {
      // Marked once the gate is held: a request answered "busy" does not cost a retry its turn.
      const late = this.tooSoon(user.name);
      if (late > 0) throw new Reply(429, 'this user\'s password was checked here moments ago; retry later', { 'retry-after': String(late) });
      this.checked(user.name);
      return await this.checkAndUpgrade(c, user, body.password, target, peer);
    } finally {
      release();
    }
  }

  private async checkAndUpgrade(c: Config, user: NonNullable<ReturnType<UpgradeStore['get']>>, password: string, target: HashContext, peer: string): Promise<{ upgraded: boolean; context: string }> {

    const adm = await this.throttle.admit(user.name, peer);
    if (!adm.allowed) {
      const r = adm.refusal;
      if (r.report > 0) {
        log('warn', 'upgrade_endpoint.throttled', { user: user.name, peer, scope: r.scope, key: r.key, reason: r.reason, retry_after_s: r.retryAfterSec, refused: r.report });
      }
      throw new Reply(429, 'too many failures; retry later', { 'retry-after': String(r.retryAfterSec) });
    }
    const ticket = adm.ticket;
    try {
      const good = await verifyOffSlot(password, user.passwordHash, c.pam);
      if (!good) {
        for (const l of ticket.fail()) {
          log('warn', 'upgrade_endpoint.lockout', { scope: l.scope, key: l.key, failures: l.failures, limit: l.limit, retry_after_s: l.retryAfterSec, user: user.name, peer });
        }
        log('info', 'upgrade_endpoint.rejected', { user: user.name, peer, reason: 'wrong password' });
        throw new Reply(409, 'rejected');
      }
    } finally {
      ticket.release();
    }

    const problem = contextProblem(target, c.pam);
    if (problem !== null) {
      logLimited(`upgrade_endpoint.context:${target.id}`, 'error', 'upgrade_endpoint.context_refused', { context: target.id, param: problem.param, value: problem.value, ceiling: problem.ceiling });
      throw new Reply(503, `context ${target.id} is above this primary's [pam] ceilings`);
    }
    let hash: string;
    try {
      hash = await newHash(password, target, AbortSignal.timeout(HASH_WAIT_MS));
    } catch (e) {
      if (e instanceof UnhashablePassword) throw new Reply(400, 'the password cannot be hashed');
      if (e instanceof Error && e.name === 'TimeoutError') throw new Reply(503, 'busy; retry later');
      throw e;
    }
    // Compare-and-swap on the hash just verified: a password changed meanwhile wins.
    const upgraded = user.passwordHash !== null && this.store.setHashIf(user.name, user.passwordHash, hash, target.id);
    const now = upgraded ? target.id : (this.store.get(user.name)?.context ?? user.context ?? target.id);
    log('info', 'upgrade_endpoint.upgrade', { user: user.name, peer, from: user.context, to: target.id, upgraded });
    return { upgraded, context: now };
  }
}

/** The bearer token against the configured one, in time independent of where they differ and of
 *  their lengths (both are hashed first). */
function tokenMatches(header: string | undefined, token: string | null): boolean {
  if (token === null || header === undefined) return false;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  if (!m) return false;
  const a = createHash('sha256').update(m[1]!, 'utf8').digest();
  const b = createHash('sha256').update(token, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/**
 * The body, at most MAX_BODY_BYTES. Events rather than for-await: leaving a for-await destroys the
 * request, which resets the socket before the 413 is written.
 */
function readBody(req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) return Promise.reject(new Reply(413, `the body is over ${MAX_BODY_BYTES} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const done = (): void => {
      req.off('data', onData); req.off('end', onEnd); req.off('error', onError); req.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      n += chunk.length;
      if (n > MAX_BODY_BYTES) {
        done();
        req.pause();
        reject(new Reply(413, `the body is over ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => { done(); resolve(Buffer.concat(chunks)); };
    const onError = (e: Error): void => { done(); reject(e); };
    const onClose = (): void => { done(); reject(new Error('the client went away before the body ended')); };
    req.on('data', onData); req.on('end', onEnd); req.on('error', onError); req.on('close', onClose);
  });
}

function parseBody(bytes: Buffer): { user: string; password: string; context: string | null } {
  let v: unknown;
  try { v = JSON.parse(bytes.toString('utf8')); } catch { throw new Reply(400, 'the body is not JSON'); }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Reply(400, 'the body is not a JSON object');
  const o = v as Record<string, unknown>;
  const extra = Object.keys(o).filter((k) => k !== 'user' && k !== 'password' && k !== 'context');
  if (extra.length > 0) throw new Reply(400, `unknown field ${JSON.stringify(extra[0]).slice(0, 40)}; expected user, password, context`);
  if (typeof o.user !== 'string' || o.user === '') throw new Reply(400, 'user must be a non-empty string');
  if (typeof o.password !== 'string' || o.password === '') throw new Reply(400, 'password must be a non-empty string');
  if (o.context !== undefined && o.context !== null && typeof o.context !== 'string') throw new Reply(400, 'context must be a string');
  return { user: o.user, password: o.password, context: typeof o.context === 'string' ? o.context : null };
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}, close = false): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store',
    ...(close ? { connection: 'close' } : {}), ...headers,
  });
  res.end(text);
}

/** `host:port`, `[v6]:port` (config/keys.ts parseListen checked the form). */
function splitListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(listen.slice(i + 1)) };
}
