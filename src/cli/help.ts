// latchkeyctl --help texts: one per command, each with examples and the --json field names.
// The field names are the daemon's admin API (typed in src/protocol/admin.ts) and are stable.

export const MAIN_HELP = `usage: latchkeyctl [--socket-dir DIR] [--json] [--utc] COMMAND [ARGS]

Inspect and operate a running latchkeyd over its root-only socket (priv.sock).

commands:
  status                       daemon, upstream, cache and session overview
  users [--stale] [--negative] cached users (or remembered "no such user" answers)
  show NAME|UID                everything cached about one user (never the hash), home, sessions
  lookup NAME|UID [--refresh]  resolve as NSS would, or force a fresh upstream fetch; shows timing
  invalidate NAME|UID... | --all
                               mark entries expired: the next lookup refetches
  flush [NAME|UID | --negative]
                               drop cache entries: all, one user's (positive and negative),
                               or only the negative ones
  why NAME                     the last login decision for a user: each PAM phase (and the
                               keys helper), what was answered and why, when, the session
  sessions [NAME] [--ended]     list open login sessions (--ended: also ended ones, and why)
  sessions kill ID | --user NAME
                               end sessions (SIGTERM to the session's process)
  sessions renew ID | --user NAME
                               restart the max_session_age clock (never for privileged users)
  stats                        counters and latency histograms
  throttle                     login lockouts and failure counters, per user and per remote host
  throttle reset USER | --host RHOST | --all
                               lift lockouts: clear the failures recorded
  check-config [FILE]          validate a config file offline, print it with secrets redacted
  import-ega [FILE]            turn a LocalEGA auth.conf into latchkey.conf and a secrets file
  reload [--credential FILE]   read the config (and secrets) again; fails when it was refused
  auth-test NAME               prompt for a password and verify it as PAM would
  local SUBCOMMAND             persistent local users: add, passwd, keys, disable, enable,
                               remove, list, show, contexts ("latchkeyctl local --help")
  purge --expired [--dry-run]  remove temporary accounts expired past [cleanup] expired_grace
                               now, end their sessions, list their homes (never deleted)
  help [COMMAND]               this text, or one command's
  version                      latchkeyctl's version (also --version)

global options:
  --socket-dir DIR  where priv.sock lives (default $LATCHKEY_SOCKET_DIR, else /run/latchkey)
  --timeout DUR     how long to wait for latchkeyd (default 5s; e.g. 30s, 500ms); exit 3 after
  --json            JSON on stdout (field names are stable; see each command's --help)
  --utc             exact times (2024-05-01T12:00:00Z) instead of "in 42m" / "3h ago"
  -h, --help        help; "latchkeyctl COMMAND --help" for one command

output: an aligned table on a terminal; when stdout is not a terminal and --json is not given,
tab-separated lines without a header, with exact UTC times and sizes in bytes (for scripts).
Each command's --help says what its piped lines hold: "columns:" (the table's columns, in
order) or "piped:". With --json, every failure also prints one object on stdout:
  {"ok": false, "error": "...", "code": "..."}
code: usage (exit 2); daemon_unavailable with "reason" (not_root, no_socket, refused, denied,
timeout, protocol; exit 3); the daemon's refusal (not_found, unavailable, bad_request, invalid,
conflict, range_full, read_only; with the command's extra fields, e.g. not_managed); internal.

exit codes:
  0  ok
  1  not found, check failed, or authentication failed (auth-test)
  2  usage error
  3  daemon unavailable: not running, not answering, or the caller is not root
     (priv.sock is root-only; run latchkeyctl with sudo)
  4  not managed by latchkey (lookup, show, why): a host account in /etc/passwd, a host
     group's name or member, [users] deny_names, or refused by the name or uid rule

errors go to stderr; no password, hash or upstream credential is ever printed.
`;

