// The metrics endpoint: HTTP GET /metrics on a Unix socket or a loopback port ([metrics] listen),
// nothing else. Whoever can connect is a local process, so it is held to the daemon's rules for
// clients: a few connections at once, short deadlines for the request and idle sockets, small
// headers, a reply built in memory and handed to the kernel in one write. A scraper that stops
// reading cannot hold the event loop, only its own socket until the deadline.
import { lstatSync, unlinkSync, chmodSync } from 'node:fs';
import http from 'node:http';
import type { MetricsListen } from '../config/types.js';
import { log } from '../log.js';

/**
 * Connections served at once; Node closes any past it at once (server.maxConnections). Any local
 * process can connect to a loopback port, so holding them all must take many connections kept
 * busy: one request per connection (no keep-alive slot to sit in) and a short deadline, checked
 * every second. Where local users are not trusted, the Unix socket (0660) is the listener to use.
 */
export const MAX_CONNECTIONS = 32;
/** Whole request (headers included); the connection closes after its one reply. */
export const REQUEST_TIMEOUT_MS = 3000;
export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export function describeListen(l: MetricsListen): string {
  return 'unix' in l ? `unix:${l.unix}` : l.host === '::1' ? `[::1]:${l.port}` : `${l.host}:${l.port}`;
}

export class MetricsServer {
  private server: http.Server | null = null;
  private listen: MetricsListen | null = null;
  private error: string | null = null;

  constructor(private readonly render: () => string) {}

  /** Serves at `listen` (null: stops); a bind failure is logged and shown by status, never fatal. */
  async configure(listen: MetricsListen | null): Promise<void> {
    if (this.listen !== null && listen !== null && describeListen(this.listen) === describeListen(listen) && this.server !== null) return;
    await this.close();
    this.listen = listen;
    this.error = null;
    if (listen === null) return;
    const server = http.createServer({
      maxHeaderSize: 8192, requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1000,
    }, (req, res) => this.answer(req, res));
    server.maxConnections = MAX_CONNECTIONS;
    server.maxRequestsPerSocket = 1;
    server.keepAliveTimeout = 1;
    server.setTimeout(REQUEST_TIMEOUT_MS, (sock) => sock.destroy());
    server.on('clientError', (_e, sock) => sock.destroy());
    try {
      if ('unix' in listen) removeStaleSocket(listen.unix);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        if ('unix' in listen) server.listen(listen.unix, () => resolve());
        else server.listen(listen.port, listen.host, () => resolve());
      });
      // The daemon's group may scrape it (a scraper runs in it, or through a proxy that does).
      if ('unix' in listen) chmodSync(listen.unix, 0o660);
      this.server = server;
      log('info', 'metrics.listening', { listen: describeListen(listen) });
    } catch (e) {
      this.error = `cannot serve metrics at ${describeListen(listen)}: ${e instanceof Error ? e.message : String(e)}`;
      log('error', 'metrics.listen_failed', { listen: describeListen(listen), error: this.error, fix: 'free the port or socket path, or change [metrics] listen, then reload' });
      server.close();
    }
  }

  status(): { listen: string | null; serving: boolean; error: string | null } {
    return { listen: this.listen === null ? null : describeListen(this.listen), serving: this.server !== null, error: this.error };
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s === null) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
    const l = this.listen;
    if (l !== null && 'unix' in l) {
      try { unlinkSync(l.unix); } catch { /* already gone */ }
    }
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') return plain(res, 404, 'only /metrics is served here\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, 'only GET\n', { allow: 'GET, HEAD' });
    let body: string;
    try {
      body = this.render();
    } catch (e) {
      log('error', 'metrics.render_failed', { error: e instanceof Error ? e.message : String(e) });
      return plain(res, 500, 'metrics failed; see the daemon log\n');
    }
    const buf = Buffer.from(body, 'utf8');
    res.writeHead(200, { 'content-type': CONTENT_TYPE, 'content-length': buf.length });
    res.end(req.method === 'HEAD' ? undefined : buf);
  }
}

function plain(res: http.ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** A socket left by a daemon that died is replaced; any other file at the path is not ours to remove. */
function removeStaleSocket(path: string): void {
  let st;
  try { st = lstatSync(path); } catch { return; }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; remove it or choose another [metrics] listen path`);
  unlinkSync(path);
}
