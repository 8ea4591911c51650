// Encodes and decodes frames by walking the field lists generated from spec.json, so the codec
// has no per-message code that could disagree with the C side.
import { ProtocolError } from '../errors.js';
import {
  Messages, Types, PROTO_VERSION, MAX_REQUEST, MAX_REPLY, Status,
  type FieldList, type MessageSpec,
} from './generated.js';

export type Value = number | bigint | string | Buffer | Value[] | { [k: string]: Value };
export type Fields = Record<string, Value>;

const byOpcode = new Map<number, MessageSpec>(Messages.map((m) => [m.opcode, m]));
const byName = new Map<string, MessageSpec>(Messages.map((m) => [m.name, m]));
export function messageByOpcode(op: number): MessageSpec | undefined { return byOpcode.get(op); }
export function messageByName(name: string): MessageSpec {
  const m = byName.get(name);
  if (!m) throw new Error(`unknown message ${name}`);
  return m;
}

/** Growable big-endian writer. */
class Writer {
  private buf = Buffer.allocUnsafe(256);
  len = 0;
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const nb = Buffer.allocUnsafe(size);
    this.buf.copy(nb, 0, 0, this.len);
    this.buf = nb;
  }
  u8(v: number): void { this.ensure(1); this.buf.writeUInt8(v, this.len); this.len += 1; }
  u16(v: number): void { this.ensure(2); this.buf.writeUInt16BE(v, this.len); this.len += 2; }
  u32(v: number): void { this.ensure(4); this.buf.writeUInt32BE(v, this.len); this.len += 4; }
  u64(v: bigint): void { this.ensure(8); this.buf.writeBigUInt64BE(v, this.len); this.len += 8; }
  bytes(b: Buffer): void { this.ensure(b.length); b.copy(this.buf, this.len); this.len += b.length; }
  setU32(at: number, v: number): void { this.buf.writeUInt32BE(v, at); }
  result(): Buffer { return this.buf.subarray(0, this.len); }
}

function writeStr(w: Writer, s: string, field: string): void {
  const b = Buffer.from(s, 'utf8');
  if (b.length > 0xffff) throw new ProtocolError(`${field}: string of ${b.length} bytes exceeds 65535`);
  if (b.includes(0)) throw new ProtocolError(`${field}: string contains NUL`);
  w.u16(b.length);
  w.bytes(b);
}

function writeField(w: Writer, type: string, v: Value | undefined, field: string): void {
  if (v === undefined) throw new ProtocolError(`${field}: missing`);
  switch (type) {
    case 'u8': w.u8(v as number); return;
    case 'u16': w.u16(v as number); return;
    case 'u32': w.u32(v as number); return;
    case 'u64': w.u64(typeof v === 'bigint' ? v : BigInt(v as number)); return;
    case 'str': writeStr(w, v as string, field); return;
    case 'blob': {
      const b = Buffer.isBuffer(v) ? v : Buffer.from(v as string, 'utf8');
      w.u32(b.length); w.bytes(b); return;
    }
    case 'strlist': {
      const list = v as string[];
      if (list.length > 0xffff) throw new ProtocolError(`${field}: list too long`);
      w.u16(list.length);
      for (const s of list) writeStr(w, s, field);
      return;
    }
    default: {
      if (type.endsWith('[]')) {
        const rec = Types[type.slice(0, -2)];
        if (!rec) throw new Error(`spec: unknown type ${type}`);
        const list = v as Fields[];
        if (list.length > 0xffff) throw new ProtocolError(`${field}: list too long`);
        w.u16(list.length);
        for (const item of list) writeFields(w, rec, item);
        return;
      }
      const rec = Types[type];
      if (!rec) throw new Error(`spec: unknown type ${type}`);
      writeFields(w, rec, v as Fields);
    }
  }
}

function writeFields(w: Writer, fields: FieldList, values: Fields): void {
  for (const [name, type] of fields) writeField(w, type, values[name], name);
}

/** Bounds-checked big-endian reader; every overrun is a ProtocolError, never a crash. */
class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) throw new ProtocolError(`truncated ${what}: need ${n} bytes at offset ${this.pos}, have ${this.buf.length - this.pos}`);
  }
  u8(w: string): number { this.need(1, w); return this.buf.readUInt8(this.pos++); }
  u16(w: string): number { this.need(2, w); const v = this.buf.readUInt16BE(this.pos); this.pos += 2; return v; }
  u32(w: string): number { this.need(4, w); const v = this.buf.readUInt32BE(this.pos); this.pos += 4; return v; }
  u64(w: string): bigint { this.need(8, w); const v = this.buf.readBigUInt64BE(this.pos); this.pos += 8; return v; }
  bytes(n: number, w: string): Buffer { this.need(n, w); const b = this.buf.subarray(this.pos, this.pos + n); this.pos += n; return b; }
  str(w: string): string {
    const b = this.bytes(this.u16(w), w);
    if (b.includes(0)) throw new ProtocolError(`${w}: string contains NUL`);
    const s = b.toString('utf8');
    if (s.includes('\ufffd') && !Buffer.from(s, 'utf8').equals(b)) throw new ProtocolError(`${w}: invalid UTF-8`);
    return s;
  }
  end(): void {
    if (this.pos !== this.buf.length) throw new ProtocolError(`${this.buf.length - this.pos} trailing bytes after the last field`);
  }
}

