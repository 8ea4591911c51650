// What a session event is, once: the log line (session.<event>) and the collector's JSON body
// carry the same fields, so a fleet's collector and a host's journal tell the same story.

/** open; close (closed by PAM, process gone, reopened by the same pid); replaced (on_limit =
 *  replace-oldest); expired (max_session_age); revoked (killed by an admin, or the account was
 *  removed, disabled or expired upstream or locally). */
export type SessionEventName = 'open' | 'close' | 'replaced' | 'expired' | 'revoked';

export interface SessionEvent {
  event: SessionEventName;
  /** why: the session's end_reason (closed, gone, reopened, replaced, max_age, killed, removed,
   *  disabled, expired); 'login' for open */
  reason: string;
  session_id: string;
  user: string;
  uid: number;
  service: string;
  rhost: string;
  pid: number;
  /** os.hostname() of the daemon that saw it: a collector hears from many hosts */
  host: string;
  /** epoch milliseconds */
  at: number;
  /** what the upstream or the admin said (revoked), the session that replaced it (replaced) */
  detail?: string;
}

/** Where the registry hands its events; never throws, never blocks. */
export type SessionEventSink = (e: SessionEvent) => void;
