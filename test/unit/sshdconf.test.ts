// The sshd_config reader (keywords, quoting, Include, Match) and the cross-checks between
// latchkey.conf, sshd_config and the systemd unit, on in-memory files. The shipped drop-in and
// unit are read from etc/ as they are installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { parseSshdConfig, splitArgs, splitKeyword, type ConfigSource } from '../../src/sshdconf/parse.js';
import { activeFor, matchPatternList, settingsFor, type LatchkeyUsers } from '../../src/sshdconf/resolve.js';
import { checkDeployment, sessionChroot, NO_SSHD_FACTS, type DeploymentInput, type Finding } from '../../src/sshdconf/checks.js';
import { parseUnitSandbox, pathAccess } from '../../src/sshdconf/unit.js';
import { componentRegExp, globPaths } from '../../src/sshdconf/fs-source.js';
import { readInstalledUnit } from '../../src/sshdconf/deploy.js';
import { ROOT } from '../lib/paths.js';

/** In-memory files; globs as fs-source does them, over the map's keys. */
function memory(files: Record<string, string>): ConfigSource {
  return {
    read: (p) => files[p] ?? null,
    glob: (pattern) => {
      const parts = pattern.split('/');
      return Object.keys(files).filter((f) => {
        const fp = f.split('/');
        return fp.length === parts.length
          && parts.every((p, i) => componentRegExp(p).test(fp[i]!) && (!fp[i]!.startsWith('.') || p.startsWith('.')));
      }).sort();
    },
  };
}

const SHIPPED = readFileSync(join(ROOT, 'etc/sshd_config.d/latchkey.conf'), 'utf8');
const DEBIAN = 'Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\nX11Forwarding yes\nPrintMotd no\nAcceptEnv LANG LC_*\nSubsystem\tsftp\t/usr/lib/openssh/sftp-server\n';
const who: LatchkeyUsers = { groupName: 'lega', notLatchkey: new Set(['root', 'admin']) };

function input(sshdFiles: Record<string, string> | null, cfg: Config = defaultConfig(), extra: Partial<DeploymentInput> = {}): DeploymentInput {
  return {
    cfg,
    sshd: sshdFiles === null ? null : parseSshdConfig('/etc/ssh/sshd_config', memory(sshdFiles)),
    localUsers: new Set(['root', 'admin', 'sshd']),
    localGroups: new Set(['root', 'adm', 'sftponly']),
    unit: null,
    ...extra,
  };
}
const only = (fs: Finding[], sev: Finding['severity']): Finding[] => fs.filter((f) => f.severity === sev);
const withDropIn = (dropIn: string, main = DEBIAN): Record<string, string> => ({ '/etc/ssh/sshd_config': main, '/etc/ssh/sshd_config.d/latchkey.conf': dropIn });

test('keywords: case-insensitive, `=` separator, quotes and escapes as argv_split, trailing comments', () => {
  assert.deepEqual(splitKeyword('  ChrootDirectory=%h'), { keyword: 'ChrootDirectory', rest: '%h' });
  assert.deepEqual(splitKeyword('UsePAM = yes'), { keyword: 'UsePAM', rest: 'yes' });
  assert.equal(splitKeyword('   # a comment'), null);
  assert.equal(splitKeyword(''), null);
  assert.deepEqual(splitArgs('"/srv/with space/%u" x'), ['/srv/with space/%u', 'x']);
  assert.deepEqual(splitArgs("'a b' c\\ d e # comment"), ['a b', 'c d', 'e']);
  assert.deepEqual(splitArgs('a\\"b'), ['a"b']);
  assert.equal(splitArgs('"unclosed'), null);
  const c = parseSshdConfig('/f', memory({ '/f': 'chrootdirectory /a\nCHROOTDIRECTORY /b\nForceCommand "internal-sftp -u 027" # why\n' }));
  assert.deepEqual(c.settings.map((s) => [s.keyword, s.args, s.line]), [
    ['chrootdirectory', ['/a'], 1], ['chrootdirectory', ['/b'], 2], ['forcecommand', ['internal-sftp -u 027'], 3],
  ]);
  // First value wins.
  assert.equal(settingsFor(c, 'ChrootDirectory', who)[0]!.setting.args[0], '/a');
});

