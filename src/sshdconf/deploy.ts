// The I/O around the pure cross-checks: reads sshd_config (with its Includes), the local account
// files and the installed latchkeyd unit, runs the checks, and gives latchkeyd the sshd facts it
// acts on (logging every finding, refusing errors) and latchkeyctl check-config its findings,
// plus sshd's own verdict on the file (`sshd -T`).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { Config } from '../config/types.js';
import { ConfigError, LatchkeyError } from '../errors.js';
import { log, type LogLevel } from '../log.js';
import { parseIdFile } from '../users/local.js';
import { checkDeployment, formatFinding, type DeploymentInput, type Finding, type SshdFacts } from './checks.js';
import { fileSystemSource, globPaths } from './fs-source.js';
import { parseSshdConfig } from './parse.js';
import { parseUnitSandbox, type UnitSandbox, type UnitText } from './unit.js';

/** Where systemd finds the unit, highest precedence first (systemd.unit(5) search path). */
export const UNIT_DIRS = ['/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'];
export const UNIT_NAME = 'latchkeyd.service';
/** The root helper's unit: the homes base must be writable there (latchkeyd itself never writes homes). */
export const ROOTD_UNIT_NAME = 'latchkey-rootd.service';

/** The installed unit and its drop-ins (NAME.service.d/*.conf, sorted by file name), or null. */
export function readInstalledUnit(dirs: string[] = UNIT_DIRS, name: string = UNIT_NAME): UnitSandbox | null {
  const unit = dirs.map((d) => `${d}/${name}`).find((p) => existsSync(p));
  if (!unit) return null;
  const texts: UnitText[] = [];
  const read = (p: string): void => {
    try { texts.push({ path: p, text: readFileSync(p, 'utf8') }); } catch { /* unreadable: systemd skips it too */ }
  };
  read(unit);
  // A drop-in in an earlier directory masks one of the same name in a later directory.
  const dropins = new Map<string, string>();
  for (const d of dirs) {
    for (const p of globPaths(`${d}/${name}.d/*.conf`)) {
      const name = p.slice(p.lastIndexOf('/') + 1);
      if (!dropins.has(name)) dropins.set(name, p);
    }
  }
  for (const name of [...dropins.keys()].sort()) read(dropins.get(name)!);
  return texts.length ? parseUnitSandbox(texts) : null;
}

function names(file: string): Set<string> | null {
  try { return parseIdFile(readFileSync(file, 'utf8')).names; } catch { return null; }
}

/** Missing: the sshd checks are skipped. Present but unreadable (latchkeyd runs unprivileged): an
 *  error, never "missing" — the chroot decision depends on what sshd_config says. */
function sshdConfigExists(file: string): boolean {
  try {
    statSync(file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw new ConfigError(file, 0, 'daemon.sshd_config', `latchkeyd cannot read it (${code ?? String(e)}) as its user; fix: make it and its directories readable (sshd_config is not secret)`);
  }
}

/** Everything the checks read. `unit` = false skips the systemd check (not running under it). */
export function readDeployment(cfg: Config, opts: { unit: boolean }): DeploymentInput {
  const file = cfg.daemon.sshdConfig;
  return {
    cfg,
    sshd: sshdConfigExists(file) ? parseSshdConfig(file, fileSystemSource) : null,
    localUsers: names(cfg.users.localPasswdFile) ?? new Set(),
    localGroups: names(cfg.users.localGroupFile),
    unit: opts.unit ? readInstalledUnit() : null,
    rootdUnit: opts.unit ? readInstalledUnit(UNIT_DIRS, ROOTD_UNIT_NAME) : null,
  };
}

const LEVEL: Record<Finding['severity'], LogLevel> = { error: 'error', warning: 'warn', notice: 'info', info: 'info' };

/**
 * For latchkeyd at start and on SIGHUP: runs the checks, logs each finding once, and returns the
 * sshd facts; throws (E_CONFIG, the fix in the message) when a finding is an error, so a start is
 * refused and a reload keeps the running configuration. The unit is checked only when systemd
 * started us (INVOCATION_ID, systemd.exec(5)): elsewhere its sandbox does not apply.
 */
export function sshdFactsForDaemon(cfg: Config, env: NodeJS.ProcessEnv = process.env): SshdFacts {
  const { findings, facts } = checkDeployment(readDeployment(cfg, { unit: env.INVOCATION_ID !== undefined }));
  for (const f of findings) {
    log(LEVEL[f.severity], 'deploy.check', { check: f.check, severity: f.severity, message: f.message, ...(f.fix ? { fix: f.fix } : {}), ...(f.at ? { at: `${f.at.file}:${f.at.line}` } : {}) });
  }
  const errors = findings.filter((f) => f.severity === 'error');
  if (errors.length > 0) {
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more error(s), see the log or latchkeyctl check-config)` : '';
    throw new LatchkeyError('E_CONFIG', `${formatFinding(errors[0]!).replace('\n  fix:', ' fix:')}${more}`);
  }
  return facts;
}

/** Lines of `sshd -T` stderr that are about the file's syntax rather than this host's state. */
const SYNTAX = /line \d+|Bad configuration option|bad configuration options|not allowed within a Match|Unsupported option|missing argument|invalid quotes|Bad Match|Include/i;

/**
 * Lets sshd judge the file itself (`sshd -T -f FILE`), when it is installed and we are root (it
 * needs the host keys). Failures that are about this machine (no /run/sshd, no host keys) are
 * reported as info: they do not say the file is wrong.
 */
export function sshdOwnCheck(file: string, sshd = '/usr/sbin/sshd'): Finding | null {
  if (!existsSync(sshd) || !existsSync(file)) return null;
  if (process.geteuid?.() !== 0) {
    return { severity: 'info', check: 'sshd.self_test', message: `not root: ${sshd} -T -f ${file} was not run (it needs the host keys).` };
  }
  const r = spawnSync(sshd, ['-T', '-f', file], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status === 0) return null;
  const text = (r.stderr ?? '').trim() || (r.error ? r.error.message : `exit ${r.status}`);
  const lines = text.split('\n').filter((l) => l.trim() !== '').slice(0, 10);
  const syntax = lines.filter((l) => SYNTAX.test(l));
  if (syntax.length > 0) {
    return {
      severity: 'error', check: 'sshd.self_test',
      message: `sshd refuses ${file}: ${syntax.join(' | ')}`,
      fix: `correct the line(s) sshd names; \`${sshd} -t -f ${file}\` checks again`,
    };
  }
  return { severity: 'info', check: 'sshd.self_test', message: `${sshd} -T -f ${file} could not check the file here: ${lines.join(' | ')}` };
}
