// The passwd and group entries latchkey hands out, built in one place from a cached user and the
// config: what NSS, the enumeration pages and `latchkeyctl lookup` show is the same record.
import type { Config, UsersConfig } from '../config/types.js';
import type { CachedUser, GroupEntry, PasswdEntry } from '../types.js';
import type { LocalAccounts } from '../users/local.js';
import { homePath } from '../homes/home.js';

/**
 * The public passwd fields of a user. Home and shell come from config, never from upstream (a
 * persistent local user may have its own shell, set by an admin); the password field is not
 * here at all (the NSS module answers `x`).
 */
export function passwdEntry(cfg: Pick<Config, 'users' | 'homes'>, u: CachedUser): PasswdEntry {
  return { name: u.username, uid: u.uid, gid: cfg.users.gid, gecos: u.gecos, dir: homePath(cfg.homes, u.username), shell: u.local?.shell ?? cfg.users.shell };
}

/**
 * The one group, or null when the host's group file has its name or gid (then `files` answers
 * for it and latchkey must not contradict it). No member list: every latchkey user has it as
 * primary group, which getgrouplist(3) and sshd's Match Group see without one, while a listed
 * name would also make a *local* account of that name a member (initgroups by name).
 */
export function groupEntry(users: Pick<UsersConfig, 'groupName' | 'gid'>, local: Pick<LocalAccounts, 'groupIsLocal'>): GroupEntry | null {
  if (local.groupIsLocal(users.groupName, users.gid)) return null;
  return { name: users.groupName, gid: users.gid, members: [] };
}
