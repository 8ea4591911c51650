// What the latchkeyd systemd unit lets the daemon write (systemd.exec(5) sandboxing), so a
// db_path or homes base outside it is reported before the first EROFS: ProtectSystem= makes
// parts of the tree read-only ("strict": all of it but /dev, /proc, /sys), ProtectHome= hides or
// freezes /home, /root and /run/user, and ReadWritePaths=, ReadOnlyPaths=, InaccessiblePaths=,
// RuntimeDirectory= (/run/X), StateDirectory= (/var/lib/X), CacheDirectory= (/var/cache/X),
// LogsDirectory= (/var/log/X) and PrivateTmp= carve exceptions; the most specific path wins.
// Pure: the caller reads the unit and its drop-ins.

export interface UnitText { path: string; text: string }

export interface UnitSandbox {
  /** files read, unit first, then drop-ins */
  files: string[];
  protectSystem: 'no' | 'yes' | 'full' | 'strict';
  protectHome: 'no' | 'yes' | 'read-only' | 'tmpfs';
  readWrite: string[];
  readOnly: string[];
  inaccessible: string[];
}

const LISTS: Record<string, { field: 'readWrite' | 'readOnly' | 'inaccessible'; prefix: string }> = {
  readwritepaths: { field: 'readWrite', prefix: '' },
  readonlypaths: { field: 'readOnly', prefix: '' },
  inaccessiblepaths: { field: 'inaccessible', prefix: '' },
  runtimedirectory: { field: 'readWrite', prefix: '/run/' },
  statedirectory: { field: 'readWrite', prefix: '/var/lib/' },
  cachedirectory: { field: 'readWrite', prefix: '/var/cache/' },
  logsdirectory: { field: 'readWrite', prefix: '/var/log/' },
};

function boolish(v: string): boolean | null {
  const s = v.toLowerCase();
  if (['1', 'yes', 'true', 'on'].includes(s)) return true;
  if (['0', 'no', 'false', 'off'].includes(s)) return false;
  return null;
}

/** Reads the [Service] sandbox settings of a unit and its drop-ins, in order. */
export function parseUnitSandbox(texts: UnitText[]): UnitSandbox {
  const sb: UnitSandbox = { files: [], protectSystem: 'no', protectHome: 'no', readWrite: [], readOnly: [], inaccessible: [] };
  let privateTmp = false;
  for (const { path, text } of texts) {
    sb.files.push(path);
    let section = '';
    // A trailing backslash continues the line (systemd.syntax(7)).
    for (const raw of text.replace(/\\\n/g, ' ').split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
      const sec = /^\[(.+)\]$/.exec(line);
      if (sec) { section = sec[1]!; continue; }
      if (section !== 'Service') continue;
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      const key = line.slice(0, eq).trim().toLowerCase();
      const value = line.slice(eq + 1).trim();
      const list = LISTS[key];
      if (list) {
        // An empty assignment resets the list (systemd.exec(5)); a drop-in may do that.
        if (value === '') { if (list.prefix === '') sb[list.field] = []; continue; }
        for (let p of value.split(/\s+/)) {
          p = p.replace(/^[-+]+/, ''); // "-" = ignore if missing, "+" = outside RootDirectory
          if (p === '') continue;
          const full = list.prefix ? list.prefix + p.replace(/:.*$/, '') : p;
          sb[list.field].push(full);
        }
      } else if (key === 'protectsystem') {
        const b = boolish(value);
        sb.protectSystem = b === true ? 'yes' : b === false ? 'no' : (['full', 'strict'].includes(value) ? value as 'full' | 'strict' : sb.protectSystem);
      } else if (key === 'protecthome') {
        const b = boolish(value);
        sb.protectHome = b === true ? 'yes' : b === false ? 'no' : (['read-only', 'tmpfs'].includes(value) ? value as 'read-only' | 'tmpfs' : sb.protectHome);
      } else if (key === 'privatetmp') {
        privateTmp = boolish(value) ?? privateTmp;
      }
    }
  }
  if (privateTmp) sb.readWrite.push('/tmp', '/var/tmp');
  return sb;
}

function normalize(p: string): string {
  const parts: string[] = [];
  for (const c of p.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') parts.pop(); else parts.push(c);
  }
  return '/' + parts.join('/');
}

function under(path: string, dir: string): boolean {
  const d = normalize(dir);
  return d === '/' || path === d || path.startsWith(d + '/');
}

export type Access = 'writable' | 'read-only' | 'inaccessible';

/** How the unit's sandbox lets the daemon see `path`, and the rule that decided it. */
export function pathAccess(sb: UnitSandbox, path: string): { access: Access; rule: string } {
  const p = normalize(path);
  const rules: Array<{ dir: string; access: Access; rule: string }> = [];
  if (sb.protectSystem === 'strict') {
    rules.push({ dir: '/', access: 'read-only', rule: 'ProtectSystem=strict' });
    for (const d of ['/dev', '/proc', '/sys']) rules.push({ dir: d, access: 'writable', rule: 'ProtectSystem=strict leaves API file systems' });
  } else if (sb.protectSystem !== 'no') {
    for (const d of ['/usr', '/boot', '/efi']) rules.push({ dir: d, access: 'read-only', rule: `ProtectSystem=${sb.protectSystem}` });
    if (sb.protectSystem === 'full') rules.push({ dir: '/etc', access: 'read-only', rule: 'ProtectSystem=full' });
  }
  for (const d of sb.readWrite) rules.push({ dir: d, access: 'writable', rule: `${d} is writable (ReadWritePaths/RuntimeDirectory/StateDirectory...)` });
  for (const d of sb.readOnly) rules.push({ dir: d, access: 'read-only', rule: `ReadOnlyPaths=${d}` });
  // Hidden trees stay hidden whatever is listed beneath them: rules below are checked first.
  const hidden: Array<{ dir: string; rule: string }> = sb.inaccessible.map((d) => ({ dir: d, rule: `InaccessiblePaths=${d}` }));
  if (sb.protectHome === 'yes') for (const d of ['/home', '/root', '/run/user']) hidden.push({ dir: d, rule: 'ProtectHome=yes' });
  if (sb.protectHome === 'read-only' || sb.protectHome === 'tmpfs') {
    for (const d of ['/home', '/root', '/run/user']) rules.push({ dir: d, access: 'read-only', rule: `ProtectHome=${sb.protectHome}` });
  }
  const h = hidden.find((x) => under(p, x.dir));
  if (h) return { access: 'inaccessible', rule: h.rule };
  let best: { dir: string; access: Access; rule: string } | null = null;
  for (const r of rules) {
    if (!under(p, r.dir)) continue;
    // The deeper path wins; at equal depth a read-only rule wins (fail closed).
    if (!best || normalize(r.dir).length > normalize(best.dir).length
      || (normalize(r.dir).length === normalize(best.dir).length && r.access !== 'writable')) best = r;
  }
  return best ? { access: best.access, rule: best.rule } : { access: 'writable', rule: 'not restricted by the unit' };
}
