// userdb.sock: io.systemd.UserDatabase over varlink for systemd's userdb clients (userdbctl,
// nss-systemd, systemd-userdbd's multiplexer), which find it through the symlink
// /run/systemd/userdb/io.latchkey the shipped tmpfiles.d makes (systemd's userdb.c connect()s to
// every entry of that directory by path, so a symlink is followed). The daemon account cannot
// create anything in root's /run/systemd/userdb itself; the socket lives in socket_dir.
// World-connectable like nss.sock, with the same limits: nss.sock's connection budget itself (one
// share per uid and one total, sized to the fd limit, for both sockets together), the one per-uid
// RequestPacer, a message size cap, a message deadline, an idle timeout and a bounded queue per
// connection.
import type { Server, Socket } from 'node:net';
import { chmodSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/types.js';
import type { Resolver } from '../directory/resolver.js';
import { log, logLimited } from '../log.js';
import type { ConnectionBudget, RequestPacer } from '../server/budget.js';
import { FRAME_DEADLINE_MS, type ConnectionHandle } from '../server/connection.js';
import { clearStale, listenOn, nssBudgetLimits, peerOf } from '../server/sockets.js';
import type { Peer } from '../server/dispatch.js';
import { VarlinkFramingError, VarlinkReader, parseCall } from './varlink.js';
import { answerCall, type UserdbCounters } from './methods.js';

/** Where clients find the socket once the shipped tmpfiles.d line links it (README "systemd userdb"). */
export const USERDB_LINK = '/run/systemd/userdb/io.latchkey';
/**
 * The budget key of systemd-userdbd's workers. They connect as root, but they relay the calls of
 * every local user (`userdbctl user x` from any uid goes through io.systemd.Multiplexer): charged
 * as root, any user could spend root's never-seen-name budget, unpaced, and hold root's
 * connection share, and sshd's own lookups on nss.sock (root) would then be refused. Not a real
 * uid, so it gets an ordinary uid's limits.
 */
export const MULTIPLEXER_CHARGE_UID = -2;

/** The uid a connection's calls are charged to: the peer's, or the multiplexer's own key. */
export function chargeUidOf(peer: Peer): number {
  if (peer.uid !== 0 || peer.pid <= 0) return peer.uid;
  let comm = '';
  // comm is readable for any pid (exe is not, for an unprivileged daemon); only root's own
  // processes matter here, and a non-root user cannot make one named like this.
  try { comm = readFileSync(`/proc/${peer.pid}/comm`, 'utf8').trim(); } catch { /* gone: root */ }
  return comm === 'systemd-userwor' ? MULTIPLEXER_CHARGE_UID : 0; // TASK_COMM_LEN cuts "systemd-userwork"
}

/** Calls one connection may have waiting: systemd's clients send one call at a time. */
const MAX_QUEUED = 16;

export interface UserdbStatus {
  enabled: boolean;
  path: string | null;
  connections: number;
  accepted: number;
  refused: number;
  requests: number;
  errors: number;
  malformed: number;
  records_refused: number;
}

export interface UserdbOptions {
  socketDir: string;
  cfg: () => Config;
  resolver: Resolver;
  pacer: RequestPacer;
  /** nss.sock's budget (server/sockets.ts): one share per uid and one total for both sockets */
  budget: ConnectionBudget;
}

export class UserdbServer {
  private server: Server | null = null;
  private readonly open = new Set<Socket>();
  private readonly budget: ConnectionBudget;
  private readonly counters: UserdbCounters = { requests: 0, errors: 0, refusedRecords: 0 };
  private accepted = 0;
  private refused = 0;
  private malformed = 0;
  readonly path: string;

  constructor(private readonly opts: UserdbOptions) {
    this.path = join(opts.socketDir, 'userdb.sock');
    this.budget = opts.budget;
  }

  /** Listens or stops as `[userdb] enabled` says (start and every reload). */
  async configure(enabled: boolean): Promise<void> {
    if (enabled && !this.server) {
      await clearStale(this.path);
      const limit = (): number => 2 * nssBudgetLimits(this.opts.cfg().daemon.maxConnections, this.opts.cfg().daemon.maxConnectionsPerUid).total + 64;
      this.server = await listenOn(this.path, 0o666, (s) => this.onConnection(s), limit);
      chmodSync(this.path, 0o666);
      log('info', 'userdb.listening', { path: this.path, link: USERDB_LINK });
    } else if (!enabled && this.server) {
      await this.close();
      log('info', 'userdb.stopped', { path: this.path, detail: '[userdb] enabled = no' });
    }
  }

  async close(): Promise<void> {
    const srv = this.server;
    if (!srv) return;
    this.server = null;
    for (const s of this.open) s.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
    try { unlinkSync(this.path); } catch { /* already gone */ }
  }

  status(): UserdbStatus {
    return {
      enabled: this.server !== null, path: this.server ? this.path : null,
      connections: this.open.size, accepted: this.accepted, refused: this.refused,
      requests: this.counters.requests, errors: this.counters.errors, malformed: this.malformed,
      records_refused: this.counters.refusedRecords,
    };
  }

  private onConnection(sock: Socket): void {
    this.open.add(sock);
    sock.once('close', () => this.open.delete(sock));
    const real: Peer = peerOf(sock, 'userdb') ?? { socket: 'userdb', uid: -1, pid: -1 };
    // Budgets by charge uid; the privileged section still by the real one (methods.ts).
    const peer: Peer = { ...real, uid: chargeUidOf(real) };
    const a = this.budget.admit(peer.uid);
    if (!a.ok) {
      // The client sees the connection close: its lookup fails as unavailable, never "no such user".
      this.refused++;
      logLimited(`connection.refused:userdb:${peer.uid}`, 'warn', 'connection.refused', { sock: 'userdb', peer_uid: peer.uid, peer_pid: peer.pid, reason: a.reason });
      sock.destroy();
      return;
    }
    if (a.evicted) {
      logLimited(`connection.evicted:userdb:${a.evicted.peer.uid}`, 'info', 'connection.evicted', { sock: 'userdb', peer_uid: a.evicted.peer.uid, for_uid: peer.uid, detail: 'oldest idle connection of the heaviest uid closed to make room' });
      this.budget.remove(a.evicted);
      a.evicted.destroy();
    }
    this.accepted++;
    const h = this.serve(sock, peer, real.uid);
    this.budget.add(h);
    sock.once('close', () => this.budget.remove(h));
  }

  private serve(sock: Socket, peer: Peer, realUid: number): ConnectionHandle {
    const reader = new VarlinkReader();
    const queue: Buffer[] = [];
    let busy = false;
    let closed = false;
    let frameTimer: NodeJS.Timeout | null = null;
    const handle: ConnectionHandle = { peer, lastActive: Date.now(), busy: () => busy || queue.length > 0, destroy: () => sock.destroy() };
    const drop = (event: string, fields: Record<string, unknown>): void => {
      this.malformed++;
      logLimited(`${event}:userdb:${peer.uid}`, 'warn', event, { sock: 'userdb', peer_uid: peer.uid, peer_pid: peer.pid, ...fields });
      sock.destroy();
    };
    sock.setTimeout(this.opts.cfg().daemon.idleTimeoutMs);
    sock.on('timeout', () => sock.destroy());
    sock.on('error', () => { /* the peer went away */ });
    sock.on('close', () => { closed = true; if (frameTimer) clearTimeout(frameTimer); });

    const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    const pace = async (): Promise<void> => {
      const ms = this.opts.pacer.delay(peer.uid);
      if (ms > 0) { sock.pause(); await wait(ms); if (!closed) sock.resume(); }
    };
    const send = async (msg: Buffer): Promise<void> => {
      if (closed || sock.write(msg)) return;
      // A peer that does not read its replies (a stalled enumeration) stops being read and
      // streamed to until they drain: the daemon never buffers more than one reply ahead.
      await new Promise<void>((resolve) => {
        const done = (): void => { sock.off('drain', done); sock.off('close', done); resolve(); };
        sock.on('drain', done);
        sock.on('close', done);
      });
    };
    const pump = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      try {
        while (queue.length && !closed) {
          await pace();
          if (closed) break;
          const parsed = parseCall(queue.shift()!);
          if (!parsed.ok) { drop('userdb.malformed', { error: parsed.problem }); break; }
          try {
            await answerCall(parsed.call, {
              resolver: this.opts.resolver, cfg: this.opts.cfg, peer: { uid: realUid, pid: peer.pid }, chargeUid: peer.uid, send, pace, closed: () => closed, counters: this.counters,
            });
          } catch (e) {
            log('error', 'userdb.request_failed', { method: parsed.call.method, error: e instanceof Error ? e.message : String(e) });
            sock.destroy();
            break;
          }
          handle.lastActive = Date.now();
        }
      } finally {
        busy = false;
      }
    };
    sock.on('data', (chunk: Buffer) => {
      let got: Buffer[];
      try {
        got = reader.push(chunk);
      } catch (e) {
        drop('userdb.malformed', { error: e instanceof VarlinkFramingError ? e.message : String(e) });
        return;
      }
      if (queue.length + got.length > MAX_QUEUED) { drop('connection.flood', {}); return; }
      if (got.length > 0) handle.lastActive = Date.now();
      // An unfinished message must complete within FRAME_DEADLINE_MS of its first byte, as on
      // nss.sock: a peer dribbling bytes would otherwise hold its budget slot forever.
      if (frameTimer && (got.length > 0 || reader.buffered === 0)) { clearTimeout(frameTimer); frameTimer = null; }
      if (reader.buffered > 0 && !frameTimer) {
        frameTimer = setTimeout(() => drop('connection.slow_frame', { deadline_ms: FRAME_DEADLINE_MS }), FRAME_DEADLINE_MS);
      }
      queue.push(...got);
      void pump();
    });
    return handle;
  }
}
