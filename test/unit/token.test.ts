// Token mode (src/upstream/token.ts): the reply rules and schedule (pure), and the REST client
// in token mode against a real token endpoint (test/lib/tokenservice.ts) issuing short-lived tokens.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { UpstreamConfig, UsersConfig } from '../../src/config/types.js';
import { UpstreamError } from '../../src/errors.js';
import { setLogLevel, setLogSink } from '../../src/log.js';
import { RestUserSource } from '../../src/upstream/client.js';
import {
  BACKOFF_MAX_MS, DEFAULT_LIFETIME_MS, MAX_TOKEN_CHARS, backoffMs, jwtExpiry, parseTokenReply, refreshDelayMs,
} from '../../src/upstream/token.js';
import type { CegaUser } from '../../src/example/userservice.js';
import { startTokenService, type TokenService } from '../lib/tokenservice.js';
import { authPairs } from '../../src/cli/cmd-status.js';
import { ROOT } from '../lib/paths.js';

const USERS: UsersConfig = {
  uidShift: 10000, gid: 10000, groupName: 'lega', minUid: 10001, maxUid: 60000,
  nameRegex: /^[a-z_][a-z0-9_.-]{0,31}$/, shell: '/bin/bash',
  denyNames: ['root'], localPasswdFile: '/etc/passwd', localGroupFile: '/etc/group',
};
const LOGIN = { user: 'sync-bot', password: 'Tok3n-Login-Secret' };
const API_KEY = 'ak_live_9f8e7d6c5b4a';
const demoUsers = JSON.parse(readFileSync(join(ROOT, 'etc/example-users.json'), 'utf8')) as CegaUser[];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const logLines: string[] = [];
setLogSink((l) => logLines.push(l));
setLogLevel('debug');

const jwt = (claims: object): string =>
  `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.c2ln`;
const reply = (o: object): Buffer => Buffer.from(JSON.stringify(o));
const authError = (re?: RegExp) => (e: unknown): boolean => e instanceof UpstreamError && e.kind === 'auth' && (!re || re.test(e.message));

describe('parseTokenReply', () => {
  const now = 1_700_000_000_000;
  test('expires_in wins; then the JWT exp; then the conservative default', () => {
    const t = jwt({ exp: now / 1000 + 600 });
    assert.deepEqual(parseTokenReply(reply({ access_token: t, expires_in: 60, refresh_token: 'r1', token_type: 'Bearer' }), now),
      { access: t, refresh: 'r1', issuedAt: now, expiresAt: now + 60_000, expiryFrom: 'expires_in' });
    assert.equal(parseTokenReply(reply({ access_token: t }), now).expiresAt, now + 600_000);
    assert.equal(parseTokenReply(reply({ access_token: t }), now).expiryFrom, 'jwt');
    const opaque = parseTokenReply(reply({ access_token: 'opaque-token' }), now);
    assert.deepEqual([opaque.expiresAt, opaque.expiryFrom, opaque.refresh], [now + DEFAULT_LIFETIME_MS, 'default', null]);
    // A JWT that is already past its exp (clock skew) gets the default, not a refresh storm.
    assert.equal(parseTokenReply(reply({ access_token: jwt({ exp: now / 1000 - 5 }) }), now).expiryFrom, 'default');
  });

  test('hostile replies are refused without quoting the body', () => {
    const secretish = 'Zz-secret-token-Zz';
    const cases: Array<[Buffer, RegExp]> = [
      [Buffer.from(`{"access_token": "${secretish}", oops`), /not JSON/],
      [reply([secretish]), /not a JSON object/],
      [reply({ token: secretish }), /no access_token/],
      [reply({ access_token: 42 }), /access_token is not a non-empty string/],
      [reply({ access_token: '' }), /access_token is not a non-empty string/],
      [reply({ access_token: `${secretish}\r\nX-Evil: 1` }), /characters a header cannot carry/],
      [reply({ access_token: `${secretish} two` }), /characters a header cannot carry/],
      [reply({ access_token: 'é' + secretish }), /characters a header cannot carry/],
      [reply({ access_token: 'a'.repeat(MAX_TOKEN_CHARS + 1) }), /over 8192/],
      [reply({ access_token: secretish, refresh_token: 'x\ny' }), /refresh_token holds characters/],
      [reply({ access_token: secretish, token_type: 'mac' }), /only bearer/],
      [reply({ access_token: secretish, expires_in: -1 }), /expires_in/],
      [reply({ access_token: secretish, expires_in: '3600s' }), /expires_in/],
      [reply({ access_token: secretish, expires_in: '1e9' }), /expires_in/],
      [reply({ access_token: secretish, expires_in: 0 }), /expires_in/],
      // valid for less than a request needs: refused (and backed off) rather than a login storm
      [reply({ access_token: secretish, expires_in: 0.001 }), /valid for 1 ms/],
      [reply({ access_token: jwt({ exp: now / 1000 + 0.5 }) }), /valid for 500 ms \(by its JWT exp\)/],
    ];
    for (const [body, re] of cases) {
      assert.throws(() => parseTokenReply(body, now), (e: unknown) => authError(re)(e) && !(e as Error).message.includes(secretish), body.toString().slice(0, 60));
    }
  });

  test('expires_in as a decimal string ("3599", as some services send it) is a number of seconds', () => {
    assert.equal(parseTokenReply(reply({ access_token: 'opaque', expires_in: '3599' }), now).expiresAt, now + 3_599_000);
  });

  test('jwtExpiry reads exp only from a well-formed JWT', () => {
    assert.equal(jwtExpiry(jwt({ exp: 1000 })), 1_000_000);
    assert.equal(jwtExpiry(jwt({ sub: 'x' })), null);
    assert.equal(jwtExpiry(jwt({ exp: 'soon' })), null);
    assert.equal(jwtExpiry('a.b'), null);
    assert.equal(jwtExpiry('a.!!!.c'), null);
    assert.equal(jwtExpiry(`a.${Buffer.from('not json').toString('base64url')}.c`), null);
  });
});

