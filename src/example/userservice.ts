// The bundled example user service: speaks the CentralEGA user API so that `make demo`, the
// tests and the benchmark have an upstream to talk to, and can be told to misbehave on purpose.
//
// Reply shape (format 'v1', the default) is the one of CentralEGA's LocalEGA user API as mocked
// in EGA-archive/LocalEGA (deploy/bootstrap/cega-users/server.py):
//   {"header":{…},"response":{"numTotalResults":1,"resultType":"…LocalEgaUser","result":[USER]}}
// so the matching json_prefix is `response.result`. Format 'flat' returns USER itself (the
// newer v2 mock), json_prefix ''. Unknown users get 404, as DESIGN.md requires of upstream.

import { readFileSync, realpathSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

export interface CegaUser {
  username: string;
  uid: number;
  passwordHash?: string | null;
  sshPublicKeys?: string[] | null;
  gecos?: string | null;
  [extra: string]: unknown;
}

/** '429' and '503' answer with a `Retry-After` of `retryAfterS` seconds (an overloaded service
 *  asking to be left alone); '5xx' is a plain 503 without one. */
export type Fault = null | '5xx' | '429' | '503' | 'garbage' | 'huge' | 'hang' | 'wrongtype' | 'wrongname' | 'close';
export const FAULTS: readonly Exclude<Fault, null>[] = ['5xx', '429', '503', 'garbage', 'huge', 'hang', 'wrongtype', 'wrongname', 'close'];

/** A token bucket over every user lookup and health request: `perSec` tokens a second, at most
 *  `burst` (default: one second's worth) saved up; a request finding the bucket empty is
 *  answered 429 with `Retry-After` (whole seconds until a token is back, at least 1). */
export interface RateLimit { perSec: number; burst?: number }

export interface UserServiceOptions {
  host?: string;
  port?: number;
  users: CegaUser[];
  basicAuth?: { user: string; password: string };
  format?: 'v1' | 'flat';
  delayMs?: number;
  /** serve https with this certificate; `ca` + requireClientCert asks for a client certificate */
  tls?: { cert: string | Buffer; key: string | Buffer; ca?: string | Buffer; requireClientCert?: boolean };
  /** called once per finished request (the CLI logs it as a JSON line) */
  onRequest?: (rec: { method: string; path: string; status: number; ms: number }) => void;
  rateLimit?: RateLimit | null;
  /** the Retry-After of the '429' and '503' faults, seconds (default 30) */
  retryAfterS?: number;
}

/** What one client address (a host of the fleet) asked and got. Times are epoch ms. */
export interface HostStats {
  requests: number;
  /** replies by HTTP status ("200", "404", "429", ...) */
  byStatus: Record<string, number>;
  firstAt: number;
  lastAt: number;
  /** the first and the last 200 or 404: when this host got an answer it can cache (a fleet's
   *  time to recover after an outage is the latest firstAnswerAt after a restart) */
  firstAnswerAt: number | null;
  lastAnswerAt: number | null;
}

export interface UserServiceStats {
  /** user lookups (control and stats requests are not counted) */
  requests: number;
  byPath: Record<string, number>;
  /** TCP connections accepted since start/reset: 1 for many keep-alive requests */
  connections: number;
  inFlight: number;
  maxInFlight: number;
  /** user lookups by the user asked for: a name as asked, a uid as the name it belongs to
   *  (or `uid:N` when no user has it), so by-name and by-uid requests for one user add up */
  byUser: Record<string, number>;
  /** by client address */
  byHost: Record<string, HostStats>;
  /** replies by HTTP status, all clients */
  byStatus: Record<string, number>;
  /** 429s the rate limit answered (a '429' fault's are not counted here) */
  rateLimited: number;
  /** epoch ms of the start or the last reset */
  since: number;
  /** with GET /_stats?answers=1 only: by client address, by user, the epoch ms of the last 200
   *  for that user (what that client can have cached since) */
  answers?: Record<string, Record<string, number>>;
  /** epoch ms when GET /_stats took this copy (the service's clock: rates from it are not
   *  skewed by how long the answer took to reach the reader) */
  at?: number;
}

export interface UserService {
  url: string;
  port: number;
  setFault(f: Fault): void;
  setDelay(ms: number): void;
  /** null turns the rate limit off */
  setRateLimit(r: RateLimit | null): void;
  setUsers(u: CegaUser[]): void;
  addUser(u: CegaUser): void;
  removeUser(name: string): void;
  stats(): UserServiceStats;
  resetStats(): void;
  close(): Promise<void>;
}

const V1_HEADER = {
  apiVersion: 'v1', code: '200', service: 'users', developerMessage: '', userMessage: 'OK',
  errorCode: '1', docLink: 'https://ega-archive.org', errorStack: '',
};
const RESULT_TYPE = 'eu.crg.ega.microservice.dto.lega.v1.users.LocalEgaUser';
const HUGE_BYTES = 8 * 1024 * 1024;
const MAX_CONTROL_BODY = 256 * 1024 * 1024;

export async function startUserService(opts: UserServiceOptions): Promise<UserService> {
  const byName = new Map<string, CegaUser>();
  const byUid = new Map<number, CegaUser>();
  let fault: Fault = null;
  let delayMs = 0;
  const format = opts.format ?? 'v1';
  const retryAfterS = opts.retryAfterS ?? 30;
  const emptyStats = (): Omit<UserServiceStats, 'connections' | 'inFlight' | 'maxInFlight'> =>
    ({ requests: 0, byPath: {}, byUser: {}, byHost: {}, byStatus: {}, rateLimited: 0, since: Date.now() });
  const stats: UserServiceStats = { ...emptyStats(), connections: 0, inFlight: 0, maxInFlight: 0 };
  /** client address → user → last 200 (epoch ms): kept outside `stats`, it is large */
  const answered = new Map<string, Map<string, number>>();
  let bucket: { perSec: number; burst: number; tokens: number; at: number } | null = null;

  const addUser = (u: CegaUser): void => {
    const old = byName.get(String(u.username));
    if (old) removeUser(old.username);
    byName.set(String(u.username), u);
    if (Number.isInteger(u.uid)) byUid.set(u.uid, u);
  };
  const removeUser = (name: string): void => {
    const u = byName.get(name);
    if (!u) return;
    byName.delete(name);
    if (byUid.get(u.uid) === u) byUid.delete(u.uid);
  };
  const setUsers = (list: CegaUser[]): void => {
    if (!Array.isArray(list)) throw new TypeError('users must be a list of CentralEGA user objects');
    byName.clear();
    byUid.clear();
    for (const u of list) addUser(u);
  };
  const setFault = (f: Fault): void => {
    if (f !== null && !FAULTS.includes(f)) throw new TypeError(`unknown fault ${JSON.stringify(f)}; one of null, ${FAULTS.join(', ')}`);
    fault = f;
  };
  const setDelay = (ms: number): void => {
    if (!Number.isFinite(ms) || ms < 0) throw new TypeError(`delayMs must be a number >= 0, got ${ms}`);
    delayMs = ms;
  };
  const setRateLimit = (r: RateLimit | null): void => {
    if (r === null) { bucket = null; return; }
    const burst = r.burst ?? Math.max(1, r.perSec);
    if (!(Number.isFinite(r.perSec) && r.perSec > 0) || !(Number.isFinite(burst) && burst >= 1)) {
      throw new TypeError(`rate limit must be > 0 per second with a burst >= 1, got ${JSON.stringify(r)}`);
    }
    bucket = { perSec: r.perSec, burst, tokens: burst, at: Date.now() };
  };
  /** null when a token was taken, else the whole seconds until one is back */
  const takeToken = (): number | null => {
    if (!bucket) return null;
    const now = Date.now();
    bucket.tokens = Math.min(bucket.burst, bucket.tokens + ((now - bucket.at) / 1000) * bucket.perSec);
    bucket.at = now;
    if (bucket.tokens >= 1) { bucket.tokens -= 1; return null; }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / bucket.perSec));
  };
  setUsers(opts.users);
  setDelay(opts.delayMs ?? 0);
  setRateLimit(opts.rateLimit ?? null);

  const authorized = (req: http.IncomingMessage): boolean => {
    if (!opts.basicAuth) return true;
    const m = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const got = Buffer.from(Buffer.from(m[1]!, 'base64').toString('utf8'));
    const want = Buffer.from(`${opts.basicAuth.user}:${opts.basicAuth.password}`);
    return got.length === want.length && timingSafeEqual(got, want);
  };

  const lookup = (path: string, query: URLSearchParams): { found: CegaUser | undefined } | null => {
    let m = /^\/username\/([^/]+)$/.exec(path);
    if (m) return { found: byName.get(safeDecode(m[1]!)) };
    m = /^\/user-id\/([^/]+)$/.exec(path);
    if (m) return { found: /^\d+$/.test(m[1]!) ? byUid.get(Number(m[1])) : undefined };
    // LocalEGA-style `/users/<id>?idType=username|uid`
    m = /^\/users\/([^/]+)$/.exec(path);
    if (m && query.get('idType') === 'username') return { found: byName.get(safeDecode(m[1]!)) };
    if (m && query.get('idType') === 'uid') return { found: /^\d+$/.test(m[1]!) ? byUid.get(Number(m[1])) : undefined };
    return null;
  };

  const wrap = (u: unknown): unknown => format === 'flat'
    ? u
    : { header: V1_HEADER, response: { numTotalResults: 1, resultType: RESULT_TYPE, result: [u] } };

  const serveUser = async (req: http.IncomingMessage, res: http.ServerResponse, path: string, query: URLSearchParams): Promise<void> => {
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    if (res.destroyed) return;
    if (!authorized(req)) {
      return sendJson(res, 401, { error: 'Protected access' }, { 'www-authenticate': 'Basic realm="cega"' });
    }
    // /health: what latchkey's [upstream] health_url points at in tests; the same credentials and
    // faults as a lookup, so a failing service fails its health check too.
    const hit = path === '/health' ? { found: undefined } : lookup(path, query);
    if (hit === null) return sendJson(res, 400, { error: 'unknown path; use /username/<name>, /user-id/<uid> or /health' });
    if (path !== '/health') countUser(path, hit.found);
    const wait = takeToken();
    if (wait !== null) {
      stats.rateLimited++;
      return sendJson(res, 429, { error: 'rate limit exceeded' }, { 'retry-after': String(wait) });
    }
    switch (fault) {
      case '5xx': return sendJson(res, 503, { error: 'injected fault: service unavailable' });
      case '429': return sendJson(res, 429, { error: 'injected fault: too many requests' }, { 'retry-after': String(retryAfterS) });
      case '503': return sendJson(res, 503, { error: 'injected fault: overloaded' }, { 'retry-after': String(retryAfterS) });
      case 'garbage': return sendRaw(res, 200, '{"header": {"apiVersion": "v1"}, "response": [tru');
      case 'huge': return sendHuge(res);
      case 'hang': return; // never answers; close() tears the socket down
      case 'close': req.socket.destroy(); return;
      default: break;
    }
    if (path === '/health') return sendJson(res, 200, { status: 'ok', users: byName.size });
    const user = hit.found;
    if (!user) return sendJson(res, 404, { error: 'User not found' });
    const client = (req.socket.remoteAddress ?? '?').replace(/^::ffff:/, '');
    let mine = answered.get(client);
    if (!mine) { mine = new Map(); answered.set(client, mine); }
    mine.set(String(user.username), Date.now());
    if (fault === 'wrongtype') return sendJson(res, 200, wrap({ ...user, uid: String(user.uid) }));
    if (fault === 'wrongname') return sendJson(res, 200, wrap(otherUser(user)));
    return sendJson(res, 200, wrap(user));
  };

  const countUser = (path: string, found: CegaUser | undefined): void => {
    const asked = safeDecode(path.slice(path.lastIndexOf('/') + 1));
    const key = found ? String(found.username) : path.startsWith('/user-id/') ? `uid:${asked}` : asked;
    stats.byUser[key] = (stats.byUser[key] ?? 0) + 1;
  };

  const otherUser = (u: CegaUser): CegaUser => {
    for (const v of byName.values()) if (v.username !== u.username) return v;
    return { ...u, username: `${u.username}x`, uid: u.uid + 1 };
  };

  const control = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    let body: Record<string, unknown>;
    try {
      body = JSON.parse((await readBody(req, MAX_CONTROL_BODY)).toString('utf8')) as Record<string, unknown>;
      if (typeof body !== 'object' || body === null) throw new TypeError('control body must be a JSON object');
      if ('delayMs' in body) setDelay(Number(body.delayMs));
      if ('rateLimit' in body) setRateLimit(body.rateLimit === null ? null : body.rateLimit as RateLimit);
      if ('fault' in body) setFault(body.fault as Fault);
      if ('users' in body) setUsers(body.users as CegaUser[]);
      if ('addUser' in body) addUser(body.addUser as CegaUser);
      if ('removeUser' in body) removeUser(String(body.removeUser));
      if (body.resetStats === true) resetStats();
    } catch (e) {
      return sendJson(res, 400, { error: (e as Error).message });
    }
    sendJson(res, 200, { fault, delayMs, users: byName.size, rateLimit: bucket && { perSec: bucket.perSec, burst: bucket.burst } });
  };

  const resetStats = (): void => {
    Object.assign(stats, { ...emptyStats(), connections: 0, maxInFlight: stats.inFlight });
    answered.clear();
  };

  const hostStats = (addr: string, now: number): HostStats => {
    const a = addr.replace(/^::ffff:/, '');
    let h = stats.byHost[a];
    if (!h) { h = { requests: 0, byStatus: {}, firstAt: now, lastAt: now, firstAnswerAt: null, lastAnswerAt: null }; stats.byHost[a] = h; }
    return h;
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const started = Date.now();
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    res.on('close', () => opts.onRequest?.({ method: req.method ?? '', path, status: res.statusCode, ms: Date.now() - started }));
    if (path === '/_control' || path === '/_stats') {
      // Test knobs must not be reachable from the network, even in a demo.
      if (!isLoopback(req.socket)) return sendJson(res, 403, { error: 'control endpoints are loopback-only' });
      if (path === '/_stats' && req.method === 'GET') {
        // ?reset=1 hands out the counters and starts new ones in one step, so no request falls
        // between a read and a reset
        const snap: UserServiceStats = { ...structuredClone(stats), at: Date.now() };
        if (url.searchParams.get('answers') === '1') {
          snap.answers = Object.fromEntries([...answered].map(([ip, m]) => [ip, Object.fromEntries(m)]));
        }
        if (url.searchParams.get('reset') === '1') resetStats();
        return sendJson(res, 200, snap);
      }
      if (path === '/_control' && req.method === 'POST') { void control(req, res); return; }
      return sendJson(res, 405, { error: 'GET /_stats or POST /_control' });
    }
    if (req.method !== 'GET') return sendJson(res, 405, { error: 'only GET' });
    stats.requests++;
    stats.byPath[path] = (stats.byPath[path] ?? 0) + 1;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    const host = hostStats(req.socket.remoteAddress ?? '?', started);
    host.requests++;
    res.on('close', () => {
      stats.inFlight--;
      // a request whose client went away before the answer counts as status 0
      const code = String(res.headersSent ? res.statusCode : 0);
      stats.byStatus[code] = (stats.byStatus[code] ?? 0) + 1;
      host.byStatus[code] = (host.byStatus[code] ?? 0) + 1;
      const now = Date.now();
      host.lastAt = now;
      if (code === '200' || code === '404') { host.firstAnswerAt ??= now; host.lastAnswerAt = now; }
    });
    serveUser(req, res, path, url.searchParams).catch(() => req.socket.destroy());
  };

  const server = opts.tls
    ? https.createServer({
      cert: opts.tls.cert, key: opts.tls.key, ca: opts.tls.ca,
      requestCert: opts.tls.requireClientCert ?? false, rejectUnauthorized: opts.tls.requireClientCert ?? false,
    }, handler)
    : http.createServer(handler);
  server.keepAliveTimeout = 60_000;
  server.on('connection', () => { stats.connections++; });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => { server.off('error', reject); resolve(); });
  });
  const addr = server.address() as AddressInfo;
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;

  return {
    url: `${opts.tls ? 'https' : 'http'}://${hostForUrl}:${addr.port}`,
    port: addr.port,
    setFault, setDelay, setRateLimit, setUsers, addUser, removeUser, resetStats,
    stats: () => structuredClone(stats),
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections(); // includes the ones a 'hang' fault is holding open
    }),
  };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendRaw(res, status, JSON.stringify(body), headers);
}

