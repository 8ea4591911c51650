// Reads /etc/latchkey/latchkey.conf (sections) or a LocalEGA /etc/ega/auth.conf (flat keys) into
// the Config every module uses. Every mistake is a ConfigError naming file:line, the key and
// the fix; nothing is silently ignored, and secret values never appear in a message.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { checkedAccount, groupIsPrivate } from '../privsep/account.js';
import { ConfigError } from '../errors.js';
import type { Config } from './types.js';
import {
  KEYS, RESERVED_IDS, SECRETS_FILE_KEYS, SECRETS_FILE_MAP, SECTIONS, displayName, findLegacy, findNative, type Draft, type KeySpec, type Loc,
} from './keys.js';
import { closest, decodeValues, hasGluedCommentChar, scanIni, type Entry, type Header } from './scan.js';
import { ValueProblem } from './values.js';
import { yescryptGensalt } from '../verify/hash.js';
import { checkTrustedMode, checkTrustedOwner, checkTrustedPath, credentialsOverHttp, plainHttpOrigins, UntrustedPath } from './safety.js';

export { redactConfig, formatConfigIni, REDACTED } from './format.js';
export { RESERVED_IDS } from './keys.js';
export { insecureSettings } from './safety.js';

/** The default user name rule (DESIGN.md, security rules). */
export const DEFAULT_NAME_REGEX = /^[a-z_][a-z0-9_.-]{0,31}$/;

type Overrides = { [S in keyof Config]?: Config[S] extends object ? Partial<Config[S]> : Config[S] };

/**
 * Built-in defaults (LocalEGA's where it has one). The endpoints have none and are '' here:
 * parseConfig/loadConfig require them; tests that never reach upstream may leave them empty.
 */
export function defaultConfig(overrides: Overrides = {}): Config {
  const cfg: Config = {
    source: '',
    upstream: {
      byNameUrl: '', byUidUrl: '', basicAuth: null, bearerToken: null, tokenUrl: null, apiKey: null, jsonPrefix: '',
      connectTimeoutMs: 2000, requestTimeoutMs: 4000, maxBodyBytes: 65536, maxConcurrent: 16,
      caFile: null, certFile: null, keyFile: null, verifyPeer: true, verifyHostname: true, insecureHttp: false, insecureTls: false,
    },
    cache: { dbPath: '/run/latchkey/cache.db', ttlSec: 3600, negativeTtlSec: 60, staleGraceSec: 3600, refreshAheadSec: 60, mapNameMisses: true },
    users: {
      uidShift: 10000, gid: 10000, groupName: 'lega', minUid: 1000, maxUid: 2147483647,
      nameRegex: DEFAULT_NAME_REGEX, shell: '/bin/bash',
      denyNames: ['root'], localPasswdFile: '/etc/passwd', localGroupFile: '/etc/group',
    },
    homes: { base: '/ega/inbox', layout: 'chroot', mode: 0o2750, umask: 0o027, uploadDir: 'inbox' },
    pam: {
      prompt: 'Please, enter your EGA password: ', chrootSessions: false, maxFailures: 5, hostMaxFailures: 20,
      throttleWindowSec: 300, throttleLockoutSec: 300, maxSessionsPerUser: 0, maxSessionAgeSec: 0,
      sessionLimit: 'per-user', onLimit: 'refuse', sessionRenewal: 'off', privilegedGroups: [], privilegedUsers: [],
      maxBcryptCost: 13, maxShaRounds: 1_000_000, maxYescryptMemory: 64 * 1024 * 1024,
    },
    local: {
      dbPath: '/var/lib/latchkey/local.db', minUid: 9000, maxUid: 9999, precedence: 'local',
      contexts: [{ id: 'y5', algorithm: 'yescrypt', cost: 5 }], defaultContext: 'y5', upgrade: 'local',
      role: 'standalone', primary: null, syncPort: 22,
      syncKey: '/etc/latchkey/sync_ed25519', syncKnownHosts: '/etc/latchkey/sync_known_hosts',
      upgradeUrl: null, upgradeBasicAuth: null, upgradeBearerToken: null, upgradeCaFile: null, upgradeCertFile: null, upgradeKeyFile: null,
      upgradeTimeoutMs: 2000, upgradeMaxConcurrent: 4,
      upgradeListen: null, upgradeListenCert: null, upgradeListenKey: null, upgradeListenToken: null,
    },
    events: { url: null, bearerToken: null, caFile: null, queueSize: 1000, timeoutMs: 2000 },
    cleanup: { intervalSec: 3600, expiredGraceSec: 7 * 86400 },
    daemon: { socketDir: '/run/latchkey', maxConnections: 0, maxConnectionsPerUid: 0, idleTimeoutMs: 30000, logLevel: 'info', sshdConfig: '/etc/ssh/sshd_config', user: '_latchkey', rootdSocket: '/run/latchkey-rootd/rootd.sock' },
  };
  for (const [sec, values] of Object.entries(overrides)) {
    if (sec === 'source') cfg.source = values as string;
    else Object.assign(cfg[sec as Exclude<keyof Config, 'source'>], values);
  }
  return cfg;
}

