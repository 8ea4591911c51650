// Dropping root for good, when latchkeyd was started as root (no systemd User=): after this the
// process has the daemon account's uid and gid, no supplementary groups and no capabilities, and
// cannot get root back. Every step is verified rather than trusted: a half-dropped daemon would
// be worse than one that refuses to start.
import { readFileSync } from 'node:fs';
import type { DaemonAccount } from './account.js';
import { LatchkeyError } from '../errors.js';

export class PrivilegeError extends LatchkeyError {
  constructor(message: string) { super('E_PRIVILEGE', message); }
}

/** The capability sets of this process from /proc/self/status (hex masks as bigint). */
export function capabilities(statusText = readFileSync('/proc/self/status', 'utf8')): Record<'CapInh' | 'CapPrm' | 'CapEff' | 'CapAmb', bigint> {
  const get = (k: string): bigint => {
    const m = new RegExp(`^${k}:\\s*([0-9a-f]+)$`, 'm').exec(statusText);
    if (!m) throw new PrivilegeError(`cannot read ${k} from /proc/self/status`);
    return BigInt('0x' + m[1]);
  };
  return { CapInh: get('CapInh'), CapPrm: get('CapPrm'), CapEff: get('CapEff'), CapAmb: get('CapAmb') };
}

/** Throws PrivilegeError unless the process runs as `account` with no way back to root. */
export function verifyUnprivileged(account: DaemonAccount): void {
  const ids = { uid: process.getuid!(), euid: process.geteuid!(), gid: process.getgid!(), egid: process.getegid!() };
  if (ids.uid !== account.uid || ids.euid !== account.uid || ids.gid !== account.gid || ids.egid !== account.gid) {
    throw new PrivilegeError(`latchkeyd runs as uid ${ids.uid}/${ids.euid} gid ${ids.gid}/${ids.egid}, not as ${account.name} (${account.uid}:${account.gid})`);
  }
  const extra = process.getgroups!().filter((g) => g !== account.gid);
  if (extra.length > 0) throw new PrivilegeError(`latchkeyd still holds supplementary groups ${extra.join(',')}`);
  const caps = capabilities();
  for (const [k, v] of Object.entries(caps)) {
    if (v !== 0n) throw new PrivilegeError(`latchkeyd still holds capabilities (${k} ${v.toString(16)}); fix: remove AmbientCapabilities= and give the unit an empty CapabilityBoundingSet=`);
  }
  let regained = false;
  try {
    process.setuid!(0);
    regained = true;
  } catch { /* EPERM: what we want */ }
  if (regained) throw new PrivilegeError('latchkeyd could set its uid back to 0 after dropping root');
}

/** setgroups, setgid, setuid — in that order (after setuid the other two are no longer allowed). */
export function dropPrivileges(account: DaemonAccount): void {
  try {
    process.setgroups!([account.gid]);
    process.setgid!(account.gid);
    process.setuid!(account.uid);
  } catch (e) {
    throw new PrivilegeError(`cannot switch to ${account.name} (${account.uid}:${account.gid}): ${e instanceof Error ? e.message : String(e)}`);
  }
  verifyUnprivileged(account);
}