test('Include: relative to /etc/ssh, globs sorted, included file keeps the Match state of the Include line', () => {
  const files = {
    '/etc/ssh/sshd_config': 'Include conf.d/*.conf\nPasswordAuthentication no\nMatch User bob\n  Include /etc/ssh/inner.conf\n  X11Forwarding no\n',
    '/etc/ssh/conf.d/20-b.conf': 'PasswordAuthentication yes\nMatch Group lega\n  ChrootDirectory %h\n',
    '/etc/ssh/conf.d/10-a.conf': 'UsePAM yes\n',
    '/etc/ssh/conf.d/.hidden.conf': 'UsePAM no\n',
    '/etc/ssh/conf.d/x.txt': 'UsePAM no\n',
    '/etc/ssh/inner.conf': 'AllowTcpForwarding no\nMatch Address 10.0.0.0/8\n  PermitTTY no\n',
  };
  const c = parseSshdConfig('/etc/ssh/sshd_config', memory(files));
  assert.deepEqual(c.files, ['/etc/ssh/sshd_config', '/etc/ssh/conf.d/10-a.conf', '/etc/ssh/conf.d/20-b.conf', '/etc/ssh/inner.conf']);
  const by = (k: string) => c.settings.filter((s) => s.keyword === k);
  assert.equal(by('usepam')[0]!.file, '/etc/ssh/conf.d/10-a.conf');
  // The Match in 20-b.conf ends with that file: the next line of sshd_config is global again.
  assert.deepEqual(by('passwordauthentication').map((s) => [s.args[0], s.match.length]), [['yes', 0], ['no', 0]]);
  assert.deepEqual(by('chrootdirectory')[0]!.match.map((m) => [m.file, m.line]), [['/etc/ssh/conf.d/20-b.conf', 2]]);
  // inner.conf is included inside `Match User bob`: its lines are under it, its own Match is ANDed.
  assert.deepEqual(by('allowtcpforwarding')[0]!.match.map((m) => m.criteria[0]!.name), ['user']);
  assert.deepEqual(by('permittty')[0]!.match.map((m) => m.criteria[0]!.name), ['user', 'address']);
  // Back in sshd_config after the Include: still inside `Match User bob`.
  assert.deepEqual(by('x11forwarding')[0]!.match.map((m) => m.line), [3]);
});

test('Include loops stop at 16 levels; bad lines are problems with file:line', () => {
  const c = parseSshdConfig('/etc/ssh/sshd_config', memory({ '/etc/ssh/sshd_config': 'Include /etc/ssh/sshd_config\nChrootDirectory "x\nMatch\nUsePAM\nMatch All Group x\n' }));
  assert.ok(c.problems.some((p) => /nested too deep/.test(p.message)));
  assert.ok(c.problems.some((p) => p.line === 2 && /quotes/.test(p.message)));
  assert.ok(c.problems.some((p) => p.line === 3));
  assert.ok(c.problems.some((p) => p.line === 4 && /no argument/.test(p.message)));
  assert.ok(c.problems.some((p) => p.line === 5 && /all/.test(p.message)));
  assert.equal(parseSshdConfig('/nope', memory({})).settings.length, 0);
});

test('Match criteria for latchkey users: group patterns, negation, users, connection-dependent', () => {
  assert.equal(matchPatternList('lega', 'admins,le*'), 1);
  assert.equal(matchPatternList('lega', '*,!lega'), -1);
  assert.equal(matchPatternList('lega', 'latchkey'), 0);
  const cfg = (m: string) => parseSshdConfig('/f', memory({ '/f': `${m}\n  ChrootDirectory %h\n` }));
  const a = (m: string) => activeFor(cfg(m), 'ChrootDirectory', who).applies;
  assert.equal(a('Match Group lega'), 'always');
  assert.equal(a('Match Group=sftp,lega'), 'always');
  assert.equal(a('Match Group *,!lega'), 'never');
  assert.equal(a('Match Group latchkey'), 'never');
  assert.equal(a('Match All'), 'always');
  assert.equal(a('Match User *'), 'always');
  assert.equal(a('Match User *,!root'), 'always');
  assert.equal(a('Match User *,!alice'), 'conditional');
  assert.equal(a('Match User admin,root'), 'never');
  assert.equal(a('Match User alice'), 'conditional');
  assert.equal(a('Match Group lega Address 10.0.0.0/8'), 'conditional');
  assert.equal(a('Match Group lega User admin'), 'never');
  assert.equal(a('Match Invalid-User'), 'never');
});