/**
 * Parses config text; pure (a `secrets_file` is not read: loadConfig does that). `secretsUnread`:
 * the caller cannot read the secrets_file (latchkey-sync, which runs as the daemon account and
 * needs only [local]), so a credential whose other half may sit there is not an error.
 */
export function parseConfig(text: string, file: string, opts: { secretsUnread?: boolean } = {}): Config {
  const state = newState(file);
  applyFile(state, text, file, 'config');
  return finish(state, opts.secretsUnread === true && state.draft.secretsFile !== null);
}

/**
 * Reads and checks a config file (and its secrets_file), returning the Config with `source = file`.
 * Every file read here, and the TLS files it names, must be one only root can change
 * (src/config/safety.ts); a file holding secrets must also be unreadable by others.
 */
export function loadConfig(file: string, opts: { credential?: string } = {}): Config {
  const state = newState(file);
  const main = readChecked(file);
  const secretsIn = applyFile(state, main.text, file, 'config');
  const readable: Array<[string, Stats, string[]]> = [[file, main.stats, secretsIn]];
  if (state.draft.secretsFile !== null) {
    const sf = state.draft.secretsFile;
    const secrets = readChecked(sf);
    readable.push([sf, secrets.stats, ['secrets_file']]);
    applyFile(state, secrets.text, sf, 'secrets');
  }
  // systemd credentials (LoadCredential=/LoadCredentialEncrypted=latchkey.secrets:...): the same
  // format as a secrets_file, in a directory only this service can read.
  // `latchkeyctl reload --credential` hands over a credential systemd cannot refresh while the
  // service runs (Debian 12's systemd copies credentials at start only): it stands in for that copy.
  const credential = credentialFile();
  if (opts.credential !== undefined) {
    applyFile(state, opts.credential, 'credential latchkey.secrets (from latchkeyctl reload)', 'secrets');
  } else if (credential !== null) {
    const c = readChecked(credential);
    readable.push([credential, c.stats, ['credential latchkey.secrets']]);
    applyFile(state, c.text, credential, 'secrets');
  }
  // A file holding secrets may be read by the daemon's group (root:_latchkey 0640, as nslcd's
  // config): after dropping root, latchkeyd must still read it on SIGHUP.
  const gid = daemonGid(state);
  for (const [f, st, secrets] of readable) requireMode(f, st, secrets, '', gid);
  const cfg = finish(state);
  // The CA file decides which server may answer for the user service, and the client key is a
  // credential: the same rule as the config. The client reads them (src/upstream/client.ts).
  for (const [key, path] of [['cacertfile', cfg.upstream.caFile], ['certfile', cfg.upstream.certFile], ['keyfile', cfg.upstream.keyFile]] as const) {
    if (path === null) continue;
    const tls = readChecked(path, `upstream.${key}`);
    requireMode(path, tls.stats, [], `upstream.${key}`);
  }
  cfg.source = file;
  return cfg;
}

interface State { file: string; draft: Draft; headers: Header[] }

function newState(file: string): State {
  return {
    file,
    draft: { cfg: defaultConfig(), username: null, password: null, secretsFile: null, upgradeUsername: null, upgradePassword: null, setAt: new Map() },
    headers: [],
  };
}

