// One client connection: frames in, replies out, strictly in order. A frame that breaks the
// framing rules (oversized length) closes the connection; anything else gets an error reply.
import type { Socket } from 'node:net';
import { FrameReader } from '../protocol/codec.js';
import { MAX_REQUEST } from '../protocol/generated.js';
import { ProtocolError } from '../errors.js';
import { log } from '../log.js';
import { dispatch, type HandlerTable, type Peer } from './dispatch.js';

export interface ConnectionOptions { idleTimeoutMs: number; handlers: () => HandlerTable }

export function serveConnection(sock: Socket, peer: Peer, opts: ConnectionOptions): void {
  const frames = new FrameReader(MAX_REQUEST);
  const queue: Buffer[] = [];
  let busy = false;
  let closed = false;
  sock.setTimeout(opts.idleTimeoutMs);
  sock.on('timeout', () => sock.destroy());
  sock.on('error', () => { /* peer went away; nothing to answer */ });
  sock.on('close', () => { closed = true; });

  const pump = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      while (queue.length && !closed) {
        const body = queue.shift()!;
        const reply = await dispatch(body, peer, opts.handlers());
        if (!closed && !sock.write(reply)) {
          // Review fix: a peer that sends requests but never reads its replies would otherwise
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
      log('warn', 'connection.malformed', { sock: peer.socket, peer_uid: peer.uid, peer_pid: peer.pid, error: msg });
      sock.destroy();
      return;
    }
    // Bound what a client can pile up unanswered: a well-behaved shim sends one at a time.
    if (queue.length + got.length > 64) {
      log('warn', 'connection.flood', { sock: peer.socket, peer_uid: peer.uid, peer_pid: peer.pid });
      sock.destroy();
      return;
    }
    queue.push(...got);
    void pump();
  });
}
