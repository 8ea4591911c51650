// The shared-memory map (<socket_dir>/nss.map, layout in spec.json "map"): what the NSS module
// answers without a round trip. The cache tells this class of every change it makes
// (cache/db.ts CacheListener), so the map follows the one place that writes; the decisions of
// what may be shown are the directory's (the same rules as a socket lookup), and the expiry of
// each record is the freshness policy's: a user is in the map until the point where a socket
// lookup would start a refresh-ahead, so refresh, stale grace and single flight stay here.
//
// Failure is never fatal: the map is an accelerator. A writer error (tmpfs full, unwritable
// dir) is logged once at err, the file is retired and removed so readers stop using it, and
// the NSS module asks the socket as before; a reload tries again.
import { join } from 'node:path';
import type { CacheListener, NegativeKey, UserCache } from '../cache/db.js';
import type { Config } from '../config/types.js';
import type { CachedUser } from '../types.js';
import type { MapWriter, MapWriterStats } from '../native/addon.js';
import { passwdEntry, groupEntry } from '../directory/entries.js';
import type { LocalAccounts } from '../users/local.js';
import { MAP_FILE } from '../protocol/generated.js';
import { CLOCK_BACK_TOLERANCE_MS, refreshAheadFrom } from '../cache/policy.js';
import { log } from '../log.js';

/** The group record is kept fresh by the sweep (every 30 s); a daemon that died stops doing so. */
export const GROUP_FRESH_MS = 120_000;
/**
 * How often the host's passwd/group files are compared with what the map was decided against:
 * the socket path sees a change within users/local.ts RECHECK_MS, and the map must not answer for
 * a name or uid that became a local account much longer than that.
 */
export const LOCAL_CHECK_MS = 500;

/** What the publisher needs of the resolver: the rules a cached user must still pass. */
export interface MapRules {
  serves(u: CachedUser): boolean;
  readonly local: LocalAccounts;
  /** names and uids the map never answers for (the host's accounts, the stored local users) */
  mapExclusions(): { names: string[]; uids: number[] };
  /** changes whenever mapExclusions() would; cheap enough for every LOCAL_CHECK_MS */
  mapExclusionsSignature(): string;
  /** a name or uid key the local users' store answers for: no negative entry in the map */
  storedClaims(key: NegativeKey): boolean;
}

export interface MapStatus {
  path: string;
  state: 'on' | 'off' | 'failed';
  /** why it is off or failed */
  reason: string | null;
  stats: MapWriterStats | null;
}

export class MapPublisher implements CacheListener {
  private w: MapWriter | null = null;
  private state: MapStatus['state'] = 'off';
  private reason: string | null = 'not started';
  private localSig = '';
  private localTimer: NodeJS.Timeout | null = null;
  /** the group the map holds ("name:gid", or "" for none) */
  private group = '';

  constructor(
    private readonly open: (path: string, expectUsers: number) => MapWriter,
    private readonly cfg: () => Config,
    private readonly rules: MapRules,
    private readonly cache: Pick<UserCache, 'all' | 'negatives'>,
    private readonly now: () => number = Date.now,
  ) {}

  get path(): string { return join(this.cfg().daemon.socketDir, MAP_FILE); }

  /** Creates the map and fills it from the cache (start and reload). */
  start(): void {
    this.close(false);
    const users = this.cache.all();
    try {
      this.w = this.open(this.path, users.length);
    } catch (e) {
      this.failed(e);
      return;
    }
    this.state = 'on';
    this.reason = null;
    this.refill(users, true);
    this.localTimer = setInterval(() => this.followLocal(), LOCAL_CHECK_MS);
    this.localTimer.unref();
  }

  /**
   * Every LOCAL_CHECK_MS: nss.sock refuses a name or uid the host's files took within
   * users/local.ts RECHECK_MS, and the lookups the map answers never reach the resolver, so only
   * a timer notices. Those names and uids are removed in place, with no new file: any local user
   * rewrites /etc/passwd when he likes (chfn, chsh), and each new file is one more that a reader
   * can hold open on the tmpfs. Only a change of the group (which takes root) writes a new file.
   */
  followLocal(): void {
    if (!this.w) return;
    // The stored local users are answered by nss.sock (they are few, and a change to them must
    // show at once): their names and uids leave the map like the host's own accounts, and the
    // store's change callback calls this at once rather than waiting for the timer.
    const sig = this.rules.mapExclusionsSignature();
    if (sig === this.localSig) return;
    this.localSig = sig;
    const { names, uids } = this.rules.mapExclusions();
    this.guard(() => {
      // Negative entries too: a name or uid that was "no such user" may be a stored user now.
      for (const n of names) this.w!.removeName(n, true);
      for (const u of uids) this.w!.removeUid(u, true);
      const g = groupEntry(this.cfg().users, this.rules.local);
      if ((g ? `${g.name}:${g.gid}` : '') !== this.group) this.publishGroup(this.w!);
    });
  }

  /** The group as the directory decides it (the writer makes a new file only when it changed). */
  private publishGroup(w: MapWriter): void {
    const g = groupEntry(this.cfg().users, this.rules.local);
    w.setGroup(g ? g.name : null, g ? g.gid : 0, this.now() + GROUP_FRESH_MS);
    this.group = g ? `${g.name}:${g.gid}` : '';
  }