/** Applies one file's keys to the draft; returns the names of the secret keys it held. */
function applyFile(state: State, text: string, file: string, kind: 'config' | 'secrets'): string[] {
  const { entries, headers } = scanIni(text, file);
  if (kind === 'config') {
    for (const h of headers) checkSection(h, file);
    state.headers.push(...headers);
  } else if (headers.length > 0) {
    throw new ConfigError(file, headers[0]!.line, '', `a secrets_file has no sections; write only ${SECRETS_FILE_KEYS.join('=, ')}= lines`);
  }
  const specs = entries.map((e) => resolveKey(e, file, kind));
  const values = decodeValues(text, entries, file);
  const secrets: string[] = [];
  entries.forEach((e, i) => {
    const spec = specs[i]!;
    const loc: Loc = { file, line: e.line, key: e.display! };
    for (const t of spec.targets) {
      const prev = state.draft.setAt.get(t);
      if (prev) {
        const where = `${prev.file}:${prev.line} and ${file}:${e.line}`;
        throw new ConfigError(file, e.line, loc.key, prev.key === loc.key
          ? `is given twice (${where}); keep only one of the two lines`
          : `sets the same thing as ${prev.key} (${where}); keep only one of the two lines`);
      }
      state.draft.setAt.set(t, loc);
    }
    if (hasGluedCommentChar(e.rawValue)) {
      throw new ConfigError(file, e.line, loc.key,
        "contains # or ; right after other text, which would cut the value there; quote it ('...') or escape it (\\# \\;)");
    }
    try {
      spec.apply(state.draft, values[i]!);
    } catch (err) {
      if (!(err instanceof ValueProblem)) throw err;
      const shown = spec.secret ? 'the value (not shown)' : JSON.stringify(values[i]);
      throw new ConfigError(file, e.line, loc.key, `${shown} ${err.message}`);
    }
    if (spec.secret) secrets.push(loc.key);
  });
  return secrets;
}

function checkSection(h: Header, file: string): void {
  if ((SECTIONS as readonly string[]).includes(h.name)) return;
  const near = closest(h.name, SECTIONS);
  throw new ConfigError(file, h.line, `[${h.name}]`,
    `unknown section; ${near ? `did you mean [${near}]? ` : ''}sections are ${SECTIONS.map((s) => `[${s}]`).join(' ')}`);
}

function resolveKey(e: Entry, file: string, kind: 'config' | 'secrets'): KeySpec {
  if (kind === 'secrets') {
    e.display = e.key;
    if (Object.hasOwn(SECRETS_FILE_MAP, e.key)) {
      const [sec, key] = SECRETS_FILE_MAP[e.key as keyof typeof SECRETS_FILE_MAP];
      return findNative(sec, key)!;
    }
    const near = closest(e.key, SECRETS_FILE_KEYS);
    throw new ConfigError(file, e.line, e.key,
      `unknown key in a secrets_file; ${near ? `did you mean ${near}? ` : ''}expected ${SECRETS_FILE_KEYS.join(', ')}`);
  }
  const spec = e.section === null ? findLegacy(e.key) : findNative(e.section, e.key);
  if (spec) {
    e.display = displayName(spec, e.section === null);
    return spec;
  }
  e.display = e.section === null ? e.key : `${e.section}.${e.key}`;
  throw new ConfigError(file, e.line, e.display, unknownKeyHint(e));
}

function unknownKeyHint(e: Entry): string {
  const elsewhere = KEYS.filter((k) => k.key === e.key && k.section !== e.section);
  const legacy = findLegacy(e.key);
  if (e.section === null) {
    if (elsewhere.length > 0) return `unknown key at top level; put it under [${elsewhere[0]!.section}]`;
    const near = closest(e.key, KEYS.flatMap((k) => (k.legacy ? [k.legacy] : [])));
    return `unknown key; ${near ? `did you mean ${near}? ` : ''}only LocalEGA auth.conf keys may appear before the first [section]`;
  }
  if (legacy) {
    const native = legacy.key ? `[${legacy.section}] ${legacy.key}` : 'the [upstream] username and password keys';
    return `is a LocalEGA key; move it above the first [section], or use ${native}`;
  }
  if (elsewhere.length > 0) return `unknown key in [${e.section}]; it belongs under [${elsewhere[0]!.section}]`;
  const names = KEYS.filter((k) => k.section === e.section && k.key !== null).map((k) => k.key!);
  const near = closest(e.key, names);
  return near ? `unknown key; did you mean ${near}?` : `unknown key; keys in [${e.section}] are ${names.join(', ')}`;
}