export const COMMAND_HELP: Record<string, string> = {
  status: `usage: latchkeyctl status [--json]

Shows whether latchkeyd is up, its version and config file, uptime, socket paths, whether the
upstream user service answers and its last
error, how latchkeyd authenticates to it (none, basic, bearer, or token: the token's remaining
validity, logins, refreshes and the last failure at token_url; never a secret), the cache file and size, entries by state, the cache hit ratio, the open sessions and
whether latchkey-rootd (which creates homes and ends sessions) accepts a connection, the
shared-memory map the NSS module reads before it asks the daemon (on, or why it is off), and
the persistent local users: role, how many, the snapshot's age, the last sync error, names
both the store and the upstream have, and hash upgrades.
The upstream's state is one of reachable, unreachable (no HTTP answer: connection refused, DNS,
timeout, TLS), http_error (5xx, a redirect, another unexpected status), auth_failed (401/403,
or token_url refusing the login), invalid_reply (a 200 that is not a usable record) or unknown
(no request yet), with since when. With [upstream] health_url set, status GETs it now; without
(the default), status sends no request and reports the last lookup's outcome. Also: when the
config in force was loaded and the sha256 of its file (compare with sha256sum), the last
reload's result (a refused one keeps the previous config and says why), and where the
Prometheus metrics are served ([metrics] listen).
Exit 3 when the daemon is down.

piped: one "key<TAB>value" line per fact (status | grep ^upstream).

examples:
  sudo latchkeyctl status
  sudo latchkeyctl status --json | jq .cache.entries

--json fields:
  daemon ("up"), version, pid, started_at, uptime_s, config_file,
  sockets {dir, nss, priv},
  upstream {by_name_url, by_uid_url, reachable, probe_ms, probe_error, last_error {message, at} | null,
            auth {mode ("none", "basic", "bearer", "token"), token_expires_at, token_valid_for_s,
                  logins, refreshes, last_auth_error {message, at} | null},
            health {state ("reachable", "unreachable", "http_error", "auth_failed",
                    "invalid_reply", "unknown"), since, detail, url (health_url; null: none),
                    last_lookup {outcome, at, ms, message} | null},
            holdoff {until, reason, failures, half_open} | null}
            (reachable: state is "reachable", null when unknown; probe_ms and probe_error:
             the health_url request status just made, null without one; holdoff: nothing is
             sent upstream until "until" (failures in a row, or the service's Retry-After),
             then one probe request; null: asked freely)
  cache {file, size_bytes, ttl_s, negative_ttl_s, stale_grace_s,
         entries {fresh, stale, expired, negative, total}, hit_ratio (0..1 or null),
         jitter_pct ([cache] jitter), warm_start {state ("off", "waiting", "running", "done",
         "stopped"), total, done, refreshed, failed},
         write_error {code (e.g. "SQLITE_FULL"), since, detail, fix} | null, held_in_memory,
         recreated {at, reason, restored_users} | null}
        (write_error: the file refuses writes, e.g. its tmpfs is full; users fetched meanwhile
         are answered from memory (held_in_memory) and written, clearing it, once a write
         succeeds. recreated: the file was deleted, replaced or corrupt while running and was
         made again with every user the daemon still had)
  clock {last_jump {at, delta_ms (> 0: forward), direction ("forward", "back")} | null, jumps}
        (wall-clock steps over 60 s seen against the monotonic clock)
  sessions {open},
  rootd {socket, reachable, error}   (latchkey-rootd: homes and ending sessions need it)
  map {file, state ("on", "off", "failed"), reason, users, negative, size_bytes, rebuilds,
       not_published}   (the shared-memory map; "failed": lookups go over nss.sock)
  insecure [TEXT]   (weakened settings in effect, e.g. insecure_http; [] when none)
  local {role, precedence, db, users, default_context, upgrade, contexts {ID: users},
         snapshot {taken_at, taken_on, users} | null, last_sync_at, last_sync_error,
         conflicts [{name, with, detail}],
         upgrades {local_ok, local_failed, remote_ok, remote_failed, remote_skipped}}
        (the persistent local users; absent from a daemon without them)
  events {url, queue_size, sent, failed_attempts, dropped, queued, last_error {message, at} | null}
        (session events POSTed to [events] url; url null: off)
  config {file, loaded_at, digest (first 16 hex digits of the file's sha256),
          last_reload {at, ok, credential ("none", "start", "pushed"), error} | null}
  metrics {listen, serving, error}   (listen null: [metrics] off)
  userdb {enabled, path, connections, accepted, refused, requests, errors, malformed,
          records_refused}   (systemd's io.systemd.UserDatabase on userdb.sock; path null: off)
  (times are epoch milliseconds; when the daemon is down: {"daemon": "down", "error": "..."})
`,
  users: `usage: latchkeyctl users [--stale] [--negative] [--json] [--utc]

Lists cached users. --stale lists only entries past their TTL (served only while the upstream
is failing, within the stale grace). --negative lists the remembered "no such user" answers
instead.

columns: NAME UID FETCHED EXPIRES STATE KEYS PASSWORD HOME
  STATE is fresh, stale (expired, still served if upstream fails) or expired (past the grace)
  HOME  yes/no: whether the home directory exists

examples:
  sudo latchkeyctl users
  sudo latchkeyctl users --stale --utc
  sudo latchkeyctl users | cut -f1          # names, one per line

--json fields:
  now,
  users [{name, uid, upstream_uid, gid, fetched_at, expires_at, state, keys, has_password,
          home, home_exists}]
  negative [{key, kind ("name"|"uid"), fetched_at, expires_at}]   (with --negative)
`,
  show: `usage: latchkeyctl show NAME|UID [--json] [--utc]

Everything cached about one user: identity, cache times and state, gecos, shell, home (and
whether it exists), public keys (type, SHA256 fingerprint, comment), the password's hash kind
and cost (never the hash), and open sessions. Reads the cache only; use "lookup" to fetch.
Exit 1 when the user is not cached; exit 4 for a name or uid latchkey does not manage (a host
account, a host group's name or member, the deny list, the name or uid rule), which it says.

piped: one "key<TAB>value" line per fact, every line keyed (show alice | grep ^keys).

examples:
  sudo latchkeyctl show alice
  sudo latchkeyctl show 10042 --json

--json fields:
  user {name, uid, upstream_uid, gid, gecos, shell, home, home_exists, fetched_at, expires_at,
        state, has_password, password {kind, cost, cost_name}, keys [{type, fingerprint, comment}]}
  sessions [{id, user, uid, service, rhost, tty, pid, started_at}]
  not found: {"ok": false, "code": "not_found", "error", "not_managed"}
    (not_managed only for a name or uid the host keeps: "local account", "local group",
     "local group member", "deny list", "name rule", "uid rule"; the error says where)
`,
  lookup: `usage: latchkeyctl lookup NAME|UID [--refresh] [--json]

Resolves a user through the daemon exactly as NSS (getpwnam/getpwuid) would: from the cache
when fresh, else from upstream. --refresh skips the cache and fetches from upstream now (the
result replaces the cached entry). Prints where the answer came from and how long it took.
Exit 1 when there is no such user, or the upstream is unavailable and nothing stale is cached.
Exit 4 for a name or uid latchkey does not manage, which it says: "root: local account, not
managed by latchkey (root is in /etc/passwd)"; likewise the deny list and the name/uid rules.

piped: one line: the passwd line as getent prints it, source, ms (tab-separated).

examples:
  sudo latchkeyctl lookup alice
  sudo latchkeyctl lookup 10042 --refresh

--json fields:
  result ("found"), source ("cache"|"upstream"|"stale"|"local"), ms,
  entry {name, uid, gid, gecos, dir, shell}
  not found: {"ok": false, "code": "not_found", "error", result ("notfound"), source, ms,
              not_managed (a host account, deny list or rule: see show --help)}
`,
  invalidate: `usage: latchkeyctl invalidate NAME|UID... | --all [--json]

Marks cached entries expired: the next lookup fetches them from upstream. Until that succeeds,
the stale grace still applies (a failing upstream does not lock users out). An entry already
past its TTL is left as it is (noted on stderr).
Exit 1 when one of the named users was not cached.

piped: one line: how many entries were invalidated.

examples:
  sudo latchkeyctl invalidate alice bob
  sudo latchkeyctl invalidate --all

--json fields:
  invalidated (count), already_expired [NAME|UID], not_cached [NAME|UID]
`,
  flush: `usage: latchkeyctl flush [NAME|UID | --negative] [--json]

Drops entries from the cache (they are fetched again when next asked for; unlike invalidate,
no stale copy remains). NAME|UID drops one user's entries: its cached record and the
remembered "no such user" answers for its name and uid (also from the shared-memory map), so
the next lookup asks the user service, e.g. after a user was created or renamed upstream.
--negative drops only the remembered "no such user" answers, of every name and uid.
Exit 1 when NAME|UID had nothing cached.

piped: one line: how many entries were removed.

examples:
  sudo latchkeyctl flush alice
  sudo latchkeyctl flush --negative
  sudo latchkeyctl flush

--json fields:
  removed (count), negative_only, user (the NAME|UID given, when one was)
`,
  why: `usage: latchkeyctl why NAME [--json] [--utc]

Explains the last login decision latchkeyd made for NAME, from what it recorded (in memory,
since it started, for the last 4096 users it serves; nothing secret is kept):
  key lookup   the keys helper (sshd AuthorizedKeysCommand): keys handed out or why not
  login check  pam_latchkey's first question: does latchkey serve this name with the uid NSS
               resolved (served, notfound, mismatch, unavailable)
  password     the password check: ok, wrong_password, no_password, unknown_user, throttled,
               unavailable; the hash kind and cost (never the hash), from where, how long
  account      the account phase: active, expired (or disabled), removed upstream, unknown
  session      the session phase: opened (the session id), limit (refused by [pam]
               max_sessions), home_refused, notfound, unavailable
each with when, the service and remote host, the source of the user record (cache, upstream,
stale, local: the local users' store, rule: refused by the name rule, a host account or the
deny list) and latchkeyd's reason. Then what is true now: whether that session is still open
(or when and why it ended), the user's throttle budget (failures, lockout), and the cached
account (active, expired, disabled; how fresh the entry is). Nothing is asked upstream.
Exit 1 when nothing is recorded for NAME (the message says since when); exit 4 when NAME is a
host account, a host group's name or member, on the deny list or refused by the name rule
(pam_latchkey leaves those to the rest of the PAM stack: latchkey never decides for them).

piped: one "key<TAB>value" line per line shown, times exact (why alice | grep ^password).

examples:
  sudo latchkeyctl why alice
  sudo latchkeyctl why alice --json | jq .phases.auth_password

--json fields:
  user, since (records are kept since then), served (latchkey serves the user),
  phases {login_check, auth_password, acct_mgmt, session_open, keys_for_login}: each null or
    {at, result, detail, source, service, rhost, uid, hash {kind, cost, cost_name} | null,
     session_id, keys (count handed out), peer_uid (who asked: 0 is root), ms}
  session {id, state ("open"|"ended"|"unknown"), ended_at, end_reason, end_detail} | null
  throttle {failures, limit, in_flight, locked_until, retry_after_s}
  account {state ("active"|"expired"|"disabled"), expired_at, cache_state ("fresh"|"stale"|
           "expired"), fetched_at, expires_at} | null   (null: not cached)
  not found: {"ok": false, "code": "not_found", "error", since | not_managed (see show --help)}
  (times are epoch milliseconds)
`,
  sessions: `usage: latchkeyctl sessions [NAME] [--ended] [--json] [--utc]
       latchkeyctl sessions kill ID | --user NAME
       latchkeyctl sessions renew ID | --user NAME

Lists open login sessions recorded by pam_latchkey (all, or one user's). --ended also lists
the sessions that ended in the last 24 hours, with when and why:
  closed    the user logged out          gone      the process died without closing
  reopened  the same process opened again replaced  a newer login took its place (on_limit)
  max_age   older than [pam] max_session_age   killed    ended by "sessions kill"
  removed / disabled / expired   the account was, upstream or locally (sessions revoked)
"kill" ends one session by id, or all of a user's: the session's process gets SIGTERM (for
sshd, the per-connection process, which ends the login) and the record is closed.
"renew" restarts the max_session_age clock of one session or all of a user's, as a password
login does with [pam] session_renewal = on-login; refused for members of [pam]
privileged_groups, whose sessions always end at max_session_age.
Exit 1 when no such session (or the user has none), or the renewal is refused.
kill and renew, piped: one line: how many sessions were ended or renewed.

columns: ID USER UID SERVICE RHOST TTY PID STARTED RENEWED
  --ended: ID USER UID SERVICE RHOST PID STARTED ENDED REASON DETAIL

examples:
  sudo latchkeyctl sessions
  sudo latchkeyctl sessions alice --ended
  sudo latchkeyctl sessions kill 3f6c1f7e-...
  sudo latchkeyctl sessions kill --user alice
  sudo latchkeyctl sessions renew --user alice

--json fields:
  sessions [{id, user, uid, service, rhost, tty, pid, started_at, renewed_at}]
  ended [{id, user, uid, service, rhost, tty, pid, started_at, renewed_at, ended_at,
          end_reason, end_detail}]   (with --ended)
  kill: ended (count)
  renew: renewed (count)
`,
  reload: `usage: latchkeyctl reload [--credential FILE | --credential-stdin] [--json]

Makes latchkeyd read its configuration, secrets_file and credentials again, as SIGHUP does, and
says whether the new configuration was taken. When it is refused (the message names the file,
line and fix) the previous configuration stays in force and the exit code is 1: the systemd
unit's ExecReload runs this, so "systemctl reload latchkeyd" fails visibly. Requests in flight
finish with the old settings and credentials.

piped: one line: the config file, the credential used (none, start or pushed).

--credential FILE decrypts FILE with "systemd-creds decrypt --name=latchkey.secrets" and hands
its text (secrets_file lines) to the daemon in place of the $CREDENTIALS_DIRECTORY copy systemd
made at start (on Debian 12's systemd a LoadCredentialEncrypted= credential is not refreshed by
a reload). --credential-stdin reads that text from stdin instead. Later reloads keep using it.

examples:
  sudo latchkeyctl reload
  sudo systemd-creds encrypt --name=latchkey.secrets new.secrets /etc/latchkey/secrets.cred
  sudo latchkeyctl reload --credential /etc/latchkey/secrets.cred

--json fields:
  file (the config file), credential (none | start: systemd's copy | pushed: given to reload),
  reloaded_at
  on refusal: {"ok": false, "code": "invalid", "error": "FILE:LINE: key: problem; ..."}
`,
  stats: `usage: latchkeyctl stats [--json]

Counters since the daemon started: lookups by result, upstream requests by outcome with
latency histograms, password verifications by hash kind, throttled attempts.

piped: one "counter<TAB>value" line each, nested counters with dotted names (lookups.miss).

examples:
  sudo latchkeyctl stats
  sudo latchkeyctl stats --json | jq .verify

--json fields:
  since, uptime_s,
  lookups {hit, miss, stale, negative, rule, unavail, notfound, local, local_notfound}, hit_ratio (0..1 or null)
    hit: fresh from cache; negative: a cached "no such user"; miss: went upstream; stale: served
    an expired entry because upstream failed; rule: refused by the name/uid rule; unavail: no answer;
    local: a persistent local user (latchkeyctl local); local_notfound: a uid of their range none has
  upstream {found, notfound, error, background_refresh, busy, late, held_off, rate_limited}
    busy: lookups refused an upstream slot (per-uid rate, queue); late: answered "unavailable" at
    the answer deadline while the request went on; held_off: answered without asking while the
    upstream was held off (failures in a row, or its Retry-After); rate_limited: 429/503 replies
  upstream_latency {count, sum_ms, mean_ms, p50_ms, p99_ms, max_ms, buckets {le_1ms, le_2ms, ... le_5000ms, +inf}}
  verify {by_kind {KIND {ok, failed, avg_ms}}, unknown_user, throttled}
    KIND: bcrypt, md5crypt, sha256crypt, sha512crypt, yescrypt, des, none, unknown
  throttle {trackedUsers, trackedHosts, lockedUsers [{user, retryAfterSec}],
            lockedHosts [{rhost, retryAfterSec}], failures, lockouts, refused, evictions, inFlight}
  upgrades {local_ok, local_failed, remote_ok, remote_failed, remote_skipped}
    hash upgrades of local users on login ([local] upgrade); skipped: over upgrade_max_concurrent
  events {sent, failed_attempts, dropped, queued}
    session events POSTed to [events] url (absent when the daemon has none)
`,
  throttle: `usage: latchkeyctl throttle [--json] [--utc]
       latchkeyctl throttle reset USER | --host RHOST | --all [--json]

Lists the login throttle's counters: per user, and per remote host over all users. A password
attempt takes a slot in both budgets before it is checked; a wrong password turns the slot into
a failure, anything else gives it back (a right password does not clear earlier failures).
When failures reach the limit ([pam] max_failures per user, host_max_failures per host) within
throttle_window, logins are refused unchecked until the lockout (throttle_lockout) ends.
Locked entries come first, then the most failures; at most 1000 are listed.

"reset" clears the failures and lockout of one user (the name as the client sent it), of one
remote host (as PAM_RHOST names it), or of all; attempts still being checked stay counted.
Each reset is logged (admin.throttle_reset). Exit 1 when nothing was recorded for USER/RHOST.
reset, piped: one line: user counters cleared, host counters cleared.

columns: SCOPE KEY FAILURES LIMIT PENDING WINDOW LOCKED_UNTIL REFUSED
  SCOPE         user or host
  PENDING       attempts being checked now (their slots count towards the limit)
  WINDOW        when the window's first failure was counted
  LOCKED_UNTIL  end of the lockout, "-" when not locked
  REFUSED       attempts refused during this lockout

examples:
  sudo latchkeyctl throttle
  sudo latchkeyctl throttle reset alice
  sudo latchkeyctl throttle reset --host 192.0.2.7
  sudo latchkeyctl throttle --json | jq '.entries[] | select(.locked_until)'

--json fields:
  now, max_failures, host_max_failures, window_s, lockout_s,
  entries [{scope, key, failures, limit, in_flight, window_started_at, locked_until, retry_after_s, refused}],
  total, truncated,
  counters {tracked_users, tracked_hosts, in_flight, failures, lockouts, refused, evictions}
  reset: users, hosts (counters cleared)
`,
  'check-config': `usage: latchkeyctl check-config [FILE] [--json]

Validates a configuration file offline (no daemon needed; FILE defaults to
/etc/latchkey/latchkey.conf; a LocalEGA auth.conf is accepted too) and prints the effective
configuration, defaults included, with credentials redacted. A problem is reported as
FILE:LINE: key: what is wrong, with exit 1.

It also reads sshd's configuration ([daemon] sshd_config, with its Include files and Match
blocks; \`sshd -T\` checks its syntax) and cross-checks it, naming the sshd file:line and the fix:
a Match Group that misses [users] group_name, ChrootDirectory against chroot_sessions and the
homes layout, UsePAM, AllowGroups/DenyGroups, and db_path / homes base against the installed
systemd unit. Errors exit 1 (latchkeyd refuses to start on them); warnings and notices do not.
Settings allowed by an insecure_* key are listed every time.

piped: the effective configuration in latchkey.conf syntax on stdout, findings on stderr.

examples:
  latchkeyctl check-config
  latchkeyctl check-config /etc/ega/auth.conf

--json fields:
  ok, file, config {upstream {…}, cache {…}, users {…}, homes {…}, pam {…}, daemon {…}},
  findings [{severity, check, message, fix, at}], notices [text]
  (on error: {"ok": false, "code": "invalid", "file", "error", "errors": [{file, line, key,
   problem, message}]}, one entry per mistake: every one in the file is reported at once;
   when a cross-check fails: "ok": false, "code": "check_failed", "error" and the fields above)
`,
  'import-ega': `usage: latchkeyctl import-ega [FILE] [--output DIR] [--json]

Converts a LocalEGA auth.conf (FILE, default /etc/ega/auth.conf) into DIR/latchkey.conf and
DIR/secrets (DIR defaults to /etc/latchkey). The credentials (cega_creds) go into the secrets
file, mode 0600; latchkey.conf (also 0600: give the daemon's group read access with
chgrp _latchkey FILE && chmod 0640 FILE) names it as secrets_file and holds no secret. Each setting names
the LocalEGA line it came from. The file is read as LocalEGA read it: a value runs to the end of
the line. Existing files are never overwritten. Offline: no daemon needed.

It lists every line it could not carry over (keys of older LocalEGA releases, db_path, TLS
checks turned off, values latchkey refuses) and every behaviour that changes: TLS verification
on, the home layout, the group name, negative caching and stale answers, password throttling,
the name rule. Exit 0 when latchkeyd would accept the result as written, 1 when it lists
settings to fix first (the files are written either way) or nothing could be written.

piped: the same report as on a terminal.

examples:
  latchkeyctl import-ega
  latchkeyctl import-ega /etc/ega/auth.conf --output /tmp/latchkey && latchkeyctl check-config /tmp/latchkey/latchkey.conf

--json fields:
  ok, file, config_file, secrets_file (null without cega_creds),
  not_carried_over [{line, key, reason}], changes [text], to_fix [text]
  (with to_fix: "ok": false, "code": "needs_edits", "error"; when nothing could be written:
   {"ok": false, "code": "invalid" or "unwritable", "file", "error"})
`,
  'auth-test': `usage: latchkeyctl auth-test NAME [--json]

Prompts for NAME's password (no echo; when stdin is not a terminal, reads the first line of
stdin) and runs the verification pam_latchkey would: resolve the user, check the throttle,
verify against the hash. Says why it fails: unknown_user, no_password, wrong_password,
throttled or unavailable. A test never counts as a failed login and never throttles anyone.
Exit 0 when the password is right, 1 when not.

piped: one line: NAME, result, hash kind, ms (tab-separated).

examples:
  sudo latchkeyctl auth-test alice
  printf '%s\\n' "$PASSWORD" | sudo latchkeyctl auth-test alice

--json fields:
  user, authenticated, result ("ok"|"wrong_password"|"no_password"|"unknown_user"|"throttled"|"unavailable"),
  reason, hash {kind, cost, cost_name} | null, source, ms
`,
  local: `usage: latchkeyctl local add NAME [--uid N] [--gecos TEXT] [--shell PATH] [--key FILE]...
                             [--expires WHEN] [--password | --password-stdin] [--force]
       latchkeyctl local passwd NAME [--password-stdin]
       latchkeyctl local keys NAME add FILE | remove KEY | list
       latchkeyctl local disable|enable|remove NAME
       latchkeyctl local list | show NAME|UID | contexts
       (all with --json)

Persistent local users: kept in latchkeyd's own store on disk ([local] db_path), not in the
upstream, served by NSS, PAM and the keys helper like upstream users, surviving restarts.

add       a user with the lowest free uid of [local] min_uid .. max_uid (or --uid). Refused when
          the name fails the name rule, is a host account, on the deny list, a local user's, or
          an upstream user's; when the upstream cannot be asked, only --force adds it.
          --key FILE: the public key lines of FILE (- for stdin); may be repeated.
          --expires WHEN: YYYY-MM-DD (start of that day, UTC), an ISO date-time with its zone,
          or a duration from now (30d, 12h, 90m, 2w). No password: key logins only.
          --password asks for one (twice, no echo); --password-stdin reads one line of stdin.
passwd    sets the password, hashed under [local] default_context: asked twice with no echo on
          a terminal; one line of stdin with --password-stdin or when stdin is not a terminal.
keys      add FILE (each key line of FILE), remove KEY (its number in "keys NAME list", its
          SHA256: fingerprint or its line), list.
disable   the user still resolves (its files keep their owner) but may not log in, and its open
          sessions are ended; enable undoes the first part.
remove    deletes the user from the store and ends its open sessions; its home is left as it is.
          Users added with --expires are removed automatically after [cleanup] expired_grace
          ("latchkeyctl purge --help").
contexts  the hash contexts and how many users each holds (hashes of another context than the
          default are upgraded at the next login when [local] upgrade says so).

On a secondary ([local] role = secondary) every change is refused with where to make it:
"this host is a secondary: make changes on the primary (USER@HOST)". No hash is ever printed:
the password shows as its kind, cost and context.

columns of list: NAME UID STATE PASSWORD CONTEXT KEYS EXPIRES GECOS
  STATE   enabled, disabled, or expired (past --expires)
columns of keys: # TYPE FINGERPRINT COMMENT        of contexts: ID ALGORITHM COST DEFAULT USERS
show, and every change, prints one "key<TAB>value" line per fact when piped.

exit codes: 1 when refused (conflict, invalid, not_found, read_only, range_full, unavailable).

examples:
  sudo latchkeyctl local add opsuser --gecos "Operations" --key ~ops/.ssh/id_ed25519.pub --password
  printf '%s\n' "$PW" | sudo latchkeyctl local passwd opsuser --password-stdin
  sudo latchkeyctl local add partner --expires 30d --key partner.pub
  sudo latchkeyctl local keys opsuser remove 2
  sudo latchkeyctl local list --json | jq '.users[].name'

--json fields:
  add, passwd, disable, enable, show:
    user {name, uid, gecos, shell (null: the [users] shell), home,
          password {kind, cost, cost_name, context} | null,
          keys [{index, type, fingerprint, comment}], expires_at, disabled, created_at, updated_at}
    disable also: sessions_ended (open sessions ended; only when some were)
  keys: name, keys [{index, type, fingerprint, comment}]
  remove: removed (the name), uid, sessions_ended (only when some were)
  list: now, role ("standalone"|"primary"|"secondary"), primary (USER@HOST or null),
        users [{name, uid, gecos, has_password, context, keys (count), expires_at, disabled}]
  contexts: default_context, upgrade ("off"|"local"|"remote"),
            contexts [{id, algorithm (null: not configured), cost, default, users}]
  (times are epoch milliseconds)
`,
  purge: `usage: latchkeyctl purge --expired [--dry-run] [--json] [--utc]

The cleanup of temporary accounts, now; latchkeyd also runs it every [cleanup] interval
(default 1h; 0 = only this command). Temporary accounts are upstream users whose record has
an expiry (expiresAt) and local users added with "local add --expires":
- an account expired more than [cleanup] expired_grace ago (default 7d) is removed: from the
  cache (its next lookup asks the upstream again) and from the local users' store (not on a
  secondary: the primary removes it and the next snapshot brings that);
- every account that may no longer log in (expired, or disabled upstream or locally) loses its
  open sessions (their processes are ended through latchkey-rootd);
- homes are never deleted: each removed account's home is listed, and the ones that exist are
  printed under "homes kept" and logged (cleanup.removed), to archive or remove by hand.
Accounts disabled upstream are not temporary: they leave the cache with its TTL; a disabled
local user stays until "local remove". --dry-run says what would be done and changes nothing.

columns: SOURCE (upstream | local) NAME UID EXPIRED HOME HOME EXISTS
exit codes: 0 (also when there was nothing to remove), 3 when the daemon is down.

examples:
  sudo latchkeyctl purge --expired --dry-run
  sudo latchkeyctl purge --expired
  sudo latchkeyctl purge --expired --json | jq -r .homes_kept[]

--json fields:
  dry_run, now, expired_grace_s,
  cache_users [{name, uid, expired_at, home, home_exists}]   (upstream users, from the cache)
  local_users [{name, uid, expired_at, home, home_exists}]   (persistent local users)
  local_skipped (why local users are not removed on this host, or null)
  sessions_ended (count; a dry run: that would be ended), session_users [NAME]
  homes_kept [PATH]   (the listed homes that exist; never deleted)
  (times are epoch milliseconds)
`,
};

export function helpFor(command: string): string | undefined {
  return COMMAND_HELP[command];
}
