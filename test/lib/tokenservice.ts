// A token endpoint in front of the example user service, for token mode ([upstream] token_url):
//   POST /token  {"grant_type":"password","username","password"} | {"grant_type":"api_key","api_key"}
//                | {"grant_type":"refresh_token","refresh_token"}  →  {"access_token", "token_type":
//                "Bearer", "expires_in"?, "refresh_token"}; a refused grant is 400 invalid_grant
//                (refresh) or 401 (credentials), as RFC 6749 §5.2 services do.
//   GET /username/…, /user-id/…  only with `Authorization: Bearer <a live token>`, else 401;
//                passed on to an example user service (src/example/userservice.ts) on loopback.
// Tokens are JWT-shaped (unsigned for our purposes) with an `exp`, so the daemon's JWT path can
// be exercised by leaving expires_in out. Refresh tokens rotate: each is good once. Everything
// it ever issued is kept (issued()) so a test can look for any of it in logs and status.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { startUserService, type CegaUser, type UserService } from '../../src/example/userservice.js';

export interface TokenServiceOptions {
  users: CegaUser[];
  logins?: Array<{ username: string; password: string }>;
  apiKeys?: string[];
  tokenTtlSec: number;
  /** how a token's lifetime is told: expires_in in the reply (default), only its JWT exp, or not at all */
  expiry?: 'expires_in' | 'jwt' | 'none';
}

export interface TokenServiceStats {
  /** POST /token requests of any outcome, including those answered 503 or dropped */
  tokenRequests: number;
  logins: number;
  refreshes: number;
  refusedLogins: number;
  refusedRefreshes: number;
  /** user lookups that reached the user service with a live token */
  userRequests: number;
  /** user lookups answered 401 (no, unknown, expired or revoked token) */
  unauthorized: number;
}

export interface TokenService {
  url: string;
  tokenUrl: string;
  inner: UserService;
  stats(): TokenServiceStats;
  /** every access and refresh token ever issued */
  issued(): string[];
  allowLogin(username: string, password: string): void;
  allowApiKey(key: string): void;
  /** the login (a username) or api key is refused from now on, and every token issued to it dies */
  revokeCredential(usernameOrKey: string): void;
  /** every access token issued so far stops working (refresh tokens still do) */
  revokeAccessTokens(): void;
  /** every refresh token issued so far is refused */
  revokeRefreshTokens(): void;
  /** 'down': POST /token answers 503; 'closed': the connection is dropped; user lookups go on */
  setTokenEndpoint(state: 'up' | 'down' | 'closed'): void;
  setTtl(sec: number): void;
  /** on: the user endpoints answer 401 to every token, even one just issued (a token_url of another service) */
  refuseAllTokens(on: boolean): void;
  close(): Promise<void>;
}

interface Issued { subject: string; expiresAt: number; revoked: boolean }

