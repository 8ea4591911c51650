// One client connection: frames in, replies out, strictly in order. A frame that breaks the
// framing rules (oversized length) closes the connection; anything else gets an error reply.
import type { Socket } from 'node:net';
import { FrameReader } from '../protocol/codec.js';
import { MAX_REQUEST } from '../protocol/generated.js';
import { ProtocolError } from '../errors.js';
import { logLimited } from '../log.js';
import { dispatch, type HandlerTable, type Peer } from './dispatch.js';

export interface ConnectionOptions {
  idleTimeoutMs: number;
  handlers: () => HandlerTable;
  /** ms this peer's next request must wait (per-uid request rate, budget.ts RequestPacer) */
  pace?: (uid: number) => number;
}

/**
 * A request's bytes must all arrive within this long of its first byte. A shim writes a whole
 * frame at once; a peer dribbling one byte at a time would otherwise hold the connection (and
 * its slot in the budget) forever, since every byte resets the idle timer.
 */
export const FRAME_DEADLINE_MS = 2000;

/** What the connection budget needs to know about a live connection. */
export interface ConnectionHandle {
  peer: Peer;
  /** epoch ms of the last complete request (or the connect) */
  lastActive: number;
  /** a request is being answered or queued */
  busy(): boolean;
  destroy(): void;
}

export function serveConnection(sock: Socket, peer: Peer, opts: ConnectionOptions): ConnectionHandle {
  const frames = new FrameReader(MAX_REQUEST);
  const queue: Buffer[] = [];
  let busy = false;
  let closed = false;
  let frameTimer: NodeJS.Timeout | null = null;
  const handle: ConnectionHandle = {
    peer, lastActive: Date.now(),
    busy: () => busy || queue.length > 0,
    destroy: () => sock.destroy(),
  };
  sock.setTimeout(opts.idleTimeoutMs);
  sock.on('timeout', () => sock.destroy());
  sock.on('error', () => { /* peer went away; nothing to answer */ });
  sock.on('close', () => { closed = true; if (frameTimer) clearTimeout(frameTimer); });

  const pump = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      while (queue.length && !closed) {
        const wait = opts.pace?.(peer.uid) ?? 0;
        if (wait > 0) {
          // Over its rate: this connection waits (reading paused), nobody else does.
          sock.pause();
          await new Promise((r) => setTimeout(r, wait));
          if (closed) break;
          sock.resume();
        }
        const body = queue.shift()!;
        const reply = await dispatch(body, peer, opts.handlers());
        if (!closed && !sock.write(reply)) {
          // A peer that sends requests but never reads its replies would otherwise
          // make the daemon buffer every reply (up to MAX_NSS_REPLY each for a few request bytes
          // on the world-connectable nss.sock) without bound. Stop reading its requests until the
          // replies already written have drained; the 64-frame queue cap then bounds the rest.
          sock.pause();
          await new Promise<void>((resolve) => {
            const done = (): void => { sock.off('drain', done); sock.off('close', done); resolve(); };
            sock.on('drain', done);
            sock.on('close', done);
          });
          if (!closed) sock.resume();
        }
      }
    } finally {
      busy = false;
    }
  };

  sock.on('data', (chunk: Buffer) => {
    let got: Buffer[];
    try {
      got = frames.push(chunk);
    } catch (e) {
      const msg = e instanceof ProtocolError ? e.message : String(e);
      logLimited(`connection.malformed:${peer.socket}:${peer.uid}`, 'warn', 'connection.malformed', { sock: peer.socket, peer_uid: peer.uid, peer_pid: peer.pid, error: msg });
      sock.destroy();
      return;
    }
    // Bound what a client can pile up unanswered: a well-behaved shim sends one at a time.
    if (queue.length + got.length > 64) {
      logLimited(`connection.flood:${peer.socket}:${peer.uid}`, 'warn', 'connection.flood', { sock: peer.socket, peer_uid: peer.uid, peer_pid: peer.pid });
      sock.destroy();
      return;
    }
    if (got.length > 0) handle.lastActive = Date.now();
    // A partial frame left in the buffer must complete within FRAME_DEADLINE_MS of its first
    // byte; a push that completed frames leaves a new partial one, whose deadline starts now.
    if (frameTimer && (got.length > 0 || frames.buffered === 0)) { clearTimeout(frameTimer); frameTimer = null; }
    if (frames.buffered > 0 && !frameTimer) {
      frameTimer = setTimeout(() => {
        logLimited(`connection.slow_frame:${peer.socket}:${peer.uid}`, 'info', 'connection.slow_frame', { sock: peer.socket, peer_uid: peer.uid, peer_pid: peer.pid, deadline_ms: FRAME_DEADLINE_MS });
        sock.destroy();
      }, FRAME_DEADLINE_MS);
    }
    queue.push(...got);
    void pump();
  });
  return handle;
}
