// The admin protocol: the JSON carried by the ADMIN opcode on priv.sock, latchkeyctl's one entry
// point into the daemon. This module is its only definition: the daemon (src/answers/admin/)
// checks every request against it and its handlers are typed by it; latchkeyctl (src/cli/)
// builds requests from the same types and checks every reply against it before printing.
// Samples of every command live in test/golden/admin/ and are checked against it both ways.
//
// Request: a JSON object {"cmd": NAME, ...arguments}. Reply: {"ok": true, ...data} or
// {"ok": false, "error": MESSAGE, "code": CODE}. The frame status is OK either way; a JSON
// error is the command's answer, not a protocol failure. Field names are stable: add new ones,
// never rename or retype old ones (latchkeyctl --json output is these objects minus "ok").
// A field added to a reply must be optional here until every daemon sends it, since the CLI
// refuses a reply without a required field; unknown fields pass through both ways.
//
// Conventions: times are epoch milliseconds in fields named *_at; durations are *_ms or *_s;
// a user argument is a NAME (string) or a local UID (number). No reply ever carries a password,
// a password hash (only its kind and cost) or an upstream credential (URLs lose their userinfo).
import {
  type Infer, type ObjectOf, type Shape, ShapeError, array, boolean, either, exactlyOne, integer,
  literal, nullable, number, object, optional, record, string, text,
} from './shape.js';

export { ShapeError } from './shape.js';

/**
 * Error codes:
 *   bad_request      malformed JSON, missing or wrong-typed argument (the message names the field)
 *   unknown_command  "cmd" is not a command below (a newer latchkeyctl, an older daemon)
 *   not_found        no such user / not cached / no such session / nothing recorded; with
 *                    not_managed when the name or uid is the host's (lookup, show, why)
 *   unavailable      the upstream user service failed and nothing stale could answer
 *   internal         the daemon failed; details are in its log
 * Any command may answer bad_request, unknown_command or internal; the others only where the
 * command's entry in ADMIN_COMMANDS lists them.
 */
export const ADMIN_ERROR_CODES = ['bad_request', 'unknown_command', 'not_found', 'unavailable', 'internal'] as const;
/**
 * The local users' commands (local_*, issue 16) answer these too:
 *   conflict    the name or uid is taken: a local user, a host account or the deny list, an
 *               upstream user of that name, or the key is there already
 *   invalid     the value is refused by a rule (the name rule, a shell, a key, a password)
 *   range_full  every uid of [local] min_uid .. max_uid is taken
 *   read_only   this host is a secondary: changes are made on the primary
 */
export const LOCAL_ERROR_CODES = ['conflict', 'invalid', 'range_full', 'read_only'] as const;
export type AdminErrorCodeName = (typeof ADMIN_ERROR_CODES)[number] | (typeof LOCAL_ERROR_CODES)[number];
const ANY_COMMAND_ERRORS = ['bad_request', 'unknown_command', 'internal'] as const;
type CommandSpecificCode = Exclude<AdminErrorCodeName, (typeof ANY_COMMAND_ERRORS)[number]>;

// ---- arguments ----

/** Longest name or key the daemon takes; no valid one is near this long. */
const MAX_NAME = 256;
/** A user given as NAME or local UID. */
const userRef = either(text('a user name', MAX_NAME), integer('a uid', 0, 0xffffffff), 'a user name or a uid');
const userName = text('a user name', MAX_NAME);
/** A throttle key as PAM sent it: any non-empty printable string up to the throttle's key length. */
// eslint-disable-next-line no-control-regex
const throttleKey = text(`a non-empty string of at most ${MAX_NAME} printable characters`, MAX_NAME, (s) => !/[\u0000-\u001f\u007f]/.test(s));
const flag = optional(boolean());
const noArguments = object({});

// ---- reply parts ----

const count = number;
const at = number;
/** A user reference echoed back: a name or a uid, as it was asked. */
const userEcho = either(string(), number(), 'a user name or a uid');

/** Kind and cost of a password hash; never the hash. */
const hashFacts = object({ kind: string(), cost: nullable(number()), cost_name: nullable(string()) });

/**
 * A name or uid latchkey does not manage, and why (issue 18): a host account (passwd), a host
 * group's name or member, the deny list, the name rule, or a uid outside what latchkey hands out
 * (the error message says where: the file, the key). lookup, show and why carry it on their
 * not_found answer; latchkeyctl exits 4 on it.
 */
