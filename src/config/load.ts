// Reads /etc/latchkey/latchkey.conf (sections) or a LocalEGA /etc/ega/auth.conf (flat keys) into
// the Config every module uses. Every mistake is a ConfigError naming file:line, the key and
// the fix; nothing is silently ignored, and secret values never appear in a message.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { checkedAccount, groupIsPrivate } from '../privsep/account.js';
import { ConfigError, ConfigErrors } from '../errors.js';
import type { Config } from './types.js';
import {
  KEYS, RESERVED_IDS, RETIRED_LEGACY, SECRETS_FILE_KEYS, SECRETS_FILE_MAP, SECTIONS, displayName, findLegacy, findNative, type Draft, type KeySpec, type Loc,
} from './keys.js';
import { closest, decodeValues, hasGluedCommentChar, scanIni, type Entry, type Header } from './scan.js';
import { ValueProblem, quotable } from './values.js';
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
      healthUrl: null, backoffMaxMs: 30_000,
    },
    cache: {
      dbPath: '/run/latchkey/cache.db', ttlSec: 3600, negativeTtlSec: 60, staleGraceSec: 3600, refreshAheadSec: 60, mapNameMisses: true,
      jitter: 0.1, warmStart: 500, warmStartRate: 20, recentFile: '/var/lib/latchkey/recent-users',
    },
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
    metrics: { listen: null },
    userdb: { enabled: false },
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
 * Every mistake is reported at once: a ConfigError for one, a ConfigErrors for several.
 */
export function parseConfig(text: string, file: string, opts: { secretsUnread?: boolean } = {}): Config {
  const state = newState(file);
  applyFile(state, text, file, 'config');
  const cfg = finish(state, opts.secretsUnread === true && state.draft.secretsFile !== null);
  settle(state);
  return cfg;
}

/**
 * Reads and checks a config file (and its secrets_file), returning the Config with `source = file`.
 * Every file read here, and the TLS files it names, must be one only root can change
 * (src/config/safety.ts); a file holding secrets must also be unreadable by others.
 * A file that cannot be read at all stops at once; past that, every mistake in every file is
 * reported together (ConfigErrors), so one run of --check or check-config lists them all.
 */
export function loadConfig(file: string, opts: { credential?: string } = {}): Config {
  const state = newState(file);
  const main = readChecked(file);
  const secretsIn = applyFile(state, main.text, file, 'config');
  const readable: Array<[string, Stats, string[]]> = [[file, main.stats, secretsIn]];
  let secretsLost = false;
  const readMore = (f: string, key = ''): { text: string; stats: Stats } | null => {
    try { return readChecked(f, key); } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      state.errors.push(e);
      return null;
    }
  };
  if (state.draft.secretsFile !== null) {
    const sf = state.draft.secretsFile;
    const secrets = readMore(sf);
    if (secrets) {
      readable.push([sf, secrets.stats, ['secrets_file']]);
      applyFile(state, secrets.text, sf, 'secrets');
    } else {
      secretsLost = true;
    }
  }
  // systemd credentials (LoadCredential=/LoadCredentialEncrypted=latchkey.secrets:...): the same
  // format as a secrets_file, in a directory only this service can read.
  // `latchkeyctl reload --credential` hands over a credential systemd cannot refresh while the
  // service runs (Debian 12's systemd copies credentials at start only): it stands in for that copy.
  const credential = credentialFile();
  if (opts.credential !== undefined) {
    applyFile(state, opts.credential, 'credential latchkey.secrets (from latchkeyctl reload)', 'secrets');
  } else if (credential !== null) {
    const c = readMore(credential);
    if (c) {
      readable.push([credential, c.stats, ['credential latchkey.secrets']]);
      applyFile(state, c.text, credential, 'secrets');
    } else {
      secretsLost = true;
    }
  }
  // A file holding secrets may be read by the daemon's group (root:_latchkey 0640, as nslcd's
  // config): after dropping root, latchkeyd must still read it on SIGHUP.
  const gid = daemonGid(state);
  for (const [f, st, secrets] of readable) collect(state, () => requireMode(f, st, secrets, '', gid));
  // An unreadable secrets file is reported above; its credentials are then not known to be
  // missing, so the pairing checks are not made (as for latchkey-sync).
  const cfg = finish(state, secretsLost);
  placeLocalegaCache(state);
  // The CA file decides which server may answer for the user service, and the client key is a
  // credential: the same rule as the config. The client reads them (src/upstream/client.ts).
  for (const [key, path] of [['cacertfile', cfg.upstream.caFile], ['certfile', cfg.upstream.certFile], ['keyfile', cfg.upstream.keyFile]] as const) {
    if (path === null) continue;
    const tls = readMore(path, `upstream.${key}`);
    if (tls) collect(state, () => requireMode(path, tls.stats, [], `upstream.${key}`));
  }
  settle(state);
  cfg.source = file;
  NOTICES.set(cfg, state.notices);
  return cfg;
}

