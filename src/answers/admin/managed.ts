// The "not latchkey's" answer lookup, show and why share: a name or uid the host keeps (its
// account files, the deny list) or the rules refuse, told without any lookup.
import { nameProblem, localUidAllowed } from '../../users/rules.js';
import type { AdminErrorFields } from '../../protocol/admin.js';
import type { AdminContext } from './context.js';

export type NotManagedReason = NonNullable<AdminErrorFields<'why'>['not_managed']>;
export interface NotManaged { reason: NotManagedReason; detail: string }

/**
 * Why latchkey never answers for this name or uid, or null when it may: the same checks the
 * resolver makes before any cache or upstream access (users/rules.ts, users/local.ts), asked
 * without a lookup. A uid of the local users' range is theirs, so managed.
 */
export function notManaged(ctx: AdminContext, ref: string | number): NotManaged | null {
  const cfg = ctx.config();
  const local = ctx.resolver.local;
  if (typeof ref === 'number') {
    const owner = local.uidOwner(ref);
    if (owner === 'latchkeyd itself') return { reason: 'local account', detail: `uid ${ref} is latchkeyd's own account` };
    if (owner !== null) return { reason: 'local account', detail: `uid ${ref} is ${owner}'s in ${cfg.users.localPasswdFile}` };
    if (ctx.resolver.inStoredRange(ref)) return null;
    if (!localUidAllowed(ref, cfg.users)) {
      return { reason: 'uid rule', detail: `uid ${ref} is outside what latchkey hands out ([users] min_uid ${cfg.users.minUid} .. max_uid ${cfg.users.maxUid}, ega_uid_shift ${cfg.users.uidShift}, never 0 or a reserved id)` };
    }
    return null;
  }
  const r = local.nameReason(ref);
  if (r === 'deny list') return { reason: r, detail: `${ref} is in [users] deny_names` };
  if (r === 'local account') return { reason: r, detail: `${ref} is in ${cfg.users.localPasswdFile}` };
  if (r === 'local group') return { reason: r, detail: `${ref} is a group name in ${cfg.users.localGroupFile}` };
  if (r === 'local group member') return { reason: r, detail: `${ref} is a member of a group in ${cfg.users.localGroupFile}` };
  const p = nameProblem(ref, cfg.users);
  return p === null ? null : { reason: 'name rule', detail: `the name ${p}` };
}

/** "local account, not managed by latchkey (root is in /etc/passwd)": what the CLI prints too. */
export function notManagedMessage(ref: string | number, n: NotManaged): string {
  return `${ref}: ${n.reason}, not managed by latchkey (${n.detail})`;
}
