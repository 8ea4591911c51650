// Who is "privileged" for session renewal: a user named in [pam] privileged_users (the per-user
// way: latchkey users have no supplementary groups of their own), or a member of one of
// [pam] privileged_groups in the host's group file ([users] local_group), by primary gid or
// member list. Latchkey users all have [users] gid as their primary group, so naming [users]
// group_name (or a host group with that gid) makes every latchkey user privileged; a member list
// that names a user makes the resolver refuse that name (a host account's), so it never logs in.
// Read on every decision: renewals are rare (one per successful password login) and a changed
// group file must count at once. An unreadable file counts as "privileged": a renewal that
// should not happen is the failure to avoid, a missed renewal only ends a session on time.
import { readFileSync } from 'node:fs';
import type { Config } from '../config/types.js';

export type Privilege = { privileged: false } | { privileged: true; why: string };

export function privilegeOf(cfg: Config, user: string): Privilege {
  if ((cfg.pam.privilegedUsers ?? []).includes(user)) return { privileged: true, why: 'named in [pam] privileged_users' };
  const wanted = cfg.pam.privilegedGroups ?? [];
  if (wanted.length === 0) return { privileged: false };
  if (wanted.includes(cfg.users.groupName)) return { privileged: true, why: `every latchkey user's primary group ${cfg.users.groupName} is in [pam] privileged_groups` };
  let text: string;
  try {
    text = readFileSync(cfg.users.localGroupFile, 'utf8');
  } catch (e) {
    return { privileged: true, why: `${cfg.users.localGroupFile} cannot be read (${e instanceof Error ? e.message : String(e)}), so membership of [pam] privileged_groups is unknown` };
  }
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const f = line.split(':');
    if (f.length < 3 || !wanted.includes(f[0]!)) continue;
    if (/^\d+$/.test(f[2]!) && Number(f[2]) === cfg.users.gid) return { privileged: true, why: `primary group gid ${cfg.users.gid} is ${f[0]}, in [pam] privileged_groups` };
    const members = (f[3] ?? '').split(',').map((m) => m.trim());
    if (members.includes(user)) return { privileged: true, why: `a member of ${f[0]}, in [pam] privileged_groups` };
  }
  return { privileged: false };
}