test('precedence: Match over global, first matching Match wins, `none` switches off', () => {
  const c = parseSshdConfig('/f', memory({ '/f': 'ChrootDirectory /global\nMatch Address 10.*\n ChrootDirectory none\nMatch Group lega\n ChrootDirectory %h\nMatch All\n ChrootDirectory /late\n' }));
  const s = settingsFor(c, 'ChrootDirectory', who);
  assert.deepEqual(s.map((x) => [x.setting.args[0], x.applies]), [['none', 'conditional'], ['%h', 'always']]);
  assert.equal(activeFor(c, 'ChrootDirectory', who).applies, 'conditional');
  const g = parseSshdConfig('/f', memory({ '/f': 'ChrootDirectory /srv\nMatch Group other\n ChrootDirectory none\n' }));
  assert.equal(activeFor(g, 'ChrootDirectory', who).applies, 'always');
  assert.equal(activeFor(g, 'ForceCommand', who).applies, 'never');
});

test('the shipped drop-in under Debian\'s sshd_config: no errors, group = default group_name, no ExposeAuthInfo', () => {
  const { findings, facts } = checkDeployment(input(withDropIn(SHIPPED)));
  assert.deepEqual(only(findings, 'error'), []);
  assert.deepEqual(only(findings, 'warning'), []);
  assert.equal(facts.chrootAt!.file, '/etc/ssh/sshd_config.d/latchkey.conf');
  assert.equal(defaultConfig().users.groupName, /^Match Group (\S+)/m.exec(SHIPPED)![1]);
  assert.doesNotMatch(SHIPPED, /^\s*ExposeAuthInfo/m);
});

test('(a) Match Group naming another group: error when latchkey users end up unconfined, fix named', () => {
  const old = SHIPPED.replace('Match Group lega', 'Match Group latchkey');
  const { findings } = checkDeployment(input(withDropIn(old)));
  const e = only(findings, 'error');
  assert.equal(e.length, 1);
  assert.equal(e[0]!.check, 'sshd.match_group');
  assert.match(e[0]!.message, /Match Group latchkey/);
  assert.match(e[0]!.fix!, /Match Group lega.*group_name = latchkey/);
  assert.deepEqual([e[0]!.at!.file, e[0]!.at!.line], ['/etc/ssh/sshd_config.d/latchkey.conf', SHIPPED.split('\n').findIndex((l) => l.startsWith('Match Group')) + 1]);
  // The same group_name as the block: fine.
  const renamed = defaultConfig({ users: { groupName: 'latchkey' } });
  assert.deepEqual(only(checkDeployment(input(withDropIn(old), renamed)).findings, 'error'), []);
  // A local group (sftponly) with its own block is not latchkey's business.
  const local = checkDeployment(input(withDropIn(SHIPPED + 'Match Group sftponly\n  ChrootDirectory /srv/sftp\n')));
  assert.deepEqual(only(local.findings, 'error'), []);
  assert.deepEqual(only(local.findings, 'warning'), []);
  // Both blocks: latchkey users are confined; the stray one is a warning.
  const both = checkDeployment(input(withDropIn(SHIPPED + 'Match Group ega\n  ForceCommand internal-sftp\n')));
  assert.deepEqual(only(both.findings, 'error'), []);
  assert.match(only(both.findings, 'warning')[0]!.message, /Match Group ega/);
  // No confinement at all: a warning (shell access may be intended).
  const none = checkDeployment(input({ '/etc/ssh/sshd_config': DEBIAN }));
  assert.deepEqual(only(none.findings, 'error'), []);
  assert.match(only(none.findings, 'warning')[0]!.message, /no `Match Group lega`/);
});

