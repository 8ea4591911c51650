// The latchkey/sshd cross-checks as an admin meets them: `latchkeyctl check-config` (the real
// CLI, reading the sshd_config named by [daemon] sshd_config, with its Include) and latchkeyd's
// start (refused on an error, with the fix; a notice logged otherwise). No sshd is started:
// the checks read files only, plus `sshd -T` for sshd's own verdict.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, runCommand, startDaemon, writeConfig, type ConfigOverrides } from '../lib/harness.js';

const CTL = join(ROOT, 'bin/latchkeyctl');
const SHIPPED = readFileSync(join(ROOT, 'etc/sshd_config.d/latchkey.conf'), 'utf8');
let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'latchkey-sshd-checks-'));
  chmodSync(dir, 0o755);
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** An sshd_config as Debian's, including `dropIn` from sshd_config.d; returns the main file. */
function sshdConfig(name: string, dropIn: string, head = ''): string {
  const d = join(dir, name);
  mkdirSync(join(d, 'sshd_config.d'), { recursive: true });
  writeFileSync(join(d, 'sshd_config.d', 'latchkey.conf'), dropIn);
  const main = join(d, 'sshd_config');
  writeFileSync(main, `${head}Include ${d}/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\nSubsystem sftp internal-sftp\n`);
  return main;
}

function config(name: string, over: ConfigOverrides): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  return writeConfig(d, 'http://127.0.0.1:9', { daemon: { socket_dir: join(d, 'run') }, ...over });
}

const ctl = (args: string[]) => runCommand(process.execPath, [CTL, ...args], { LATCHKEY_SOCKET_DIR: '/nonexistent' });
const lineOf = (text: string, re: RegExp): number => text.split('\n').findIndex((l) => re.test(l)) + 1;

test('check-config: a Match Group that misses the latchkey group is an error with file:line and the fix, exit 1', async () => {
  const old = SHIPPED.replace('Match Group lega', 'Match Group latchkey');
  const sshd = sshdConfig('misnamed', old);
  const file = config('misnamed', { daemon: { sshd_config: sshd } });
  const r = await ctl(['check-config', file]);
  assert.equal(r.code, 1, r.stderr);
  const at = `${join(dir, 'misnamed', 'sshd_config.d', 'latchkey.conf')}:${lineOf(old, /^Match Group/)}`;
  assert.match(r.stderr, /^error: `Match Group latchkey`/m);
  assert.ok(r.stderr.includes(at), r.stderr);
  assert.match(r.stderr, /fix: write `Match Group lega`.*or set \[users\] group_name = latchkey/);
  const j = JSON.parse((await ctl(['check-config', file, '--json'])).stdout) as { ok: boolean; findings: Array<{ severity: string; check: string; at: { line: number } }> };
  assert.equal(j.ok, false);
  assert.deepEqual(j.findings.filter((f) => f.severity === 'error').map((f) => [f.check, f.at.line]), [['sshd.match_group', lineOf(old, /^Match Group/)]]);
});

test('check-config: the shipped drop-in with chroot_sessions = yes is fine, with a notice naming the ChrootDirectory line', async () => {
  const sshd = sshdConfig('shipped', SHIPPED);
  const file = config('shipped', { daemon: { sshd_config: sshd }, pam: { chroot_sessions: 'yes' } });
  const r = await ctl(['check-config', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /: ok$/m);
  assert.match(r.stderr, /^notice: chroot_sessions = yes/m);
  assert.ok(r.stderr.includes(`${join(dir, 'shipped', 'sshd_config.d', 'latchkey.conf')}:${lineOf(SHIPPED, /^\s*ChrootDirectory %h/)}`), r.stderr);
  assert.doesNotMatch(r.stderr, /^(error|warning):/m);
});

test('check-config: sshd\'s own syntax errors are reported (sshd -T)', async () => {
  const sshd = sshdConfig('syntax', SHIPPED, 'NoSuchKeyword yes\n');
  const file = config('syntax', { daemon: { sshd_config: sshd } });
  const r = await ctl(['check-config', file]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^error: sshd refuses .*line 1: Bad configuration option: NoSuchKeyword/m);
});

test('check-config: a missing sshd_config skips the sshd checks with an info line', async () => {
  const file = config('nosshd', { daemon: { sshd_config: join(dir, 'nope', 'sshd_config') } });
  const r = await ctl(['check-config', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^info: .*nope\/sshd_config does not exist: the sshd checks are skipped/m);
});

test('latchkeyd refuses to start when sshd would refuse every login (ChrootDirectory %h with the plain layout), naming the fix', async () => {
  const sshd = sshdConfig('plain', SHIPPED);
  const file = config('plain', { daemon: { sshd_config: sshd }, homes: { layout: 'plain' } });
  await assert.rejects(startDaemon(file, join(dir, 'plain', 'run')), (e: Error) => {
    assert.match(e.message, /latchkeyd exited 78/);
    assert.match(e.message, /layout = plain.*fix: set \[homes\] layout = chroot/s);
    return true;
  });
  // The same config with the chroot layout starts, and logs the sshd facts it found.
  const ok = config('plain', { daemon: { sshd_config: sshd }, pam: { chroot_sessions: 'yes' } });
  const d = await startDaemon(ok, join(dir, 'plain', 'run'));
  try {
    assert.ok(d.logs.some((l) => l.includes('"deploy.check"') && l.includes('"severity":"notice"')), d.logs.join('\n'));
  } finally {
    await d.stop();
  }
});
