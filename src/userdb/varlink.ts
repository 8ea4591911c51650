// Varlink framing and the call envelope (https://varlink.org, as systemd speaks it): each message
// is one JSON object followed by a NUL byte on a Unix stream socket. Pure: no sockets here, so
// the property test (test/unit/userdb-varlink.test.ts) drives the reader with any bytes.
// Everything a client sends is untrusted: a local user writes to userdb.sock (mode 0666).

/**
 * Largest message accepted, NUL excluded. A userdb call is a method name and two or three short
 * parameters (well under 1 KiB); 64 KiB leaves room for any sane client and bounds what one
 * connection can make the daemon buffer and parse.
 */
export const MAX_MESSAGE_BYTES = 64 * 1024;

export class VarlinkFramingError extends Error {}

/**
 * Splits a byte stream into messages at NUL. A message longer than `max` (with or without its
 * NUL yet) is a framing error: the connection must close, since nothing after it can be trusted
 * to start a message.
 */
export class VarlinkReader {
  private parts: Buffer[] = [];
  private partBytes = 0;
  constructor(private readonly max = MAX_MESSAGE_BYTES) {}

  /** bytes of an unfinished message held */
  get buffered(): number { return this.partBytes; }

  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let from = 0;
    for (;;) {
      const nul = chunk.indexOf(0, from);
      const end = nul < 0 ? chunk.length : nul;
      if (this.partBytes + (end - from) > this.max) {
        throw new VarlinkFramingError(`message longer than ${this.max} bytes`);
      }
      if (nul < 0) {
        if (end > from) { this.parts.push(chunk.subarray(from, end)); this.partBytes += end - from; }
        return out;
      }
      this.parts.push(chunk.subarray(from, end));
      out.push(this.parts.length === 1 ? Buffer.from(this.parts[0]!) : Buffer.concat(this.parts));
      this.parts = [];
      this.partBytes = 0;
      from = nul + 1;
    }
  }
}

/** One method call, its envelope checked (the parameters are the method's to check). */
export interface VarlinkCall {
  method: string;
  parameters: Record<string, unknown>;
  /** the client takes several replies (`continues: true` on all but the last) */
  more: boolean;
  /** the client wants no reply at all */
  oneway: boolean;
}

/** Interface-qualified method name, as the varlink grammar allows it (reverse domain + Name). */
const METHOD_RE = /^[A-Za-z](?:-*[A-Za-z0-9])*(?:\.[A-Za-z0-9](?:-*[A-Za-z0-9])*)+\.[A-Z][A-Za-z0-9]*$/;

/**
 * The call in one message, or why it is not one. A message that is not a call (bad UTF-8, not
 * JSON, not an object, no method) ends the connection, as systemd's own services do: there is
 * no reply a confused client could match to it.
 */
export function parseCall(msg: Buffer): { ok: true; call: VarlinkCall } | { ok: false; problem: string } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(msg);
  } catch {
    return { ok: false, problem: 'message is not UTF-8' };
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'message is not JSON' };
  }
  if (!isObject(v)) return { ok: false, problem: 'message is not a JSON object' };
  const { method, parameters, more, oneway, upgrade } = v;
  if (typeof method !== 'string' || !METHOD_RE.test(method)) return { ok: false, problem: 'no valid "method"' };
  if (parameters !== undefined && parameters !== null && !isObject(parameters)) return { ok: false, problem: '"parameters" is not an object' };
  for (const [k, f] of [['more', more], ['oneway', oneway], ['upgrade', upgrade]] as const) {
    if (f !== undefined && f !== null && typeof f !== 'boolean') return { ok: false, problem: `"${k}" is not a boolean` };
  }
  // An upgraded connection stops speaking varlink: nothing here offers that.
  if (upgrade === true) return { ok: false, problem: 'protocol upgrade is not offered' };
  if (more === true && oneway === true) return { ok: false, problem: '"more" and "oneway" together' };
  return { ok: true, call: { method, parameters: (parameters ?? {}) as Record<string, unknown>, more: more === true, oneway: oneway === true } };
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A reply message (with its NUL). `continues`: more replies to this call follow. */
export function encodeReply(parameters: Record<string, unknown>, continues = false): Buffer {
  const body = continues ? { parameters, continues: true } : { parameters };
  return Buffer.from(JSON.stringify(body) + '\0', 'utf8');
}

/** An error reply (with its NUL): a qualified error name and its parameters. */
export function encodeError(error: string, parameters: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ error, parameters }) + '\0', 'utf8');
}
