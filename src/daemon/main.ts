// latchkeyd entry point: loads the config, gives up root (src/privsep), wires cache, upstream,
// verification and sockets, reloads on SIGHUP and shuts down cleanly on SIGTERM/SIGINT.
import { configNotices, insecureSettings, loadConfig } from '../config/load.js';
import { checkHomeBase } from '../homes/base.js';
import type { Config } from '../config/types.js';
import { UserCache } from '../cache/db.js';
import { Resolver } from '../directory/resolver.js';
import { RestUserSource } from '../upstream/client.js';
import { Throttle } from '../verify/throttle.js';
import { listenAll, nssBudgetLimits, type Listening } from '../server/sockets.js';
import type { HandlerTable } from '../server/dispatch.js';
import { log, setLogLevel } from '../log.js';
import { LatchkeyError } from '../errors.js';
import { nssHandlers } from '../answers/nss.js';
import { DAEMON_VERSION } from '../protocol/generated.js';
import { authHandlers, AuthStats } from '../answers/priv-auth.js';
import { sessionHandlers } from '../answers/priv-session.js';
import { SwappableSource } from './swappable-source.js';
import { SessionRegistry } from '../sessions/registry.js';
import { SessionStore, sessionStorePath } from '../sessions/store.js';
import { LoginIdentity } from '../directory/identity.js';
import { LoginDecisions } from '../verify/decisions.js';
import { adminHandlers } from '../answers/admin/index.js';
import type { ReloadOutcome } from '../answers/admin/context.js';
import { sshdFactsForDaemon } from '../sshdconf/deploy.js';
import { ensureHome } from '../homes/home.js';
import { MapPublisher } from '../fastpath/publisher.js';
import { loadAddon } from '../native/addon.js';
import { processOps } from '../sessions/proc.js';
import { daemonAccount } from '../privsep/account.js';
import { dropPrivileges, verifyUnprivileged } from '../privsep/drop.js';
import { RootdClient, spawnRootd } from '../privsep/rootd.js';
import { prepareRuntime, requireReadableAccountFiles, requireWritableCacheDir } from '../privsep/runtime.js';
import type { SshdFacts } from '../sshdconf/checks.js';
import { LocalUsers } from '../localusers/service.js';
import { SystemdNotifier } from './notify.js';
import { ClockWatch } from './clock.js';
import { Cleanup } from '../cleanup/run.js';
import { SessionEvents } from '../events/hub.js';
import { UpstreamHealth } from '../upstream/health.js';
import { DaemonMetrics } from '../metrics/daemon.js';
import { MetricsServer } from '../metrics/server.js';
import { configDigest } from '../answers/admin/status.js';
import { UserdbServer } from '../userdb/server.js';
import { ConnectionBudget, RequestPacer } from '../server/budget.js';
import { readFileSync } from 'node:fs';

const USAGE = `usage: latchkeyd [--config FILE] [--check]
  --config FILE  configuration (default /etc/latchkey/latchkey.conf; a LocalEGA auth.conf works too)
  --check        validate the configuration and exit (0 = valid)
  --version      print the version`;

const EX_USAGE = 64;
const EX_CONFIG = 78;

export interface Daemon { config(): Config; listening: Listening; stop(): Promise<void> }

function parseArgs(argv: string[]): { config: string; check: boolean } {
  let config = '/etc/latchkey/latchkey.conf';
  let check = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' || a === '-c') {
      const v = argv[++i];
      if (!v) { process.stderr.write(`latchkeyd: --config needs a file\n${USAGE}\n`); process.exit(EX_USAGE); }
      config = v;
    } else if (a.startsWith('--config=')) config = a.slice(9);
    else if (a === '--check') check = true;
    else if (a === '--version') { process.stdout.write(`latchkeyd ${DAEMON_VERSION}\n`); process.exit(0); }
    else if (a === '--help' || a === '-h') { process.stdout.write(USAGE + '\n'); process.exit(0); }
    else { process.stderr.write(`latchkeyd: unknown argument ${a}\n${USAGE}\n`); process.exit(EX_USAGE); }
  }
  return { config, check };
}