const notManaged = optional(literal('local account', 'local group', 'local group member', 'deny list', 'name rule', 'uid rule'));

/** One recorded login decision (src/verify/decisions.ts); never a password or a hash. */
const decision = object({
  at: at(), result: string(), detail: string(), source: nullable(string()),
  service: nullable(string()), rhost: nullable(string()), uid: nullable(number()),
  hash: nullable(hashFacts), session_id: nullable(string()), keys: nullable(count()), peer_uid: number(), ms: nullable(number()),
});

/**
 * UserSummary. state: fresh before expires_at; stale after it but within cache.stale_grace
 * (served only while upstream fails); expired past the grace. keys: how many public keys.
 */
const userSummaryFields = {
  name: string(), uid: number(), upstream_uid: number(), gid: number(),
  fetched_at: at(), expires_at: at(), state: literal('fresh', 'stale', 'expired'),
  keys: count(), has_password: boolean(), home: string(), home_exists: boolean(),
};
const userSummary = object(userSummaryFields);

const sessionFields = {
  id: string(), user: string(), uid: number(), service: string(), rhost: string(), tty: string(), pid: number(), started_at: at(),
  /** the last renewal ([pam] session_renewal, renew-session): max_session_age counts from it; null: never */
  renewed_at: optional(at()),
};
const session = object(sessionFields);
/** An ended session (kept 24 h). end_reason: closed, gone, reopened, replaced, max_age, killed,
 *  removed, disabled, expired; end_detail: what the upstream, the admin or the policy said. */
const endedSession = object({ ...sessionFields, ended_at: at(), end_reason: string(), end_detail: nullable(string()) });
/** The session events' collector ([events] url; null: off) and its counters since start. */
const eventCounters = { sent: count(), failed_attempts: count(), dropped: count(), queued: count() };
const eventsStatus = object({
  url: nullable(string()), queue_size: count(), ...eventCounters,
  last_error: nullable(object({ message: string(), at: at() })),
});

const histogram = object({
  count: count(), sum_ms: number(), mean_ms: nullable(number()), p50_ms: nullable(number()), p99_ms: nullable(number()),
  max_ms: number(),
  /** `le_1ms` … `le_5000ms`, `+inf`: samples per bucket (not cumulative) */
  buckets: record(count()),
});

/** A persistent local user (src/localusers/), as `local_show` and every change answer it. */
const localKey = object({ index: count(), type: string(), fingerprint: string(), comment: string() });
const localUserFields = {
  name: string(), uid: number(), gecos: string(),
  /** null: [users] shell */
  shell: nullable(string()), home: string(),
  /** kind, cost and the hash context id (null: made outside any context); never the hash */
  password: nullable(object({ kind: string(), cost: nullable(number()), cost_name: nullable(string()), context: nullable(string()) })),
  keys: array(localKey),
  expires_at: nullable(at()), disabled: boolean(), created_at: at(), updated_at: at(),
};
const localUser = object(localUserFields);
const localSummary = object({
  name: string(), uid: number(), gecos: string(), has_password: boolean(), context: nullable(string()), keys: count(),
  expires_at: nullable(at()), disabled: boolean(),
});
/** What may be said of the local users in `status` (src/localusers/service.ts status()). */
const localStatus = object({
  role: literal('standalone', 'primary', 'secondary'), precedence: literal('local', 'upstream'), db: string(), users: count(),
  default_context: string(), upgrade: literal('off', 'local', 'remote'),
  /** users with a password, by hash context id ("unknown": no context recorded) */
  contexts: record(count()),
  /** primary: the snapshot last published; secondary: the one in use; null: none */
  snapshot: nullable(object({ taken_at: nullable(at()), taken_on: nullable(string()), users: count() })),
  last_sync_at: nullable(at()), last_sync_error: nullable(string()),
  /** names both the store and the upstream have, and who answers for them */
  conflicts: array(object({ name: string(), with: string(), detail: string() })),
  upgrades: object({ local_ok: count(), local_failed: count(), remote_ok: count(), remote_failed: count(), remote_skipped: count() }),
});
const localName = text('a user name', MAX_NAME);
/** An account the cleanup removed (or would remove): its home is listed, never deleted. */
const purgedAccount = object({ name: string(), uid: number(), expired_at: at(), home: string(), home_exists: boolean() });
/** epoch ms, within what a JavaScript Date holds */
const epochMs = integer('a time in epoch milliseconds', 0, 8.64e15);
/** a password typed by the admin; the ADMIN frame (8 KiB) bounds it further */
const password = text('a non-empty password', 4096);
/** unavailable: a latchkeyd whose local users' store is not open (it says why) */
const localRefusals = ['not_found', 'invalid', 'read_only', 'unavailable'] as const;

