// The one way latchkeyctl talks to latchkeyd: an ADMIN frame on priv.sock, a JSON object back,
// checked against the admin protocol (src/protocol/admin.ts) before any command reads it.
// Every failure to get an answer, or an answer of the wrong shape, becomes a DaemonUnavailable
// with a message that says what to do or which field was wrong; an answer with {"ok": false}
// becomes an AdminError carrying the daemon's stable code.
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { encodeRequest, decodeReply, FrameReader } from '../protocol/codec.js';
import { MAX_REPLY, Op, Status, StatusName } from '../protocol/generated.js';
import {
  type AdminCommand, type AdminErrorReply, type AdminOkReply, type AdminRequest, ShapeError, checkAdminReply,
} from '../protocol/admin.js';

export const DEFAULT_SOCKET_DIR = '/run/latchkey';
/** Long enough for `lookup --refresh` against a slow upstream and a costly bcrypt in auth-test. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** Could not reach the daemon, or may not: exit code 3. */
export class DaemonUnavailable extends Error {
  constructor(message: string, readonly reason: 'not_root' | 'no_socket' | 'refused' | 'denied' | 'timeout' | 'protocol') {
    super(message);
    this.name = 'DaemonUnavailable';
  }
}

/**
 * The daemon answered {"ok": false, "code": ..., "error": ...} to `cmd` (reply), or refused the
 * ADMIN frame itself with a frame status (reply null, code the status name in lower case).
 */
export class AdminError<C extends AdminCommand = AdminCommand> extends Error {
  constructor(readonly cmd: C, readonly code: string, message: string, readonly reply: AdminErrorReply<C> | null) {
    super(message);
    this.name = 'AdminError';
  }

  /** Narrows to the error of one command, whose reply may carry that command's extra fields. */
  isFor<K extends AdminCommand>(cmd: K): this is AdminError<K> {
    return (this.cmd as AdminCommand) === cmd;
  }
}

export const NOT_ROOT_MESSAGE = 'latchkeyctl needs root (priv.sock is root-only); run it with sudo';

/** --socket-dir, then $LATCHKEY_SOCKET_DIR, then /run/latchkey. */
export function resolveSocketDir(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return flag || env.LATCHKEY_SOCKET_DIR || DEFAULT_SOCKET_DIR;
}

export function privSocketPath(dir: string): string {
  return join(dir, 'priv.sock');
}

export interface ClientOptions {
  socketDir: string;
  timeoutMs?: number;
  /** injected for tests; defaults to process.getuid() */
  uid?: number;
}

/** Sends one ADMIN command and returns the daemon's checked JSON reply (ok: true), or throws. */
export async function adminCall<C extends AdminCommand>(opts: ClientOptions, command: AdminRequest<C>): Promise<AdminOkReply<C>> {
  const uid = opts.uid ?? process.getuid?.() ?? 0;
  // priv.sock is mode 0600 and the daemon also checks SO_PEERCRED; say so before trying,
  // rather than reporting a bare EACCES.
  if (uid !== 0) throw new DaemonUnavailable(NOT_ROOT_MESSAGE, 'not_root');
  const path = privSocketPath(opts.socketDir);
  const body = await roundTrip(path, encodeRequest('ADMIN', { json: Buffer.from(JSON.stringify(command), 'utf8') }), opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  let reply: ReturnType<typeof decodeReply>;
  try {
    reply = decodeReply(body);
  } catch (e) {
    throw new DaemonUnavailable(`latchkeyd sent a malformed reply on ${path}: ${(e as Error).message}`, 'protocol');
  }
  // A reply for another request is not an answer to this one (and, OK, would carry other fields).
  if (reply.opcode !== Op.ADMIN) {
    throw new DaemonUnavailable(`latchkeyd sent a reply for opcode ${reply.opcode} to an ADMIN request on ${path}`, 'protocol');
  }
  if (reply.status !== Status.OK) {
    const name = StatusName[reply.status] ?? String(reply.status);
    if (reply.status === Status.UNKNOWN_OPCODE || reply.status === Status.BAD_VERSION) {
      throw new DaemonUnavailable(`latchkeyd on ${path} does not support latchkeyctl (${name}: ${reply.detail}); upgrade latchkeyd`, 'protocol');
    }
    if (reply.status === Status.DENIED) throw new DaemonUnavailable(`latchkeyd refused the request: ${reply.detail || name}`, 'denied');
    throw new AdminError(command.cmd, name.toLowerCase(), `latchkeyd: ${name}${reply.detail ? ': ' + reply.detail : ''}`, null);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse((reply.fields!.json as Buffer).toString('utf8'));
  } catch {
    throw new DaemonUnavailable(`latchkeyd sent a reply that is not JSON on ${path}`, 'protocol');
  }
  if (parsed === null || typeof parsed !== 'object' || typeof (parsed as { ok?: unknown }).ok !== 'boolean') {
    throw new DaemonUnavailable(`latchkeyd sent a reply without "ok" on ${path}`, 'protocol');
  }
  let r: ReturnType<typeof checkAdminReply<C>>;
  try {
    r = checkAdminReply(command.cmd, parsed);
  } catch (e) {
    if (!(e instanceof ShapeError)) throw e;
    // Printing what did arrive would show "undefined" or a wrong value as if it were the
    // daemon's answer; a daemon of another version is the likely cause.
    throw new DaemonUnavailable(`latchkeyd sent a malformed "${command.cmd}" reply on ${path}: ${e.message} (are latchkeyd and latchkeyctl the same version?)`, 'protocol');
  }
  if (!r.ok) throw new AdminError(command.cmd, r.code, r.error, r);
  return r;
}

/** Connects, writes one frame, reads exactly one reply frame body. */
function roundTrip(path: string, frame: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    const frames = new FrameReader(MAX_REPLY);
    let done = false;
    const finish = (err: Error | null, body?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err); else resolve(body!);
    };
    const timer = setTimeout(() => finish(new DaemonUnavailable(`latchkeyd did not answer on ${path} within ${Math.round(timeoutMs / 1000)}s; check \`journalctl -u latchkeyd\``, 'timeout')), timeoutMs);
    sock.on('connect', () => sock.write(frame));
    sock.on('data', (chunk: Buffer) => {
      try {
        const got = frames.push(chunk);
        if (got.length > 0) finish(null, got[0]);
      } catch (e) {
        finish(new DaemonUnavailable(`latchkeyd sent a malformed frame on ${path}: ${(e as Error).message}`, 'protocol'));
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => finish(connectError(path, e)));
    // The daemon closes priv.sock at once for a peer that is not root (SO_PEERCRED check).
    sock.on('close', () => finish(new DaemonUnavailable(`latchkeyd closed the connection on ${path} without answering (is the caller root? see the daemon log for priv.denied)`, 'denied')));
  });
}

function connectError(path: string, e: NodeJS.ErrnoException): DaemonUnavailable {
  switch (e.code) {
    case 'ENOENT':
      return new DaemonUnavailable(`latchkeyd is not running: no socket at ${path} (start it: systemctl start latchkeyd; or pass --socket-dir)`, 'no_socket');
    case 'ECONNREFUSED':
      return new DaemonUnavailable(`latchkeyd is not running: ${path} refuses connections (stale socket; start it: systemctl start latchkeyd)`, 'refused');
    case 'EACCES':
    case 'EPERM':
      return new DaemonUnavailable(`${NOT_ROOT_MESSAGE} (${e.code} on ${path})`, 'not_root');
    default:
      return new DaemonUnavailable(`cannot reach latchkeyd on ${path}: ${e.message}`, 'refused');
  }
}