/**
 * LocalEGA's db_path names a file in a directory of root's (`/run/ega-users.db`): latchkeyd runs
 * as an unprivileged account and can never create it there, and under the unit's
 * ProtectSystem=strict all of /run but its RuntimeDirectory is read-only (EROFS). The cache is
 * disposable (RAM SQLite, rebuilt from the upstream), so a LocalEGA (top-level) db_path outside
 * [daemon] socket_dir is moved into it, keeping the file name, and said so (configNotices). A
 * [cache] db_path is the admin's explicit choice and stays as written (checked at start).
 * Done here, not in parseConfig, which shows what the file says (check-config's "effective
 * config" comes from loadConfig and shows the moved path).
 */
function placeLocalegaCache(state: State): void {
  const c = state.draft.cfg;
  const set = state.draft.setAt.get('cache.db_path');
  if (!set || set.key !== 'db_path' || state.failed.has('cache.db_path') || c.cache.dbPath === ':memory:') return;
  const dir = c.daemon.socketDir.replace(/(.)\/+$/, '$1');
  if (dirname(c.cache.dbPath) === dir) return;
  const moved = join(dir, basename(c.cache.dbPath));
  state.notices.push(`${set.file}:${set.line}: db_path: ${c.cache.dbPath} is outside [daemon] socket_dir (${dir}), where latchkeyd, `
    + `an unprivileged account, cannot create files; the cache is kept at ${moved} instead. To silence this, write db_path = ${moved}`);
  c.cache.dbPath = moved;
}

/**
 * `errors`: every mistake so far, in the order they are reported (each file's lines in order,
 * then the files' modes, then the checks across keys). `failed`: the settings whose value was
 * refused; a check across keys that involves one is not made, since its verdict would be about
 * the default standing in for the refused value.
 */
interface State { file: string; draft: Draft; headers: Header[]; errors: ConfigError[]; failed: Set<string>; notices: string[] }

function newState(file: string): State {
  return {
    file,
    draft: { cfg: defaultConfig(), username: null, password: null, secretsFile: null, upgradeUsername: null, upgradePassword: null, setAt: new Map() },
    headers: [],
    errors: [],
    failed: new Set(),
    notices: [],
  };
}

function collect(state: State, fn: () => void): void {
  try { fn(); } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    state.errors.push(e);
  }
}

/**
 * Errors reported at most, over all files of a load: enough to fix a real file in one run; a
 * file of garbage (or a wrong file given) must not take seconds of the event loop on a reload,
 * nor send megabytes to the journal, where a line over 48 KiB is split.
 */
export const MAX_REPORTED_ERRORS = 50;

/** Throws what was found: nothing, the one ConfigError, or all of them as a ConfigErrors. */
function settle(state: State): void {
  if (state.errors.length === 1) throw state.errors[0]!;
  if (state.errors.length > MAX_REPORTED_ERRORS) {
    const first = state.errors.slice(0, MAX_REPORTED_ERRORS);
    const last = first[first.length - 1]!;
    throw new ConfigErrors([...first, new ConfigError(last.file, 0, '',
      `stopped after ${MAX_REPORTED_ERRORS} errors; fix these and run the check again (is this the right file?)`)]);
  }
  if (state.errors.length > 1) throw new ConfigErrors(state.errors);
}

