// Creates the two listening sockets. nss.sock is world-connectable and serves public data only;
// priv.sock is root-only by mode AND by a SO_PEERCRED check, since a mode can be changed by hand.
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { chmodSync, lstatSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { checkDir, peerCred } from '../native/addon.js';
import { log } from '../log.js';
import { LatchkeyError } from '../errors.js';
import { serveConnection, type ConnectionHandle } from './connection.js';
import { ConnectionBudget, RequestPacer, nssBudgetFromFdLimit, openFileLimit, type BudgetLimits } from './budget.js';
import { logLimited } from '../log.js';
import type { HandlerTable, Peer } from './dispatch.js';

/** Descriptors kept free for priv.sock, the user service's connections, SQLite and the logs. */
const FD_HEADROOM = 16;

/** priv.sock is root's (PAM, latchkeyctl): its own budget, untouched by nss.sock floods. */
const PRIV_MAX_CONNECTIONS = 512;

export interface SocketPaths { dir: string; nss: string; priv: string }
export function socketPaths(dir: string): SocketPaths {
  return { dir, nss: join(dir, 'nss.sock'), priv: join(dir, 'priv.sock') };
}

export interface ListenOptions {
  dir: string;
  /** nss.sock budget; 0 = from the open-file limit (budget.ts) */
  maxConnections: () => number;
  /** connections one peer uid may hold on nss.sock; 0 = an eighth of the total */
  maxConnectionsPerUid?: () => number;
  idleTimeoutMs: () => number;
  nssHandlers: () => HandlerTable;
  privHandlers: () => HandlerTable;
  /** per-uid request pacing; shared with userdb.sock (src/userdb) so a second socket is not a second rate */
  pacer?: RequestPacer;
  /**
   * nss.sock's connection budget; shared with userdb.sock, the other world-connectable socket, so
   * one uid's share and the total (sized to the fd limit) hold for both together.
   */
  publicBudget?: ConnectionBudget;
}

/**
 * Makes or checks the socket dir without following a symlink anywhere on its path (safedir.c:
 * openat from "/" with O_NOFOLLOW, mkdir -p through directory fds, mode set through the fd).
 * A dir that is a symlink, owned by someone else or writable by others, or a parent that others
 * can write (unless sticky, like /tmp), stops the start: whoever can write there could swap the
 * sockets, and a chmod/chown by path would follow their symlink. Once every component is known
 * to be root's and unwritable by others, the paths below it cannot change under us.
 */
function openSocketDir(dir: string): void {
  const r = checkDir({ path: dir, what: 'socket_dir', parentOf: 'socket_dir', create: true, rootOnly: false, mode: 0o755 });
  if (!r.ok) throw new LatchkeyError('E_SOCKET', `cannot use [daemon] socket_dir: ${r.problem}`);
}

function isAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

/** Removes a leftover socket from a previous run, refusing when another daemon still owns it. */
export async function clearStale(path: string): Promise<void> {
  let st;
  try { st = lstatSync(path); } catch { return; }
  if (!st.isSocket()) {
    throw new LatchkeyError('E_SOCKET', `${path} exists and is not a socket; move it away and restart`);
  }
  if (await isAlive(path)) {
    throw new LatchkeyError('E_SOCKET', `another latchkeyd is already listening on ${path}; stop it first`);
  }
  unlinkSync(path);
}

export function listenOn(path: string, mode: number, onConn: (s: Socket) => void, maxConn: () => number, onAcceptError?: (e: NodeJS.ErrnoException) => void): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer({ allowHalfOpen: false, pauseOnConnect: false }, onConn);
    srv.maxConnections = maxConn();
    srv.once('error', reject);
    // Create the socket file with its final mode: no window where priv.sock is connectable by all.
    const old = process.umask(0o777 & ~mode);
    try {
      srv.listen(path, () => {
        srv.off('error', reject);
        srv.on('error', (e: NodeJS.ErrnoException) => {
          // A failed accept (EMFILE: out of descriptors) is per connection and repeats with every
          // client while it lasts: libuv has already dropped the pending ones, the server stays up.
          if (e.syscall === 'accept' && onAcceptError) onAcceptError(e);
          else if (e.syscall === 'accept') logLimited(`socket.accept_failed:${path}`, 'error', 'socket.accept_failed', { path, code: e.code ?? 'error', error: e.message });
          else log('error', 'socket.error', { path, error: e.message });
        });
        resolve(srv);
      });
    } finally {
      process.umask(old);
    }
  });
}

