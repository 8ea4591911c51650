// Cross-checks between latchkey.conf, sshd_config and the systemd unit: pure functions that turn
// what was read into findings (severity, message, fix, file:line) and into the one fact the
// daemon acts on (does sshd chroot latchkey users itself?). `latchkeyctl check-config` prints the
// findings; latchkeyd logs them at start and on SIGHUP and refuses a configuration with errors.
import { posix } from 'node:path';
import type { Config } from '../config/types.js';
import type { Origin, SshdConfigText } from './parse.js';
import { activeFor, globalSetting, matchPattern, matchPatternList, where, type AppliedSetting, type LatchkeyUsers } from './resolve.js';
import { pathAccess, type UnitSandbox } from './unit.js';

export type Severity = 'error' | 'warning' | 'notice' | 'info';

export interface Finding {
  severity: Severity;
  /** stable name of the check, e.g. sshd.chroot_sessions */
  check: string;
  message: string;
  /** what to change, when something should change */
  fix?: string;
  at?: Origin;
}

/** What latchkeyd needs to know about sshd when it opens a session. */
export interface SshdFacts {
  /** where sshd's ChrootDirectory for every latchkey user is set; null when sshd does not chroot them */
  chrootAt: Origin | null;
  /** the PAM service sshd opens sessions under (PAMServiceName, default "sshd") */
  pamService: string;
}

export const NO_SSHD_FACTS: SshdFacts = { chrootAt: null, pamService: 'sshd' };

export interface DeploymentInput {
  cfg: Config;
  /** null when cfg.daemon.sshdConfig does not exist: the sshd checks are skipped */
  sshd: SshdConfigText | null;
  /** names in the local passwd file ([users] local_passwd) */
  localUsers: ReadonlySet<string>;
  /** names in the local group file ([users] local_group); null when it could not be read */
  localGroups: ReadonlySet<string> | null;
  /** the latchkeyd unit's sandbox, or null when no unit is installed (or not checked) */
  unit: UnitSandbox | null;
  /** latchkey-rootd's unit (it creates the homes), or null when not installed (or not checked) */
  rootdUnit?: UnitSandbox | null;
}

/**
 * Whether pam_latchkey chroots this session. chroot_sessions confines a session in the process
 * that opened it; sshd opens the PAM session in its privileged process and later chroots the
 * user's child itself (ChrootDirectory), walking the path from `/` (session.c safely_chroot).
 * Chrooted first by PAM, that walk fails (`safely_chroot: stat("/ega/inbox/NAME")`) and every
 * login is refused; so when sshd confines latchkey users itself, its sessions are left to it.
 */
export function sessionChroot(cfg: Config, facts: SshdFacts, service: string): boolean {
  if (!cfg.pam.chrootSessions) return false;
  return !(facts.chrootAt !== null && service === facts.pamService);
}

function latchkeyUsers(input: DeploymentInput): LatchkeyUsers {
  return { groupName: input.cfg.users.groupName, notLatchkey: new Set([...input.localUsers, ...input.cfg.users.denyNames]) };
}

const list = (s: AppliedSetting[]): string => s.map((a) => `${a.setting.written} ${a.setting.args.join(' ')} (${where(a.setting)})`).join(', ');