export async function startTokenService(opts: TokenServiceOptions): Promise<TokenService> {
  const inner = await startUserService({ host: '127.0.0.1', port: 0, users: opts.users });
  const logins = new Map((opts.logins ?? []).map((l) => [l.username, l.password]));
  const apiKeys = new Set(opts.apiKeys ?? []);
  const access = new Map<string, Issued>();
  const refresh = new Map<string, Issued>();
  const everything: string[] = [];
  const stats: TokenServiceStats = { tokenRequests: 0, logins: 0, refreshes: 0, refusedLogins: 0, refusedRefreshes: 0, userRequests: 0, unauthorized: 0 };
  let ttlSec = opts.tokenTtlSec;
  let refuseAll = false;
  let endpoint: 'up' | 'down' | 'closed' = 'up';

  const issue = (subject: string): Record<string, unknown> => {
    const exp = Math.floor(Date.now() / 1000) + ttlSec;
    const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
    const tok = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: subject, exp, jti: randomBytes(8).toString('hex') })}.${randomBytes(24).toString('base64url')}`;
    const ref = randomBytes(24).toString('base64url');
    access.set(tok, { subject, expiresAt: exp * 1000, revoked: false });
    refresh.set(ref, { subject, expiresAt: Infinity, revoked: false });
    everything.push(tok, ref);
    const reply: Record<string, unknown> = { access_token: tok, token_type: 'Bearer', refresh_token: ref };
    if ((opts.expiry ?? 'expires_in') === 'expires_in') reply.expires_in = ttlSec;
    // 'none': an opaque token, so neither expires_in nor a JWT exp tells the lifetime.
    if (opts.expiry === 'none') {
      const opaque = randomBytes(24).toString('base64url');
      access.set(opaque, access.get(tok)!);
      access.delete(tok);
      everything.push(opaque);
      reply.access_token = opaque;
    }
    return reply;
  };

  const tokenEndpoint = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    stats.tokenRequests++;
    if (endpoint === 'closed') { req.socket.destroy(); return; }
    if (endpoint === 'down') return send(res, 503, { error: 'temporarily_unavailable' });
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(await readBody(req)) as Record<string, unknown>;
    } catch {
      return send(res, 400, { error: 'invalid_request' });
    }
    if (body.grant_type === 'password' && typeof body.username === 'string' && logins.get(body.username) === body.password) {
      stats.logins++;
      return send(res, 200, issue(body.username));
    }
    if (body.grant_type === 'api_key' && typeof body.api_key === 'string' && apiKeys.has(body.api_key)) {
      stats.logins++;
      return send(res, 200, issue(keySubject(body.api_key)));
    }
    if (body.grant_type === 'refresh_token' && typeof body.refresh_token === 'string') {
      const r = refresh.get(body.refresh_token);
      if (!r || r.revoked) { stats.refusedRefreshes++; return send(res, 400, { error: 'invalid_grant' }); }
      r.revoked = true; // rotation: each refresh token is good once
      stats.refreshes++;
      return send(res, 200, issue(r.subject));
    }
    stats.refusedLogins++;
    return send(res, 401, { error: 'invalid_client' });
  };

  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/token' && req.method === 'POST') { void tokenEndpoint(req, res); return; }
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    const t = m ? access.get(m[1]!) : undefined;
    if (refuseAll || !t || t.revoked || Date.now() >= t.expiresAt) {
      stats.unauthorized++;
      return send(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
    }
    stats.userRequests++;
    const up = http.get(`${inner.url}${req.url ?? '/'}`, (ur) => {
      res.writeHead(ur.statusCode ?? 502, { 'content-type': 'application/json', ...(ur.headers['content-length'] ? { 'content-length': ur.headers['content-length'] } : {}) });
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url, tokenUrl: `${url}/token`, inner,
    stats: () => ({ ...stats }),
    issued: () => [...everything],
    allowLogin: (u, p) => { logins.set(u, p); },
    allowApiKey: (k) => { apiKeys.add(k); },
    revokeCredential(cred) {
      const subject = apiKeys.has(cred) ? keySubject(cred) : cred;
      logins.delete(cred);
      apiKeys.delete(cred);
      for (const m of [access, refresh]) for (const t of m.values()) if (t.subject === subject) t.revoked = true;
    },
    revokeAccessTokens() { for (const t of access.values()) t.revoked = true; },
    revokeRefreshTokens() { for (const t of refresh.values()) t.revoked = true; },
    setTokenEndpoint(s) { endpoint = s; },
    setTtl(sec) { ttlSec = sec; },
    refuseAllTokens(on) { refuseAll = on; },
    async close() {
      await new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); });
      await inner.close();
    },
  };
}

/** Who an api key's tokens belong to, without carrying the key inside them. */
function keySubject(key: string): string {
  return `key:${createHash('sha256').update(key).digest('hex').slice(0, 12)}`;
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => { s += c; if (s.length > 64 * 1024) { req.destroy(); reject(new Error('body too large')); } });
    req.on('end', () => resolve(s));
    req.on('error', reject);
  });
}
