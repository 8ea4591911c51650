// SSH public key checks. Keys from upstream end up verbatim in sshd's AuthorizedKeysCommand
// output, which sshd parses as authorized_keys lines (sshd(8) "AUTHORIZED_KEYS FILE FORMAT").
// A key with an embedded newline would inject a second line, and a leading option field
// (`command="…"`, `from=…`) would change what the key is allowed to do, so only the plain
// `TYPE BASE64 [comment]` form is accepted and the key is re-emitted in a normalised form.
import { SSH_KEY_TYPES } from '../protocol/generated.js';

/**
 * The key types latchkey serves: the one list of src/protocol/spec.json (ssh_key_types), which
 * latchkey-authorized-keys (C) checks too, so a key cached here is never dropped there as
 * malformed. ssh-dss is not in it (OpenSSH disabled it in 7.0): refused here like any other
 * unsupported type. PROTOCOL.certkeys types are left out on purpose.
 */
export const KNOWN_KEY_TYPES: ReadonlySet<string> = new Set(SSH_KEY_TYPES);

/** Far above a 16384-bit RSA key (~2.8 KB base64); anything larger is not a real key. */
export const MAX_KEY_LENGTH = 16 * 1024;

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
// Control characters anywhere (including tab inside the comment) would be rendered by sshd's
// line parser in ways that differ from ours; refuse rather than guess.
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;

export type KeyCheck = { ok: true; key: string } | { ok: false; reason: string };

/**
 * Check one public key line. Returns the normalised line (`type base64[ comment]`, single
 * spaces) or the reason it was refused. Never throws.
 */
export function checkSshPublicKey(line: unknown): KeyCheck {
  if (typeof line !== 'string') return { ok: false, reason: `not a string (${typeof line})` };
  if (line.length > MAX_KEY_LENGTH) return { ok: false, reason: `longer than ${MAX_KEY_LENGTH} characters` };
  if (CONTROL.test(line)) return { ok: false, reason: 'contains a newline, NUL or other control character' };

  const fields = line.trim().split(/[ \t]+/);
  const [type, blob] = fields;
  if (type === undefined || blob === undefined || type === '') {
    return { ok: false, reason: 'expected "TYPE BASE64 [comment]"' };
  }
  if (!KNOWN_KEY_TYPES.has(type)) {
    // This is also what refuses option prefixes such as `command="…" ssh-ed25519 …`.
    return { ok: false, reason: `unsupported key type "${type.slice(0, 40)}"` };
  }
  if (blob.length % 4 !== 0 || !BASE64.test(blob)) {
    return { ok: false, reason: 'key data is not valid base64' };
  }
  const inner = blobKeyType(Buffer.from(blob, 'base64'));
  if (inner !== type) {
    return { ok: false, reason: `key data names type "${(inner ?? '?').slice(0, 40)}", not "${type}"` };
  }
  const comment = fields.slice(2).join(' ');
  return { ok: true, key: comment ? `${type} ${blob} ${comment}` : `${type} ${blob}` };
}

/** The wire-format blob starts with an RFC 4251 `string`: uint32 length, then the type name. */
function blobKeyType(buf: Buffer): string | null {
  if (buf.length < 4) return null;
  const len = buf.readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > buf.length) return null;
  return buf.subarray(4, 4 + len).toString('latin1');
}