/** Whether the load has found enough to report: the rest of a file is then not judged. */
function enough(state: State, found: readonly ConfigError[]): boolean {
  return state.errors.length + found.length > MAX_REPORTED_ERRORS;
}

/**
 * What the loader changed on its own and the admin should hear about, one sentence each (e.g. a
 * LocalEGA db_path moved into [daemon] socket_dir). latchkeyd logs them at start and reload
 * (config.notice), `latchkeyd --check` and `latchkeyctl check-config` print them.
 */
const NOTICES = new WeakMap<Config, readonly string[]>();
export function configNotices(cfg: Config): readonly string[] {
  return NOTICES.get(cfg) ?? [];
}

/** Applies one file's keys to the draft; returns the names of the secret keys it held. */
function applyFile(state: State, text: string, file: string, kind: 'config' | 'secrets'): string[] {
  const { entries: scanned, headers, problems } = scanIni(text, file);
  const found: ConfigError[] = [...problems];
  const badSections = new Set<string>();
  if (kind === 'config') {
    for (const h of headers) {
      const bad = checkSection(h, file);
      if (bad) { found.push(bad); badSections.add(h.name); }
    }
    state.headers.push(...headers);
  } else if (headers.length > 0) {
    found.push(new ConfigError(file, headers[0]!.line, '', `a secrets_file has no sections; write only ${SECRETS_FILE_KEYS.join('=, ')}= lines`));
  }
  // The keys of an unknown section are not judged one by one: the section's error says it all.
  const entries: Entry[] = [];
  const specs: KeySpec[] = [];
  for (const e of scanned) {
    if (enough(state, found)) break;
    if (kind === 'secrets' ? e.section !== null : e.section !== null && badSections.has(e.section)) continue;
    const spec = resolveKey(e, file, kind);
    if (spec instanceof ConfigError) { found.push(spec); continue; }
    entries.push(e);
    specs.push(spec);
  }
  const wholeLine = new Map(entries.map((e, i) => [e, specs[i]!.wholeLine]));
  const values = decodeValues(entries, file, (e) => (kind === 'config' && e.section === null ? { wholeLine: wholeLine.get(e)! } : null));
  const secrets: string[] = [];
  entries.forEach((e, i) => {
    if (enough(state, found)) return;
    const spec = specs[i]!;
    const loc: Loc = { file, line: e.line, key: e.display! };
    const refuse = (problem: string): void => {
      found.push(new ConfigError(file, e.line, loc.key, problem));
      for (const t of spec.targets) state.failed.add(t);
    };
    let twice = false;
    for (const t of spec.targets) {
      const prev = state.draft.setAt.get(t);
      if (prev) {
        const where = `${prev.file}:${prev.line} and ${file}:${e.line}`;
        if (!twice) {
          found.push(new ConfigError(file, e.line, loc.key, prev.key === loc.key
            ? `is given twice (${where}); keep only one of the two lines`
            : `sets the same thing as ${prev.key} (${where}); keep only one of the two lines`));
        }
        twice = true;
        continue;
      }
      state.draft.setAt.set(t, loc);
    }
    // The first line stays in force; judging the second one's value too would only add noise.
    if (twice) return;
    const value = values[i]!;
    if (value instanceof ConfigError) return refuse(value.problem);
    // A LocalEGA line (top level) runs to the end of the line: a # there is part of the value.
    if (e.section !== null && hasGluedCommentChar(e.rawValue)) {
      return refuse("contains # or ; right after other text, which would cut the value there; quote it ('...') or escape it (\\# \\;)");
    }
    try {
      spec.apply(state.draft, value);
    } catch (err) {
      if (!(err instanceof ValueProblem)) throw err;
      // A username holding a ':' is most likely user:password pasted whole: not quoted either.
      const shown = spec.secret || (loc.key.endsWith('username') && value.includes(':')) ? 'the value (not shown)' : quotable(value);
      return refuse(`${shown} ${err.message}`);
    }
    if (spec.secret) secrets.push(loc.key);
  });
  found.sort((a, b) => a.line - b.line);
  state.errors.push(...found);
  return secrets;
}

