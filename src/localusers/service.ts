// The persistent local users as the daemon runs them (issue 16): one object that opens the store,
// hands it to the directory, runs hash upgrades, the primary's update endpoint and snapshot sync
// by [local] role, watches for names the upstream has too, and answers the admin commands
// (answers/admin/local.ts) and `latchkeyctl status`. main.ts builds it; nothing else does.
import type { Config } from '../config/types.js';
import type { Resolver } from '../directory/resolver.js';
import type { CachedUser } from '../types.js';
import type { Throttle } from '../verify/throttle.js';
import type { LocalUsersFacade } from '../answers/admin/context.js';
import type { LocalStatusView } from '../protocol/admin.js';
import { log } from '../log.js';
import { LocalStore } from './store.js';
import { rowRules, type RowRules } from './rows.js';
import { findContext, newHash } from './contexts.js';
import { Upgrader } from './upgrade.js';
import { UpgradeEndpoint } from './endpoint.js';
import { SnapshotFollower, SnapshotPublisher, type SyncStatus } from './snapshot.js';

/** How often every stored name is checked against the upstream (a conflict found is logged once). */
export const CONFLICT_CHECK_MS = 3_600_000;
/** After a start or a change, the check runs this much later (the upstream may be slow to start). */
const CONFLICT_CHECK_SOON_MS = 5_000;
/** Between two names of one check: a store of hundreds of names must not burst at the upstream. */
const CONFLICT_CHECK_GAP_MS = 200;

export class LocalUsers implements LocalUsersFacade {
  readonly upgrader: Upgrader;
  private endpoint: UpgradeEndpoint | null = null;
  private publisher: SnapshotPublisher | null = null;
  private follower: SnapshotFollower | null = null;
  private checkTimer: NodeJS.Timeout | null = null;
  private checking = false;
  private closed = false;
  /** the role the sync parts were started for: a reload to another role needs a restart */
  private readonly role: Config['local']['role'];

  private constructor(
    readonly store: LocalStore,
    private readonly cfg: () => Config,
    private readonly resolver: Resolver,
    private readonly throttle: Throttle,
    private readonly onChange: () => void,
  ) {
    this.upgrader = new Upgrader(cfg, store);
    this.role = cfg().local.role;
  }

  /**
   * Opens the store and starts what the role asks for. A store that cannot be opened is an error
   * the caller reports (latchkeyd still serves the upstream's users); an endpoint that cannot
   * listen is logged and left off, never fatal.
   */
  static async start(cfg: () => Config, resolver: Resolver, throttle: Throttle, onChange: () => void): Promise<LocalUsers> {
    const store = LocalStore.open(cfg().local.dbPath, { rules: () => rowRules(cfg()) });
    const self = new LocalUsers(store, cfg, resolver, throttle, onChange);
    store.onChange = () => self.changed();
    resolver.useStore(store);
    const l = cfg().local;
    if (l.role === 'primary') {
      self.publisher = new SnapshotPublisher(store);
      try { await self.publisher.start(); } catch (e) { log('error', 'local.snapshot_failed', { error: String(e) }); }
    } else if (l.role === 'secondary') {
      self.follower = new SnapshotFollower(store, { rules: () => rowRules(cfg()) });
      self.follower.start();
    }
    await self.startEndpoint();
    self.scheduleCheck(CONFLICT_CHECK_SOON_MS);
    log('info', 'local.ready', { db: store.path, users: store.count(), role: l.role, precedence: l.precedence, default_context: l.defaultContext, upgrade: l.upgrade });
    return self;
  }

  private async startEndpoint(): Promise<void> {
    if (this.cfg().local.upgradeListen === null) return;
    const ep = new UpgradeEndpoint(this.cfg, this.store, this.throttle);
    try {
      await ep.start();
      this.endpoint = ep;
      log('info', 'upgrade_endpoint.listening', { address: this.cfg().local.upgradeListen });
    } catch (e) {
      log('error', 'upgrade_endpoint.failed', {
        address: this.cfg().local.upgradeListen, error: e instanceof Error ? e.message : String(e),
        detail: 'secondaries\' upgrades fail (they count it and go on); fix the address or the certificate files and reload',
      });
    }
  }

  /** A committed change or a swapped-in snapshot: the map, then a conflict check soon. */
  private changed(): void {
    this.onChange();
    this.scheduleCheck(CONFLICT_CHECK_SOON_MS);
  }

  /** After SIGHUP: the endpoint follows upgrade_listen; the role itself needs a restart. */
  async reload(): Promise<void> {
    const l = this.cfg().local;
    if (l.role !== this.role) log('warn', 'config.needs_restart', { key: 'local.role', running: this.role, configured: l.role });
    if (l.dbPath !== this.store.path) log('warn', 'config.needs_restart', { key: 'local.db_path', running: this.store.path, configured: l.dbPath });
    await this.endpoint?.close();
    this.endpoint = null;
    if (this.role === 'primary') await this.startEndpoint();
    this.store.reindex();
    this.onChange();
  }