/** (a) sshd confines SFTP users with Match Group blocks: one must name the latchkey group. */
function checkMatchGroup(sshd: SshdConfigText, input: DeploymentInput, who: LatchkeyUsers): Finding[] {
  const out: Finding[] = [];
  const group = who.groupName;
  const chroot = activeFor(sshd, 'ChrootDirectory', who);
  const force = activeFor(sshd, 'ForceCommand', who);
  const confined = chroot.applies === 'always' || force.applies === 'always';
  // Match lines that confine (ChrootDirectory/ForceCommand other than none) by group.
  const seen = new Set<string>();
  let misnamed = 0;
  for (const s of sshd.settings) {
    if (s.keyword !== 'chrootdirectory' && s.keyword !== 'forcecommand') continue;
    if ((s.args[0] ?? '').toLowerCase() === 'none') continue;
    const m = s.match[s.match.length - 1];
    if (!m || seen.has(where(m))) continue;
    seen.add(where(m));
    for (const c of m.criteria) {
      if (c.name !== 'group' || matchPatternList(group, c.value) === 1) continue;
      // A group sshd cannot find in the local group file is, on a latchkey host, most likely
      // the latchkey group under another name (an old default, LocalEGA's "lega").
      const local = input.localGroups;
      if (local === null) continue;
      const unknown = c.value.split(',').filter((p) => !p.startsWith('!') && !/[*?]/.test(p) && !local.has(p));
      if (unknown.length === 0) continue;
      misnamed++;
      out.push({
        severity: confined ? 'warning' : 'error',
        check: 'sshd.match_group',
        at: m,
        message: `\`Match Group ${c.value}\` (${where(m)}) confines SFTP logins, but latchkey users are in group "${group}" ([users] group_name) and no local group is named ${unknown.join(', ')}: `
          + (confined ? 'this block confines nobody.' : 'latchkey users are not confined by it and get full ssh access with their login shell.'),
        fix: `write \`Match Group ${group}\` at ${where(m)}, or set [users] group_name = ${unknown[0]} in latchkey.conf`,
      });
    }
  }
  if (!confined && misnamed === 0) {
    const partly = chroot.applies === 'conditional' || force.applies === 'conditional';
    out.push({
      severity: 'warning',
      check: 'sshd.match_group',
      message: partly
        ? `sshd confines latchkey users only under some conditions (${list([...chroot.settings, ...force.settings])}): other logins get full ssh access with their login shell.`
        : `no \`Match Group ${group}\` block with ChrootDirectory or ForceCommand in ${sshd.file}: latchkey users get full ssh access with their login shell (${input.cfg.users.shell}).`,
      fix: `add the \`Match Group ${group}\` block of etc/sshd_config.d/latchkey.conf (ChrootDirectory %h, ForceCommand internal-sftp), unless shell access is intended`,
    });
  }
  return out;
}

/**
 * AllowGroups/DenyGroups (global: every line adds, arguments are single patterns, sshd_config(5))
 * that shut latchkey users out of sshd altogether: sshd refuses them before PAM is asked.
 */
function checkAllowDeny(sshd: SshdConfigText, group: string): Finding[] {
  const out: Finding[] = [];
  const lines = (k: string) => sshd.settings.filter((s) => s.keyword === k && s.match.length === 0);
  const allow = lines('allowgroups');
  if (allow.length > 0 && !allow.some((s) => s.args.some((p) => matchPattern(group, p)))) {
    out.push({
      severity: 'warning', check: 'sshd.allow_groups', at: allow[0]!,
      message: `AllowGroups (${allow.map(where).join(', ')}) does not name "${group}": sshd refuses every latchkey user before PAM is asked.`,
      fix: `add ${group} to AllowGroups`,
    });
  }
  for (const s of lines('denygroups')) {
    if (!s.args.some((p) => matchPattern(group, p))) continue;
    out.push({
      severity: 'warning', check: 'sshd.allow_groups', at: s,
      message: `DenyGroups at ${where(s)} matches "${group}": sshd refuses every latchkey user.`,
      fix: `remove ${group} from DenyGroups`,
    });
  }
  return out;
}

/** Expands sshd's ChrootDirectory tokens (%% %h %u %U) for a sample latchkey user. */
function expandChroot(arg: string, home: string, user: string): string {
  const expanded = arg.replace(/%([%hHuU])/g, (_m, t: string) => (t === '%' ? '%' : t === 'h' ? home : t === 'u' ? user : '4294967294'));
  return posix.normalize(expanded).replace(/(.)\/+$/, '$1');
}

