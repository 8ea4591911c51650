// What a persistent local user is (issue 16): a user kept in latchkey's own on-disk store
// (store.ts, /var/lib/latchkey/local.db), not in the upstream, and served by NSS, PAM and the keys
// helper like a cached user. These types are the contract between the store, the resolver, the
// admin commands, hash upgrades and snapshot sync.

/** One stored local user, as the store returns it. Never leaves the daemon with its hash. */
export interface LocalUser {
  /** login name; passes [users] name_regex and is none of the host's accounts */
  name: string;
  /** within [local] min_uid .. max_uid; unique */
  uid: number;
  gecos: string;
  /** login shell, or null for [users] shell */
  shell: string | null;
  /** crypt(3)/bcrypt hash, or null: key logins only */
  passwordHash: string | null;
  /** the hash context ([local] contexts id) the hash was made under; null when unknown (imported) */
  context: string | null;
  /** authorized_keys lines, each one key, checked like upstream keys (upstream/sshkeys.ts) */
  keys: string[];
  /** epoch ms after which the account may not log in; null = never */
  expiresAt: number | null;
  disabled: boolean;
  createdAt: number;
  updatedAt: number;
}

/** What `latchkeyctl local add` gives the store: a LocalUser before it exists; `uid` null picks
 *  the lowest free uid of the range. */
export type NewLocalUser = Omit<LocalUser, 'uid' | 'disabled' | 'createdAt' | 'updatedAt'> & { uid: number | null };

/** Why the store refused a change; `code` maps to the admin error codes. */
export type LocalStoreErrorCode = 'exists' | 'uid_taken' | 'not_found' | 'invalid' | 'range_full' | 'read_only' | 'io';

export class LocalStoreError extends Error {
  constructor(readonly code: LocalStoreErrorCode, message: string) {
    super(message);
  }
}

/** The facts `latchkeyctl status` shows about a snapshot file (primary: published; secondary: in use). */
export interface SnapshotInfo {
  /** when the primary took the snapshot (epoch ms), null if this store never came from one */
  takenAt: number | null;
  /** where it was taken (the primary's host name) */
  takenOn: string | null;
  users: number;
}

/** The result of checking a snapshot file before it replaces the store. */
export type SnapshotCheck =
  | { ok: true; info: SnapshotInfo }
  | { ok: false; error: string };