/** Checks that need several keys at once; runs after every file is applied. */
function finish(state: State, secretsUnread = false): Config {
  const { draft, file } = state;
  const c = draft.cfg;
  const at = (t: string): Loc => draft.setAt.get(t) ?? { file, line: headerLine(state, t.split('.')[0]!), key: t };
  const fail = (l: Loc, problem: string): never => { throw new ConfigError(l.file, l.line, l.key, problem); };

  if (c.upstream.byNameUrl === '') fail(at('upstream.by_name_url'), 'is required; add by_name_url = https://… under [upstream] (LocalEGA: cega_endpoint_username)');
  if (c.upstream.byUidUrl === '') fail(at('upstream.by_uid_url'), 'is required; add by_uid_url = https://… under [upstream] (LocalEGA: cega_endpoint_uid)');
  if (!secretsUnread && (draft.username === null) !== (draft.password === null)) {
    const have = draft.username === null ? 'upstream.password' : 'upstream.username';
    fail(at(have), `is set without its pair; give both username and password (or neither)${draft.secretsFile ? ' here or in the secrets_file' : ''}`);
  }
  c.upstream.basicAuth = draft.username !== null && draft.password !== null ? { user: draft.username, password: draft.password } : null;
  if (c.upstream.basicAuth && c.upstream.bearerToken !== null) {
    const b = at('upstream.bearer_token');
    const u = at('upstream.password');
    fail(b, `conflicts with basic credentials (${u.key} at ${u.file}:${u.line}); use one or the other`);
  }
  // Token mode: the username/password (or api_key) are the login to token_url, never sent to the
  // user endpoints; a static bearer_token would make two sources of the Authorization header.
  const u = c.upstream;
  if (u.tokenUrl !== null) {
    if (u.bearerToken !== null) fail(at('upstream.bearer_token'), 'conflicts with token_url (token mode gets its bearer token from token_url); use one or the other');
    if (!secretsUnread && u.apiKey === null && u.basicAuth === null) {
      fail(at('upstream.token_url'), 'needs the credentials to log in with: username and password, or api_key (in the secrets_file or the latchkey.secrets credential)');
    }
    if (u.apiKey !== null && u.basicAuth !== null) fail(at('upstream.api_key'), 'conflicts with username/password; token mode logs in with one or the other');
    if (!u.insecureHttp && /^http:/i.test(u.tokenUrl)) {
      fail(at('upstream.token_url'), 'would send the login credentials and receive the token in clear text over http://; use https://, or, for a private link such as loopback, accept it with insecure_http = yes');
    }
  } else if (u.apiKey !== null) {
    fail(at('upstream.api_key'), 'is only used in token mode; set token_url (where it is exchanged for a token), or use bearer_token for a static token');
  }
  // Plain http:// would show the credentials to anyone on the path on every request (basic auth
  // is only base64), and without certificate checks anyone on the path can answer as the user
  // service with any password hash: both only when the admin says so (insecure_http/_tls),
  // and then the daemon says so at every start and reload and in `latchkeyctl status`.
  if (!c.upstream.insecureHttp && credentialsOverHttp(c).length > 0) {
    const key = /^http:/i.test(c.upstream.byNameUrl.trim()) ? 'upstream.by_name_url' : 'upstream.by_uid_url';
    fail(at(key), `would send the upstream ${c.upstream.basicAuth ? 'username and password (basic auth is only base64)' : 'bearer token'} `
      + 'in clear text over http:// with every request; use https://, or, for a private link such as loopback, '
      + 'accept it with insecure_http = yes ([upstream], or a top-level line in a LocalEGA auth.conf)');
  }
  // Without credentials http:// is no better: anyone on the path can answer for the user service
  // with a password hash and keys of their choosing, which is a login.
  if (!c.upstream.insecureHttp && plainHttpOrigins(c).length > 0) {
    const key = /^http:/i.test(c.upstream.byNameUrl.trim()) ? 'upstream.by_name_url' : 'upstream.by_uid_url';
    fail(at(key), 'uses plain http://, so anyone on the network path can answer as the user service with any password hash or key; '
      + 'use https://, or, for a private link such as loopback, accept it with insecure_http = yes ([upstream], or a top-level line in a LocalEGA auth.conf)');
  }
  for (const [key, on] of [['upstream.verify_peer', c.upstream.verifyPeer], ['upstream.verify_hostname', c.upstream.verifyHostname]] as const) {
    if (on || c.upstream.insecureTls) continue;
    fail(at(key), `is "no", which lets anyone on the network path pose as the user service and answer with any password hash; `
      + 'remove it (for a private CA set cacertfile), or accept the risk with insecure_tls = yes ([upstream], or a top-level line in a LocalEGA auth.conf)');
  }
  if ((c.upstream.certFile === null) !== (c.upstream.keyFile === null)) {
    fail(at(c.upstream.certFile ? 'upstream.certfile' : 'upstream.keyfile'), 'a client certificate needs both certfile and keyfile');
  }
  // Defaults derived from other settings follow them unless set explicitly: a LocalEGA
  // auth.conf with cache_ttl = 30 must start, so refresh-ahead is a tenth of the ttl (at most
  // the 60 s default), the host budget four user budgets, and connect_timeout fits the request.
  const given = (t: string): boolean => draft.setAt.has(t);
  if (!given('cache.refresh_ahead')) c.cache.refreshAheadSec = Math.min(60, Math.floor(c.cache.ttlSec / 10));
  if (!given('pam.host_max_failures')) c.pam.hostMaxFailures = Math.min(100_000, 4 * c.pam.maxFailures);
  if (!given('upstream.connect_timeout')) c.upstream.connectTimeoutMs = Math.min(c.upstream.connectTimeoutMs, c.upstream.requestTimeoutMs);
  if (c.upstream.requestTimeoutMs < c.upstream.connectTimeoutMs) {
    fail(at('upstream.request_timeout'), 'is shorter than connect_timeout; the request timeout covers the connection too');
  }
  if (c.cache.refreshAheadSec >= c.cache.ttlSec) {
    fail(at('cache.refresh_ahead'), `must be shorter than the cache ttl (${c.cache.ttlSec}s), or every lookup would refresh; remove it to use a tenth of the ttl`);
  }
  if (c.pam.hostMaxFailures < c.pam.maxFailures) {
    fail(at('pam.host_max_failures'), `is below max_failures (${c.pam.maxFailures}); one user's typos would lock out the whole source address`);
  }
  if (c.users.minUid > c.users.maxUid) fail(at('users.min_uid'), `is above max_uid (${c.users.maxUid})`);
  if (c.users.uidShift > c.users.maxUid) {
    fail(at('users.uid_shift'), `is above max_uid (${c.users.maxUid}), so every user would be refused`);
  }
  if (!given('pam.max_sessions') && given('pam.session_limit')) c.pam.maxSessionsPerUser = 1;
  if (c.pam.onLimit === 'replace-oldest' && c.pam.maxSessionsPerUser === 0) {
    fail(at('pam.on_limit'), 'has no limit to act on; set max_sessions (and session_limit for its scope)');
  }
  if (c.pam.sessionRenewal === 'on-login' && c.pam.maxSessionAgeSec === 0) {
    fail(at('pam.session_renewal'), 'has nothing to renew: sessions have no age limit; set max_session_age (e.g. 8h) or remove it');
  }
  if (c.events.url !== null && !c.upstream.insecureHttp && /^http:/i.test(c.events.url)) {
    fail(at('events.url'), `would send session events${c.events.bearerToken ? ' and the bearer token' : ''} in clear text over http://; use https://, or accept it with [upstream] insecure_http = yes`);
  }
  if (c.events.url === null && c.events.bearerToken !== null) fail(at('events.bearer_token'), 'is set but [events] url is not; set url or remove it');
  finishLocal(draft, at, fail, secretsUnread);
  return c;
}

