// The host's own accounts: latchkey never answers for, authenticates, or prints keys for a name or
// uid that /etc/passwd has, nor serves a group that /etc/group has (DESIGN.md, security rules).
// sshd takes the identity from NSS with `files` first and the key or password from latchkey, so an
// upstream record named `root` (or any local name) would otherwise log its owner in as the local
// account. Prior art: nslcd `nss_initgroups_ignoreusers ALLLOCAL`, SSSD `filter_users`.
//
// The files are re-read when they change (inode, size or mtime), checked at most every
// RECHECK_MS, so `useradd` on the host takes effect within that time without a reload.
import { statSync, readFileSync, type Stats } from 'node:fs';
import { log } from '../log.js';

/** How often the files are stat()ed at most; a lookup never waits longer than one stat. */
export const RECHECK_MS = 500;

/** names, and each id with the first name holding it (for log lines naming both sides) */
export interface LocalIds { names: Set<string>; ids: Map<number, string>; members: Set<string> }

/**
 * Names and ids of a passwd(5) or group(5) file: field 1 and field 3. Comment lines, blank lines
 * and NIS compat entries (`+`, `-`, `+name`) carry no local account of their own and are skipped;
 * a line we cannot read is skipped too (glibc's files module skips it the same way).
 */
export function parseIdFile(text: string): LocalIds {
  const names = new Set<string>();
  const ids = new Map<number, string>();
  // group(5) field 4: member names. A name listed there belongs to the host whether or not
  // passwd has it (a leftover of a removed account, or provisioning that adds the name to
  // `sudo` before creating the user): an upstream user of that name would get the group.
  const members = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const f = line.split(':');
    if (f.length < 3 || f[0] === '') continue;
    names.add(f[0]!);
    if (/^\d+$/.test(f[2]!) && !ids.has(Number(f[2]))) ids.set(Number(f[2]), f[0]!);
    if (f.length >= 4) for (const m of f[3]!.split(',')) if (m.trim() !== '') members.add(m.trim());
  }
  return { names, ids, members };
}

/** One watched file; an unreadable file counts as empty and is reported once per failure kind. */
class WatchedIdFile {
  private ids: LocalIds = { names: new Set(), ids: new Map(), members: new Set() };
  private sig = '';
  private checkedAt = -Infinity;
  private lastError = '';

  constructor(readonly path: string, private readonly now: () => number) {}

  current(): LocalIds {
    const t = this.now();
    if (t - this.checkedAt < RECHECK_MS) return this.ids;
    this.checkedAt = t;
    let st: Stats;
    try {
      st = statSync(this.path);
    } catch (e) {
      this.fail(e);
      return this.ids;
    }
    const sig = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    if (sig === this.sig) return this.ids;
    try {
      this.ids = parseIdFile(readFileSync(this.path, 'utf8'));
      this.sig = sig;
      this.lastError = '';
      log('debug', 'local.accounts_loaded', { file: this.path, names: this.ids.names.size, ids: this.ids.ids.size });
    } catch (e) {
      this.fail(e);
    }
    return this.ids;
  }

  /** Changes whenever what current() returns was read anew. */
  signature(): string { this.current(); return `${this.path}:${this.sig}`; }

  /** Keeps what was read before: a file briefly missing during `vipw` must not let names through. */
  private fail(e: unknown): void {
    const msg = e instanceof Error ? e.message : String(e);
    if (msg !== this.lastError) log('error', 'local.accounts_unreadable', { file: this.path, error: msg, fix: 'latchkeyd must be able to read the host account files to keep them apart' });
    this.lastError = msg;
  }
}

export type LocalReason = 'local account' | 'local group' | 'local group member' | 'deny list';

export class LocalAccounts {
  private passwd: WatchedIdFile;
  private group: WatchedIdFile;

  constructor(
    private readonly files: () => { passwd: string; group: string; denyNames: readonly string[] },
    private readonly now: () => number = Date.now,
  ) {
    const f = files();
    this.passwd = new WatchedIdFile(f.passwd, now);
    this.group = new WatchedIdFile(f.group, now);
  }

  private fileFor(which: 'passwd' | 'group'): WatchedIdFile {
    // The paths are config; a reload that changes them gets a fresh watcher.
    const path = this.files()[which];
    const w = which === 'passwd' ? this.passwd : this.group;
    if (w.path === path) return w;
    const fresh = new WatchedIdFile(path, this.now);
    if (which === 'passwd') this.passwd = fresh;
    else this.group = fresh;
    return fresh;
  }

  /** Why latchkey must not serve this user name, or null. */
  nameReason(name: string): LocalReason | null {
    if (this.files().denyNames.includes(name)) return 'deny list';
    if (this.fileFor('passwd').current().names.has(name)) return 'local account';
    // A user named like a local group (`sudo`, `adm`) would read as that group in logs, sshd's
    // Match blocks and `ls -l`; DESIGN.md keeps every name of the host's files for the host.
    const g = this.fileFor('group').current();
    if (g.names.has(name)) return 'local group';
    return g.members.has(name) ? 'local group member' : null;
  }

  /** True when a local account has this uid, or latchkeyd itself runs as it (a numeric
   *  [daemon] user need not be in passwd: a user handed that uid could signal the daemon and
   *  talk to latchkey-rootd as it). */
  uidIsLocal(uid: number): boolean {
    return uid === process.getuid?.() || this.fileFor('passwd').current().ids.has(uid);
  }

  /** The local account holding this uid, or null. */
  uidOwner(uid: number): string | null {
    if (uid === process.getuid?.() && uid !== 0) return 'latchkeyd itself';
    return this.fileFor('passwd').current().ids.get(uid) ?? null;
  }

  /** Changes whenever either file was read anew or the deny list changed: what was decided
   *  against the old contents (the shared-memory map, src/fastpath) is to be decided again. */
  signature(): string {
    return `${this.fileFor('passwd').signature()}|${this.fileFor('group').signature()}|${this.files().denyNames.join(',')}`;
  }

  /** Every name and uid nameReason / uidIsLocal refuse today (what the shared-memory map must not hold). */
  claimed(): { names: string[]; uids: number[] } {
    const p = this.fileFor('passwd').current();
    const g = this.fileFor('group').current();
    const names = new Set<string>([...this.files().denyNames, ...p.names, ...g.names, ...g.members]);
    const uids = [...p.ids.keys()];
    const self = process.getuid?.();
    if (self !== undefined) uids.push(self);
    return { names: [...names], uids };
  }

  /** True when the host's group file has this group name or gid: `files` answers for it. */
  groupIsLocal(name: string, gid: number): boolean {
    const g = this.fileFor('group').current();
    return g.names.has(name) || g.ids.has(gid);
  }
}
