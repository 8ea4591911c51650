// What every admin command handler gets and how it answers: the daemon's parts (AdminContext),
// the handler type derived from the admin protocol (src/protocol/admin.ts), and refuse() for a
// typed {"ok": false} answer.
import type { MapStatus } from '../../fastpath/publisher.js';
import type { Peer } from '../../server/dispatch.js';
import type { Config } from '../../config/types.js';
import type { UserCache } from '../../cache/db.js';
import type { Resolver } from '../../directory/resolver.js';
import type { UserSource } from '../../upstream/types.js';
import type { SessionRegistry } from '../../sessions/registry.js';
import type { Throttle } from '../../verify/throttle.js';
import type { AdminArgs, AdminCommand, AdminErrorCode, AdminErrorFields, AdminReplyData, LocalStatusView } from '../../protocol/admin.js';
import type { LocalStore } from '../../localusers/store.js';
import type { RowRules } from '../../localusers/rows.js';
import type { AuthStats } from '../priv-auth.js';
import type { CleanupReport } from '../../cleanup/run.js';
import type { EventsStatus } from '../../events/hub.js';
import type { LoginDecisions } from '../../verify/decisions.js';

/** What the local_* commands need of the persistent local users (src/localusers/service.ts). */
export interface LocalUsersFacade {
  store: LocalStore;
  /** a secondary: why changes are refused here and where to make them; null on a read-write host */
  readOnly(): string | null;
  /** a new password's hash under [local] default_context (on the threadpool) */
  hashNew(password: string): Promise<{ hash: string; context: string }>;
  rules(): RowRules;
  /** why the host keeps this name or uid (its account files, the deny list), or null */
  hostHas(name: string, uid: number | null): string | null;
  /** whether the upstream has a user of this name, asked now */
  upstreamHas(name: string): Promise<'yes' | 'no' | { unavailable: string }>;
  /** a user just added with --force over a name the upstream has: the conflict shows at once */
  addedOverUpstream(name: string): void;
  status(): LocalStatusView;
}

/** Everything the admin commands read or operate; built by main.ts. */
export interface AdminContext {
  version: string;
  /** epoch ms */
  startedAt: number;
  config: () => Config;
  configFile: string;
  socketPaths: () => { dir: string; nss: string; priv: string };
  cache: UserCache;
  resolver: Resolver;
  source: UserSource;
  sessions: SessionRegistry;
  throttle: Throttle;
  authStats: AuthStats;
  /** latchkey-rootd: asked whether it accepts a connection */
  rootd: { socketPath: string; probe(): Promise<string | null> };
  /** the shared-memory map's publisher (src/fastpath) */
  map: { status(): MapStatus };
  /** the persistent local users (issue 16); absent: the local_* commands answer unavailable */
  local?: LocalUsersFacade;
  /** the session events' collector and counters (src/events/); absent: status shows none */
  events?: { status(): EventsStatus };
  /** the cleanup of temporary accounts (src/cleanup/), run by `purge` */
  cleanup?: { run(opts: { dryRun: boolean }): Promise<CleanupReport> };
  /** reads the config again (SIGHUP's work); `credential` replaces the systemd credential's text */
  reload(credential?: string): ReloadOutcome;
  /** the last login decision per user and PAM phase (src/verify/decisions.ts), for `why`; absent: nothing recorded */
  decisions?: LoginDecisions;
  /** the config in force: when it was loaded and the digest of the file's bytes (status) */
  configLoaded?: () => { at: number; digest: string };
  /** the last reload's outcome, null before the first (status) */
  lastReload?: () => ReloadOutcome | null;
  /** the Prometheus endpoint (src/metrics/): where, and why it is not serving */
  metrics?: { status(): { listen: string | null; serving: boolean; error: string | null } };
  /** the systemd userdb provider (src/userdb/) */
  userdb?: { status(): NonNullable<AdminReplyData<'status'>['userdb']> };
  /** wall-clock steps seen (src/daemon/clock.ts); absent: status shows none */
  clock?: { status(): { last_jump: { at: number; delta_ms: number; direction: 'forward' | 'back' } | null; jumps: number } };
}

/** What a reload did: taken (and from which credential), or refused with the loader's message. */
export type ReloadOutcome = { ok: true; at: number; credential: 'none' | 'start' | 'pushed' }
  | { ok: false; at: number; credential: 'none' | 'start' | 'pushed'; error: string };

/** One command: its checked arguments in, the data of its {"ok": true} reply out. */
export type AdminHandler<C extends AdminCommand> = (args: AdminArgs<C>, peer: Peer) => AdminReplyData<C> | Promise<AdminReplyData<C>>;
/** A group of commands; the full table (index.ts) must name every command of the protocol. */
export type AdminHandlers<K extends AdminCommand> = { [C in K]: AdminHandler<C> };

/** A command's refusal, thrown by its handler and sent as {"ok": false, "error", "code", ...fields}. */
export class AdminRefusal extends Error {
  constructor(readonly code: string, message: string, readonly fields: object) {
    super(message);
    this.name = 'AdminRefusal';
  }
}

/** A refusal `cmd` may give: the protocol lists its codes and extra fields. */
export function refuse<C extends AdminCommand>(
  _cmd: C, code: Exclude<AdminErrorCode<C>, 'unknown_command' | 'internal'>, message: string, fields?: AdminErrorFields<C>,
): AdminRefusal {
  return new AdminRefusal(code, message, fields ?? {});
}

/** Milliseconds to two decimals, as every *_ms field carries them. */
export function roundMs(ms: number): number {
  return Math.round(ms * 100) / 100;
}