// ---- commands ----

interface CommandSpec<Q extends Shape<unknown>, R extends Shape<unknown>, E extends readonly CommandSpecificCode[], X extends Record<string, Shape<unknown>>> {
  request: Q;
  /** the data of an {"ok": true} reply */
  reply: R;
  /** codes this command answers besides bad_request, unknown_command and internal */
  errors: E;
  /** fields an {"ok": false} reply of this command may carry besides error and code */
  errorFields: X;
}

function command<Q extends Shape<unknown>, R extends Shape<unknown>, const E extends readonly CommandSpecificCode[] = [], X extends Record<string, Shape<unknown>> = Record<never, never>>(
  spec: { request: Q; reply: R; errors?: E; errorFields?: X },
): CommandSpec<Q, R, E, X> {
  return { request: spec.request, reply: spec.reply, errors: (spec.errors ?? []) as E, errorFields: (spec.errorFields ?? {}) as X };
}

export const ADMIN_COMMANDS = {
  /**
   * The daemon's overview. insecure: weakened settings in effect (insecure_http/_tls), [] when
   * none. rootd: whether latchkey-rootd accepts a connection (homes and ending sessions need it).
   * map: the shared-memory map the NSS module reads first (src/fastpath): on, off, or failed
   * with the reason (lookups then go over nss.sock).
   * upstream.health.state (issue 18): reachable, unreachable (no HTTP answer: connect, DNS,
   * timeout, TLS), http_error (5xx, redirect, another unexpected status), auth_failed (401/403,
   * or token_url refusing the login), invalid_reply (an unusable 200), unknown (no request yet);
   * since: when it began. With [upstream] health_url (health.url) set, status GETs it now
   * (probe_ms, probe_error); without, no request is sent and the state is the last real
   * request's (last_lookup). reachable: state is reachable (null: unknown).
   * config: the file in force, when it was loaded and the sha256 of its bytes (first 16 hex
   * digits); last_reload: the last reload (SIGHUP or `latchkeyctl reload`), null before one.
   * metrics: the Prometheus endpoint ([metrics] listen; null: off) and why it is not serving.
   */
  status: command({
    request: noArguments,
    reply: object({
      version: string(), pid: number(), started_at: at(), uptime_s: number(), config_file: string(),
      sockets: object({ dir: string(), nss: string(), priv: string() }),
      upstream: object({
        by_name_url: string(), by_uid_url: string(),
        reachable: nullable(boolean()), probe_ms: nullable(number()), probe_error: nullable(string()),
        last_error: nullable(object({ message: string(), at: at() })),
        /**
         * How latchkeyd authenticates to the user service (issue 17; absent from an older daemon),
         * never the secret. token mode (token_url): the token's expiry and remaining validity
         * (null: no valid token now), logins and refreshes since start, the last failure at token_url.
         */
        auth: optional(object({
          mode: literal('none', 'basic', 'bearer', 'token'),
          token_expires_at: nullable(at()), token_valid_for_s: nullable(count()),
          logins: count(), refreshes: count(),
          last_auth_error: nullable(object({ message: string(), at: at() })),
        })),
        /** issue 18; absent from an older daemon */
        health: optional(object({
          state: literal('reachable', 'unreachable', 'http_error', 'auth_failed', 'invalid_reply', 'unknown'),
          since: nullable(at()), detail: nullable(string()), url: nullable(string()),
          last_lookup: nullable(object({
            outcome: literal('reachable', 'unreachable', 'http_error', 'auth_failed', 'invalid_reply'),
            at: at(), ms: number(), message: nullable(string()),
          })),
        })),
        /**
         * issue 19 (absent from an older daemon): null while the upstream is asked freely; else
         * nothing is sent until `until` (failures in a row: exponential backoff; or the service's
         * 429/503 Retry-After), then one probe request (half_open: that time has come).
         */
        holdoff: optional(nullable(object({ until: at(), reason: string(), failures: count(), half_open: boolean() }))),
      }),
      cache: object({
        file: string(), size_bytes: count(), ttl_s: number(), negative_ttl_s: number(), stale_grace_s: number(),
        entries: object({ fresh: count(), stale: count(), expired: count(), negative: count(), total: count() }),
        hit_ratio: nullable(number()),
        /**
         * issue 19 (absent from an older daemon): the file refuses writes (code SQLITE_FULL: its
         * tmpfs is full) since `since`; users fetched meanwhile are answered from memory
         * (held_in_memory) and written once a write succeeds, which clears it (null).
         */
        write_error: optional(nullable(object({ code: string(), since: at(), detail: string(), fix: string() }))),
        held_in_memory: optional(count()),
        /** issue 19: the last time the file was recreated while running (deleted, replaced, corrupt) */
        recreated: optional(nullable(object({ at: at(), reason: string(), restored_users: count() }))),
        /** issue 19: [cache] jitter in force, percent of each entry's ttl and refresh-ahead window */
        jitter_pct: optional(number()),
        /**
         * issue 19: the refresh of recently used users after the start ([cache] warm_start):
         * total names, done (refreshed, found fresh or skipped), refreshed, failed.
         */
        warm_start: optional(object({
          state: literal('off', 'waiting', 'running', 'done', 'stopped'),
          total: count(), done: count(), refreshed: count(), failed: count(),
        })),
      }),
      /**
       * issue 19 (absent from an older daemon): wall-clock steps of more than 60 s seen against
       * the monotonic clock (src/daemon/clock.ts): the last one (delta_ms > 0: forward) and how many.
       */
      clock: optional(object({
        last_jump: nullable(object({ at: at(), delta_ms: number(), direction: literal('forward', 'back') })),
        jumps: count(),
      })),
      sessions: object({ open: count() }),
      rootd: object({ socket: string(), reachable: boolean(), error: nullable(string()) }),
      map: object({
        file: string(), state: literal('on', 'off', 'failed'), reason: nullable(string()),
        users: count(), negative: count(), size_bytes: count(), rebuilds: count(), not_published: count(),
      }),
      insecure: array(string()),
      /** the persistent local users (issue 16); absent from a daemon without them */
      local: optional(localStatus),
      /** session events (issue 17); absent from an older daemon */
      events: optional(eventsStatus),
      /** issue 18; absent from an older daemon */
      config: optional(object({
        file: string(), loaded_at: at(), digest: string(),
        last_reload: nullable(object({ at: at(), ok: boolean(), credential: literal('none', 'start', 'pushed'), error: nullable(string()) })),
      })),
      metrics: optional(object({ listen: nullable(string()), serving: boolean(), error: nullable(string()) })),
      /**
       * issue 20: the systemd userdb provider ([userdb] enabled): path null when off; connections
       * open now; accepted, refused (budget), requests, errors (error replies), malformed (closed
       * for a bad message), records_refused (records systemd's rules refuse, not sent) since start.
       */
      userdb: optional(object({
        enabled: boolean(), path: nullable(string()), connections: count(), accepted: count(), refused: count(),
        requests: count(), errors: count(), malformed: count(), records_refused: count(),
      })),
    }),
  }),

  /** Cached users. stale: only entries that are not fresh. negative: also the "no such user" entries. */
  users: command({
    request: object({ stale: flag, negative: flag }),
    reply: object({
      now: at(),
      users: array(userSummary),
      negative: optional(array(object({ key: string(), kind: literal('name', 'uid'), fetched_at: at(), expires_at: at() }))),
    }),
  }),

  /** Everything cached about one user, from the cache only; not_found when not cached. */
  show: command({
    request: object({ user: userRef }),
    reply: object({
      user: object({
        ...userSummaryFields,
        gecos: string(), shell: string(), password: nullable(hashFacts),
        keys: array(object({ type: string(), fingerprint: string(), comment: string() })),
      }),
      sessions: array(session),
    }),
    errors: ['not_found'],
    errorFields: { not_managed: notManaged },
  }),

  /**
   * Resolves a user as NSS would. Not found: {ok: false, code: "not_found", result: "notfound",
   * source, ms}; upstream down: {ok: false, code: "unavailable", result: "unavail", reason, ms}.
   */
  lookup: command({
    request: object({ user: userRef, refresh: flag }),
    reply: object({
      result: literal('found'), source: literal('cache', 'upstream', 'stale', 'local'), ms: number(),
      entry: object({ name: string(), uid: number(), gid: number(), gecos: string(), dir: string(), shell: string() }),
    }),
    errors: ['not_found', 'unavailable'],
    errorFields: {
      result: optional(literal('notfound', 'unavail')),
      source: optional(literal('cache', 'upstream', 'rule', 'local')),
      reason: optional(string()),
      ms: optional(number()),
      not_managed: notManaged,
    },
  }),

  /** Marks entries expired: {users: [user...]} or {all: true}. */
  invalidate: command({
    request: exactlyOne({
      users: array(userRef, { nonEmpty: true, expected: 'a non-empty list of user names or uids' }),
      all: literal(true),
    }, '"users" must be a non-empty list, or "all": true'),
    reply: object({ invalidated: count(), already_expired: array(userEcho), not_cached: array(userEcho) }),
  }),

  /**
   * Drops cache entries: all, only the "no such user" ones (negative_only), or one user's
   * (user: a name or uid; its row and the negative entries of its name and uid, issue 18; not
   * with negative_only). user: echoed back when given.
   */
  flush: command({
    request: object({ negative_only: flag, user: optional(userRef) }),
    reply: object({ removed: count(), negative_only: boolean(), user: optional(userEcho) }),
  }),

  /**
   * The last login decision latchkeyd recorded for a user, per phase (issue 18): login_check,
   * auth_password, acct_mgmt, session_open (PAM), keys_for_login (the keys helper); null for a
   * phase with nothing recorded. Recorded in memory since the daemon started (since), for the
   * last SERVED_CAPACITY users (src/verify/decisions.ts). session: what became of the session the
   * last session_open opened. throttle: the user's failure budget now. account: the cached
   * record's account state now (null: not cached), never fetched for this. not_found: nothing
   * recorded, or the name is not latchkey's (not_managed).
   */
  why: command({
    request: object({ user: userName }),
    reply: object({
      user: string(), since: at(), served: boolean(),
      phases: object({
        login_check: nullable(decision), auth_password: nullable(decision), acct_mgmt: nullable(decision),
        session_open: nullable(decision), keys_for_login: nullable(decision),
      }),
      session: nullable(object({
        id: string(), state: literal('open', 'ended', 'unknown'),
        ended_at: nullable(at()), end_reason: nullable(string()), end_detail: nullable(string()),
      })),
      throttle: object({
        failures: count(), limit: count(), in_flight: count(), locked_until: nullable(at()), retry_after_s: number(),
      }),
      account: nullable(object({
        state: literal('active', 'expired', 'disabled'), expired_at: nullable(at()),
        cache_state: literal('fresh', 'stale', 'expired'), fetched_at: at(), expires_at: at(),
      })),
    }),
    errors: ['not_found'],
    errorFields: { not_managed: notManaged, since: optional(at()) },
  }),

  /** Open sessions, all or one user's; ended: also the ended ones still kept (24 h), with why. */
  sessions: command({
    request: object({ user: optional(userName), ended: flag }),
    reply: object({ sessions: array(session), ended: optional(array(endedSession)) }),
  }),

  /**
   * Restarts the max_session_age clock of one session or of all a user's open sessions (as a
   * password login does with session_renewal = on-login). not_found: nothing open; invalid: the
   * user is a member of [pam] privileged_groups, whose sessions are never renewed (the message says why).
   */
  'renew-session': command({
    request: exactlyOne({ id: text('a session id', MAX_NAME), user: userName }, 'give exactly one of "id" or "user"'),
    reply: object({ renewed: count() }),
    errors: ['not_found', 'invalid'],
  }),

  /**
   * Reads latchkey.conf again, as SIGHUP does, and says whether it was taken: invalid (with the
   * file, line and fix) when it was refused and the previous config stays. credential: the text
   * of the latchkey.secrets credential (secrets_file format), decrypted by latchkeyctl, which
   * then replaces the copy systemd made at start. Requests in flight finish on the old settings.
   */
  reload: command({
    request: object({ credential: optional(text('the credential text (secrets_file lines)', 6144)) }),
    reply: object({ file: string(), credential: literal('none', 'start', 'pushed'), reloaded_at: at() }),
    errors: ['invalid'],
  }),

  /** Ends one session by id or all of a user's; not_found when nothing was open. */
  'kill-session': command({
    request: exactlyOne({ id: text('a session id', MAX_NAME), user: userName }, 'give exactly one of "id" or "user"'),
    reply: object({ ended: count() }),
    errors: ['not_found'],
  }),

  /**
   * Counters since start: lookups/upstream from src/cache/stats.ts, verify from the PAM
   * handlers, throttle from src/verify/throttle.ts (its camelCase names are part of the API).
   */
  stats: command({
    request: noArguments,
    reply: object({
      since: at(), uptime_s: number(),
      /** local: answered by the local users' store; local_notfound: a uid of its range that none has */
      lookups: object({
        hit: count(), negative: count(), rule: count(), miss: count(), stale: count(), unavail: count(), notfound: count(),
        local: optional(count()), local_notfound: optional(count()),
      }),
      hit_ratio: nullable(number()),
      /** held_off, rate_limited: issue 19 (absent from an older daemon), see src/cache/stats.ts */
      upstream: object({
        found: count(), notfound: count(), error: count(), background_refresh: count(), busy: count(), late: count(),
        held_off: optional(count()), rate_limited: optional(count()),
      }),
      upstream_latency: histogram,
      verify: object({
        by_kind: record(object({ ok: count(), failed: count(), avg_ms: nullable(number()) })),
        unknown_user: count(), throttled: count(),
      }),
      throttle: object({
        trackedUsers: count(), trackedHosts: count(),
        lockedUsers: array(object({ user: string(), retryAfterSec: number() })),
        lockedHosts: array(object({ rhost: string(), retryAfterSec: number() })),
        failures: count(), lockouts: count(), refused: count(), evictions: count(), inFlight: count(),
      }),
      /** the local users' hash upgrades on login (issue 16): done, failed, skipped over the cap */
      upgrades: optional(object({ local_ok: count(), local_failed: count(), remote_ok: count(), remote_failed: count(), remote_skipped: count() })),
      /** session events sent to [events] url (issue 17) */
      events: optional(object(eventCounters)),
    }),
  }),

  /**
   * The login throttle's counters. entries: counters holding failures, reservations in flight
   * or a lockout; locked first, then most failures; at most THROTTLE_LIST_MAX (total counts them
   * all). refused: attempts refused during the current lockout.
   */
  throttle: command({
    request: noArguments,
    reply: object({
      now: at(), max_failures: count(), host_max_failures: count(), window_s: number(), lockout_s: number(),
      entries: array(object({
        scope: literal('user', 'host'), key: string(), failures: count(), limit: count(), in_flight: count(),
        window_started_at: nullable(at()), locked_until: nullable(at()), retry_after_s: number(), refused: count(),
      })),
      total: count(), truncated: boolean(),
      counters: object({
        tracked_users: count(), tracked_hosts: count(), in_flight: count(), failures: count(),
        lockouts: count(), refused: count(), evictions: count(),
      }),
    }),
  }),

  /**
   * Clears failures and lockouts of {user} | {host} | {all: true}; answers how many counters
   * held any. not_found when the named user or host has nothing recorded. Logged (admin.throttle_reset).
   */
  'throttle-reset': command({
    request: exactlyOne({ user: throttleKey, host: throttleKey, all: literal(true) }, 'give exactly one of "user", "host" or "all": true'),
    reply: object({ users: count(), hosts: count() }),
    errors: ['not_found'],
  }),

  /**
   * The same steps as AUTH_PASSWORD, but a test is neither counted in stats nor recorded by the
   * throttle (an admin testing must not lock the user out).
   */
  'auth-test': command({
    request: object({ user: userName, password: string() }),
    reply: object({
      user: string(), authenticated: boolean(),
      result: literal('ok', 'wrong_password', 'no_password', 'unknown_user', 'throttled', 'unavailable'),
      reason: string(), hash: nullable(hashFacts), source: nullable(string()), ms: number(),
    }),
  }),

  /**
   * Adds a persistent local user. uid: absent = the lowest free uid of [local] min_uid .. max_uid.
   * password: hashed under [local] default_context. Refused (conflict) when the name or uid is a
   * local user's, a host account's or on the deny list, or when the upstream has a user of that
   * name; unavailable when the upstream cannot say, unless force.
   */
  local_add: command({
    request: object({
      name: localName, uid: optional(integer('a uid', 0, 0xffffffff)), gecos: optional(string()), shell: optional(text('a shell path', 1024)),
      keys: optional(array(text('a public key line', 16 * 1024))), expires_at: optional(epochMs), password: optional(password), force: flag,
    }),
    reply: object({ user: localUser }),
    errors: [...localRefusals, 'conflict', 'range_full'],
  }),

  /** Sets a local user's password, hashed under [local] default_context. */
  local_passwd: command({
    request: object({ name: localName, password }),
    reply: object({ user: localUser }),
    errors: localRefusals,
  }),

  /** A local user's public keys: list, add a line, remove one by index (1-based), fingerprint or line. */
  local_keys: command({
    request: object({ name: localName, action: literal('add', 'remove', 'list'), key: optional(text('a public key line, fingerprint or index', 16 * 1024)) }),
    reply: object({ name: string(), keys: array(localKey) }),
    errors: [...localRefusals, 'conflict'],
  }),

  /**
   * A disabled user is still resolved (files keep their owner) but may not log in; its open
   * sessions are ended (sessions_ended: how many; absent from an older daemon).
   */
  local_disable: command({ request: object({ name: localName }), reply: object({ user: localUser, sessions_ended: optional(count()) }), errors: localRefusals }),
  local_enable: command({ request: object({ name: localName }), reply: object({ user: localUser }), errors: localRefusals }),

  /** Removes a local user from the store (its home is left as it is) and ends its open sessions. */
  local_remove: command({ request: object({ name: localName }), reply: object({ removed: string(), uid: nullable(number()), sessions_ended: optional(count()) }), errors: localRefusals }),

  /** The served local users, ascending uid. role: where changes are made (secondary: read-only). */
  local_list: command({
    request: noArguments,
    reply: object({ now: at(), role: literal('standalone', 'primary', 'secondary'), primary: nullable(string()), users: array(localSummary) }),
    errors: ['unavailable'],
  }),

  /** One local user, by name or uid; not_found when the store does not serve it. */
  local_show: command({ request: object({ name: userRef }), reply: object({ user: localUser }), errors: ['not_found', 'unavailable'] }),

  /**
   * The hash contexts: each configured one (algorithm, cost, whether it is the default) and each
   * id the store holds that the config no longer defines (algorithm null), with its users.
   */
  local_contexts: command({
    request: noArguments,
    reply: object({
      default_context: string(), upgrade: literal('off', 'local', 'remote'),
      contexts: array(object({ id: string(), algorithm: nullable(string()), cost: nullable(number()), default: boolean(), users: count() })),
    }),
    errors: ['unavailable'],
  }),

  /**
   * The cleanup of temporary accounts (src/cleanup/), now: accounts expired more than [cleanup]
   * expired_grace ago leave the cache (upstream users) and the store (local users, not on a
   * secondary: local_skipped says why), and accounts that may not log in lose their open
   * sessions. dry_run: says what would be done, changes nothing. Homes are never deleted:
   * each account's home is listed, and homes_kept names those that exist.
   */
  purge: command({
    request: object({ expired: literal(true), dry_run: flag }),
    reply: object({
      dry_run: boolean(), now: at(), expired_grace_s: number(),
      cache_users: array(purgedAccount), local_users: array(purgedAccount),
      local_skipped: nullable(string()),
      sessions_ended: count(), session_users: array(string()),
      homes_kept: array(string()),
    }),
  }),
};

