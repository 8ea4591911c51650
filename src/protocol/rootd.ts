// The daemon's side of the latchkey-rootd frames (spec.json "rootd"; the C side is
// native/rootd/rootd_check.c): requests encoded, replies decoded, both fixed-size. The encoder
// refuses what the format cannot carry (RangeError): rootd would answer MALFORMED and close the
// connection, so a bad field is the caller's bug, found here with its name. What the policy
// allows (uid range, name rule, local accounts) is rootd's to decide, not this file's.
import { ProtocolError } from '../errors.js';
import {
  ROOTD_IO_TIMEOUT_MS, ROOTD_MSG_SIZE, ROOTD_NAME_SIZE, ROOTD_PROTO_VERSION, ROOTD_REPLY_SIZE, ROOTD_REQUEST_SIZE,
  RootdFlag, RootdOpcode, RootdOpcodeFields, RootdReplyOffset, RootdRequestOffset, RootdStatus,
} from './generated.js';

export { ROOTD_IO_TIMEOUT_MS, ROOTD_REPLY_SIZE, ROOTD_REQUEST_SIZE };

export type RootdOp = 'create_home' | 'end_session' | 'reload';

export interface RootdRequest {
  op: RootdOp;
  uid?: number;
  gid?: number;
  pid?: number;
  pidStart?: bigint;
  name?: string;
}

export interface RootdReply {
  status: 'ok' | 'malformed' | 'refused' | 'unsafe' | 'gone' | 'failed' | 'bad_peer';
  /** the status code on the wire */
  code: number;
  /** CREATE_HOME made the home (chroot layout: or its upload dir) now */
  created: boolean;
  /** CREATE_HOME set an existing home's group or mode back to the policy */
  repaired: boolean;
  /** rootd's text for the log: what was done, or why not */
  message: string;
}

const OPCODE: Record<RootdOp, keyof typeof RootdOpcode> = {
  create_home: 'CREATE_HOME', end_session: 'END_SESSION', reload: 'RELOAD',
};
const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;

function u32(field: string, v: number | undefined): number {
  if (v === undefined) return 0;
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) throw new RangeError(`rootd request: ${field} ${String(v)} is not a u32`);
  return v;
}

/** A frame that rootd decodes back to exactly these fields, or RangeError naming the bad one. */
export function encodeRootdRequest(r: RootdRequest): Buffer {
  const opName = Object.hasOwn(OPCODE, r.op) ? OPCODE[r.op] : undefined;
  if (opName === undefined) throw new RangeError(`rootd request: unknown op ${JSON.stringify(r.op)}`);
  const uses = RootdOpcodeFields[opName];
  const given: Record<string, unknown> = { uid: r.uid, gid: r.gid, pid: r.pid, pid_start: r.pidStart, name: r.name };
  for (const [field, v] of Object.entries(given)) {
    // One meaning per frame: a field the opcode does not use must be absent or 0 (rootd answers
    // MALFORMED otherwise).
    if (!uses.includes(field) && v !== undefined && v !== 0 && v !== 0n && v !== '') {
      throw new RangeError(`rootd request: ${r.op} does not take ${field}`);
    }
  }
  if (r.name !== undefined && typeof r.name !== 'string') throw new RangeError('rootd request: name is not a string');
  const name = Buffer.from(r.name ?? '', 'utf8');
  if (name.length > ROOTD_NAME_SIZE) throw new RangeError(`rootd request: name is ${name.length} bytes, at most ${ROOTD_NAME_SIZE}`);
  if (name.includes(0)) throw new RangeError('rootd request: name contains NUL');
  const start = r.pidStart ?? 0n;
  if (typeof start !== 'bigint' || start < 0n || start > U64_MAX) throw new RangeError(`rootd request: pidStart ${String(start)} is not a u64`);
  const b = Buffer.alloc(ROOTD_REQUEST_SIZE);
  const at = RootdRequestOffset;
  b.writeUInt16BE(ROOTD_PROTO_VERSION, at.version);
  b.writeUInt16BE(RootdOpcode[opName], at.opcode);
  b.writeUInt32BE(u32('uid', r.uid), at.uid);
  b.writeUInt32BE(u32('gid', r.gid), at.gid);
  b.writeUInt32BE(u32('pid', r.pid), at.pid);
  b.writeBigUInt64BE(start, at.pid_start);
  b.writeUInt8(name.length, at.name_len);
  name.copy(b, at.name);
  return b;
}

const STATUS_NAME = new Map<number, RootdReply['status']>(
  Object.entries(RootdStatus).map(([n, code]) => [code, n.toLowerCase() as RootdReply['status']]));
const KNOWN_FLAGS = Object.values(RootdFlag).reduce((a, f) => a | f, 0);

/** A reply frame as rootd writes it (rootd_encode), or ProtocolError saying what is wrong. */
export function decodeRootdReply(b: Buffer): RootdReply {
  if (b.length !== ROOTD_REPLY_SIZE) throw new ProtocolError(`rootd reply of ${b.length} bytes, expected ${ROOTD_REPLY_SIZE}`);
  const at = RootdReplyOffset;
  const version = b.readUInt16BE(at.version);
  if (version !== ROOTD_PROTO_VERSION) throw new ProtocolError(`rootd reply version ${version}, expected ${ROOTD_PROTO_VERSION}`);
  const code = b.readUInt16BE(at.status);
  const status = STATUS_NAME.get(code);
  if (status === undefined) throw new ProtocolError(`rootd reply status ${code} is not in the spec`);
  const flags = b.readUInt16BE(at.flags);
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new ProtocolError(`rootd reply flags 0x${flags.toString(16)} hold unknown bits`);
  const len = b.readUInt16BE(at.msg_len);
  if (len > ROOTD_MSG_SIZE) throw new ProtocolError(`rootd reply msg_len ${len} > ${ROOTD_MSG_SIZE}`);
  const msg = b.subarray(at.msg, at.msg + len);
  if (msg.includes(0)) throw new ProtocolError('rootd reply message contains NUL');
  if (b.subarray(at.msg + len).some((x) => x !== 0)) throw new ProtocolError(`rootd reply has bytes after its ${len}-byte message`);
  return {
    status, code,
    created: (flags & RootdFlag.CREATED) !== 0,
    repaired: (flags & RootdFlag.REPAIRED) !== 0,
    message: msg.toString('utf8'),
  };
}
