// Routes one decoded request to its handler and turns every outcome, including a thrown error,
// into a reply frame. Pure with respect to sockets: connection.ts does the I/O.
import { decodeRequestPayload, encodeReply, messageByOpcode, splitRequest, type Fields } from '../protocol/codec.js';
import { PROTO_VERSION, Status, StatusName, type OpName } from '../protocol/generated.js';
import { ProtocolError } from '../errors.js';
import { log, logEnabled, logLimited } from '../log.js';

/** `frame`: a complete reply frame the handler already encoded (a cached hot-path answer). */
export interface HandlerResult { status: number; fields?: Fields; detail?: string; frame?: Buffer }
/** `userdb`: userdb.sock (src/userdb), which speaks varlink and answers what nss.sock does */
export interface Peer { socket: 'nss' | 'priv' | 'userdb'; uid: number; pid: number }
export type Handler = (fields: Fields, peer: Peer) => HandlerResult | Promise<HandlerResult>;
export type HandlerTable = Partial<Record<OpName, Handler>>;

export const ok = (fields: Fields = {}): HandlerResult => ({ status: Status.OK, fields });
export const fail = (status: number, detail = ''): HandlerResult => ({ status, detail });

/**
 * Answers one request body (the bytes after the length prefix). Never throws: a request that
 * cannot be served gets an error status and the connection stays usable.
 */
export async function dispatch(body: Buffer, peer: Peer, handlers: HandlerTable): Promise<Buffer> {
  const started = process.hrtime.bigint();
  let opcode = 0;
  let result: HandlerResult;
  let opName = '?';
  try {
    let req: ReturnType<typeof splitRequest>;
    try {
      req = splitRequest(body);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      // Any local user can send these: an answer and a rate-limited line, never an error per frame.
      logLimited(`request.malformed:${peer.socket}:${peer.uid}`, 'info', 'request.malformed', { sock: peer.socket, peer_uid: peer.uid, peer_pid: peer.pid, error: e.message });
      return encodeReply(0, Status.BAD_REQUEST, null, e.message);
    }
    opcode = req.opcode;
    const m = messageByOpcode(req.opcode);
    if (req.version !== PROTO_VERSION) {
      result = fail(Status.BAD_VERSION, `protocol version ${req.version} not supported; this daemon speaks ${PROTO_VERSION}`);
    } else if (!m) {
      result = fail(Status.UNKNOWN_OPCODE, `opcode ${req.opcode} unknown`);
    } else {
      opName = m.name;
      const handler = handlers[m.name];
      if (m.socket === 'priv' && peer.socket !== 'priv') {
        result = fail(Status.DENIED, `${m.name} is only served on priv.sock`);
      } else if (!handler) {
        result = fail(Status.UNKNOWN_OPCODE, `${m.name} not served here`);
      } else {
        let fields: Fields | null = null;
        try {
          fields = decodeRequestPayload(m, req.payload);
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
          result = fail(Status.BAD_REQUEST, e.message);
        }
        result ??= await handler(fields!, peer);
      }
    }
  } catch (e) {
    log('error', 'request.error', { op: opName, error: e instanceof Error ? e.message : String(e) });
    result = fail(Status.INTERNAL, 'internal error; see the latchkeyd log');
  }
  let reply: Buffer;
  try {
    reply = result.frame ?? encodeReply(opcode, result.status, result.fields ?? null, result.detail ?? '');
  } catch (e) {
    log('error', 'reply.encode_failed', { op: opName, error: e instanceof Error ? e.message : String(e) });
    reply = encodeReply(opcode, Status.INTERNAL, null, 'reply could not be encoded');
  }
  if (logEnabled('debug')) {
    log('debug', 'request', {
      sock: peer.socket, op: opName, status: StatusName[result.status] ?? result.status,
      us: Number((process.hrtime.bigint() - started) / 1000n),
    });
  }
  return reply;
}
