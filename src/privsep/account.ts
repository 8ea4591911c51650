// The account latchkeyd runs as ([daemon] user, default `_latchkey`): resolved from the local
// passwd file, never through NSS (the daemon must not ask itself), and never root: the process
// that parses HTTP and JSON holds no privilege (ARCHITECTURE.md, "privilege separation").
import { readFileSync } from 'node:fs';
import type { Config } from '../config/types.js';
import { ConfigError } from '../errors.js';

export interface DaemonAccount { name: string; uid: number; gid: number }

/** Finds NAME (or a numeric uid) in passwd-format text; null when absent. */
export function findAccount(passwdText: string, user: string): DaemonAccount | null {
  const numeric = /^\d+$/.test(user) ? Number(user) : null;
  for (const line of passwdText.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || line.startsWith('#')) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) continue;
    if (f[0] === user || (numeric !== null && uid === numeric)) return { name: f[0]!, uid, gid };
  }
  // A numeric uid need not have an entry (a DynamicUser-style or test account): its group is
  // the uid itself, as systemd's DynamicUser and sysusers allocate them.
  return numeric !== null ? { name: String(numeric), uid: numeric, gid: numeric } : null;
}

/** The configured daemon account, or a ConfigError naming the key and the fix. */
export function daemonAccount(cfg: Config): DaemonAccount {
  const file = cfg.users.localPasswdFile;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(cfg.source, 0, 'daemon.user', `cannot read ${file} to find the daemon user: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return checkedAccount(cfg, text);
}

/** daemonAccount's rules on passwd text already read: found, not root, its own group. */
export function checkedAccount(cfg: Config, passwdText: string): DaemonAccount {
  const file = cfg.users.localPasswdFile;
  const account = findAccount(passwdText, cfg.daemon.user);
  if (account === null) {
    throw new ConfigError(cfg.source, 0, 'daemon.user',
      `the daemon user "${cfg.daemon.user}" is not in ${file}; fix: create it (systemd-sysusers /usr/lib/sysusers.d/latchkey.conf, or useradd --system --no-create-home --shell /usr/sbin/nologin ${cfg.daemon.user})`);
  }
  if (account.uid === 0 || account.gid === 0) {
    throw new ConfigError(cfg.source, 0, 'daemon.user',
      `the daemon user "${cfg.daemon.user}" has uid ${account.uid} / gid ${account.gid}: latchkeyd never runs as root; fix: name an unprivileged system user (default _latchkey)`);
  }
  if (account.gid === cfg.users.gid) {
    throw new ConfigError(cfg.source, 0, 'daemon.user',
      `the daemon user "${cfg.daemon.user}" has gid ${account.gid}, the group every served user gets ([users] gid): they could read what only latchkeyd may (a group-readable secrets file); fix: give ${cfg.daemon.user} its own group`);
  }
  return account;
}

/**
 * True when `gid` is the daemon's alone: no other account in the passwd text has it as its primary
 * group and the group file lists no members for it. Only then may a secrets file be readable by
 * that group (root:_latchkey 0640); a shared group (nogroup, users) would hand the upstream
 * password to everybody in it.
 */
export function groupIsPrivate(gid: number, account: DaemonAccount, passwdText: string, groupText: string): boolean {
  for (const line of passwdText.split('\n')) {
    const f = line.split(':');
    if (f.length >= 7 && Number(f[3]) === gid && Number(f[2]) !== account.uid) return false;
  }
  for (const line of groupText.split('\n')) {
    const f = line.split(':');
    if (f.length >= 4 && Number(f[2]) === gid && f[3]!.trim() !== '') return false;
  }
  return true;
}
