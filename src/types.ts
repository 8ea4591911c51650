// Shared record types: what every part of the daemon agrees a user is.

/** A user exactly as the upstream REST service described it, after validation. */
export interface UpstreamUser {
  /** login name, already checked against the name rule */
  username: string;
  /** upstream (CentralEGA) uid, before `ega_uid_shift` */
  upstreamUid: number;
  /** bcrypt or crypt(3) hash; null when the user has no password */
  passwordHash: string | null;
  /** one key per entry, already checked to be a single line */
  sshPublicKeys: string[];
  gecos: string;
  /**
   * epoch ms after which the account may not log in (upstream `expiresAt`, or 0 for
   * `"enabled": false`); null or absent = no expiry. Optional: CentralEGA does not send it.
   */
  accountExpiresAt?: number | null;
}

/** A cached user: the upstream record plus local identity and cache bookkeeping. */
export interface CachedUser extends UpstreamUser {
  /** local uid = upstreamUid + uid shift */
  uid: number;
  /** epoch milliseconds when fetched from upstream */
  fetchedAt: number;
  /** epoch milliseconds after which the entry is no longer fresh */
  expiresAt: number;
  /**
   * Set only for a persistent local user (src/localusers/): never cached, never fetched. Its
   * upstreamUid is -1, its expiresAt never comes, and accountExpiresAt is 0 while it is disabled.
   */
  local?: { context: string | null; shell: string | null };
}

/** What NSS sees: the public passwd fields. Home and shell come from config, never from upstream. */
export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  gecos: string;
  dir: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}
