// The effective configuration every module reads. Produced by src/config/load.ts from
// /etc/latchkey/latchkey.conf (sections) or a LocalEGA auth.conf (flat keys).

export interface UpstreamConfig {
  /** URL prefix; the name is appended (or replaces `%s`) — cega_endpoint_username */
  byNameUrl: string;
  /** URL prefix; the upstream uid is appended (or replaces `%u`) — cega_endpoint_uid */
  byUidUrl: string;
  /** HTTP basic credentials (cega_creds = user:password), or null */
  basicAuth: { user: string; password: string } | null;
  /** bearer token alternative to basic auth, or null */
  bearerToken: string | null;
  /** token mode (token_url): username/password (basicAuth) or apiKey are POSTed here for a
   *  short-lived bearer token that is then sent instead (src/upstream/token.ts); null = not token mode */
  tokenUrl: string | null;
  /** token mode: log in with this api key instead of username/password — api_key */
  apiKey: string | null;
  /** dotted path to the user object inside the reply ('' = top level) — cega_json_prefix */
  jsonPrefix: string;
  connectTimeoutMs: number;
  /** whole request, headers and body */
  requestTimeoutMs: number;
  maxBodyBytes: number;
  /** cap on concurrent upstream requests over all keys */
  maxConcurrent: number;
  caFile: string | null;
  certFile: string | null;
  keyFile: string | null;
  verifyPeer: boolean;
  verifyHostname: boolean;
  /** allow credentials over plain http:// (refused otherwise) — insecure_http */
  insecureHttp: boolean;
  /** allow verify_peer/verify_hostname = no (refused otherwise) — insecure_tls */
  insecureTls: boolean;
  /** what `latchkeyctl status` GETs to see whether the upstream is up (2xx = up); null = no
   *  request, status reports the last real request's outcome — health_url */
  healthUrl: string | null;
  /** the longest exponential hold-off after failures in a row (src/upstream/backoff.ts); unset = 30 s — backoff_max */
  backoffMaxMs?: number;
}

export interface CacheConfig {
  /** SQLite file, on tmpfs/ramfs — db_path. The sessions keep their own file, sessions.db, in the same directory (sessions/store.ts). */
  dbPath: string;
  /** seconds a positive entry is fresh — cache_ttl */
  ttlSec: number;
  /** seconds a "no such user" answer is remembered */
  negativeTtlSec: number;
  /** seconds past expiry a stale entry may still be served while upstream is failing */
  staleGraceSec: number;
  /** entries used within this many seconds of expiry are refreshed in the background;
   *  unless set, a tenth of the ttl, at most 60 s */
  refreshAheadSec: number;
  /** publish names that do not exist (asked by a user other than root) in the shared-memory map,
   *  which every local user can read; false: such misses go over nss.sock. Unset means true. */
  mapNameMisses?: boolean;
  /** fraction (0..0.5) each entry's ttl, negative ttl and refresh-ahead window are spread by
   *  (cache/policy.ts); unset = 0 (the loader's default is 0.1) — jitter */
  jitter?: number;
  /** after a start, refresh up to this many recently used users that are not fresh; 0 = off; unset = 0 */
  warmStart?: number;
  /** warm-start refreshes per second at most; unset = 20 */
  warmStartRate?: number;
  /** names-only list of recently used users, kept across reboots for the warm start; null or unset = none */
  recentFile?: string | null;
}

export interface UsersConfig {
  /** local uid = upstream uid + uidShift — ega_uid_shift */
  uidShift: number;
  /** every user's primary gid — ega_gid */
  gid: number;
  groupName: string;
  /** lowest local uid ever handed out (after the shift) */
  minUid: number;
  maxUid: number;
  nameRegex: RegExp;
  /** login shell — ega_shell */
  shell: string;
  /** names never served nor sent upstream, whatever the local files say (default root) */
  denyNames: string[];
  /** the host's own accounts: names and uids here are never served (re-read when changed) */
  localPasswdFile: string;
  localGroupFile: string;
}

export interface HomesConfig {
  /** base directory; home = base/name — ega_dir */
  base: string;
  /** 'chroot': root-owned home + user-owned upload dir; 'plain': user-owned home */
  layout: 'chroot' | 'plain';
  /** mode of the user-owned directory — ega_dir_attrs, octal */
  mode: number;
  /** session umask — ega_dir_umask, octal */
  umask: number;
  /** name of the user-writable directory inside a chroot home */
  uploadDir: string;
}

export interface PamConfig {
  prompt: string;
  /** confine sessions to the home — chroot_sessions */
  chrootSessions: boolean;
  /** failures per user within throttleWindowSec before throttling */
  maxFailures: number;
  /** failures per remote host (over all users) within throttleWindowSec; unless set, 4 x maxFailures */
  hostMaxFailures: number;
  throttleWindowSec: number;
  throttleLockoutSec: number;
  /** open sessions allowed per sessionLimit scope (max_sessions, formerly max_sessions_per_user); 0 = unlimited */
  maxSessionsPerUser: number;
  /** what counts against maxSessionsPerUser: all of a user's sessions, those of one PAM service,
   *  or those of one service from one remote host (Hailo's "one per application and device") */
  sessionLimit: 'per-user' | 'per-user-service' | 'per-user-service-host';
  /** at the limit: refuse the new login, or end the oldest session in its scope and let it in */
  onLimit: 'refuse' | 'replace-oldest';
  /** 0 = unlimited; older sessions are ended */
  maxSessionAgeSec: number;
  /** on-login: a user's successful authentication restarts the age clock of their open sessions
   *  (never for members of privilegedGroups); off: sessions end at max age whatever happens */
  sessionRenewal: 'off' | 'on-login';
  /** groups whose members' sessions are never renewed (by login or by latchkeyctl): a latchkey
   *  user's primary group ([users] group_name/gid) or a host group (local_group) listing the name */
  privilegedGroups: string[];
  /** latchkey users (upstream or local) whose sessions are never renewed */
  privilegedUsers: string[];
  /** ceilings on the work a hash from upstream may ask for; above them it is refused unchecked */
  maxBcryptCost: number;
  maxShaRounds: number;
  /** yescrypt/scrypt memory, 128 * N * r bytes */
  maxYescryptMemory: number;
}