  /** Everything decided again: a reload (shell, home base, gid, rules) or changed local files. */
  rebuild(): void {
    if (!this.w) { this.start(); return; }
    this.refill(this.cache.all(), false);
  }

  /** Fills the map from the cache; `fresh`: the writer was just opened (its file is empty). */
  private refill(users: CachedUser[], fresh: boolean): void {
    this.localSig = this.rules.mapExclusionsSignature();
    this.guard(() => {
      const w = this.w!;
      if (!fresh) w.reset(false, false);
      this.publishGroup(w);
      for (const u of users) this.putUser(w, u);
      const now = this.now();
      // Name negatives are not republished: the cache does not record who asked for them
      // (see negativeStored), and they come back with the next unprivileged miss.
      for (const n of this.cache.negatives()) {
        if (n.kind === 'uid' && n.expiresAt > now && n.fetchedAt - now <= CLOCK_BACK_TOLERANCE_MS && !this.rules.storedClaims(n.key as NegativeKey)) w.putNegUid(Number(n.key.slice(4)), n.expiresAt);
      }
    });
  }

  /** Every 30 s: keeps the group record fresh. */
  sweep(): void {
    this.guard(() => this.w!.touchGroup(this.now() + GROUP_FRESH_MS));
  }

  /** A clean stop removes the file: readers go back to the socket, which says "unavailable". */
  close(unlinkFile = true): void {
    if (this.localTimer) { clearInterval(this.localTimer); this.localTimer = null; }
    if (!this.w) return;
    try { this.w.close(unlinkFile); } catch { /* closing anyway */ }
    this.w = null;
    this.state = 'off';
    this.reason = 'stopped';
  }

  status(): MapStatus {
    let stats: MapWriterStats | null = null;
    try { stats = this.w ? this.w.stats() : null; } catch { stats = null; }
    return { path: this.path, state: this.state, reason: this.reason, stats };
  }

  // ---- CacheListener ----------------------------------------------------------------------

  stored(u: CachedUser): void {
    this.guard(() => this.putUser(this.w!, u));
  }

  removed(name: string): void {
    this.guard(() => this.w!.removeName(name));
  }

  invalidated(target: { name: string } | { uid: number } | 'all'): void {
    this.guard(() => {
      if (target === 'all') this.w!.reset(false, true);
      else if ('name' in target) this.w!.removeName(target.name);
      else this.w!.removeUid(target.uid);
    });
  }

  flushed(negativeOnly: boolean): void {
    this.guard(() => this.w!.reset(negativeOnly, false));
  }

  /** One name or uid flushed: its record and its negative entry leave the map. */
  keyFlushed(key: NegativeKey): void {
    this.guard(() => {
      if (key.startsWith('uid:')) this.w!.removeUid(Number(key.slice(4)), true);
      else this.w!.removeName(key.slice(5), true);
    });
  }

  /**
   * A name only root asked for is not published: sshd, su and login resolve whatever a client
   * typed as a user name, passwords included, and the map is readable by every local user (the
   * cache file is 0600). A uid is never a secret. `[cache] map_name_misses = no` keeps every
   * name miss out of the map.
   */
  negativeStored(key: NegativeKey, expiresAt: number, publish: boolean): void {
    if (this.rules.storedClaims(key)) return;
    this.guard(() => {
      if (key.startsWith('uid:')) this.w!.putNegUid(Number(key.slice(4)), expiresAt);
      else if (publish && this.cfg().cache.mapNameMisses !== false) this.w!.putNegName(key.slice(5), expiresAt);
    });
  }

  // ---- inside ----------------------------------------------------------------------------

  /**
   * Publishes a user the socket would answer as fresh, else removes whatever the map holds. One
   * fetched "in the future" (the wall clock went back: cache/policy.ts) is not fresh; after a
   * step back the daemon rebuilds the map (daemon/clock.ts), which drops those.
   */
  private putUser(w: MapWriter, u: CachedUser): void {
    const cfg = this.cfg();
    const until = refreshAheadFrom(u.expiresAt, cfg.cache);
    const now = this.now();
    if (until <= now || u.fetchedAt - now > CLOCK_BACK_TOLERANCE_MS || !this.rules.serves(u)) {
      w.removeName(u.username);
      w.removeUid(u.uid);
      return;
    }
    const p = passwdEntry(cfg, u);
    w.putUser(p.name, p.uid, p.gid, p.gecos, p.dir, p.shell, until);
  }

  private guard(fn: () => void): void {
    if (!this.w) return;
    try {
      fn();
    } catch (e) {
      this.failed(e);
    }
  }

  private failed(e: unknown): void {
    const why = e instanceof Error ? e.message : String(e);
    if (this.localTimer) { clearInterval(this.localTimer); this.localTimer = null; }
    // Retire and remove it: a map that stopped following the cache must not answer.
    if (this.w) { try { this.w.close(true); } catch { /* already failing */ } }
    this.w = null;
    this.state = 'failed';
    this.reason = why;
    log('error', 'map.failed', {
      path: this.path, error: why,
      detail: 'lookups go over nss.sock until the next reload (SIGHUP); check free space on the tmpfs holding socket_dir',
    });
  }
}