function readField(r: Reader, type: string, field: string): Value {
  switch (type) {
    case 'u8': return r.u8(field);
    case 'u16': return r.u16(field);
    case 'u32': return r.u32(field);
    case 'u64': return r.u64(field);
    case 'str': return r.str(field);
    case 'blob': return Buffer.from(r.bytes(r.u32(field), field));
    case 'strlist': {
      const n = r.u16(field);
      const out: string[] = [];
      for (let i = 0; i < n; i++) out.push(r.str(field));
      return out;
    }
    default: {
      if (type.endsWith('[]')) {
        const rec = Types[type.slice(0, -2)];
        if (!rec) throw new Error(`spec: unknown type ${type}`);
        const n = r.u16(field);
        const out: Fields[] = [];
        for (let i = 0; i < n; i++) out.push(readFields(r, rec));
        return out;
      }
      const rec = Types[type];
      if (!rec) throw new Error(`spec: unknown type ${type}`);
      return readFields(r, rec);
    }
  }
}

function readFields(r: Reader, fields: FieldList): Fields {
  const out: Fields = {};
  for (const [name, type] of fields) out[name] = readField(r, type, name);
  return out;
}

export interface Request { version: number; opcode: number; payload: Buffer }
export interface Reply { version: number; opcode: number; status: number; payload: Buffer }

export function encodeRequest(name: string, fields: Fields, version = PROTO_VERSION): Buffer {
  const m = messageByName(name);
  const w = new Writer();
  w.u32(0); w.u16(version); w.u16(m.opcode);
  writeFields(w, m.request, fields);
  w.setU32(0, w.len - 4);
  if (w.len - 4 > MAX_REQUEST) throw new ProtocolError(`request of ${w.len - 4} bytes exceeds MAX_REQUEST ${MAX_REQUEST}`);
  return w.result();
}

export function encodeReply(opcode: number, status: number, fields: Fields | null, detail = ''): Buffer {
  const w = new Writer();
  w.u32(0); w.u16(PROTO_VERSION); w.u16(opcode); w.u16(status);
  if (status === Status.OK) {
    const m = byOpcode.get(opcode);
    if (!m) throw new Error(`encodeReply: unknown opcode ${opcode}`);
    writeFields(w, m.reply, fields ?? {});
  } else {
    writeStr(w, detail, 'detail');
  }
  w.setU32(0, w.len - 4);
  if (w.len - 4 > MAX_REPLY) throw new ProtocolError(`reply of ${w.len - 4} bytes exceeds MAX_REPLY`);
  return w.result();
}

/** Decodes a request payload for a known message; throws ProtocolError on any malformation. */
export function decodeRequestPayload(m: MessageSpec, payload: Buffer): Fields {
  const r = new Reader(payload);
  const f = readFields(r, m.request);
  r.end();
  return f;
}

/** Decodes a reply body (the bytes after the length field). */
export function decodeReply(body: Buffer): { version: number; opcode: number; status: number; fields: Fields | null; detail: string } {
  const r = new Reader(body);
  const version = r.u16('version');
  const opcode = r.u16('opcode');
  const status = r.u16('status');
  if (status !== Status.OK) {
    const detail = r.str('detail');
    r.end();
    return { version, opcode, status, fields: null, detail };
  }
  const m = byOpcode.get(opcode);
  if (!m) throw new ProtocolError(`reply for unknown opcode ${opcode}`);
  const fields = readFields(r, m.reply);
  r.end();
  return { version, opcode, status, fields, detail: '' };
}

/** Splits a request body (after the length field) into header and payload. */
export function splitRequest(body: Buffer): Request {
  if (body.length < 4) throw new ProtocolError(`request of ${body.length} bytes is shorter than its header`);
  return { version: body.readUInt16BE(0), opcode: body.readUInt16BE(2), payload: body.subarray(4) };
}

/**
 * Accumulates stream chunks and yields complete frame bodies. Rejects a length above `max`
 * as soon as the 4-byte prefix arrives, before buffering the rest.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private have = 0;
  constructor(private readonly max: number) {}
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.have += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.have < 4) break;
      const head = this.peek(4);
      const len = head.readUInt32BE(0);
      if (len > this.max) throw new ProtocolError(`frame of ${len} bytes exceeds the maximum ${this.max}`);
      if (this.have < 4 + len) break;
      const all = this.take(4 + len);
      out.push(all.subarray(4));
    }
    return out;
  }
  get buffered(): number { return this.have; }
  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!;
    const b = Buffer.concat(this.chunks);
    this.chunks = [b];
    return b;
  }
  private take(n: number): Buffer {
    const b = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const rest = b.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.have -= n;
    return b.subarray(0, n);
  }
}