/** [local]: the uid range, contexts, role and upgrade settings, which only make sense together. */
function finishLocal(draft: Draft, at: (t: string) => Loc, fail: (l: Loc, problem: string) => never, secretsUnread: boolean): void {
  const c = draft.cfg;
  const l = c.local;
  if (l.minUid > l.maxUid) fail(at('local.min_uid'), `is above max_uid (${l.maxUid})`);
  for (const r of RESERVED_IDS) {
    if (r >= l.minUid && r <= l.maxUid) fail(at('local.max_uid'), `makes the range ${l.minUid} .. ${l.maxUid} include ${r} (nobody/(uint16)-1); end it below ${r}`);
  }
  // The upstream serves local uids uid_shift + upstream uid within [min_uid, max_uid]; a local
  // user there could be answered for by an upstream record, or the other way round.
  const upLo = Math.max(c.users.minUid, c.users.uidShift);
  const upHi = c.users.maxUid;
  if (l.minUid <= upHi && l.maxUid >= upLo) {
    // A LocalEGA file with a small uid_shift must keep starting: the default range then gives
    // way (no local users until [local] min_uid/max_uid say where they live); a range the admin
    // wrote is an error.
    if (!draft.setAt.has('local.min_uid') && !draft.setAt.has('local.max_uid')) {
      l.minUid = 0;
      l.maxUid = 0;
      return finishContexts(draft, at, fail, secretsUnread);
    }
    fail(at(draft.setAt.has('local.min_uid') ? 'local.min_uid' : 'local.max_uid'),
      `makes the local users' range ${l.minUid} .. ${l.maxUid} overlap the upstream's shifted range ${upLo} .. ${upHi} `
      + '([users] uid_shift, min_uid, max_uid); choose a local range outside it, e.g. below uid_shift');
  }
  finishContexts(draft, at, fail, secretsUnread);
}

