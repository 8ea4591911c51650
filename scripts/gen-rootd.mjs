// The latchkey-rootd part of scripts/gen-protocol.mjs: spec.json "rootd" (a fixed-size frame
// format, unlike the length-prefixed daemon protocol) becomes native/rootd/rootd_proto.h and the
// ROOTD_* constants of src/protocol/generated.ts, which src/protocol/rootd.ts encodes with.

const upper = (s) => s.toUpperCase();

/** Checks the layout: fields in order, contiguous, filling the frame exactly. */
function checkLayout(what, fields, size) {
  let at = 0;
  for (const f of fields) {
    if (f.offset !== at) throw new Error(`spec rootd.${what}: ${f.name} at offset ${f.offset}, expected ${at}`);
    if (!(f.size > 0)) throw new Error(`spec rootd.${what}: ${f.name} has no size`);
    at += f.size;
  }
  if (at !== size) throw new Error(`spec rootd.${what}: fields cover ${at} bytes, the frame is ${size}`);
}

function fieldOf(fields, name) {
  const f = fields.find((x) => x.name === name);
  if (!f) throw new Error(`spec rootd: no field ${name}`);
  return f;
}

/** The checked rootd section, with the derived NAME_SIZE and MSG_SIZE. */
export function rootdSpec(spec) {
  const r = spec.rootd;
  checkLayout('request', r.request, r.request_size);
  checkLayout('reply', r.reply, r.reply_size);
  for (const op of r.opcodes) {
    for (const used of Object.keys(op.uses)) {
      if (!r.request.some((f) => f.name === used)) throw new Error(`spec rootd: ${op.name} uses unknown field ${used}`);
    }
  }
  return { ...r, nameSize: fieldOf(r.request, 'name').size, msgSize: fieldOf(r.reply, 'msg').size };
}

/** `first` then `text` wrapped to 96 columns of comment text, continuation lines at `hang`. */
function hanging(first, text, hang) {
  const out = [];
  let line = first;
  for (const word of text.split(/\s+/)) {
    if (line.length + 1 + word.length > 94 && line.trim().length > 0 && line.length > hang.length) {
      out.push(line);
      line = hang + word;
    } else {
      line = line.endsWith(' ') || line === hang ? line + word : `${line} ${word}`;
    }
  }
  out.push(line);
  return out;
}

function table(fields) {
  return fields.flatMap((f) => hanging(`  ${String(f.offset).padStart(3)} ${String(f.size).padStart(4)}   ${f.name.padEnd(10)} `, f.doc, ' '.repeat(24)));
}