/** (b) chroot_sessions vs ChrootDirectory, (c) ChrootDirectory vs the homes layout. */
function checkChroot(sshd: SshdConfigText, input: DeploymentInput, who: LatchkeyUsers): { findings: Finding[]; chrootAt: Origin | null } {
  const out: Finding[] = [];
  const { cfg } = input;
  const chroot = activeFor(sshd, 'ChrootDirectory', who);
  if (chroot.applies === 'never') return { findings: out, chrootAt: null };
  // The setting that wins for every latchkey user (the last one listed: see settingsFor).
  const decisive = chroot.settings[chroot.settings.length - 1]!.setting;

  if (cfg.pam.chrootSessions) {
    if (chroot.applies === 'always') {
      out.push({
        severity: 'notice',
        check: 'sshd.chroot_sessions',
        at: decisive,
        message: `chroot_sessions = yes, and sshd confines latchkey users itself (ChrootDirectory ${decisive.args[0]} at ${where(decisive)}): `
          + 'latchkeyd leaves sessions of the PAM service sshd to that chroot (a chroot by pam_latchkey first would make sshd\'s fail, '
          + '"safely_chroot: stat(...)", and refuse every login); other PAM services still get chroot_sessions.',
      });
    } else {
      out.push({
        severity: 'error',
        check: 'sshd.chroot_sessions',
        at: chroot.settings[0]!.setting,
        message: `chroot_sessions = yes, and sshd chroots latchkey users only under some conditions (${list(chroot.settings)}): `
          + 'logins sshd chroots would be refused after a chroot by pam_latchkey ("safely_chroot: stat(...)"), the others would not be confined by sshd.',
        fix: `set ChrootDirectory for every latchkey user (\`Match Group ${cfg.users.groupName}\`), or set [pam] chroot_sessions = no`,
      });
    }
  }

  const home = posix.join(cfg.homes.base, 'NAME');
  const upload = posix.join(home, cfg.homes.uploadDir);
  for (const { setting } of chroot.settings) {
    const arg = setting.args[0]!;
    const path = expandChroot(arg, home, 'NAME');
    if (path === home) {
      if (cfg.homes.layout === 'plain') {
        out.push({
          severity: 'error',
          check: 'sshd.chroot_path',
          at: setting,
          message: `sshd chroots latchkey users into their home (ChrootDirectory ${arg} at ${where(setting)}), but [homes] layout = plain makes the home owned by the user: `
            + 'sshd refuses that ("bad ownership or modes for chroot directory") and every login fails.',
          fix: `set [homes] layout = chroot in latchkey.conf (a root-owned home holding the user's ${cfg.homes.uploadDir}/)`,
        });
      }
    } else if (path === upload) {
      out.push({
        severity: 'error',
        check: 'sshd.chroot_path',
        at: setting,
        message: `ChrootDirectory ${arg} (${where(setting)}) is the user-owned upload directory ${upload}: sshd refuses a chroot owned by the user and every login fails.`,
        fix: 'use ChrootDirectory %h (the root-owned home)',
      });
    } else if (path.startsWith(home + '/')) {
      out.push({
        severity: 'warning',
        check: 'sshd.chroot_path',
        at: setting,
        message: `ChrootDirectory ${arg} (${where(setting)}) is a directory inside the home (${path}) that latchkey does not create: logins fail until it exists, root-owned.`,
        fix: 'use ChrootDirectory %h',
      });
    } else if (!(home.startsWith(path + '/') || path === '/')) {
      out.push({
        severity: 'warning',
        check: 'sshd.chroot_path',
        at: setting,
        message: `ChrootDirectory ${arg} (${where(setting)}) is ${path}, outside the homes base ${cfg.homes.base} where latchkey creates homes: sshd refuses logins until that directory exists, root-owned.`,
        fix: `use ChrootDirectory %h, or set [homes] base to the directory sshd chroots into`,
      });
    }
  }
  return { findings: out, chrootAt: chroot.applies === 'always' ? decisive : null };
}