function finishContexts(draft: Draft, at: (t: string) => Loc, fail: (l: Loc, problem: string) => never, secretsUnread: boolean): void {
  const c = draft.cfg;
  const l = c.local;
  if (!l.contexts.some((x) => x.id === l.defaultContext)) {
    fail(at('local.default_context'), `names the context ${l.defaultContext}, which [local] contexts does not define (${l.contexts.map((x) => x.id).join(', ')})`);
  }
  for (const x of l.contexts) {
    if (x.algorithm === 'yescrypt') {
      // The cost is crypt_gensalt's count; what the ceiling bounds is the memory it implies.
      const { memory } = yescryptGensalt(x.cost);
      if (memory > c.pam.maxYescryptMemory) {
        const mib = (n: number): string => `${Math.round((n / 2 ** 20) * 100) / 100} MiB`;
        fail(at('local.contexts'), `gives context ${x.id} a yescrypt cost of ${x.cost}, which needs ${mib(memory)} per hash, above [pam] max_yescrypt_memory (${mib(c.pam.maxYescryptMemory)}): its hashes would never verify; lower the cost or raise the ceiling`);
      }
      continue;
    }
    const over = x.algorithm === 'bcrypt' ? (x.cost > c.pam.maxBcryptCost ? `[pam] max_bcrypt_cost (${c.pam.maxBcryptCost})` : null)
      : x.cost > c.pam.maxShaRounds ? `[pam] max_sha_rounds (${c.pam.maxShaRounds})` : null;
    if (over) fail(at('local.contexts'), `gives context ${x.id} a ${x.algorithm} cost of ${x.cost}, above ${over}: its hashes would never verify; lower it or raise the ceiling`);
  }
  if (!secretsUnread && (draft.upgradeUsername === null) !== (draft.upgradePassword === null)) {
    fail(at(draft.upgradeUsername === null ? 'local.upgrade_password' : 'local.upgrade_username'), 'is set without its pair; give both upgrade_username and upgrade_password (or neither)');
  }
  l.upgradeBasicAuth = draft.upgradeUsername !== null && draft.upgradePassword !== null ? { user: draft.upgradeUsername, password: draft.upgradePassword } : null;
  if (l.upgradeBasicAuth && l.upgradeBearerToken !== null) fail(at('local.upgrade_bearer_token'), 'conflicts with upgrade_username/upgrade_password; use one or the other');
  if ((l.upgradeCertFile === null) !== (l.upgradeKeyFile === null)) {
    fail(at(l.upgradeCertFile ? 'local.upgrade_certfile' : 'local.upgrade_keyfile'), 'a client certificate needs both upgrade_certfile and upgrade_keyfile');
  }
  if (l.upgrade === 'remote' && l.upgradeUrl === null) {
    fail(at('local.upgrade'), 'is remote, which needs upgrade_url (the primary\'s update endpoint, https://…/latchkey/v1/upgrade) under [local]');
  }
  if (l.role === 'secondary') {
    if (l.primary === null) fail(at('local.role'), 'is secondary, which needs primary = USER@HOST (where snapshots come from and changes are made) under [local]');
    if (l.upgrade === 'local') {
      fail(at(draft.setAt.has('local.upgrade') ? 'local.upgrade' : 'local.role'),
        'a secondary\'s store is replaced by every snapshot, so a local upgrade would be lost: set upgrade = remote (with upgrade_url) or upgrade = off');
    }
  }
  if (l.upgradeListen !== null) {
    if (l.role !== 'primary') fail(at('local.upgrade_listen'), 'only a primary takes upgrades from secondaries; set role = primary or remove it');
    if (l.upgradeListenCert === null || l.upgradeListenKey === null) fail(at('local.upgrade_listen'), 'needs upgrade_listen_cert and upgrade_listen_key (the endpoint is https only)');
    if (!secretsUnread && l.upgradeListenToken === null) fail(at('local.upgrade_listen'), 'needs upgrade_listen_token (in the secrets_file): the endpoint takes only secondaries that present it');
  }
}