test('(b) chroot_sessions = yes with sshd\'s ChrootDirectory: notice naming file:line, sshd sessions not chrooted', () => {
  const cfg = defaultConfig({ pam: { chrootSessions: true } });
  const { findings, facts } = checkDeployment(input(withDropIn(SHIPPED), cfg));
  assert.deepEqual(only(findings, 'error'), []);
  const n = only(findings, 'notice');
  assert.equal(n.length, 1);
  const line = SHIPPED.split('\n').findIndex((l) => /^\s*ChrootDirectory %h/.test(l)) + 1;
  assert.match(n[0]!.message, new RegExp(`/etc/ssh/sshd_config.d/latchkey.conf:${line}`));
  assert.equal(sessionChroot(cfg, facts, 'sshd'), false);
  assert.equal(sessionChroot(cfg, facts, 'proftpd'), true);
  assert.equal(sessionChroot(cfg, NO_SSHD_FACTS, 'sshd'), true);
  assert.equal(sessionChroot(defaultConfig(), facts, 'proftpd'), false);
  // PAMServiceName (OpenSSH 9.8+) renames the service sshd opens sessions under.
  const named = checkDeployment(input(withDropIn(SHIPPED, 'PAMServiceName sftpd\n' + DEBIAN), cfg)).facts;
  assert.equal(sessionChroot(cfg, named, 'sshd'), true);
  assert.equal(sessionChroot(cfg, named, 'sftpd'), false);
  // sshd chroots only some connections: neither choice works for all of them.
  const cond = checkDeployment(input(withDropIn(SHIPPED.replace('Match Group lega', 'Match Group lega Address 10.0.0.0/8')), cfg));
  assert.equal(only(cond.findings, 'error')[0]!.check, 'sshd.chroot_sessions');
});

test('(b)/(c) ChrootDirectory vs the homes layout and base', () => {
  const plain = defaultConfig({ homes: { layout: 'plain' } });
  const e = only(checkDeployment(input(withDropIn(SHIPPED), plain)).findings, 'error');
  assert.equal(e.length, 1);
  assert.equal(e[0]!.check, 'sshd.chroot_path');
  assert.match(e[0]!.fix!, /layout = chroot/);
  // The base path spelled out is the same directory as %h.
  const spelled = SHIPPED.replace('ChrootDirectory %h', 'ChrootDirectory /ega/inbox/%u/');
  assert.equal(only(checkDeployment(input(withDropIn(spelled), plain)).findings, 'error').length, 1);
  // The base itself (root-owned) works with either layout.
  const base = SHIPPED.replace('ChrootDirectory %h', 'ChrootDirectory /ega/inbox');
  assert.deepEqual(only(checkDeployment(input(withDropIn(base), plain)).findings, 'error'), []);
  const upload = SHIPPED.replace('ChrootDirectory %h', 'ChrootDirectory %h/inbox');
  assert.match(only(checkDeployment(input(withDropIn(upload))).findings, 'error')[0]!.message, /user-owned upload directory/);
  const elsewhere = SHIPPED.replace('ChrootDirectory %h', 'ChrootDirectory /srv/sftp/%u');
  assert.match(only(checkDeployment(input(withDropIn(elsewhere))).findings, 'warning')[0]!.message, /outside the homes base/);
});

test('AllowGroups without the latchkey group, or DenyGroups with it: warnings', () => {
  const allow = checkDeployment(input(withDropIn(SHIPPED, 'AllowGroups adm sftponly\n' + DEBIAN)));
  assert.deepEqual(only(allow.findings, 'warning').map((f) => [f.check, f.at!.line]), [['sshd.allow_groups', 1]]);
  assert.deepEqual(only(checkDeployment(input(withDropIn(SHIPPED, 'AllowGroups adm\nAllowGroups le?a\n' + DEBIAN))).findings, 'warning'), []);
  const deny = checkDeployment(input(withDropIn(SHIPPED, 'DenyGroups l*\n' + DEBIAN)));
  assert.match(only(deny.findings, 'warning')[0]!.message, /DenyGroups/);
});

test('missing sshd_config: skipped with an info line; UsePAM off is a warning', () => {
  const { findings, facts } = checkDeployment(input(null));
  assert.deepEqual(findings.map((f) => [f.severity, f.check]), [['info', 'sshd.missing']]);
  assert.equal(facts.chrootAt, null);
  const nopam = checkDeployment(input({ '/etc/ssh/sshd_config': 'UsePAM no\n' + SHIPPED.replace('UsePAM yes', '') }));
  assert.ok(only(nopam.findings, 'warning').some((f) => f.check === 'sshd.use_pam'));
});