type Commands = typeof ADMIN_COMMANDS;
export type AdminCommand = keyof Commands;
export const ADMIN_COMMAND_NAMES = Object.keys(ADMIN_COMMANDS) as AdminCommand[];

/** The arguments of one command, without "cmd". */
export type AdminArgs<C extends AdminCommand> = Infer<Commands[C]['request']>;
/** What latchkeyctl sends for one command. */
export type AdminRequest<C extends AdminCommand> = { cmd: C } & AdminArgs<C>;
/** Any request the daemon may receive, told apart by "cmd". */
export type AnyAdminRequest = { [C in AdminCommand]: AdminRequest<C> }[AdminCommand];
/** The data of a successful reply, without "ok" (what --json prints). */
export type AdminReplyData<C extends AdminCommand> = Infer<Commands[C]['reply']>;
export type AdminOkReply<C extends AdminCommand> = { ok: true } & AdminReplyData<C>;
export type AdminErrorCode<C extends AdminCommand> = (typeof ANY_COMMAND_ERRORS)[number] | Commands[C]['errors'][number];
export type AdminErrorFields<C extends AdminCommand> = ObjectOf<Commands[C]['errorFields']>;
export type AdminErrorReply<C extends AdminCommand> = { ok: false; error: string; code: AdminErrorCode<C> } & AdminErrorFields<C>;
export type AdminReply<C extends AdminCommand> = AdminOkReply<C> | AdminErrorReply<C>;