describe('schedule', () => {
  test('refresh at 80 % of a long lifetime, 30 s ahead of a medium one, half of a short one, never sooner than 500 ms', () => {
    assert.equal(refreshDelayMs(3600_000), 2880_000);
    assert.equal(refreshDelayMs(60_000), 30_000);
    assert.equal(refreshDelayMs(120_000), 90_000);
    assert.equal(refreshDelayMs(2_000), 1_000);
    assert.equal(refreshDelayMs(100), 500);
  });
  test('backoff doubles from 1 s to 5 min, jittered down to half', () => {
    assert.equal(backoffMs(1, () => 1), 1000);
    assert.equal(backoffMs(1, () => 0), 500);
    assert.equal(backoffMs(4, () => 1), 8000);
    assert.equal(backoffMs(30, () => 1), BACKOFF_MAX_MS);
    assert.equal(backoffMs(1000, () => 1), BACKOFF_MAX_MS);
  });
});

describe('latchkeyctl status: the upstream auth lines', () => {
  const t = (at: number | null): string => (at === null ? '-' : `T${at}`);
  test('token mode shows the validity, logins, refreshes and the last failure; the others only the mode', () => {
    const a = { mode: 'token' as const, token_expires_at: 5000, token_valid_for_s: 90, logins: 1, refreshes: 12, last_auth_error: { message: 'token_url (password): HTTP 503', at: 7 } };
    assert.deepEqual(authPairs(a, false, t), [
      ['upstream auth', 'token: valid for 1m30s (until T5000); 1 login, 12 refreshes'],
      ['last auth error', 'token_url (password): HTTP 503 (T7)'],
    ]);
    assert.deepEqual(authPairs({ ...a, token_expires_at: null, token_valid_for_s: null, last_auth_error: null }, true, t), [
      ['upstream auth', 'token\t-\t1\t12'], ['last auth error', '-'],
    ]);
    assert.deepEqual(authPairs({ ...a, mode: 'basic' }, false, t), [['upstream auth', 'basic']]);
  });
});