test('(d) the shipped units keep db_path (latchkeyd) and the default homes base (latchkey-rootd) writable; other paths are errors', () => {
  const shipped = parseUnitSandbox([{ path: '/etc/systemd/system/latchkeyd.service', text: readFileSync(join(ROOT, 'etc/systemd/latchkeyd.service'), 'utf8') }]);
  const rootd = parseUnitSandbox([{ path: '/etc/systemd/system/latchkey-rootd.service', text: readFileSync(join(ROOT, 'etc/systemd/latchkey-rootd.service'), 'utf8') }]);
  assert.equal(pathAccess(shipped, '/run/latchkey').access, 'writable');
  assert.equal(pathAccess(shipped, '/ega/inbox').access, 'read-only', 'the unprivileged daemon never writes homes');
  assert.equal(pathAccess(rootd, '/ega/inbox').access, 'writable');
  // StateDirectory=latchkey: the local users' store (issue 16); nothing else under /var/lib.
  assert.equal(pathAccess(shipped, '/var/lib/latchkey').access, 'writable');
  assert.equal(pathAccess(shipped, '/var/lib/other').access, 'read-only');
  assert.equal(pathAccess(shipped, '/home/inbox').access, 'inaccessible');
  assert.deepEqual(only(checkDeployment(input(null, defaultConfig(), { unit: shipped, rootdUnit: rootd })).findings, 'error'), []);
  const moved = defaultConfig({ cache: { dbPath: '/var/cache/latchkey/cache.db' }, homes: { base: '/srv/inbox' } });
  moved.local.dbPath = '/srv/latchkey/local.db';
  const e = only(checkDeployment(input(null, moved, { unit: shipped, rootdUnit: rootd })).findings, 'error');
  assert.deepEqual(e.map((f) => f.check), ['systemd.writable', 'systemd.writable', 'systemd.writable']);
  assert.match(e[0]!.message, /db_path.*\/var\/cache\/latchkey.*read-only.*ProtectSystem=strict/);
  assert.match(e[1]!.message, /\[local\] db_path.*\/srv\/latchkey.*read-only/);
  assert.match(e[2]!.fix!, /ReadWritePaths=\/srv\/inbox.*systemctl edit latchkey-rootd/);
  // A drop-in adds the path (systemctl edit); an empty assignment resets the list.
  const fixed = parseUnitSandbox([{ path: 'u', text: '[Service]\nProtectSystem=strict\nReadWritePaths=/ega/inbox\n' }, { path: 'd', text: '[Service]\nReadWritePaths=-/srv/inbox\n' }]);
  assert.equal(pathAccess(fixed, '/srv/inbox/x').access, 'writable');
  const reset = parseUnitSandbox([{ path: 'u', text: '[Service]\nProtectSystem=strict\nReadWritePaths=/ega/inbox\n' }, { path: 'd', text: '[Service]\nReadWritePaths=\n' }]);
  assert.equal(pathAccess(reset, '/ega/inbox').access, 'read-only');
});

test('file-system side: globs with hidden files and sorting; the installed unit with drop-ins', () => {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-sshdconf-'));
  try {
    mkdirSync(join(dir, 'd'));
    for (const f of ['b.conf', 'a.conf', '.h.conf', 'c.txt']) writeFileSync(join(dir, 'd', f), '');
    assert.deepEqual(globPaths(`${dir}/d/*.conf`), [`${dir}/d/a.conf`, `${dir}/d/b.conf`]);
    assert.deepEqual(globPaths(`${dir}/d/[ab].conf`), [`${dir}/d/a.conf`, `${dir}/d/b.conf`]);
    assert.deepEqual(globPaths(`${dir}/d/a.conf`), [`${dir}/d/a.conf`]);
    assert.deepEqual(globPaths(`${dir}/nope/*.conf`), []);
    const etc = join(dir, 'etc');
    const lib = join(dir, 'lib');
    mkdirSync(join(etc, 'latchkeyd.service.d'), { recursive: true });
    mkdirSync(lib);
    writeFileSync(join(lib, 'latchkeyd.service'), '[Service]\nProtectSystem=strict\nReadWritePaths=/ega/inbox\n');
    writeFileSync(join(etc, 'latchkeyd.service.d', 'override.conf'), '[Service]\nReadWritePaths=/srv/inbox\n');
    const sb = readInstalledUnit([etc, lib])!;
    assert.deepEqual(sb.files, [join(lib, 'latchkeyd.service'), join(etc, 'latchkeyd.service.d', 'override.conf')]);
    assert.equal(pathAccess(sb, '/srv/inbox').access, 'writable');
    assert.equal(readInstalledUnit([join(dir, 'none')]), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