function checkSection(h: Header, file: string): ConfigError | null {
  if ((SECTIONS as readonly string[]).includes(h.name)) return null;
  const near = closest(h.name, SECTIONS);
  return new ConfigError(file, h.line, `[${h.name}]`,
    `unknown section; ${near ? `did you mean [${near}]? ` : ''}sections are ${SECTIONS.map((s) => `[${s}]`).join(' ')}`);
}

function resolveKey(e: Entry, file: string, kind: 'config' | 'secrets'): KeySpec | ConfigError {
  if (kind === 'secrets') {
    e.display = e.key;
    if (Object.hasOwn(SECRETS_FILE_MAP, e.key)) {
      const [sec, key] = SECRETS_FILE_MAP[e.key as keyof typeof SECRETS_FILE_MAP];
      return findNative(sec, key)!;
    }
    const near = closest(e.key, SECRETS_FILE_KEYS);
    return new ConfigError(file, e.line, e.key,
      `unknown key in a secrets_file; ${near ? `did you mean ${near}? ` : ''}expected ${SECRETS_FILE_KEYS.join(', ')}`);
  }
  const spec = e.section === null ? findLegacy(e.key) : findNative(e.section, e.key);
  if (spec) {
    e.display = displayName(spec, e.section === null, e.key);
    return spec;
  }
  e.display = e.section === null ? e.key : `${e.section}.${e.key}`;
  return new ConfigError(file, e.line, e.display, unknownKeyHint(e));
}