  // ---- the admin commands' facade --------------------------------------------------------

  readOnly(): string | null {
    const l = this.cfg().local;
    if (this.role !== 'secondary') return null;
    return `this host is a secondary: local users are managed on the primary (${l.primary ?? 'see [local] primary'}) and reach this host with latchkey-sync; run latchkeyctl local there`;
  }

  async hashNew(password: string): Promise<{ hash: string; context: string }> {
    const l = this.cfg().local;
    const ctx = findContext(l, l.defaultContext);
    if (ctx === null) throw new Error(`[local] default_context ${l.defaultContext} is not among [local] contexts`);
    return { hash: await newHash(password, ctx), context: ctx.id };
  }

  rules(): RowRules { return rowRules(this.cfg()); }

  hostHas(name: string, uid: number | null): string | null {
    const why = this.resolver.local.nameReason(name);
    if (why !== null) return `${name} is ${why === 'deny list' ? 'in [users] deny_names' : `a ${why} of this host`}`;
    if (uid !== null) {
      const owner = this.resolver.local.uidOwner(uid);
      if (owner !== null) return `uid ${uid} belongs to the host account ${owner}`;
    }
    return null;
  }

  upstreamHas(name: string): Promise<'yes' | 'no' | { unavailable: string }> {
    return this.resolver.checkStoredName(name);
  }

  /**
   * A local user just added with --force over a name the upstream has: the conflict is shown by
   * `status` and logged now, not at the next hourly check (upstreamHas ran before the row existed).
   */
  addedOverUpstream(name: string): void {
    this.resolver.noteConflict(name, this.cfg().local.precedence);
  }

  status(): LocalStatusView {
    const l = this.cfg().local;
    const sync: SyncStatus | null = this.publisher?.status() ?? this.follower?.status() ?? null;
    return {
      role: this.role, precedence: l.precedence, db: this.store.path, users: this.store.count(),
      default_context: l.defaultContext, upgrade: l.upgrade, contexts: this.store.contextCounts(),
      snapshot: sync?.snapshot ? { taken_at: sync.snapshot.takenAt, taken_on: sync.snapshot.takenOn, users: sync.snapshot.users } : null,
      last_sync_at: sync?.lastSyncAt ?? null, last_sync_error: sync?.lastSyncError ?? null,
      conflicts: [...this.resolver.conflicts.values()].map((c) => ({ name: c.name, with: c.with, detail: c.detail })),
      upgrades: this.upgrader.counts(),
    };
  }

  // ---- logins ----------------------------------------------------------------------------

  /** An accepted password (answers/priv-auth.ts): a stored user's hash may be upgraded. */
  afterLogin(user: CachedUser, password: string): void {
    if (!user.local || user.passwordHash === null) return;
    this.upgrader.afterLogin({ name: user.username, passwordHash: user.passwordHash, context: user.local.context }, password);
  }

  // ---- conflicts -------------------------------------------------------------------------

  private scheduleCheck(ms: number): void {
    if (this.closed) return;
    if (this.checkTimer) clearTimeout(this.checkTimer);
    this.checkTimer = setTimeout(() => { this.checkTimer = null; void this.checkAll(); }, ms);
    this.checkTimer.unref();
  }

  /**
   * Asks the upstream about every stored name, one at a time. With precedence = local no lookup
   * ever asks it, so only this finds a name both have (logged once, in `status`). An unavailable
   * upstream ends the round; the next comes at the usual interval.
   */
  private async checkAll(): Promise<void> {
    if (this.checking || this.closed) return;
    this.checking = true;
    try {
      const names = new Set(this.store.list().map((u) => u.name));
      for (const name of [...this.resolver.conflicts.keys()]) if (!names.has(name)) this.resolver.conflicts.delete(name);
      for (const name of names) {
        if (this.closed) return;
        const r = await this.resolver.checkStoredName(name);
        if (typeof r === 'object') break;
        await new Promise((res) => setTimeout(res, CONFLICT_CHECK_GAP_MS).unref());
      }
    } catch (e) {
      log('warn', 'local.conflict_check_failed', { error: e instanceof Error ? e.message : String(e) });
    } finally {
      this.checking = false;
      this.scheduleCheck(CONFLICT_CHECK_MS);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.checkTimer) { clearTimeout(this.checkTimer); this.checkTimer = null; }
    this.follower?.stop();
    await this.publisher?.stop();
    await this.endpoint?.close();
    await this.upgrader.close();
    this.store.close();
  }
}