function headerLine(state: State, section: string): number {
  return state.headers.find((h) => h.name === section)?.line ?? 0;
}

/**
 * Reads a file through one descriptor and checks that descriptor (fstat), so the file checked is
 * the file read; then walks the path it was found by and insists it ends at that same file.
 */
/** $CREDENTIALS_DIRECTORY/latchkey.secrets when systemd passed that credential, else null. */
function credentialFile(): string | null {
  const dir = process.env.CREDENTIALS_DIRECTORY;
  if (!dir || !dir.startsWith('/')) return null;
  const f = join(dir, 'latchkey.secrets');
  return existsSync(f) ? f : null;
}

/** The gid of [daemon] user as configured so far (null when it cannot be told: no group may read secrets then). */
function daemonGid(state: State): number | null {
  const c = state.draft.cfg;
  try {
    const passwd = readFileSync(c.users.localPasswdFile, 'utf8');
    const account = checkedAccount(c, passwd);
    return groupIsPrivate(account.gid, account, passwd, readFileSync(c.users.localGroupFile, 'utf8')) ? account.gid : null;
  } catch {
    return null;
  }
}

function readChecked(file: string, key = ''): { text: string; stats: Stats } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ConfigError(file, 0, key, `cannot be read (${err.code ?? err.message}); check the path, and that latchkeyd's user ([daemon] user) may read it`);
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw new ConfigError(file, 0, key, 'is not a regular file');
    const euid = process.geteuid?.() ?? 0;
    try {
      checkTrustedOwner(file, stats, euid);
      const walked = checkTrustedPath(file, euid);
      if (walked.dev !== stats.dev || walked.ino !== stats.ino) {
        throw new UntrustedPath('was replaced while it was being checked; try again, and find out who is changing it');
      }
    } catch (e) {
      if (e instanceof UntrustedPath) throw new ConfigError(file, 0, key, e.message);
      throw e;
    }
    return { text: readFileSync(fd, 'utf8'), stats };
  } finally {
    closeSync(fd);
  }
}

/**
 * The mode half of the file rule, checked once the file is parsed so that the fix can fit what it
 * holds: secrets may sit only in a file nobody else can read (chmod 600), any other config file
 * may be read by all but written by no one else (chmod go-w).
 */
function requireMode(file: string, st: Stats, secrets: string[], key = '', readerGid: number | null = null): void {
  const groupReadOnly = (st.mode & 0o077) === 0o040 && readerGid !== null && readerGid !== 0 && st.gid === readerGid;
  if (secrets.length > 0 && (st.mode & 0o077) !== 0 && !groupReadOnly) {
    throw new ConfigError(file, 0, key,
      `holds secrets (${secrets.join(', ')}) but its mode is ${(st.mode & 0o777).toString(8).padStart(4, '0')} (group ${st.gid}); `
      + `fix: chmod 600 ${file}, or chgrp the daemon's group and chmod 640 so latchkeyd can re-read it after dropping root`);
  }
  try {
    checkTrustedMode(file, st);
  } catch (e) {
    if (e instanceof UntrustedPath) throw new ConfigError(file, 0, key, e.message);
    throw e;
  }
}