describe('RestUserSource in token mode', () => {
  let svc: TokenService;
  const clients: RestUserSource[] = [];
  const cfg = (over: Partial<UpstreamConfig> = {}): UpstreamConfig => ({
    byNameUrl: `${svc.url}/username/`, byUidUrl: `${svc.url}/user-id/`, basicAuth: LOGIN, bearerToken: null,
    tokenUrl: svc.tokenUrl, apiKey: null, jsonPrefix: 'response.result', connectTimeoutMs: 1000, requestTimeoutMs: 1500,
    maxBodyBytes: 64 * 1024, maxConcurrent: 8, caFile: null, certFile: null, keyFile: null, verifyPeer: true,
    verifyHostname: true, insecureHttp: true, insecureTls: false, healthUrl: null, ...over,
  });
  const client = (over: Partial<UpstreamConfig> = {}): RestUserSource => {
    const c = new RestUserSource(cfg(over), USERS);
    clients.push(c);
    return c;
  };

  before(async () => {
    svc = await startTokenService({ users: demoUsers, logins: [{ username: LOGIN.user, password: LOGIN.password }], apiKeys: [API_KEY], tokenTtlSec: 2 });
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    svc.setTokenEndpoint('up');
    svc.setTtl(2);
  });
  after(async () => {
    await svc.close();
    // No secret the daemon held or was given reached any log line of this file.
    const secrets = [LOGIN.password, API_KEY, ...svc.issued()];
    for (const line of logLines) for (const s of secrets) assert.ok(!line.includes(s), `a secret in a log line: ${line}`);
  });

  test('logs in once, refreshes before expiry: lookups for 3 token lifetimes never see a 401', async () => {
    const c = client();
    const s0 = svc.stats();
    const until = Date.now() + 6000;
    let n = 0;
    while (Date.now() < until) {
      const r = await c.fetchByName(n % 2 ? 'alice' : 'nosuchuser');
      assert.equal(r.kind, n % 2 ? 'found' : 'notfound');
      n++;
      await sleep(50);
    }
    const s = svc.stats();
    assert.equal(s.unauthorized - s0.unauthorized, 0, 'a lookup was sent an expired token');
    assert.equal(s.logins - s0.logins, 1, 'one login, then refreshes');
    assert.ok(s.refreshes - s0.refreshes >= 4, `refreshed ${s.refreshes - s0.refreshes} times in 6 s of 2 s tokens`);
    const st = c.tokenStatus()!;
    assert.ok(st.token_valid_for_s !== null && st.token_valid_for_s <= 2 && st.token_expires_at! > Date.now());
    assert.deepEqual([st.logins, st.last_auth_error], [1, null]);
  });

  test('a burst of 401s (tokens revoked) makes exactly one login, and every lookup is answered', async () => {
    svc.setTtl(60);
    const c = client();
    assert.equal((await c.fetchByName('alice')).kind, 'found');
    const s0 = svc.stats();
    svc.revokeAccessTokens();
    const names = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'nosuchuser'];
    const rs = await Promise.all(names.map((n) => c.fetchByName(n)));
    assert.deepEqual(rs.map((r) => r.kind), [...Array(9).fill('found'), 'notfound']);
    const s = svc.stats();
    assert.equal(s.logins - s0.logins, 1, 'exactly one login for the whole burst');
    assert.ok(s.unauthorized - s0.unauthorized >= 1);
  });

  test('user endpoints that refuse every fresh token: two logins, then backoff, not a login per lookup', async () => {
    const c = client();
    svc.refuseAllTokens(true);
    try {
      const before = svc.stats().logins;
      for (let i = 0; i < 20; i++) await assert.rejects(c.fetchByName('alice'), authError());
      // The first login, the one its 401 asks for, then the backoff answers at once (21 before).
      assert.equal(svc.stats().logins - before, 2);
      assert.match(c.tokenStatus()!.last_auth_error!.message, /answered 401 to a token token_url had just issued/);
    } finally {
      svc.refuseAllTokens(false);
    }
  });

  test('a reload\'s new client takes over a valid token for the same login: lookups go on while token_url is down', async () => {
    const c1 = client();
    assert.equal((await c1.fetchByName('alice')).kind, 'found');
    const logins = svc.stats().logins;
    svc.setTokenEndpoint('down');
    const c2 = client();
    c2.adoptTokenOf(c1);
    assert.equal((await c2.fetchByName('bob')).kind, 'found');
    assert.equal(svc.stats().logins, logins, 'no new login');
    // Another login (api_key instead of the password) is another identity: no takeover.
    const c3 = client({ basicAuth: null, apiKey: API_KEY });
    c3.adoptTokenOf(c1);
    await assert.rejects(c3.fetchByName('bob'), authError());
  });

  test('a refused refresh token is followed by a clean login, no lookup failing', async () => {
    const c = client();
    assert.equal((await c.fetchByName('bob')).kind, 'found');
    const s0 = svc.stats();
    svc.revokeRefreshTokens();
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      assert.equal((await c.fetchByName('bob')).kind, 'found');
      await sleep(50);
    }
    const s = svc.stats();
    assert.ok(s.refusedRefreshes - s0.refusedRefreshes >= 1);
    assert.equal(s.logins - s0.logins, 1);
    assert.equal(s.unauthorized - s0.unauthorized, 0);
    assert.ok(logLines.some((l) => l.includes('upstream.token_refresh_refused')));
  });

  test('token endpoint down and no token: lookups fail as auth errors (never "not found"), at once during the backoff', async () => {
    const c = client();
    assert.equal((await c.fetchByName('carol')).kind, 'found');
    svc.setTokenEndpoint('down');
    svc.revokeAccessTokens();
    await assert.rejects(c.fetchByName('carol'), authError(/HTTP 503: the token service is failing/));
    const posts = svc.stats().tokenRequests;
    const t0 = Date.now();
    await assert.rejects(c.fetchByName('nosuchuser'), authError(/no upstream token: 1 attempt\(s\) at token_url failed/));
    await assert.rejects(c.fetchByUid(1001), authError());
    assert.ok(Date.now() - t0 < 200, 'in the backoff a lookup fails at once');
    assert.equal(svc.stats().tokenRequests, posts, 'no login during the backoff');
    const st = c.tokenStatus()!;
    assert.equal(st.token_valid_for_s, null);
    assert.match(st.last_auth_error!.message, /503/);
    // After the backoff (1 s at most for the first failure) and with the endpoint back, it logs in.
    svc.setTokenEndpoint('up');
    await sleep(1100);
    assert.equal((await c.fetchByName('carol')).kind, 'found');
    assert.equal(c.tokenStatus()!.logins, 2);
  });

  test('credentials refused: the error names what to check, never the secret', async () => {
    const c = client({ basicAuth: { user: LOGIN.user, password: 'Wrong-Secret-Pw' } });
    await assert.rejects(c.fetchByName('alice'), (e: unknown) => authError(/refused the login \(HTTP 401\); check username and password/)(e)
      && !(e as Error).message.includes('Wrong-Secret-Pw'));
    assert.ok(!logLines.some((l) => l.includes('Wrong-Secret-Pw')));
  });

  test('api_key login; the JWT exp schedules the refresh when expires_in is absent', async () => {
    const jwtSvc = await startTokenService({ users: demoUsers, apiKeys: [API_KEY], tokenTtlSec: 2, expiry: 'jwt' });
    try {
      const c = new RestUserSource({ ...cfg(), byNameUrl: `${jwtSvc.url}/username/`, byUidUrl: `${jwtSvc.url}/user-id/`, tokenUrl: jwtSvc.tokenUrl, basicAuth: null, apiKey: API_KEY }, USERS);
      clients.push(c);
      assert.equal((await c.fetchByUid(1002)).kind, 'found');
      await sleep(2500);
      assert.equal((await c.fetchByName('bob')).kind, 'found');
      const s = jwtSvc.stats();
      assert.deepEqual([s.logins, s.unauthorized], [1, 0]);
      assert.ok(s.refreshes >= 1);
      assert.ok(logLines.some((l) => l.includes('"expiry_from":"jwt"')));
    } finally {
      await jwtSvc.close();
    }
  });

  test('a closed client stops refreshing', async () => {
    const c = client();
    assert.equal((await c.fetchByName('alice')).kind, 'found');
    await c.close();
    const s0 = svc.stats();
    await sleep(2500);
    assert.equal(svc.stats().tokenRequests, s0.tokenRequests);
    await assert.rejects(c.fetchByName('alice'), /closed/);
  });
});