/** Starts every part; exported so tests and the demo can run a daemon in-process if they need to. */
export async function startDaemon(configFile: string): Promise<Daemon> {
  let cfg = loadConfig(configFile);
  // For status: which file content is in force (read after the load: the digest may name a
  // newer file only if it changed within these microseconds, and then a reload shows it).
  let loaded = { at: Date.now(), digest: fileDigest(configFile) };
  setLogLevel(cfg.daemon.logLevel);
  // Privilege separation: this process parses HTTP and JSON, so it never keeps root. Started as
  // root (no systemd User=), it prepares the runtime dir, starts latchkey-rootd and drops to
  // [daemon] user for good; started as that user (systemd), rootd is its own unit.
  const account = daemonAccount(cfg);
  if (process.geteuid!() === 0) {
    prepareRuntime(cfg, account);
    await spawnRootd({ socketPath: cfg.daemon.rootdSocket, daemonUid: account.uid, configFile });
    dropPrivileges(account);
    log('info', 'daemon.dropped_root', { user: account.name, uid: account.uid, gid: account.gid });
  } else {
    verifyUnprivileged(account);
  }
  requireWritableCacheDir(cfg);
  requireReadableAccountFiles(cfg);
  const rootd = new RootdClient(cfg.daemon.rootdSocket);
  checkHomeBase(cfg);
  // sshd_config vs latchkey.conf (src/sshdconf): errors refuse the start, the facts steer the chroot.
  let sshd = sshdFactsForDaemon(cfg);
  const startedAt = Date.now();
  const cache = UserCache.open(cfg.cache.dbPath);
  // A full file first drops rows past their grace (never servable again) to make room.
  cache.staleGraceMs = () => cfg.cache.staleGraceSec * 1000;
  // Wall-clock steps, logged and shown by status (src/daemon/clock.ts).
  const clock = new ClockWatch();
  clock.start();
  // One record of upstream outcomes for the daemon's life: every client a reload builds writes it.
  const upstreamHealth = new UpstreamHealth();
  // The client in use (a reload replaces it; the new one takes over a still-valid token).
  let current = new RestUserSource(cfg.upstream, cfg.users, upstreamHealth);
  const source = new SwappableSource(current);
  const resolver = new Resolver(cache, source, () => cfg);
  // The shared-memory map the NSS module reads before it asks nss.sock (src/fastpath).
  const map = new MapPublisher((path, expect) => new (loadAddon().MapWriter)(path, expect), () => cfg, resolver, cache);
  cache.listener = map;
  // After the wall clock stepped back, every cached time moves back with it (each entry keeps its
  // real lifetime and grace), and the map is republished: its records carry expiries readers
  // compare with their own clock, and would stay fresh for as long as the step. A forward step
  // is left alone: entries expire early, which fails closed.
  clock.onJump = (j) => {
    if (j.direction !== 'back') return;
    try {
      const moved = cache.shiftTimes(j.delta_ms);
      log('info', 'cache.clock_shifted', { delta_ms: j.delta_ms, users: moved });
    } catch (e) {
      log('error', 'cache.clock_shift_failed', { error: e instanceof Error ? e.message : String(e), detail: 'entries fetched "in the future" are refetched, not served fresh' });
    }
    map.rebuild();
  };
  const throttle = new Throttle(() => cfg.pam);
  const authStats = new AuthStats();
  // The sessions' own versioned file beside the cache; the first start after an upgrade takes
  // over the open sessions the cache file held.
  const sessionStore = SessionStore.open(sessionStorePath(cfg.cache.dbPath), { importFrom: cfg.cache.dbPath });
  const sessions = new SessionRegistry(sessionStore, () => cfg, processOps(async (p) => {
    const r = await rootd.call({ op: 'end_session', pid: p.pid, pidStart: BigInt(p.pidStart), uid: p.uid });
    if (r.status === 'ok') return true;
    if (r.status === 'gone') return false;
    throw new Error(`latchkey-rootd answered ${r.status}${r.message ? ': ' + r.message : ''}`);
  }));
  // Session events (src/events): the log line, and the collector when [events] url is set.
  const events = new SessionEvents(cfg.events);
  // Prometheus metrics (src/metrics): always counted (a few additions), served only when
  // [metrics] listen is set.
  const metrics = new DaemonMetrics({
    version: DAEMON_VERSION, startedAt: Date.now(),
    lookups: () => resolver.stats.lookups,
    cacheCounts: () => cache.counts(Date.now(), cfg.cache.staleGraceSec),
    openSessions: () => sessions.countOpen(),
    throttle: () => throttle.snapshot(),
    authCounts: () => authStats,
    events: () => events.status(),
    token: () => source.tokenStatus(),
    health: () => source.healthSnapshot(),
  });
  const metricsServer = new MetricsServer(() => metrics.render((name, e) => log('error', 'metrics.collect_failed', { metric: name, error: e instanceof Error ? e.message : String(e) })));
  upstreamHealth.listener = (via, outcome, ms) => metrics.upstream(via, outcome, ms);
  authStats.listener = (kind, ok, ms) => metrics.passwordCheck(kind, ok, ms);
  sessions.events = (e) => { metrics.session(e.event, e.reason); events.emit(e); };
  // An upstream answer that says an account is removed, disabled or expired ends its sessions.
  resolver.accountChanged = (c) => {
    sessions.revoke(c.name, c.state, c.detail, c.uid).catch((e: unknown) => log('error', 'session.revoke_failed', { user: c.name, reason: c.state, error: e instanceof Error ? e.message : String(e) }));
  };
  const identity = new LoginIdentity(resolver);
  // The persistent local users (src/localusers): opened before the sockets serve, so a stored
  // user is never answered "no such user" by a daemon that has not read its store yet. A store
  // that cannot be used (a symlink, someone else's file, an unwritable directory) stops the start.
  const local = await LocalUsers.start(() => cfg, resolver, throttle, () => map.followLocal());
  // Temporary accounts (src/cleanup): every [cleanup] interval and on `latchkeyctl purge`.
  const cleanup = new Cleanup({ config: () => cfg, cache, resolver, sessions, local });

  // The last login decision per user and phase, for `latchkeyctl why` (memory only, bounded).
  const decisions = new LoginDecisions();
  const nss: HandlerTable = nssHandlers(resolver, identity, () => cfg, () => cache.generation, decisions);
  let listening: Listening | null = null;
  // One per-uid request rate and one connection budget for nss.sock and userdb.sock, the two
  // world-connectable sockets: a second socket is not a second share (nor a second fd allowance).
  const pacer = new RequestPacer();
  const publicBudget = new ConnectionBudget(() => nssBudgetLimits(cfg.daemon.maxConnections, cfg.daemon.maxConnectionsPerUid));
  let userdb: UserdbServer | null = null;
  const priv: HandlerTable = {
    ...nss,
    ...authHandlers(resolver, identity, throttle, authStats, () => cfg, (u, pw) => {
      // session_renewal = on-login: the password proved again restarts the user's session age.
      try { sessions.renewOnLogin(u.username); } catch (e) { log('error', 'session.renew_failed', { user: u.username, error: e instanceof Error ? e.message : String(e) }); }
      local.afterLogin(u, pw);
    }, decisions),
    ...sessionHandlers(sessions, resolver, () => cfg, (homes, user) => ensureHome(homes, user, rootd), () => sshd, decisions),
    ...adminHandlers({
      version: DAEMON_VERSION, startedAt, config: () => cfg, configFile,
      socketPaths: () => listening!.paths, cache, resolver, source, sessions, throttle, authStats, rootd, map, local,
      reload: (credential) => reloadNow(credential), cleanup, events,
      configLoaded: () => loaded, lastReload: () => lastReload, metrics: metricsServer, decisions,
      userdb: { status: () => userdb!.status() }, clock,
    }),
  };

  listening = await listenAll({
    dir: cfg.daemon.socketDir,
    maxConnections: () => cfg.daemon.maxConnections,
    maxConnectionsPerUid: () => cfg.daemon.maxConnectionsPerUid,
    idleTimeoutMs: () => cfg.daemon.idleTimeoutMs,
    nssHandlers: () => nss,
    privHandlers: () => priv,
    pacer,
    publicBudget,
  });
  // systemd's userdb (src/userdb): after listenAll made socket_dir; [userdb] enabled decides.
  userdb = new UserdbServer({ socketDir: cfg.daemon.socketDir, cfg: () => cfg, resolver, pacer, budget: publicBudget });
  await userdb.configure(cfg.userdb.enabled);
  map.start();
  await metricsServer.configure(cfg.metrics.listen);
  // systemd (Type=notify): ready once the sockets serve, and a one-line STATUS= for `systemctl
  // status`. No user input in it (STATUS= is shown to every local user): counts and states only.
  const notifier = new SystemdNotifier();
  const summary = (): string => {
    const now = Date.now();
    const c = cache.counts(now, cfg.cache.staleGraceSec);
    // The one record of the upstream's state (what `status` shows): no failure known is "ok".
    const { state } = upstreamHealth.snapshot();
    const upstream = state === 'reachable' || state === 'unknown' ? 'ok' : `${state} (latchkeyctl status says why)`;
    return `serving: ${c.fresh} fresh and ${c.stale} stale cached users, ${sessions.countOpen()} open sessions; upstream ${upstream}`;
  };
  notifier.ready(summary());
  cleanup.schedule();
  // [cache] warm_start: refresh the recently used users that are not fresh, after a random delay.
  resolver.warmStart.start();
  // An exception in a timer callback is an uncaughtException, which exits the daemon; a
  // failing sweep (e.g. SQLITE_FULL on the tmpfs) must cost only that sweep.
  const sweep = setInterval(() => {
    try { sessions.sweep(); } catch (e) { log('error', 'sessions.sweep_failed', { error: e instanceof Error ? e.message : String(e) }); }
    // A user with open sessions is looked up again (a refresh once the entry is stale), so an
    // account removed, disabled or expired upstream ends its sessions within a cache TTL
    // (resolver.accountChanged) even when nothing else asks for that user.
    try {
      for (const user of new Set(sessions.list().map((s) => s.user))) resolver.byName(user).catch(() => undefined);
    } catch (e) { log('error', 'sessions.sweep_failed', { error: e instanceof Error ? e.message : String(e) }); }
    try { resolver.sweep(); } catch (e) { log('error', 'cache.sweep_failed', { error: e instanceof Error ? e.message : String(e) }); }
    map.sweep();
    // The cache file deleted, replaced or overwritten → recreated; users held in memory while
    // it was full → written (src/cache/db.ts).
    try { cache.checkFile(); } catch (e) { log('error', 'cache.sweep_failed', { error: e instanceof Error ? e.message : String(e) }); }
    clock.check();
    notifier.status(summary());
  }, 30_000);
  sweep.unref();

  // The credential text `latchkeyctl reload --credential` last handed over: later reloads (a
  // plain SIGHUP too) keep using it rather than systemd's copy from the start, which is older.
  let pushedCredential: string | undefined;
  let lastReload: ReloadOutcome | null = null;
  const reloadNow = (credential?: string): ReloadOutcome => {
    const at = Date.now();
    notifier.reloading();
    const result = reloadConfig(at, credential);
    lastReload = result;
    notifier.ready(summary());
    return result;
  };
  const reloadConfig = (at: number, credential?: string): ReloadOutcome => {
    const use = credential ?? pushedCredential;
    const from = use !== undefined ? 'pushed' as const : process.env.CREDENTIALS_DIRECTORY ? 'start' as const : 'none' as const;
    let next: Config;
    let client: RestUserSource;
    let nextSshd: SshdFacts;
    try {
      next = loadConfig(configFile, use !== undefined ? { credential: use } : {});
      nextSshd = sshdFactsForDaemon(next);
      checkHomeBase(next);
      // The client constructor reads cacertfile/certfile/keyfile and throws a ConfigError when
      // one is unreadable: inside this try, so a bad reload keeps the old config instead of
      // killing the daemon with an uncaughtException from the SIGHUP listener.
      client = new RestUserSource(next.upstream, next.users, upstreamHealth);
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      log('error', 'config.reload_failed', { file: configFile, error, kept: 'previous config' });
      return { ok: false, at, credential: from, error };
    }
    if (credential !== undefined) pushedCredential = credential;
    for (const [what, a, b] of [
      ['daemon.socket_dir', cfg.daemon.socketDir, next.daemon.socketDir], ['cache.db_path', cfg.cache.dbPath, next.cache.dbPath],
      ['daemon.user', cfg.daemon.user, next.daemon.user], ['daemon.rootd_socket', cfg.daemon.rootdSocket, next.daemon.rootdSocket],
    ] as const) {
      if (a !== b) log('warn', 'config.needs_restart', { key: what, running: a, configured: b });
    }
    next.daemon.socketDir = cfg.daemon.socketDir;
    next.cache.dbPath = cfg.cache.dbPath;
    next.daemon.user = cfg.daemon.user;
    next.daemon.rootdSocket = cfg.daemon.rootdSocket;
    // The old client finishes what it has in flight (bounded by its own request deadline)
    // before it is closed: closing it now would fail every lookup running during the reload.
    client.adoptTokenOf(current);
    current = client;
    source.swap(client, cfg.upstream.requestTimeoutMs + 1000);
    cfg = next;
    loaded = { at, digest: fileDigest(configFile) };
    sshd = nextSshd;
    setLogLevel(cfg.daemon.logLevel);
    listening!.setMaxConnections(cfg.daemon.maxConnections);
    userdb!.configure(cfg.userdb.enabled).catch((e: unknown) => log('error', 'userdb.reload_failed', { error: e instanceof Error ? e.message : String(e), path: userdb!.path }));
    // Shell, home base, gid, group and rules may have changed: the map is decided again (a
    // map that had failed is tried again).
    map.rebuild();
    local.reload().catch((e: unknown) => log('error', 'local.reload_failed', { error: e instanceof Error ? e.message : String(e) }));
    cleanup.schedule();
    metricsServer.configure(cfg.metrics.listen).catch((e: unknown) => log('error', 'metrics.reload_failed', { error: e instanceof Error ? e.message : String(e) }));
    try { events.reconfigure(cfg.events); } catch (e) { log('error', 'events.reload_failed', { error: e instanceof Error ? e.message : String(e), kept: 'the previous [events] collector' }); }
    log('info', 'config.reloaded', { file: configFile });
    logInsecure(cfg, configFile);
    // rootd reads latchkey.conf itself (its policy is its own); a dropped daemon cannot signal a
    // root process, so it asks.
    rootd.call({ op: 'reload' }).then(
      (r) => log(r.status === 'ok' ? 'info' : 'error', 'rootd.reload', { status: r.status, message: r.message }),
      (e: Error) => log('error', 'rootd.reload', { status: 'unavailable', message: e.message }),
    );
    return { ok: true, at, credential: from };
  };
  const reload = (): void => { reloadNow(); };
  process.on('SIGHUP', reload);

  log('info', 'daemon.ready', {
    version: DAEMON_VERSION, pid: process.pid, config: configFile,
    nss_socket: listening.paths.nss, priv_socket: listening.paths.priv, cache: cfg.cache.dbPath,
  });
  logInsecure(cfg, configFile);

  return {
    config: () => cfg,
    listening,
    async stop() {
      notifier.stopping();
      clearInterval(sweep);
      resolver.warmStart.stop();
      // last_used and the recent file, as the sweep would have written them (survives a reboot)
      try { resolver.saveRecent(); } catch (e) { log('error', 'cache.sweep_failed', { error: e instanceof Error ? e.message : String(e) }); }
      clock.stop();
      cleanup.stop();
      sessions.stop();
      events.close();
      process.off('SIGHUP', reload);
      // First the map (retired and removed: readers go to the socket), then the sockets.
      map.close(true);
      await userdb!.close();
      await listening!.close();
      await metricsServer.close();
      await source.close();
      await local.close();
      sessionStore.close();
      cache.close();
      log('info', 'daemon.stopped', { pid: process.pid });
    },
  };
}

