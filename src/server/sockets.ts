// Creates the two listening sockets. nss.sock is world-connectable and serves public data only;
// priv.sock is root-only by mode AND by a SO_PEERCRED check, since a mode can be changed by hand.
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { chmodSync, lstatSync, mkdirSync, unlinkSync, chownSync } from 'node:fs';
import { join } from 'node:path';
import { peerCred } from '../native/addon.js';
import { log } from '../log.js';
import { LatchkeyError } from '../errors.js';
import { serveConnection } from './connection.js';
import type { HandlerTable, Peer } from './dispatch.js';

export interface SocketPaths { dir: string; nss: string; priv: string }
export function socketPaths(dir: string): SocketPaths {
  return { dir, nss: join(dir, 'nss.sock'), priv: join(dir, 'priv.sock') };
}

export interface ListenOptions {
  dir: string;
  maxConnections: () => number;
  idleTimeoutMs: () => number;
  nssHandlers: () => HandlerTable;
  privHandlers: () => HandlerTable;
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
  mkdirSync(opts.dir, { recursive: true, mode: 0o755 });
  chmodSync(opts.dir, 0o755);
  if (process.getuid?.() === 0) chownSync(opts.dir, 0, 0);
  await clearStale(paths.nss);
  await clearStale(paths.priv);

  // Shims keep a connection per thread open for reuse; close() must end those too.
  const open = new Set<Socket>();
  const track = (sock: Socket): void => { open.add(sock); sock.once('close', () => open.delete(sock)); };
  const onNss = (sock: Socket): void => {
    track(sock);
    const peer = peerOf(sock, 'nss') ?? { socket: 'nss' as const, uid: -1, pid: -1 };
    serveConnection(sock, peer, { idleTimeoutMs: opts.idleTimeoutMs(), handlers: opts.nssHandlers });
  };
  const onPriv = (sock: Socket): void => {
    track(sock);
    const peer = peerOf(sock, 'priv');
    // Only root may use priv.sock; the daemon itself runs as root, so compare with 0, not getuid().
    if (!peer || peer.uid !== 0) {
      log('warn', 'priv.denied', { peer_uid: peer?.uid ?? -1, peer_pid: peer?.pid ?? -1 });
      sock.destroy();
      return;
    }
    serveConnection(sock, peer, { idleTimeoutMs: opts.idleTimeoutMs(), handlers: opts.privHandlers });
  };

  const nss = await listenOn(paths.nss, 0o666, onNss, opts.maxConnections);
  const priv = await listenOn(paths.priv, 0o600, onPriv, opts.maxConnections);
  chmodSync(paths.nss, 0o666);
  chmodSync(paths.priv, 0o600);

  return {
    paths,
    setMaxConnections(n: number) { nss.maxConnections = n; priv.maxConnections = n; },
    async close() {
      for (const s of open) s.destroy();
      await Promise.all([nss, priv].map((s) => new Promise<void>((r) => s.close(() => r()))));
      for (const p of [paths.nss, paths.priv]) { try { unlinkSync(p); } catch { /* already gone */ } }
    },
  };
}
