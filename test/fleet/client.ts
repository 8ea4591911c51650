// The fleet driver's way into one host: kept connections to the host's nss.sock and priv.sock
// (reached through /proc/<holder>/root, the host's own mount namespace), one request at a time
// per connection as the protocol says, a few connections per host as the NSS module's pool would
// have. A connection that fails (the daemon restarting) is dropped and reopened on the next use.
import { createConnection, type Socket } from 'node:net';
import { decodeReply, encodeRequest, type Fields } from '../../src/protocol/codec.js';
import { StatusName } from '../../src/protocol/generated.js';

export type Outcome = 'OK' | 'NOTFOUND' | 'UNAVAIL' | 'AUTH_FAILED' | 'THROTTLED' | 'EXPIRED' | 'DOWN' | 'TIMEOUT' | 'OTHER';

export interface Reply { outcome: Outcome; fields: Fields | null; detail: string }

const TIMEOUT_MS = 8_000;

class Conn {
  private sock: Socket | null = null;
  private buf: Buffer = Buffer.alloc(0);
  private pending: { resolve: (r: Reply) => void; timer: NodeJS.Timeout } | null = null;
  busy = false;
  constructor(private readonly path: string) {}

  private fail(outcome: Outcome, detail: string): void {
    const p = this.pending;
    this.pending = null;
    this.sock?.destroy();
    this.sock = null;
    this.buf = Buffer.alloc(0);
    if (p) { clearTimeout(p.timer); p.resolve({ outcome, fields: null, detail }); }
  }

  private open(): Socket {
    const s = createConnection(this.path);
    s.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      if (this.buf.length < 4) return;
      const n = this.buf.readUInt32BE(0);
      if (this.buf.length < 4 + n) return;
      const body = this.buf.subarray(4, 4 + n);
      this.buf = this.buf.subarray(4 + n);
      const p = this.pending;
      this.pending = null;
      if (!p) return;
      clearTimeout(p.timer);
      try {
        const r = decodeReply(body);
        const name = StatusName[r.status] ?? `status ${r.status}`;
        const known: Outcome[] = ['OK', 'NOTFOUND', 'UNAVAIL', 'AUTH_FAILED', 'THROTTLED', 'EXPIRED'];
        p.resolve({ outcome: known.includes(name as Outcome) ? name as Outcome : 'OTHER', fields: r.fields, detail: r.detail || name });
      } catch (e) {
        p.resolve({ outcome: 'OTHER', fields: null, detail: (e as Error).message });
      }
    });
    s.on('error', (e: NodeJS.ErrnoException) => this.fail('DOWN', e.code ?? e.message));
    s.on('close', () => this.fail('DOWN', 'closed'));
    return s;
  }

  send(op: string, fields: Fields): Promise<Reply> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.fail('TIMEOUT', `no reply within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
      this.pending = { resolve, timer };
      this.sock ??= this.open();
      this.sock.write(encodeRequest(op, fields));
    });
  }

  close(): void { this.sock?.destroy(); this.sock = null; }
}

/** A small pool per socket: a request waits for a free connection, none is ever shared. */
export class Pool {
  private readonly conns: Conn[];
  private readonly waiting: Array<() => void> = [];
  constructor(path: string, size: number) { this.conns = Array.from({ length: size }, () => new Conn(path)); }

  async call(op: string, fields: Fields): Promise<Reply> {
    let c = this.conns.find((x) => !x.busy);
    while (!c) {
      await new Promise<void>((r) => this.waiting.push(r));
      c = this.conns.find((x) => !x.busy);
    }
    c.busy = true;
    try {
      return await c.send(op, fields);
    } finally {
      c.busy = false;
      this.waiting.shift()?.();
    }
  }

  /** An ADMIN command (priv.sock, root only): the reply's JSON, or null when it failed. */
  async admin(cmd: Record<string, unknown>): Promise<Record<string, unknown> | null> {
    const r = await this.call('ADMIN', { json: Buffer.from(JSON.stringify(cmd)) });
    if (r.outcome !== 'OK' || !r.fields) return null;
    return JSON.parse(Buffer.from(r.fields.json as Uint8Array).toString('utf8')) as Record<string, unknown>;
  }

  close(): void { for (const c of this.conns) c.close(); }
}