function sendRaw(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** A valid-looking JSON body of HUGE_BYTES, chunked without Content-Length so only a streaming cap stops it. */
async function sendHuge(res: http.ServerResponse): Promise<void> {
  res.writeHead(200, { 'content-type': 'application/json' });
  const chunk = Buffer.alloc(64 * 1024, 'A');
  res.write('{"response":{"result":[{"username":"huge","uid":1,"gecos":"');
  for (let sent = 0; sent < HUGE_BYTES && !res.destroyed; sent += chunk.length) {
    if (!res.write(chunk)) await new Promise((r) => { res.once('drain', r); res.once('close', r); });
  }
  if (!res.destroyed) res.end('"}]}}');
}

function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > max) { reject(new RangeError(`body larger than ${max} bytes`)); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function isLoopback(sock: Socket): boolean {
  const a = sock.remoteAddress ?? '';
  return a.startsWith('127.') || a === '::1' || a.startsWith('::ffff:127.');
}

function safeDecode(s: string): string {
  try { return decodeURIComponent(s); } catch { return s; }
}

/** Read a users file: a JSON list of CentralEGA user objects. */
export function loadUsersFile(path: string): CegaUser[] {
  const data: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (!Array.isArray(data)) throw new TypeError(`${path}: expected a JSON list of user objects`);
  return data as CegaUser[];
}

const USAGE = `usage: userservice --listen HOST:PORT --users FILE [options]
The example CentralEGA user service: GET /username/NAME, /user-id/UID, /health.
  --listen HOST:PORT     where to listen (default 127.0.0.1:0, a free port; printed as "listening URL")
  --users FILE           a JSON list of user objects (username, uid, passwordHash, sshPublicKeys,
                         gecos); SIGHUP re-reads it
  --auth USER:PASSWORD   require HTTP basic authentication
  --delay-ms N           answer every lookup N ms late
  --format v1|flat       v1: LocalEGA's envelope (json_prefix response.result); flat: the user itself
  --tls-cert F --tls-key F   serve https
  --rate-limit N[/s]     at most N lookups a second (a token bucket over all clients); the rest
                         get 429 with Retry-After (whole seconds until a token is back)
  --rate-burst N         tokens the bucket saves up (default: one second's worth)
  --retry-after S        the Retry-After of the 429 and 503 faults (default 30)
  --quiet                no JSON line per request on stderr
  --help                 this text
Loopback clients only: GET /_stats (counters: by path, by user, by client address, by status,
rate-limited; ?answers=1 adds each client's last 200 per user; ?reset=1 starts new ones) and POST /_control with a JSON object of
{"fault": null|"5xx"|"429"|"503"|"garbage"|"huge"|"hang"|"wrongtype"|"wrongname"|"close",
 "delayMs": N, "rateLimit": {"perSec": N, "burst": N}|null, "users": [...], "addUser": {...},
 "removeUser": NAME, "resetStats": true}.`;

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string', default: '127.0.0.1:0' },
      users: { type: 'string' },
      auth: { type: 'string' },
      'delay-ms': { type: 'string' },
      format: { type: 'string', default: 'v1' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'rate-limit': { type: 'string' },
      'rate-burst': { type: 'string' },
      'retry-after': { type: 'string' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) { process.stdout.write(`${USAGE}\n`); return; }
  const usage = USAGE.split('\n')[0];
  if (!values.users) throw new Error(`--users is required\n${usage}`);
  const m = /^(.*):(\d+)$/.exec(values.listen!);
  if (!m) throw new Error(`--listen must be HOST:PORT, got ${values.listen}\n${usage}`);
  const [user, ...rest] = (values.auth ?? '').split(':');
  if (values.auth !== undefined && (!user || rest.length === 0)) throw new Error('--auth must be user:password');
  if (values.format !== 'v1' && values.format !== 'flat') throw new Error('--format must be v1 or flat');
  if (!!values['tls-cert'] !== !!values['tls-key']) throw new Error('--tls-cert and --tls-key go together');
  let rateLimit: RateLimit | null = null;
  if (values['rate-limit'] !== undefined) {
    const r = /^(\d+(?:\.\d+)?)(?:\/s)?$/.exec(values['rate-limit']);
    if (!r || !(Number(r[1]) > 0)) throw new Error(`--rate-limit must be N or N/s with N > 0, got ${values['rate-limit']}`);
    rateLimit = { perSec: Number(r[1]) };
    if (values['rate-burst'] !== undefined) {
      if (!/^\d+$/.test(values['rate-burst']) || Number(values['rate-burst']) < 1) throw new Error('--rate-burst must be a whole number >= 1');
      rateLimit.burst = Number(values['rate-burst']);
    }
  } else if (values['rate-burst'] !== undefined) {
    throw new Error('--rate-burst goes with --rate-limit');
  }
  if (values['retry-after'] !== undefined && !/^\d+$/.test(values['retry-after'])) throw new Error('--retry-after must be whole seconds');

  const usersFile = values.users;
  const svc = await startUserService({
    host: m[1]!.replace(/^\[(.*)\]$/, '$1'),
    port: Number(m[2]),
    users: loadUsersFile(usersFile),
    basicAuth: values.auth !== undefined ? { user: user!, password: rest.join(':') } : undefined,
    format: values.format,
    delayMs: values['delay-ms'] !== undefined ? Number(values['delay-ms']) : 0,
    rateLimit,
    retryAfterS: values['retry-after'] !== undefined ? Number(values['retry-after']) : undefined,
    tls: values['tls-cert'] ? { cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']!) } : undefined,
    onRequest: values.quiet ? undefined : (rec) => process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), ...rec }) + '\n'),
  });
  process.stdout.write(`listening ${svc.url}\n`);

  // SIGHUP re-reads the users file, like a daemon reloading its data.
  process.on('SIGHUP', () => {
    try {
      svc.setUsers(loadUsersFile(usersFile));
      process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), event: 'reloaded', file: usersFile }) + '\n');
    } catch (e) {
      process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), event: 'reload_failed', error: (e as Error).message }) + '\n');
    }
  });
  const stop = (): void => { void svc.close().then(() => process.exit(0)); };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

const invokedDirectly = ((): boolean => {
  try {
    return !!process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
})();

if (invokedDirectly) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`userservice: ${(e as Error).message}\n`);
    process.exit(2);
  });
}