function unknownKeyHint(e: Entry): string {
  const elsewhere = KEYS.filter((k) => k.key === e.key && k.section !== e.section);
  const legacy = KEYS.find((k) => k.legacy === e.key);
  if (e.section === null) {
    if (Object.hasOwn(RETIRED_LEGACY, e.key)) return `is a key of an older LocalEGA that latchkey has no setting for: ${RETIRED_LEGACY[e.key]}`;
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

/**
 * Records a mistake found across keys at `l`, unless the value of `l`'s setting or of one of
 * `alsoAbout` was refused (its error already stands; the default in its place proves nothing).
 */
type Fail = (l: Loc, problem: string, ...alsoAbout: string[]) => void;

/** Checks that need several keys at once; runs after every file is applied. Records, never throws. */
function finish(state: State, secretsUnread = false): Config {
  const { draft, file } = state;
  const c = draft.cfg;
  const at = (t: string): Loc => ({ ...(draft.setAt.get(t) ?? { file, line: headerLine(state, t.split('.')[0]!), key: t }), target: t });
  const fail: Fail = (l, problem, ...alsoAbout) => {
    if ([l.target, ...alsoAbout].some((t) => t !== undefined && state.failed.has(t))) return;
    state.errors.push(new ConfigError(l.file, l.line, l.key, problem));
  };

  if (c.upstream.byNameUrl === '') fail(at('upstream.by_name_url'), 'is required; add by_name_url = https://… under [upstream] (LocalEGA: cega_endpoint_username)');
  if (c.upstream.byUidUrl === '') fail(at('upstream.by_uid_url'), 'is required; add by_uid_url = https://… under [upstream] (LocalEGA: cega_endpoint_uid)');
  if (!secretsUnread && (draft.username === null) !== (draft.password === null)) {
    const have = draft.username === null ? 'upstream.password' : 'upstream.username';
    fail(at(have), `is set without its pair; give both username and password (or neither)${draft.secretsFile ? ' here or in the secrets_file' : ''}`, 'upstream.username', 'upstream.password');
  }
  c.upstream.basicAuth = draft.username !== null && draft.password !== null ? { user: draft.username, password: draft.password } : null;
  if (c.upstream.basicAuth && c.upstream.bearerToken !== null) {
    const b = at('upstream.bearer_token');
    const u = at('upstream.password');
    fail(b, `conflicts with basic credentials (${u.key} at ${u.file}:${u.line}); use one or the other`, 'upstream.username', 'upstream.password');
  }
  // Token mode: the username/password (or api_key) are the login to token_url, never sent to the
  // user endpoints; a static bearer_token would make two sources of the Authorization header.
  const u = c.upstream;
  if (u.tokenUrl !== null) {
    if (u.bearerToken !== null) fail(at('upstream.bearer_token'), 'conflicts with token_url (token mode gets its bearer token from token_url); use one or the other');
    if (!secretsUnread && u.apiKey === null && u.basicAuth === null) {
      fail(at('upstream.token_url'), 'needs the credentials to log in with: username and password, or api_key (in the secrets_file or the latchkey.secrets credential)',
        'upstream.username', 'upstream.password', 'upstream.api_key');
    }
    if (u.apiKey !== null && u.basicAuth !== null) fail(at('upstream.api_key'), 'conflicts with username/password; token mode logs in with one or the other', 'upstream.username', 'upstream.password');
    if (!u.insecureHttp && /^http:/i.test(u.tokenUrl)) {
      fail(at('upstream.token_url'), 'would send the login credentials and receive the token in clear text over http://; use https://, or, for a private link such as loopback, accept it with insecure_http = yes', 'upstream.insecure_http');
    }
  } else if (u.apiKey !== null) {
    fail(at('upstream.api_key'), 'is only used in token mode; set token_url (where it is exchanged for a token), or use bearer_token for a static token', 'upstream.token_url');
  }
  // Plain http:// would show the credentials to anyone on the path on every request (basic auth
  // is only base64), and without certificate checks anyone on the path can answer as the user
  // service with any password hash: both only when the admin says so (insecure_http/_tls),
  // and then the daemon says so at every start and reload and in `latchkeyctl status`.
  if (!c.upstream.insecureHttp && credentialsOverHttp(c).length > 0) {
    const key = /^http:/i.test(c.upstream.byNameUrl.trim()) ? 'upstream.by_name_url' : 'upstream.by_uid_url';
    fail(at(key), `would send the upstream ${c.upstream.basicAuth ? 'username and password (basic auth is only base64)' : 'bearer token'} `
      + 'in clear text over http:// with every request; use https://, or, for a private link such as loopback, '
      + 'accept it with insecure_http = yes ([upstream], or a top-level line in a LocalEGA auth.conf)', 'upstream.insecure_http');
  } else if (!c.upstream.insecureHttp && plainHttpOrigins(c).length > 0) {
    // Without credentials http:// is no better: anyone on the path can answer for the user service
    // with a password hash and keys of their choosing, which is a login.
    const key = /^http:/i.test(c.upstream.byNameUrl.trim()) ? 'upstream.by_name_url' : 'upstream.by_uid_url';
    fail(at(key), 'uses plain http://, so anyone on the network path can answer as the user service with any password hash or key; '
      + 'use https://, or, for a private link such as loopback, accept it with insecure_http = yes ([upstream], or a top-level line in a LocalEGA auth.conf)', 'upstream.insecure_http');
  }
  for (const [key, on] of [['upstream.verify_peer', c.upstream.verifyPeer], ['upstream.verify_hostname', c.upstream.verifyHostname]] as const) {
    if (on || c.upstream.insecureTls) continue;
    fail(at(key), `is "no", which lets anyone on the network path pose as the user service and answer with any password hash; `
      + 'remove it (for a private CA set cacertfile), or accept the risk with insecure_tls = yes ([upstream], or a top-level line in a LocalEGA auth.conf)', 'upstream.insecure_tls');
  }
  if ((c.upstream.certFile === null) !== (c.upstream.keyFile === null)) {
    fail(at(c.upstream.certFile ? 'upstream.certfile' : 'upstream.keyfile'), 'a client certificate needs both certfile and keyfile', 'upstream.certfile', 'upstream.keyfile');
  }
  // Defaults derived from other settings follow them unless set explicitly: a LocalEGA
  // auth.conf with cache_ttl = 30 must start, so refresh-ahead is a tenth of the ttl (at most
  // the 60 s default), the host budget four user budgets, and connect_timeout fits the request.
  const given = (t: string): boolean => draft.setAt.has(t);
  if (!given('cache.refresh_ahead')) c.cache.refreshAheadSec = Math.min(60, Math.floor(c.cache.ttlSec / 10));
  if (!given('pam.host_max_failures')) c.pam.hostMaxFailures = Math.min(100_000, 4 * c.pam.maxFailures);
  if (!given('upstream.connect_timeout')) c.upstream.connectTimeoutMs = Math.min(c.upstream.connectTimeoutMs, c.upstream.requestTimeoutMs);
  if (c.upstream.requestTimeoutMs < c.upstream.connectTimeoutMs) {
    fail(at('upstream.request_timeout'), 'is shorter than connect_timeout; the request timeout covers the connection too', 'upstream.connect_timeout');
  }
  if (c.cache.refreshAheadSec >= c.cache.ttlSec) {
    fail(at('cache.refresh_ahead'), `must be shorter than the cache ttl (${c.cache.ttlSec}s), or every lookup would refresh; remove it to use a tenth of the ttl`, 'cache.ttl');
  }
  if (c.pam.hostMaxFailures < c.pam.maxFailures) {
    fail(at('pam.host_max_failures'), `is below max_failures (${c.pam.maxFailures}); one user's typos would lock out the whole source address`, 'pam.max_failures');
  }
  if (c.users.minUid > c.users.maxUid) fail(at('users.min_uid'), `is above max_uid (${c.users.maxUid})`, 'users.max_uid');
  if (c.users.uidShift > c.users.maxUid) {
    fail(at('users.uid_shift'), `is above max_uid (${c.users.maxUid}), so every user would be refused`, 'users.max_uid');
  }
  if (!given('pam.max_sessions') && given('pam.session_limit')) c.pam.maxSessionsPerUser = 1;
  if (c.pam.onLimit === 'replace-oldest' && c.pam.maxSessionsPerUser === 0) {
    fail(at('pam.on_limit'), 'has no limit to act on; set max_sessions (and session_limit for its scope)', 'pam.max_sessions');
  }
  if (c.pam.sessionRenewal === 'on-login' && c.pam.maxSessionAgeSec === 0) {
    fail(at('pam.session_renewal'), 'has nothing to renew: sessions have no age limit; set max_session_age (e.g. 8h) or remove it', 'pam.max_session_age');
  }
  if (c.events.url !== null && !c.upstream.insecureHttp && /^http:/i.test(c.events.url)) {
    fail(at('events.url'), `would send session events${c.events.bearerToken ? ' and the bearer token' : ''} in clear text over http://; use https://, or accept it with [upstream] insecure_http = yes`, 'upstream.insecure_http');
  }
  if (c.events.url === null && c.events.bearerToken !== null) fail(at('events.bearer_token'), 'is set but [events] url is not; set url or remove it', 'events.url');
  finishLocal(draft, at, fail, secretsUnread);
  return c;
}

/** [local]: the uid range, contexts, role and upgrade settings, which only make sense together. */
function finishLocal(draft: Draft, at: (t: string) => Loc, fail: Fail, secretsUnread: boolean): void {
  const c = draft.cfg;
  const l = c.local;
  if (l.minUid > l.maxUid) fail(at('local.min_uid'), `is above max_uid (${l.maxUid})`, 'local.max_uid');
  // The lowest reserved id in the range is the one to end it below (rootd says the same).
  const reserved = RESERVED_IDS.find((r) => r >= l.minUid && r <= l.maxUid);
  if (reserved !== undefined) {
    fail(at('local.max_uid'), `makes the range ${l.minUid} .. ${l.maxUid} include ${reserved} (nobody/(uint16)-1); end it below ${reserved}`, 'local.min_uid');
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
      + '([users] uid_shift, min_uid, max_uid); choose a local range outside it, e.g. below uid_shift',
      'local.min_uid', 'local.max_uid', 'users.uid_shift', 'users.min_uid', 'users.max_uid');
  }
  finishContexts(draft, at, fail, secretsUnread);
}

function finishContexts(draft: Draft, at: (t: string) => Loc, fail: Fail, secretsUnread: boolean): void {
  const c = draft.cfg;
  const l = c.local;
  if (!l.contexts.some((x) => x.id === l.defaultContext)) {
    fail(at('local.default_context'), `names the context ${l.defaultContext}, which [local] contexts does not define (${l.contexts.map((x) => x.id).join(', ')})`, 'local.contexts');
  }
  for (const x of l.contexts) {
    if (x.algorithm === 'yescrypt') {
      // The cost is crypt_gensalt's count; what the ceiling bounds is the memory it implies.
      const { memory } = yescryptGensalt(x.cost);
      if (memory > c.pam.maxYescryptMemory) {
        const mib = (n: number): string => `${Math.round((n / 2 ** 20) * 100) / 100} MiB`;
        fail(at('local.contexts'), `gives context ${x.id} a yescrypt cost of ${x.cost}, which needs ${mib(memory)} per hash, above [pam] max_yescrypt_memory (${mib(c.pam.maxYescryptMemory)}): its hashes would never verify; lower the cost or raise the ceiling`, 'pam.max_yescrypt_memory');
      }
      continue;
    }
    const over = x.algorithm === 'bcrypt' ? (x.cost > c.pam.maxBcryptCost ? `[pam] max_bcrypt_cost (${c.pam.maxBcryptCost})` : null)
      : x.cost > c.pam.maxShaRounds ? `[pam] max_sha_rounds (${c.pam.maxShaRounds})` : null;
    if (over) fail(at('local.contexts'), `gives context ${x.id} a ${x.algorithm} cost of ${x.cost}, above ${over}: its hashes would never verify; lower it or raise the ceiling`, 'pam.max_bcrypt_cost', 'pam.max_sha_rounds');
  }
  if (!secretsUnread && (draft.upgradeUsername === null) !== (draft.upgradePassword === null)) {
    fail(at(draft.upgradeUsername === null ? 'local.upgrade_password' : 'local.upgrade_username'), 'is set without its pair; give both upgrade_username and upgrade_password (or neither)', 'local.upgrade_username', 'local.upgrade_password');
  }
  l.upgradeBasicAuth = draft.upgradeUsername !== null && draft.upgradePassword !== null ? { user: draft.upgradeUsername, password: draft.upgradePassword } : null;
  if (l.upgradeBasicAuth && l.upgradeBearerToken !== null) fail(at('local.upgrade_bearer_token'), 'conflicts with upgrade_username/upgrade_password; use one or the other', 'local.upgrade_username', 'local.upgrade_password');
  if ((l.upgradeCertFile === null) !== (l.upgradeKeyFile === null)) {
    fail(at(l.upgradeCertFile ? 'local.upgrade_certfile' : 'local.upgrade_keyfile'), 'a client certificate needs both upgrade_certfile and upgrade_keyfile', 'local.upgrade_certfile', 'local.upgrade_keyfile');
  }
  if (l.upgrade === 'remote' && l.upgradeUrl === null) {
    fail(at('local.upgrade'), 'is remote, which needs upgrade_url (the primary\'s update endpoint, https://…/latchkey/v1/upgrade) under [local]', 'local.upgrade_url');
  }
  if (l.role === 'secondary') {
    if (l.primary === null) fail(at('local.role'), 'is secondary, which needs primary = USER@HOST (where snapshots come from and changes are made) under [local]', 'local.primary');
    if (l.upgrade === 'local') {
      fail(at(draft.setAt.has('local.upgrade') ? 'local.upgrade' : 'local.role'),
        'a secondary\'s store is replaced by every snapshot, so a local upgrade would be lost: set upgrade = remote (with upgrade_url) or upgrade = off');
    }
  }
  if (l.upgradeListen !== null) {
    if (l.role !== 'primary') fail(at('local.upgrade_listen'), 'only a primary takes upgrades from secondaries; set role = primary or remove it', 'local.role');
    if (l.upgradeListenCert === null || l.upgradeListenKey === null) fail(at('local.upgrade_listen'), 'needs upgrade_listen_cert and upgrade_listen_key (the endpoint is https only)', 'local.upgrade_listen_cert', 'local.upgrade_listen_key');
    if (!secretsUnread && l.upgradeListenToken === null) fail(at('local.upgrade_listen'), 'needs upgrade_listen_token (in the secrets_file): the endpoint takes only secondaries that present it', 'local.upgrade_listen_token');
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
