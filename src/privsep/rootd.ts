// latchkey-rootd from the daemon's side: the only way the unprivileged daemon gets root work done
// (create or repair a home, end a recorded session process, re-read the config). The frames are
// fixed-size and defined in spec.json (src/protocol/rootd.ts); rootd re-checks every request
// against its own reading of latchkey.conf, so this client holds no policy, only transport.
import { connect, type Socket } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { encodeRootdRequest, decodeRootdReply, ROOTD_REPLY_SIZE, ROOTD_IO_TIMEOUT_MS, type RootdReply, type RootdRequest } from '../protocol/rootd.js';
import { packageRoot } from '../native/addon.js';
import { checkTrustedMode, checkTrustedOwner, checkTrustedPath, UntrustedPath } from '../config/safety.js';
import { LatchkeyError } from '../errors.js';
import { log, type LogLevel } from '../log.js';
import { createInterface } from 'node:readline';

/** rootd could not be asked (not running, socket refused, timeout, broken frame). */
export class RootdUnavailable extends LatchkeyError {
  constructor(message: string) { super('E_ROOTD', message); }
}

/** Where latchkey-rootd is: <root>/native/rootd/latchkey-rootd (tree and install alike). */
export function rootdBinary(): string {
  const root = packageRoot();
  if (root === null) throw new RootdUnavailable('cannot find latchkey\'s install directory (its package.json) to start latchkey-rootd');
  return join(root, 'native', 'rootd', 'latchkey-rootd');
}

/** Root is about to run it: it must be a file only root can change, on a path only root can change. */
function checkRootdBinary(bin: string): void {
  try {
    const st = checkTrustedPath(bin, 0);
    checkTrustedOwner(bin, st, 0);
    checkTrustedMode(bin, st);
  } catch (e) {
    if (e instanceof UntrustedPath) throw new RootdUnavailable(`latchkey-rootd ${bin} ${e.message}`);
    throw e;
  }
}

/** How long one request may take end to end: rootd's own I/O bound plus the work (mkdir, chown). */
const CALL_TIMEOUT_MS = ROOTD_IO_TIMEOUT_MS + 5_000;

/** Why rootd's socket did not take a connection, with what to do about it. */
function unreachable(e: NodeJS.ErrnoException): string {
  if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') return 'not running (start latchkey-rootd.service, or start latchkeyd as root so it starts rootd itself)';
  if (e.code === 'EACCES') return 'refused the connection: latchkeyd does not run as the user rootd serves ([daemon] user)';
  return e.message;
}

export class RootdClient {
  // rootd serves one connection at a time; asking one question at a time keeps a burst of first
  // logins from piling connections into its backlog and makes every answer arrive in order.
  private chain: Promise<unknown> = Promise.resolve();

  constructor(readonly socketPath: string) {}

  /** null when rootd accepts a connection (closed at once, unused: rootd sees EOF and logs
   *  nothing), else why not, for `latchkeyctl status`. */
  probe(timeoutMs = 1000): Promise<string | null> {
    return new Promise((resolve) => {
      const sock = connect(this.socketPath);
      const done = (why: string | null): void => { clearTimeout(timer); sock.destroy(); resolve(why); };
      const timer = setTimeout(() => done(`no connection within ${timeoutMs} ms`), timeoutMs);
      sock.on('connect', () => done(null));
      sock.on('error', (e: NodeJS.ErrnoException) => done(unreachable(e)));
    });
  }