/** The config file's digest for status; '' when it cannot be read again (it was, a moment ago). */
function fileDigest(file: string): string {
  try { return configDigest(readFileSync(file)); } catch { return ''; }
}

/** Weakened settings (insecure_http, insecure_tls) are said at every start and reload, not once. */
function logInsecure(cfg: Config, configFile: string): void {
  const settings = insecureSettings(cfg);
  if (settings.length > 0) log('warn', 'config.insecure', { file: configFile, settings });
  // What the loader changed of a LocalEGA file to make it work here (e.g. db_path moved into /run/latchkey).
  for (const notice of configNotices(cfg)) log('warn', 'config.notice', { file: configFile, notice });
}

export async function main(argv: string[]): Promise<void> {
  // The daemon must never resolve users through its own NSS module (it would ask itself and
  // deadlock its event loop): libnss_latchkey answers UNAVAIL at once when this is set.
  process.env.LATCHKEY_NSS_DISABLE = '1';
  const args = parseArgs(argv);
  if (args.check) {
    let checked: Config;
    try { checked = loadConfig(args.config); } catch (e) {
      // Every error of the file, one per line, each with the program's name.
      for (const line of (e instanceof Error ? e.message : String(e)).split('\n')) process.stderr.write(`latchkeyd: ${line}\n`);
      process.exit(EX_CONFIG);
    }
    for (const s of insecureSettings(checked)) process.stderr.write(`latchkeyd: warning: ${s}\n`);
    for (const s of configNotices(checked)) process.stderr.write(`latchkeyd: notice: ${s}\n`);
    process.stdout.write(`${args.config}: ok\n`);
    return;
  }
  let daemon: Daemon;
  try {
    daemon = await startDaemon(args.config);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    log('error', 'daemon.start_failed', { error: msg });
    process.stderr.write(`latchkeyd: ${msg}\n`);
    process.exit(e instanceof LatchkeyError && e.code === 'E_CONFIG' ? EX_CONFIG : 1);
  }
  let stopping = false;
  const stop = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    log('info', 'daemon.stopping', { signal: sig });
    daemon.stop().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('uncaughtException', (e) => {
    log('error', 'daemon.fatal', { error: e.message, stack: e.stack?.split('\n').slice(0, 5).join(' | ') });
    process.exit(70);
  });
}
