// The shared-memory map part of scripts/gen-protocol.mjs: spec.json "map" (the layout of
// <socket_dir>/nss.map) becomes native/common/lk_map_layout.h (the writer in the addon and the
// reader in the NSS module both include it) and the MAP_* constants of src/protocol/generated.ts.

const SIZES = { u8: 1, u16: 2, u32: 4, u64: 8 };
const CTYPES = { u8: 'uint8_t', u16: 'uint16_t', u32: 'uint32_t', u64: 'uint64_t' };

/** [name, type, offset, size, count] for each field; checks natural alignment and the total size. */
function layout(what, fields, size) {
  let at = 0;
  const out = [];
  for (const [name, type] of fields) {
    const m = /^(u8|u16|u32|u64)(?:\[(\d+)\])?$/.exec(type);
    if (!m) throw new Error(`spec map.${what}: ${name} has unknown type ${type}`);
    const unit = SIZES[m[1]];
    const count = m[2] ? Number(m[2]) : 1;
    if (at % unit !== 0) throw new Error(`spec map.${what}: ${name} at offset ${at} is not ${unit}-aligned`);
    out.push({ name, ctype: CTYPES[m[1]], offset: at, count: m[2] ? count : 0 });
    at += unit * count;
  }
  if (size !== undefined && at !== size) throw new Error(`spec map.${what}: fields cover ${at} bytes, expected ${size}`);
  return out;
}

const num = (v) => Number(BigInt(v.replace(/u$/, '')));

function struct(name, fields, cComment, docs) {
  const o = [`struct ${name} {`];
  fields.forEach((f, i) => {
    if (docs[i]) o.push(...cComment(docs[i], '    '));
    o.push(`    ${f.ctype} ${f.name}${f.count ? `[${f.count}]` : ''};`);
  });
  o.push('};');
  for (const f of fields) o.push(`_Static_assert(offsetof(struct ${name}, ${f.name}) == ${f.offset}, "spec map");`);
  return o;
}

export function genMapH(spec, banner, cComment) {
  const m = spec.map;
  const c = m.constants;
  const header = layout('header', m.header, num(c.HEADER_SIZE.value));
  const record = layout('record', m.record, num(c.REC_HEADER.value));
  const o = [`/* ${banner} */`, '/*'];
  for (const line of m.doc) o.push(line ? ` * ${line}` : ' *');
  o.push(' */', '#ifndef LK_MAP_LAYOUT_H', '#define LK_MAP_LAYOUT_H', '');
  o.push('#include <stddef.h>', '#include <stdint.h>', '');
  o.push(`#define LK_MAP_FILE "${m.file}"`);
  for (const [k, v] of Object.entries(c)) o.push(...cComment(v.doc), `#define LK_MAP_${k} ${v.value}`);
  o.push('');
  o.push(...struct('lk_map_header', header, cComment, m.header.map((f) => f[2])));
  o.push(`_Static_assert(sizeof(struct lk_map_header) == ${num(c.HEADER_SIZE.value)}, "spec map layout");`, '');
  o.push(...struct('lk_map_record', record, cComment, m.record.map((f) => f[2])));
  o.push(`_Static_assert(sizeof(struct lk_map_record) == ${num(c.REC_HEADER.value)}, "spec map layout");`, '');
  o.push('#endif /* LK_MAP_LAYOUT_H */', '');
  return o.join('\n');
}

export function genMapTs(spec) {
  const m = spec.map;
  const c = m.constants;
  const header = layout('header', m.header, num(c.HEADER_SIZE.value));
  const record = layout('record', m.record, num(c.REC_HEADER.value));
  const o = ['', '', '// ---- the shared-memory map (spec.json "map") ----', `export const MAP_FILE = '${m.file}';`];
  for (const [k, v] of Object.entries(c)) {
    const val = v.value.replace(/u$/, '');
    o.push(`/** ${v.doc} */`, `export const MAP_${k} = ${/^0x[0-9a-f]{9,}$/i.test(val) ? `${val}n` : val};`);
  }
  o.push('/** Byte offsets of the header fields. */', 'export const MAP_HEADER = {');
  for (const f of header) o.push(`  ${f.name}: ${f.offset},`);
  o.push('} as const;', '/** Byte offsets of the record fields. */', 'export const MAP_RECORD = {');
  for (const f of record) o.push(`  ${f.name}: ${f.offset},`);
  o.push('} as const;', '');
  return o.join('\n');
}