/** Parts that several replies share, named for the code that builds or prints them. */
export type UserSummary = Infer<typeof userSummary>;
export type SessionInfo = Infer<typeof session>;
export type EndedSessionInfo = Infer<typeof endedSession>;
export type EventsStatusView = Infer<typeof eventsStatus>;
export type HashFacts = Infer<typeof hashFacts>;
export type LocalUserView = Infer<typeof localUser>;
export type PurgedAccountView = Infer<typeof purgedAccount>;
export type LocalUserSummary = Infer<typeof localSummary>;
export type LocalKeyView = Infer<typeof localKey>;
/** What LocalUsers.status() gives `status` (src/localusers/service.ts). */
export type LocalStatusView = Infer<typeof localStatus>;

export function isAdminCommand(name: string): name is AdminCommand {
  return Object.hasOwn(ADMIN_COMMANDS, name);
}

export type RequestCheck =
  | { ok: true; request: AnyAdminRequest }
  | { ok: false; code: 'bad_request' | 'unknown_command'; error: string; cmd: string };

/** The daemon's side: the ADMIN frame's text to a typed request, or the refusal to answer. */
export function checkAdminRequest(json: string): RequestCheck {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return { ok: false, code: 'bad_request', error: 'the admin request is not JSON', cmd: '?' };
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return { ok: false, code: 'bad_request', error: 'the admin request must be a JSON object', cmd: '?' };
  }
  const cmd = (raw as { cmd?: unknown }).cmd;
  if (typeof cmd !== 'string') return { ok: false, code: 'bad_request', error: '"cmd" is required', cmd: '?' };
  if (!isAdminCommand(cmd)) {
    return { ok: false, code: 'unknown_command', error: `unknown command "${cmd}"; known: ${ADMIN_COMMAND_NAMES.join(', ')}`, cmd };
  }
  try {
    const args = ADMIN_COMMANDS[cmd].request.check(raw, '');
    return { ok: true, request: { ...args, cmd } as AnyAdminRequest };
  } catch (e) {
    if (e instanceof ShapeError) return { ok: false, code: 'bad_request', error: e.message, cmd };
    throw e;
  }
}