  call(req: RootdRequest): Promise<RootdReply> {
    const frame = encodeRootdRequest(req);
    const run = this.chain.then(() => this.exchange(frame), () => this.exchange(frame));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private exchange(frame: Buffer): Promise<RootdReply> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let got = 0;
      let done = false;
      const sock: Socket = connect(this.socketPath);
      const finish = (err: Error | null, reply?: RootdReply): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err); else resolve(reply!);
      };
      const timer = setTimeout(() => finish(new RootdUnavailable(`latchkey-rootd at ${this.socketPath} did not answer within ${CALL_TIMEOUT_MS} ms`)), CALL_TIMEOUT_MS);
      sock.on('connect', () => sock.write(frame));
      sock.on('data', (d: Buffer) => {
        chunks.push(d);
        got += d.length;
        if (got < ROOTD_REPLY_SIZE) return;
        if (got > ROOTD_REPLY_SIZE) return finish(new RootdUnavailable(`latchkey-rootd at ${this.socketPath} sent ${got} bytes, more than one reply`));
        try {
          finish(null, decodeRootdReply(Buffer.concat(chunks)));
        } catch (e) {
          finish(new RootdUnavailable(`latchkey-rootd at ${this.socketPath} sent a malformed reply: ${e instanceof Error ? e.message : String(e)}`));
        }
      });
      sock.on('error', (e: NodeJS.ErrnoException) => finish(new RootdUnavailable(`latchkey-rootd at ${this.socketPath}: ${unreachable(e)}`)));
      sock.on('end', () => finish(new RootdUnavailable(`latchkey-rootd at ${this.socketPath} closed the connection after ${got} of ${ROOTD_REPLY_SIZE} reply bytes`)));
    });
  }
}

const PRIORITY: Record<string, LogLevel> = { 0: 'error', 1: 'error', 2: 'error', 3: 'error', 4: 'warn', 5: 'info', 6: 'info', 7: 'debug' };

/** rootd's stderr lines as latchkeyd log events (`rootd`), the priority kept as the level. */
function relayLog(child: ChildProcess): void {
  createInterface({ input: child.stderr! }).on('line', (line) => {
    const m = /^<(\d)>(?:latchkey-rootd: )?(.*)$/.exec(line);
    log(m ? PRIORITY[m[1]!] ?? 'info' : 'info', 'rootd', { pid: child.pid, line: m ? m[2] : line });
  });
}

/**
 * Starts latchkey-rootd as a child of a latchkeyd still running as root (the path without systemd),
 * waits until its socket answers, and returns it. rootd exits with its parent (--exit-with-parent):
 * after the drop latchkeyd can no longer signal it.
 */
export async function spawnRootd(opts: { socketPath: string; daemonUid: number; configFile: string }): Promise<ChildProcess> {
  const bin = rootdBinary();
  if (!existsSync(bin)) throw new RootdUnavailable(`latchkey-rootd not found at ${bin}; fix: make build, or reinstall`);
  checkRootdBinary(bin);
  // A socket left by an earlier run is replaced by rootd once it listens: wait for a new inode.
  const inode = (): number | null => { try { return lstatSync(opts.socketPath).ino; } catch { return null; } };
  const stale = inode();
  const child = spawn(bin, ['--socket', opts.socketPath, '--daemon-user', String(opts.daemonUid), '--config', opts.configFile, '--exit-with-parent'], {
    // rootd writes "<PRIO>latchkey-rootd: key=value ..." lines (journald reads the priority when it
    // has its own unit); here they are relayed into latchkeyd's log, one JSON line each.
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LATCHKEY_NSS_DISABLE: '1' },
  });
  relayLog(child);
  let exited: string | null = null;
  child.on('exit', (code, signal) => {
    exited = signal ?? `exit ${code}`;
    log('error', 'rootd.exited', { pid: child.pid, status: exited, effect: 'homes cannot be created and sessions cannot be ended until latchkeyd restarts' });
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exited !== null) throw new RootdUnavailable(`latchkey-rootd (${bin}) stopped at start (${exited}); its message is above`);
    const now = inode();
    if (now !== null && now !== stale) break;
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new RootdUnavailable(`latchkey-rootd did not create ${opts.socketPath} within 10 s`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  log('info', 'rootd.started', { pid: child.pid, socket: opts.socketPath });
  return child;
}
