// Which files latchkeyd may trust, and which settings weaken it (DESIGN.md, security rules).
//
// A config file decides where logins are checked: whoever can change it, or replace it, or
// replace a directory on its path, can send every password to a server of their own. So, like
// sshd's StrictModes, a file is trusted only when it is owned by root (or the daemon's euid),
// is not writable by group or others, and every directory its lookup passes through (symbolic
// links included) is owned by root/euid and not writable by group or others. One exception:
// a sticky directory such as /tmp (mode 1777) may be writable by others, because with the
// sticky bit only an entry's owner can rename or delete it (unlink(2), inode(7) S_ISVTX): the
// entry below it must then be owned by root/euid. Checkouts and test runs under /tmp need this.
import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from './types.js';

/** Symlinks followed before giving up, as the kernel's MAXSYMLINKS (path_resolution(7)). */
const MAX_SYMLINKS = 40;

const octal = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');
const writableByOthers = (st: Stats): boolean => (st.mode & 0o022) !== 0;
const isSharedSticky = (st: Stats): boolean => writableByOthers(st) && (st.mode & 0o1000) !== 0;

function trustedOwner(uid: number, euid: number): boolean {
  return uid === 0 || uid === euid;
}

/** A file that failed the check: `problem` names what to change and the command that does it. */
export class UntrustedPath extends Error {}

/** The file itself (an fstat of the descriptor it was read through) is owned by root or the euid. */
export function checkTrustedOwner(file: string, st: Stats, euid: number): void {
  if (trustedOwner(st.uid, euid)) return;
  throw new UntrustedPath(`is owned by uid ${st.uid}, who could change where logins are checked; `
    + `only root${euid !== 0 ? ` or uid ${euid} (latchkeyd's)` : ''} may own it; fix: chown root ${file}`);
}

/** The file itself has no write bit for group or others. */
export function checkTrustedMode(file: string, st: Stats): void {
  if (!writableByOthers(st)) return;
  throw new UntrustedPath(`is writable by ${st.mode & 0o002 ? 'anyone' : 'its group'} (mode ${octal(st.mode)}), `
    + `so another user could redirect logins; fix: chmod go-w ${file}`);
}

function checkDirectory(dir: string, st: Stats, euid: number): void {
  if (!st.isDirectory()) throw new UntrustedPath(`cannot be reached: ${dir} is not a directory`);
  const ownerOk = trustedOwner(st.uid, euid);
  const modeOk = !writableByOthers(st) || isSharedSticky(st);
  if (ownerOk && modeOk) return;
  const fix = [ownerOk ? '' : `chown root ${dir}`, modeOk ? '' : `chmod go-w ${dir}`].filter(Boolean).join(' && ');
  throw new UntrustedPath(`sits in ${dir}, which is owned by uid ${st.uid} with mode ${octal(st.mode)}, so `
    + `${ownerOk ? 'others' : 'that user'} could replace the file; every directory on the path must be `
    + `owned by root and not writable by group or others (a sticky directory such as /tmp is accepted); fix: ${fix}`);
}

function lstatOrExplain(path: string): Stats {
  try {
    return lstatSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new UntrustedPath(`cannot be checked: ${path}: ${err.code ?? err.message}`);
  }
}

/**
 * Walks the lookup of `file` the way the kernel does (path_resolution(7)), from "/" and through
 * every symbolic link, checking each directory an entry is looked up in. Returns the lstat of the
 * file the walk ends at, for the caller to compare with the descriptor it read (same dev/ino),
 * so the file checked is the file read. Throws UntrustedPath naming the culprit and the fix.
 */
export function checkTrustedPath(file: string, euid: number): Stats {
  const split = (p: string): string[] => p.split('/').filter((c) => c !== '');
  let pending = split(file.startsWith('/') ? file : join(process.cwd(), file));
  let cur = '/';
  let curSt = lstatOrExplain('/');
  checkDirectory('/', curSt, euid);
  let links = 0;
  while (pending.length > 0) {
    const name = pending.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      // `cur` never holds a symlink (they are expanded as met), so its parent is the real one,
      // and was checked on the way down.
      cur = dirname(cur);
      curSt = lstatOrExplain(cur);
      continue;
    }
    const next = join(cur, name);
    const st = lstatOrExplain(next);
    // In a sticky directory that others can write, only the entry's owner can rename or remove
    // it; an entry owned by someone else there is theirs to swap.
    if (isSharedSticky(curSt) && !trustedOwner(st.uid, euid)) {
      throw new UntrustedPath(`is reached through ${next}, owned by uid ${st.uid} inside ${cur} (mode ${octal(curSt.mode)}), `
        + `where that user can replace it; fix: chown ${st.isSymbolicLink() ? '-h ' : ''}root ${next}`);
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) throw new UntrustedPath(`cannot be checked: too many symbolic links (${next})`);
      const target = readlinkSync(next);
      pending = [...split(target), ...pending];
      if (target.startsWith('/')) {
        cur = '/';
        curSt = lstatOrExplain('/');
      }
      continue;
    }
    if (pending.length === 0) return st;
    checkDirectory(next, st, euid);
    cur = next;
    curSt = st;
  }
  // The path named "/" or ended in "." / "..": a directory, never a config file.
  return curSt;
}

/** `https://host:port` of an endpoint template (%s / %u filled in), for messages. */
function origin(template: string): string {
  try {
    return new URL(template.replace('%s', 'x').replace('%u', '1')).origin;
  } catch {
    return template;
  }
}

const isPlainHttp = (template: string): boolean => /^http:/i.test(template.trim());

/** Endpoints the credentials would go to in clear text ([] when none or no credentials). */
/** Origins of endpoints over plain http://, credentials or not. */
export function plainHttpOrigins(c: Config): string[] {
  const u = c.upstream;
  return [...new Set([u.byNameUrl, u.byUidUrl].filter(isPlainHttp).map(origin))];
}

export function credentialsOverHttp(c: Config): string[] {
  const u = c.upstream;
  if (!u.basicAuth && u.bearerToken === null && u.tokenUrl === null) return [];
  return [...new Set([u.byNameUrl, u.byUidUrl].filter(isPlainHttp).map(origin))];
}

/**
 * The weakened settings in effect, one line each, for the start/reload log (config.insecure)
 * and `latchkeyctl status`. Only what an insecure_* key actually allows is listed.
 */
export function insecureSettings(c: Config): string[] {
  const u = c.upstream;
  const out: string[] = [];
  const plain = credentialsOverHttp(c);
  if (u.insecureHttp && plain.length > 0) {
    out.push(`insecure_http: the upstream ${u.tokenUrl !== null ? 'token' : u.basicAuth ? 'password' : 'bearer token'} goes in clear text over ${plain.join(', ')}`);
  } else if (u.insecureHttp && plainHttpOrigins(c).length > 0) {
    out.push(`insecure_http: user records (password hashes, keys) arrive unauthenticated over ${plainHttpOrigins(c).join(', ')}`);
  }
  if (u.insecureTls && !u.verifyPeer) out.push("insecure_tls: the upstream's TLS certificate is not verified (verify_peer = no)");
  else if (u.insecureTls && !u.verifyHostname) out.push("insecure_tls: the upstream's host name is not checked against its certificate (verify_hostname = no)");
  return out;
}

/** How latchkeyd authenticates to the user service: for `status` and the log, never the secret. */
export function upstreamAuthMode(c: Config): 'none' | 'basic' | 'bearer' | 'token' {
  const u = c.upstream;
  if (u.tokenUrl !== null) return 'token';
  if (u.bearerToken !== null) return 'bearer';
  return u.basicAuth ? 'basic' : 'none';
}
