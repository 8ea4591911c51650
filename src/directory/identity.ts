// The identity check of the login paths (LOGIN_CHECK for pam_latchkey, KEYS_FOR_LOGIN for
// latchkey-authorized-keys). sshd takes the user's identity from NSS (`files` first) and the
// proof (password, key) from us: both must speak of the same account, or an upstream record
// named like a local account would log in as that account. The shim sends the uid NSS resolved;
// latchkey acts only when it serves exactly that name with exactly that uid.
import type { CachedUser } from '../types.js';
import type { Lookup } from '../cache/types.js';
import type { Resolver } from './resolver.js';
import { LogOnce } from '../log.js';

/** `source`: where the lookup's answer came from (`latchkeyctl why` shows it). */
export type ServedIdentity =
  | { kind: 'served'; user: CachedUser; source: Extract<Lookup, { status: 'found' }>['source'] }
  | { kind: 'notfound'; detail: string; source: Extract<Lookup, { status: 'notfound' }>['source'] }
  /** latchkey serves the name with another uid: another NSS source answers for it first */
  | { kind: 'mismatch'; detail: string }
  | { kind: 'unavailable'; reason: string };

export class LoginIdentity {
  // once per (name, uid) pair: an unprivileged caller picks both
  private readonly once = new LogOnce();
  constructor(private readonly resolver: Resolver) {}

  /** `via` names the asking path in the log line; `peerUid` as for Resolver.byName. */
  async check(name: string, nssUid: number, via: 'pam' | 'authorized-keys', peerUid: number): Promise<ServedIdentity> {
    const l = await this.resolver.byName(name, peerUid);
    if (l.status === 'unavail') return { kind: 'unavailable', reason: l.reason };
    if (l.status === 'notfound') return { kind: 'notfound', detail: `latchkey does not serve ${name}`, source: l.source };
    if (l.user.uid === nssUid) return { kind: 'served', user: l.user, source: l.source };
    this.once.log(`${name}:${nssUid}`, 'warn', 'login.identity_mismatch', {
      user: name, nss_uid: nssUid, served_uid: l.user.uid, via,
      detail: 'NSS resolves this name to another uid than latchkey serves (another NSS source answers first); latchkey does not act for it',
    });
    return { kind: 'mismatch', detail: `latchkey does not serve ${name} with uid ${nssUid}` };
  }
}