const errorCodesOf = (cmd: AdminCommand): readonly string[] => [...ANY_COMMAND_ERRORS, ...(ADMIN_COMMANDS[cmd].errors as readonly string[])];

/**
 * latchkeyctl's side: a reply to `cmd`, checked field by field. Throws a ShapeError naming the
 * first field that is missing or of the wrong type (the CLI reports it as a protocol error
 * rather than print "undefined" or crash on it).
 */
export function checkAdminReply<C extends AdminCommand>(cmd: C, raw: unknown): AdminReply<C> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ShapeError('', 'a JSON object');
  const ok = (raw as { ok?: unknown }).ok;
  if (ok === true) {
    const data = (ADMIN_COMMANDS[cmd].reply as Shape<unknown>).check(raw, '');
    return { ...(data as object), ok: true } as AdminOkReply<C>;
  }
  if (ok !== false) throw new ShapeError('ok', 'true or false');
  const base = object({ error: string(), code: literal(...errorCodesOf(cmd)) }).check(raw, '');
  const extra = object(ADMIN_COMMANDS[cmd].errorFields as Record<string, Shape<unknown>>).check(raw, '');
  return { ...base, ...extra, ok: false } as unknown as AdminErrorReply<C>;
}

/** Most entries one `throttle` reply lists (the maps may hold 100 000 keys each). */
export const THROTTLE_LIST_MAX = 1000;