/** native/rootd/rootd_proto.h; cComment(text, indent) wraps a comment as latchkey_proto.h does. */
export function genRootdH(spec, banner, cComment) {
  const r = rootdSpec(spec);
  const o = [`/* ${banner} */`, '/*'];
  const doc = [...r.doc, '',
    `Request, ROOTD_REQ_SIZE = ${r.request_size} bytes:`, '  off size   field      meaning', ...table(r.request), '',
    'What each opcode puts in the request (name_len goes with name; every field not listed is 0):'];
  for (const op of r.opcodes) {
    doc.push(...hanging(`  ${op.name} (${op.code}): `, op.doc, '      '));
    const uses = Object.entries(op.uses);
    if (!uses.length) doc.push('    no fields');
    for (const [f, what] of uses) doc.push(...hanging(`    ${f.padEnd(10)} `, what, ' '.repeat(15)));
  }
  doc.push('', `Reply, ROOTD_REPLY_SIZE = ${r.reply_size} bytes:`, '  off size   field      meaning', ...table(r.reply));
  for (const line of doc) o.push(line ? ` * ${line}` : ' *');
  o.push(' */', '#ifndef LATCHKEY_ROOTD_PROTO_H', '#define LATCHKEY_ROOTD_PROTO_H', '');
  o.push(`#define ROOTD_PROTO_VERSION ${r.version}u`, `#define ROOTD_REQ_SIZE ${r.request_size}u`,
    `#define ROOTD_REPLY_SIZE ${r.reply_size}u`, `#define ROOTD_NAME_SIZE ${r.nameSize}u`, `#define ROOTD_MSG_SIZE ${r.msgSize}u`);
  o.push(...cComment(r.io_timeout_ms.doc), `#define ROOTD_IO_TIMEOUT_MS ${r.io_timeout_ms.value}u`, '');
  o.push('/* Request field offsets. */');
  for (const f of r.request) o.push(`#define ROOTD_REQ_${upper(f.name)} ${f.offset}u`);
  o.push('', '/* Reply field offsets. */');
  for (const f of r.reply) o.push(`#define ROOTD_REPLY_${upper(f.name)} ${f.offset}u`);
  o.push('', 'enum rootd_opcode {');
  for (const op of r.opcodes) o.push(...cComment(op.doc, '    '), `    ROOTD_OP_${op.name} = ${op.code},`);
  o.push('};', '', 'enum rootd_status {');
  for (const s of r.status) o.push(...cComment(s.doc, '    '), `    ROOTD_${s.name} = ${s.code},`);
  o.push('};', '', '/* Reply flags. */');
  for (const f of r.flags) o.push(...cComment(f.doc), `#define ROOTD_FLAG_${f.name} ${f.bit}u`);
  o.push('', '#endif /* LATCHKEY_ROOTD_PROTO_H */', '');
  return o.join('\n');
}

/** The ROOTD_* part of src/protocol/generated.ts. */
export function genRootdTs(spec) {
  const r = rootdSpec(spec);
  const o = ['', '// ---- latchkey-rootd (spec.json "rootd"; encoded by src/protocol/rootd.ts) ----', ''];
  o.push(`export const ROOTD_PROTO_VERSION = ${r.version};`, `export const ROOTD_REQUEST_SIZE = ${r.request_size};`,
    `export const ROOTD_REPLY_SIZE = ${r.reply_size};`, `export const ROOTD_NAME_SIZE = ${r.nameSize};`,
    `export const ROOTD_MSG_SIZE = ${r.msgSize};`, `/** ${r.io_timeout_ms.doc} */`,
    `export const ROOTD_IO_TIMEOUT_MS = ${r.io_timeout_ms.value};`);
  o.push('/** Request field offsets. */', 'export const RootdRequestOffset = {');
  for (const f of r.request) o.push(`  /** ${f.doc} (${f.size} byte${f.size > 1 ? 's' : ''}) */\n  ${f.name}: ${f.offset},`);
  o.push('} as const;', '/** Reply field offsets. */', 'export const RootdReplyOffset = {');
  for (const f of r.reply) o.push(`  /** ${f.doc} (${f.size} byte${f.size > 1 ? 's' : ''}) */\n  ${f.name}: ${f.offset},`);
  o.push('} as const;', 'export const RootdOpcode = {');
  for (const op of r.opcodes) o.push(`  /** ${op.doc} */\n  ${op.name}: ${op.code},`);
  o.push('} as const;', '/** The request fields each opcode uses; every other field must be 0. */',
    'export const RootdOpcodeFields: Record<keyof typeof RootdOpcode, ReadonlyArray<string>> = {');
  for (const op of r.opcodes) o.push(`  ${op.name}: ${JSON.stringify(Object.keys(op.uses)).replace(/"/g, "'").replace(/,/g, ', ')},`);
  o.push('};', 'export const RootdStatus = {');
  for (const s of r.status) o.push(`  /** ${s.doc} */\n  ${s.name}: ${s.code},`);
  o.push('} as const;', 'export const RootdFlag = {');
  for (const f of r.flags) o.push(`  /** ${f.doc} */\n  ${f.name}: ${f.bit},`);
  o.push('} as const;', '');
  return o.join('\n');
}