/** (d) db_path and the local users' store must be writable under latchkeyd's sandbox, the homes
 *  base under latchkey-rootd's. */
function checkUnit(unit: UnitSandbox, cfg: Config, service: 'latchkeyd' | 'latchkey-rootd'): Finding[] {
  const out: Finding[] = [];
  const paths: Array<[string, string, string]> = service === 'latchkeyd'
    ? [['[cache] db_path', posix.dirname(cfg.cache.dbPath), 'the cache file and its journal are created there'],
      ['[local] db_path', posix.dirname(cfg.local.dbPath), 'the local users\' store, its journal and snapshots are written there']]
    : [['[homes] base', cfg.homes.base, 'latchkey-rootd creates homes there at first login']];
  for (const [key, dir, why] of paths) {
    const a = pathAccess(unit, dir);
    if (a.access === 'writable') continue;
    out.push({
      severity: 'error',
      check: 'systemd.writable',
      at: { file: unit.files[0]!, line: 0 },
      message: `${key} is under ${dir}, which ${unit.files.join(' + ')} makes ${a.access} (${a.rule}); ${why}.`,
      fix: a.access === 'inaccessible'
        ? `move ${key}, or relax the rule (${a.rule}) with ReadWritePaths=${dir} in a drop-in (systemctl edit ${service})`
        : `add ReadWritePaths=${dir} to the unit (systemctl edit ${service}), or move ${key} under a writable path`,
    });
  }
  return out;
}

/** Every cross-check; `facts` is what the daemon uses to decide a session's chroot. */
export function checkDeployment(input: DeploymentInput): { findings: Finding[]; facts: SshdFacts } {
  const findings: Finding[] = [];
  const facts: SshdFacts = { ...NO_SSHD_FACTS };
  const sshd = input.sshd;
  if (sshd === null) {
    findings.push({
      severity: 'info', check: 'sshd.missing',
      message: `${input.cfg.daemon.sshdConfig} does not exist: the sshd checks are skipped.`,
      fix: 'set [daemon] sshd_config to the file sshd reads, if sshd runs here',
    });
  } else {
    for (const p of sshd.problems) {
      findings.push({ severity: 'warning', check: 'sshd.syntax', at: p, message: `${where(p)}: ${p.message} (sshd refuses this line).` });
    }
    const who = latchkeyUsers(input);
    const usePam = globalSetting(sshd, 'UsePAM');
    if (!usePam || usePam.args[0]?.toLowerCase() !== 'yes') {
      findings.push({
        severity: 'warning', check: 'sshd.use_pam', ...(usePam ? { at: usePam } : {}),
        message: `sshd does not use PAM (${usePam ? `UsePAM ${usePam.args[0]} at ${where(usePam)}` : `no UsePAM in ${sshd.file}, default no`}): pam_latchkey is never asked, so no password logins, account checks or homes for latchkey users.`,
        fix: 'set UsePAM yes (etc/sshd_config.d/latchkey.conf)',
      });
    }
    const service = activeFor(sshd, 'PAMServiceName', who);
    if (service.applies === 'always') facts.pamService = service.settings[service.settings.length - 1]!.setting.args[0]!;
    findings.push(...checkMatchGroup(sshd, input, who));
    findings.push(...checkAllowDeny(sshd, who.groupName));
    const chroot = checkChroot(sshd, input, who);
    findings.push(...chroot.findings);
    facts.chrootAt = chroot.chrootAt;
  }
  if (input.unit) findings.push(...checkUnit(input.unit, input.cfg, 'latchkeyd'));
  if (input.rootdUnit) findings.push(...checkUnit(input.rootdUnit, input.cfg, 'latchkey-rootd'));
  return { findings, facts };
}

/** A finding as one or two lines for a terminal or an error message. */
export function formatFinding(f: Finding): string {
  return `${f.severity}: ${f.message}${f.fix ? `\n  fix: ${f.fix}` : ''}`;
}
