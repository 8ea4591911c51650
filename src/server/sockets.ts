// Creates the two listening sockets. nss.sock is world-connectable and serves public data only;
// priv.sock is root-only by mode AND by a SO_PEERCRED check, since a mode can be changed by hand.
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { checkDir, peerCred } from '../native/addon.js';
import { log } from '../log.js';
import { LatchkeyError } from '../errors.js';
import { serveConnection, type ConnectionHandle } from './connection.js';
import { ConnectionBudget, RequestPacer, nssBudgetFromFdLimit, type BudgetLimits } from './budget.js';
import { logLimited } from '../log.js';
import type { HandlerTable, Peer } from './dispatch.js';

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
async function clearStale(path: string): Promise<void> {
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

function listenOn(path: string, mode: number, onConn: (s: Socket) => void, maxConn: () => number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer({ allowHalfOpen: false, pauseOnConnect: false }, onConn);
    srv.maxConnections = maxConn();
    srv.once('error', reject);
    // Create the socket file with its final mode: no window where priv.sock is connectable by all.
    const old = process.umask(0o777 & ~mode);
    try {
      srv.listen(path, () => {
        srv.off('error', reject);
        srv.on('error', (e) => log('error', 'socket.error', { path, error: e.message }));
        resolve(srv);
      });
    } finally {
      process.umask(old);
    }
  });
}

function peerOf(sock: Socket, which: 'nss' | 'priv'): Peer | null {
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
  const auto = nssBudgetFromFdLimit();
  const nssLimits = (): BudgetLimits => {
    const total = opts.maxConnections() || auto.total;
    const perUid = opts.maxConnectionsPerUid?.() || Math.max(1, Math.min(total, opts.maxConnections() ? Math.max(8, Math.floor(total / 8)) : auto.perUid));
    return { total, perUid };
  };
  const nssBudget = new ConnectionBudget(nssLimits);
  const pacer = new RequestPacer();
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
  const onNss = (sock: Socket): void => {
    track(sock);
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

  // Node's own maxConnections drops connections silently: keep it only as a hard ceiling above
  // the budgets, which decide (and log) who goes.
  const nss = await listenOn(paths.nss, 0o666, onNss, () => 2 * nssLimits().total + 64);
  const priv = await listenOn(paths.priv, 0o600, onPriv, () => 2 * PRIV_MAX_CONNECTIONS);
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