export interface DaemonConfig {
  /** where nss.sock and priv.sock live */
  socketDir: string;
  /** nss.sock connections in all; 0 = from the open-file limit (thousands) */
  maxConnections: number;
  /** nss.sock connections one peer uid may hold; 0 = an eighth of the total */
  maxConnectionsPerUid: number;
  idleTimeoutMs: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** sshd's main config, read for the cross-checks (ChrootDirectory vs chroot_sessions, Match Group) */
  sshdConfig: string;
  /** the unprivileged account latchkeyd runs as (a name in the local passwd file, or a numeric uid); never root */
  user: string;
  /** latchkey-rootd's socket: homes and ending sessions go through it */
  rootdSocket: string;
}

/** The algorithms a hash context may name (src/localusers/contexts.ts makes their settings). */
export type ContextAlgorithm = 'bcrypt' | 'yescrypt' | 'sha512crypt' | 'sha256crypt';

/** One hash context: an id naming an algorithm and its cost, never changed once hashes use it. */
export interface HashContext {
  id: string;
  algorithm: ContextAlgorithm;
  /** bcrypt log2 cost, yescrypt crypt_gensalt count (1..11), sha*crypt rounds */
  cost: number;
}

/** Persistent local users (src/localusers/): the on-disk store, its uid range, hash contexts,
 *  upgrades on login, and primary/secondary sync. */
export interface LocalConfig {
  /** the store's SQLite file, on disk (never the RAM cache); snapshot/ and incoming/ live beside it */
  dbPath: string;
  /** the local users' own uid range, disjoint from the upstream's shifted range; both 0 when the
   *  default range (9000 .. 9999) overlaps the upstream's and none was configured: no local users */
  minUid: number;
  maxUid: number;
  /** who answers a name both have: the local store (default) or the upstream */
  precedence: 'local' | 'upstream';
  contexts: HashContext[];
  defaultContext: string;
  /** what a login with a hash of another context than the default does */
  upgrade: 'off' | 'local' | 'remote';
  /** standalone: read-write, no sync; primary: read-write, publishes snapshots; secondary: read-only, takes them */
  role: 'standalone' | 'primary' | 'secondary';
  /** secondary: the ssh destination snapshots come from (user@host), also shown as where to make changes */
  primary: string | null;
  syncPort: number;
  /** secondary: the ssh private key and known_hosts file latchkey-sync uses */
  syncKey: string;
  syncKnownHosts: string;
  /** remote upgrades: the primary's update endpoint (https://…) and its credentials */
  upgradeUrl: string | null;
  upgradeBasicAuth: { user: string; password: string } | null;
  upgradeBearerToken: string | null;
  upgradeCaFile: string | null;
  upgradeCertFile: string | null;
  upgradeKeyFile: string | null;
  upgradeTimeoutMs: number;
  upgradeMaxConcurrent: number;
  /** primary: address:port the update endpoint listens on (https), or null for none */
  upgradeListen: string | null;
  upgradeListenCert: string | null;
  upgradeListenKey: string | null;
  /** primary: the bearer token secondaries must present */
  upgradeListenToken: string | null;
}

/** Session events POSTed to a collector (src/events/): off when url is null. */
export interface EventsConfig {
  url: string | null;
  bearerToken: string | null;
  caFile: string | null;
  /** events waiting to be sent; past it new events are dropped and counted */
  queueSize: number;
  timeoutMs: number;
}

/** Where the Prometheus metrics are served (src/metrics/): a Unix socket or a loopback port; null = off. */
export type MetricsListen = { unix: string } | { host: '127.0.0.1' | '::1'; port: number };
export interface MetricsConfig {
  listen: MetricsListen | null;
}

/** The systemd userdb provider (src/userdb/): userdb.sock in socket_dir, io.systemd.UserDatabase. */
export interface UserdbConfig {
  enabled: boolean;
}

/** The periodic cleanup of temporary accounts (src/cleanup/). */
export interface CleanupConfig {
  /** how often it runs; 0 = never (latchkeyctl purge --expired still works) */
  intervalSec: number;
  /** expired cache entries and expired local users are removed this long after their expiry */
  expiredGraceSec: number;
}

export interface Config {
  /** file the config came from ('' for the built-in defaults) */
  source: string;
  upstream: UpstreamConfig;
  cache: CacheConfig;
  users: UsersConfig;
  homes: HomesConfig;
  pam: PamConfig;
  daemon: DaemonConfig;
  local: LocalConfig;
  events: EventsConfig;
  cleanup: CleanupConfig;
  metrics: MetricsConfig;
  userdb: UserdbConfig;
}
