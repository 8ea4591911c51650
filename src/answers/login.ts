// The identity check of the login paths (LOGIN_CHECK for pam_latchkey, KEYS_FOR_LOGIN for
// latchkey-authorized-keys). sshd takes the user's identity from NSS (`files` first) and the
// proof (password, key) from us: both must speak of the same account, or an upstream record
// named like a local account would log in as that account. The shim sends the uid NSS resolved;
// latchkey acts only when it serves exactly that name with exactly that uid.
import { ok, fail, type HandlerResult, type HandlerTable } from '../server/dispatch.js';
import { Status } from '../protocol/generated.js';
import type { Config } from '../config/types.js';
import type { Resolver } from '../directory/resolver.js';
import type { CachedUser } from '../types.js';
import { LogOnce } from '../log.js';

export function loginHandlers(resolver: Resolver, cfg: () => Config): HandlerTable {
  // once per (name, uid) pair: an unprivileged caller picks both
  const once = new LogOnce();
  const mismatch = (name: string, nssUid: number, served: number, via: string): HandlerResult => {
    once.log(`${name}:${nssUid}`, 'warn', 'login.identity_mismatch', {
      user: name, nss_uid: nssUid, served_uid: served, via,
      detail: 'NSS resolves this name to another uid than latchkey serves (another NSS source answers first); latchkey does not act for it',
    });
    return fail(Status.NOTFOUND, `latchkey does not serve ${name} with uid ${nssUid}`);
  };

  /** The served user when it is exactly (name, uid), else the failure reply. */
  const identity = async (name: string, uid: number, via: string, peerUid: number): Promise<CachedUser | HandlerResult> => {
    const l = await resolver.byName(name, peerUid);
    if (l.status === 'unavail') return fail(Status.UNAVAIL, 'user service unavailable');
    if (l.status === 'notfound') return fail(Status.NOTFOUND, `latchkey does not serve ${name}`);
    if (l.user.uid !== uid) return mismatch(name, uid, l.user.uid, via);
    return l.user;
  };
  const isUser = (v: CachedUser | HandlerResult): v is CachedUser => 'username' in v;

  return {
    LOGIN_CHECK: async (f, peer) => {
      const u = await identity(f.user as string, f.uid as number, 'pam', peer.uid);
      return isUser(u) ? ok({ prompt: cfg().pam.prompt }) : u;
    },
    KEYS_FOR_LOGIN: async (f, peer) => {
      const u = await identity(f.name as string, f.uid as number, 'authorized-keys', peer.uid);
      return isUser(u) ? ok({ keys: u.sshPublicKeys }) : u;
    },
  };
}
