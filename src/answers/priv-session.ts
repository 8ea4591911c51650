// What priv.sock answers for pam_latchkey's session phase: SESSION_OPEN (the home, the session
// record, the umask and chroot the module applies) and SESSION_CLOSE. The policy is the domain's:
// sessions/registry.ts (limits, records), homes/home.ts (the home), sshdconf/checks.ts (chroot).
import { ok, fail, type HandlerTable } from '../server/dispatch.js';
import { Status } from '../protocol/generated.js';
import type { Config, HomesConfig } from '../config/types.js';
import type { Lookup } from '../cache/types.js';
import type { SessionRegistry } from '../sessions/registry.js';
import { sessionChroot, NO_SSHD_FACTS, type SshdFacts } from '../sshdconf/checks.js';
import { log } from '../log.js';
import type { LoginDecisions } from '../verify/decisions.js';
import { unavailable } from './replies.js';

/** The part of the Resolver the session handlers use. */
export interface UserLookup { byName(name: string): Promise<Lookup> }
/** The homes module's contract (src/homes/home.ts ensureHome, through latchkey-rootd): creates base/name race-free if missing. */
export type EnsureHome = (cfg: HomesConfig, user: { name: string; uid: number; gid: number })
  => Promise<{ path: string; created: boolean; problems: string[] }>;

/**
 * SESSION_OPEN and SESSION_CLOSE. `ensureHome` asks rootd (replaceable for tests); `sshd` gives what
 * latchkeyd read from sshd_config at start/reload (src/sshdconf), used for the chroot.
 * `decisions`: where each SESSION_OPEN's answer is recorded for `latchkeyctl why`.
 */
export function sessionHandlers(
  sessions: SessionRegistry, resolver: UserLookup, config: () => Config, ensureHome: EnsureHome,
  sshd: () => SshdFacts = () => NO_SSHD_FACTS, decisions: LoginDecisions | null = null,
): HandlerTable {
  return {
    SESSION_OPEN: async (f, peer) => {
      const user = f.user as string;
      const service = f.service as string;
      const rhost = f.rhost as string;
      const pid = f.pid as number;
      const cfg = config();
      const l = await resolver.byName(user);
      const decided = (served: boolean, result: string, detail: string, extra: { session_id?: string; uid?: number } = {}): void =>
        decisions?.record(user, 'session_open', served, { result, detail, service, rhost, source: 'source' in l ? l.source : null, ...extra }, peer.uid);
      if (l.status === 'unavail') { decided(false, 'unavailable', l.reason); return unavailable(l.reason, peer); }
      if (l.status === 'notfound') { decided(false, 'notfound', `${user} is not a latchkey user`); return fail(Status.NOTFOUND, `${user} is not a latchkey user`); }
      let home: Awaited<ReturnType<EnsureHome>>;
      try {
        home = await ensureHome(cfg.homes, { name: l.user.username, uid: l.user.uid, gid: cfg.users.gid });
      } catch (e) {
        const error = e instanceof Error ? e.message : String(e);
        log('error', 'session.home_refused', { user, service, rhost, error });
        decided(true, 'home_refused', `the home could not be prepared: ${error}`, { uid: l.user.uid });
        return fail(Status.INTERNAL, 'home directory could not be prepared; see the latchkeyd log');
      }
      // ensureHome throws when the home is unsafe (symlink, foreign owner); `problems` lists
      // repairs it made (mode, group), logged by it together with home.created: the home is usable.
      const r = sessions.open({ user, uid: l.user.uid, service, rhost, tty: f.tty as string, pid, pidStart: typeof f.pid_start === 'string' ? f.pid_start : null });
      if (!r.ok) {
        const scope = cfg.pam.sessionLimit ?? 'per-user';
        const where = scope === 'per-user' ? '' : scope === 'per-user-service' ? ` for ${service}` : ` for ${service} from ${rhost || 'no host'}`;
        log('warn', 'session.limit', { user, service, rhost, open: r.open, max: r.max, scope, fix: 'the user ends a session first, or [pam] on_limit = replace-oldest' });
        decided(true, 'limit', `refused: ${user} already had ${r.open} open sessions${where} (max ${r.max}, [pam] session_limit = ${scope}, on_limit = ${cfg.pam.onLimit})`, { uid: l.user.uid });
        return fail(Status.LIMIT, `${user} already has ${r.open} open sessions${where} (max ${r.max})`);
      }
      // session.open (and session.replaced for what it replaced) are the registry's events.
      // chroot_sessions, except for sshd sessions that sshd's own ChrootDirectory confines
      // (checks.ts sessionChroot: chrooting them here would make sshd refuse the login).
      const chroot = sessionChroot(cfg, sshd(), service);
      const replaced = r.replaced.length > 0 ? `; it replaced session ${r.replaced.join(', ')} ([pam] on_limit = replace-oldest)` : '';
      decided(true, 'opened', `session ${r.id} opened, home ${home.path}${chroot ? ' (chrooted)' : ''}${replaced}`, { session_id: r.id, uid: l.user.uid });
      return ok({ session_id: r.id, home: home.path, umask: cfg.homes.umask, chroot: chroot ? 1 : 0 });
    },

    SESSION_CLOSE: (f) => {
      const user = f.user as string;
      // Each ended record is a session.close event (the registry's); none open is normal for a
      // session that was replaced, expired or revoked before sshd closed it.
      const n = sessions.close(user, f.pid as number);
      if (n === 0) log('debug', 'session.close_unrecorded', { user, service: f.service, pid: f.pid });
      return ok();
    },
  };
}