export function peerOf(sock: Socket, which: Peer['socket']): Peer | null {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return null;
  try {
    const c = peerCred(fd);
    return { socket: which, uid: c.uid, pid: c.pid };
  } catch (e) {
    log('warn', 'peer.cred_failed', { sock: which, error: e instanceof Error ? e.message : String(e) });
    return null;
  }
}

let autoBudget: BudgetLimits | null = null;
/**
 * The budget of a world-connectable socket (nss.sock, and userdb.sock with its own of the same
 * size) from [daemon] max_connections and max_connections_per_uid; 0 = from the open-file limit.
 */
export function nssBudgetLimits(maxConnections: number, maxPerUid: number): BudgetLimits {
  const auto = (autoBudget ??= nssBudgetFromFdLimit());
  const total = maxConnections || auto.total;
  const perUid = maxPerUid || Math.max(1, Math.min(total, maxConnections ? Math.max(8, Math.floor(total / 8)) : auto.perUid));
  return { total, perUid };
}

export interface Listening { paths: SocketPaths; close(): Promise<void>; setMaxConnections(n: number): void }

export async function listenAll(opts: ListenOptions): Promise<Listening> {
  const paths = socketPaths(opts.dir);
  openSocketDir(opts.dir);
  await clearStale(paths.nss);
  await clearStale(paths.priv);

  // Shims keep a few pooled connections per process open for reuse; close() must end those too.
  const open = new Set<Socket>();
  const track = (sock: Socket): void => { open.add(sock); sock.once('close', () => open.delete(sock)); };
  // Separate budgets: priv.sock (root: PAM, CLI) keeps room however busy nss.sock is.
  const nssLimits = (): BudgetLimits => nssBudgetLimits(opts.maxConnections(), opts.maxConnectionsPerUid?.() ?? 0);
  const nssBudget = opts.publicBudget ?? new ConnectionBudget(nssLimits);
  const pacer = opts.pacer ?? new RequestPacer();
  const privBudget = new ConnectionBudget(() => ({ total: PRIV_MAX_CONNECTIONS, perUid: PRIV_MAX_CONNECTIONS }));
  const admitted = (budget: ConnectionBudget, sock: Socket, peer: Peer, serve: () => ConnectionHandle): void => {
    const a = budget.admit(peer.uid);
    if (!a.ok) {
      // The shim sees the connection close before any reply: "unavailable", never "not found".
      logLimited(`connection.refused:${peer.socket}:${peer.uid}`, 'warn', 'connection.refused', { sock: peer.socket, peer_uid: peer.uid, peer_pid: peer.pid, reason: a.reason });
      sock.destroy();
      return;
    }
    if (a.evicted) {
      logLimited(`connection.evicted:${peer.socket}:${a.evicted.peer.uid}`, 'info', 'connection.evicted', { sock: peer.socket, peer_uid: a.evicted.peer.uid, for_uid: peer.uid, detail: 'oldest idle connection of the heaviest uid closed to make room' });
      budget.remove(a.evicted);
      a.evicted.destroy();
    }
    const h = serve();
    budget.add(h);
    sock.once('close', () => budget.remove(h));
  };
  // Descriptors. libuv answers an accept that fails with EMFILE by accepting and closing the
  // waiting connections itself, without telling Node: root's PAM on priv.sock, a connection to
  // the user service and SQLite then fail with nobody told. So the daemon keeps FD_HEADROOM
  // descriptors free: when an nss.sock connection brings it below, idle connections of the
  // heaviest uid are closed (and this one refused if none is idle), logged once a minute.
  const fdLimit = openFileLimit();
  let fdCheckedAt = 0;
  let fdCheckedOpen = 0;
  const fdsFree = (): number => {
    try { return fdLimit - readdirSync('/proc/self/fd').length; } catch { return Number.POSITIVE_INFINITY; }
  };
  /** false: no room for this connection. Counting the fds (~30 µs) runs every 8 connections or 250 ms. */
  const fdRoom = (sock: Socket): boolean => {
    const now = Date.now();
    if (Math.abs(open.size - fdCheckedOpen) < 8 && now - fdCheckedAt < 250) return true;
    fdCheckedAt = now;
    fdCheckedOpen = open.size;
    const free = fdsFree();
    if (free >= FD_HEADROOM) return true;
    let shed = 0;
    while (free + shed < 2 * FD_HEADROOM) {
      const victim = nssBudget.shedIdle();
      if (!victim) break;
      nssBudget.remove(victim);
      victim.destroy();
      shed++;
    }
    const refused = free + shed < FD_HEADROOM / 2;
    logLimited('socket.fds_low', 'warn', 'socket.fds_low', {
      free, limit: fdLimit, open_connections: open.size, shed_idle: shed, refused,
      fix: 'latchkeyd is running out of file descriptors: raise LimitNOFILE (systemd) or lower [daemon] max_connections / max_connections_per_uid',
    });
    if (refused) sock.destroy();
    return !refused;
  };
  const onNss = (sock: Socket): void => {
    track(sock);
    if (!fdRoom(sock)) return;
    const peer = peerOf(sock, 'nss') ?? { socket: 'nss' as const, uid: -1, pid: -1 };
    admitted(nssBudget, sock, peer, () => serveConnection(sock, peer, { idleTimeoutMs: opts.idleTimeoutMs(), handlers: opts.nssHandlers, pace: (uid) => pacer.delay(uid) }));
  };
  const onPriv = (sock: Socket): void => {
    track(sock);
    const peer = peerOf(sock, 'priv');
    // Only root may use priv.sock; the daemon itself runs as root, so compare with 0, not getuid().
    if (!peer || peer.uid !== 0) {
      logLimited(`priv.denied:${peer?.uid ?? -1}`, 'warn', 'priv.denied', { peer_uid: peer?.uid ?? -1, peer_pid: peer?.pid ?? -1 });
      sock.destroy();
      return;
    }
    admitted(privBudget, sock, peer, () => serveConnection(sock, peer, { idleTimeoutMs: opts.idleTimeoutMs(), handlers: opts.privHandlers }));
  };

  // Out of descriptors (RLIMIT_NOFILE lower than the budget thought, or other files open): one
  // line per socket and minute, never a crash, and the oldest idle nss.sock connection of the
  // heaviest uid closed so the next client (root's PAM on priv.sock first of all) gets a
  // descriptor. The clients dropped meanwhile see a closed connection: "unavailable", retried.
  const acceptFailed = (sock: 'nss' | 'priv') => (e: NodeJS.ErrnoException): void => {
    const victim = nssBudget.shedIdle();
    if (victim) { nssBudget.remove(victim); victim.destroy(); }
    logLimited(`socket.accept_failed:${sock}`, 'error', 'socket.accept_failed', {
      sock, code: e.code ?? 'error', error: e.message, shed_idle: victim !== null, open_connections: open.size,
      fix: e.code === 'EMFILE' || e.code === 'ENFILE'
        ? 'latchkeyd is out of file descriptors: raise LimitNOFILE (systemd) or lower [daemon] max_connections'
        : 'see the error; the daemon keeps serving the connections it has',
    });
  };
  // Node's own maxConnections drops connections silently: keep it only as a hard ceiling above
  // the budgets, which decide (and log) who goes.
  const nss = await listenOn(paths.nss, 0o666, onNss, () => 2 * nssLimits().total + 64, acceptFailed('nss'));
  const priv = await listenOn(paths.priv, 0o600, onPriv, () => 2 * PRIV_MAX_CONNECTIONS, acceptFailed('priv'));
  chmodSync(paths.nss, 0o666);
  chmodSync(paths.priv, 0o600);

  return {
    paths,
    setMaxConnections() { nss.maxConnections = 2 * nssLimits().total + 64; },
    async close() {
      for (const s of open) s.destroy();
      await Promise.all([nss, priv].map((s) => new Promise<void>((r) => s.close(() => r()))));
      for (const p of [paths.nss, paths.priv]) { try { unlinkSync(p); } catch { /* already gone */ } }
    },
  };
}
