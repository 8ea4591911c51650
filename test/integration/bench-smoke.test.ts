// `scripts/bench --quick` completes and prints/writes the whole table. Timing is never asserted:
// the numbers of a 200-user run on a busy test machine mean nothing; only the plumbing is checked
// (namespaces, service, daemon, driver, hyperfine or its fallback, the storm, SSSD and nscd in
// namespaces of their own when they are installed, the output files, and that the host's /etc
// and process table are as they were). And scripts/bench-deps, which `make bench` runs to install
// SSSD and nscd, puts nsswitch.conf, pam.d/common-* and policy-rc.d back byte for byte (run
// against a scratch tree with a fake apt-get doing what the real maintainer scripts do).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, haveCommand } from '../lib/harness.js';
import { ROW_IDS, BACKENDS, BACKEND_LABEL, VERSUS, NOT_INSTALLED } from '../bench/rows.js';
import { sssdInstalled, nscdInstalled } from '../bench/others.js';

const skip = process.getuid?.() !== 0 ? 'needs root (mount namespaces)'
  : !haveCommand('unshare') ? 'needs unshare(1)'
    : !haveCommand('cc') ? 'needs a C compiler for test/bench/lkbench.c' : false;

/** sha256 of every file under the paths (recursively), by path: what the run must leave alone. */
function hashes(paths: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (p: string): void => {
    let st;
    try { st = statSync(p); } catch { return; }
    if (st.isDirectory()) { for (const f of readdirSync(p).sort()) walk(join(p, f)); return; }
    out.set(p, `${(st.mode & 0o7777).toString(8)} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
  };
  for (const p of paths) walk(p);
  return out;
}
const HOST_FILES = ['/etc/nsswitch.conf', '/etc/passwd', '/etc/group', '/etc/shadow', '/etc/sssd', '/etc/nscd.conf', '/var/lib/sss', '/var/cache/nscd',
  ...(existsSync('/etc/pam.d') ? readdirSync('/etc/pam.d').filter((f) => f.startsWith('common-')).map((f) => `/etc/pam.d/${f}`) : [])];
const daemonPids = (): string[] => spawnSync('ps', ['-eo', 'pid=,comm='], { encoding: 'utf8' }).stdout
  .split('\n').filter((l) => /\s(sssd|sssd_\w+|nscd)$/.test(l)).map((l) => l.trim().split(/\s+/)[0]!).sort();

test('scripts/bench --quick prints a table with every row and column and writes the JSON', { skip, timeout: 300_000 }, () => {
  const out = mkdtempSync(join(tmpdir(), 'latchkey-bench-smoke-'));
  const before = hashes(HOST_FILES);
  const pidsBefore = daemonPids();
  try {
    const r = spawnSync(join(ROOT, 'scripts/bench'), ['--quick', '--out', out], { cwd: ROOT, encoding: 'utf8', timeout: 290_000 });
    assert.equal(r.status, 0, `scripts/bench --quick failed (${r.signal ?? r.status}):\n${r.stdout}\n${r.stderr}`);

    const table = r.stdout.split('\n').filter((l) => l.startsWith('|'));
    const columns = [...BACKENDS.map((b) => BACKEND_LABEL[b]), ...VERSUS.map((v) => `map vs ${BACKEND_LABEL[v]}`), 'target'];
    assert.equal(table[0], `|  | measurement | ${columns.join(' | ')} |`);
    const body = table.slice(2);
    assert.equal(body.length, ROW_IDS.length, `one table row per measurement:\n${table.join('\n')}`);
    for (const line of body) assert.equal(line.split('|').length, columns.length + 4, `${columns.length + 2} cells: ${line}`);
    assert.ok(!r.stdout.includes('not measured'), r.stdout);

    const files = readdirSync(out);
    const json = files.find((f) => /^bench-.*\.json$/.test(f));
    assert.ok(json, `no JSON in ${out}: ${files.join(', ')}`);
    assert.ok(files.some((f) => /^bench-.*\.md$/.test(f)), 'the Markdown copy of the table');
    const doc = JSON.parse(readFileSync(join(out, json), 'utf8')) as { users: number; quick: boolean; rows: { id: string; cells: Record<string, string> }[] };
    assert.equal(doc.users, 200);
    assert.equal(doc.quick, true);
    assert.deepEqual(doc.rows.map((x) => x.id), [...ROW_IDS]);
    for (const row of doc.rows) for (const b of BACKENDS) assert.ok((row.cells[b] ?? '').length > 0, `row ${row.id} has a ${b} cell`);

    // Every column measured, or (SSSD, nscd) skipped only because it is not installed: --quick
    // never installs them; where they are installed, their daemons ran in their namespaces.
    const cell = (id: string, b: string): string => doc.rows.find((x) => x.id === id)!.cells[b]!;
    const sssd = sssdInstalled();
    const nscd = nscdInstalled();
    for (const b of BACKENDS) {
      const there = b === 'sss_mc' || b === 'sss' ? sssd : b === 'nscd' ? nscd : true;
      for (const id of ['getpwnam_middle', 'getpwuid_miss', 'tput_2']) {
        if (there) assert.match(cell(id, b), /^p50 |\/s$/, `${b} ${id} measured:\n${r.stdout}`);
        else assert.equal(cell(id, b), 'skipped');
      }
      if (!there) assert.equal(cell('setup', b), NOT_INSTALLED);
    }
    if (sssd) assert.match(cell('enum', 'sss_mc'), /^p50 .*enumerate = true/, 'SSSD enumeration measured');

    // the temp dir (a tmpfs inside the bench's own namespace) is removed
    const work = /^bench: work dir (\S+)$/m.exec(r.stderr)?.[1];
    assert.ok(work, `the bench names its temp dir on stderr:\n${r.stderr}`);
    assert.ok(!existsSync(work), `${work} left behind`);
    // no daemon of the run outlives it, and the host's files are as they were
    assert.deepEqual(daemonPids(), pidsBefore, 'an sssd or nscd process outlived the run');
    assert.deepEqual(hashes(HOST_FILES), before, 'the host\'s /etc (or SSSD/nscd state dirs) changed');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

// What libnss-sss's and libpam-sss's maintainer scripts do to a host, and a service start attempt
// that records what policy-rc.d answered.
const FAKE_APT = `#!/bin/sh
R="$BENCH_DEPS_ROOT"
[ "$1" = update ] && exit 0
sh "$R/usr/sbin/policy-rc.d" sssd start; echo $? >> "$R/policy-rc-answers"
sed -i 's/^passwd:.*/& sss/' "$R/etc/nsswitch.conf"
printf 'auth required pam_sss.so\\n' > "$R/etc/pam.d/common-auth.new" && mv "$R/etc/pam.d/common-auth.new" "$R/etc/pam.d/common-auth"
chmod 600 "$R/etc/pam.d/common-session"
printf 'session optional pam_sss.so\\n' > "$R/etc/pam.d/common-sss"
exit \${FAKE_APT_EXIT:-0}
`;

for (const [name, existingPolicy, aptExit] of [
  ['no policy-rc.d before, the install succeeds', false, 0],
  ['a policy-rc.d of its own before, the install succeeds', true, 0],
  ['the install fails', false, 1],
] as const) {
  test(`scripts/bench-deps restores nsswitch.conf, pam.d/common-* and policy-rc.d byte for byte: ${name}`, { skip: process.getuid?.() !== 0 ? 'needs root' : false }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'latchkey-bench-deps-'));
    try {
      const root = join(dir, 'root');
      const bin = join(dir, 'bin');
      const tmp = join(dir, 'tmp');
      for (const d of [join(root, 'etc/pam.d'), join(root, 'usr/sbin'), bin, tmp]) mkdirSync(d, { recursive: true });
      writeFileSync(join(root, 'etc/nsswitch.conf'), 'passwd:         files systemd\ngroup:          files systemd\n');
      writeFileSync(join(root, 'etc/pam.d/common-auth'), 'auth [success=1 default=ignore] pam_unix.so nullok\n');
      writeFileSync(join(root, 'etc/pam.d/common-session'), 'session required pam_unix.so\n');
      chmodSync(join(root, 'etc/pam.d/common-session'), 0o644);
      if (existingPolicy) { writeFileSync(join(root, 'usr/sbin/policy-rc.d'), '#!/bin/sh\n# the image\'s own\nexit 101\n'); chmodSync(join(root, 'usr/sbin/policy-rc.d'), 0o755); }
      writeFileSync(join(bin, 'apt-get'), FAKE_APT, { mode: 0o755 });
      writeFileSync(join(bin, 'dpkg-query'), '#!/bin/sh\nprintf not-installed\n', { mode: 0o755 });
      const before = hashes([join(root, 'etc'), join(root, 'usr')]);

      const r = spawnSync(join(ROOT, 'scripts/bench-deps'), [], {
        encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, BENCH_DEPS_ROOT: root, FAKE_APT_EXIT: String(aptExit), TMPDIR: tmp },
      });
      assert.equal(r.status, aptExit === 0 ? 0 : 1, `${r.stdout}\n${r.stderr}`);
      // services were kept from starting while the packages were installed (and apt-get update
      // plus a second try happened after a failure)...
      assert.deepEqual(readFileSync(join(root, 'policy-rc-answers'), 'utf8').trim().split('\n'), aptExit === 0 ? ['101'] : ['101', '101']);
      // ...and every guarded file is back, content and mode; what the install added is gone
      assert.deepEqual(hashes([join(root, 'etc'), join(root, 'usr')]), before);
      assert.equal(existsSync(join(root, 'usr/sbin/policy-rc.d')), existingPolicy);
      // the saved copies go once restored; apt's log stays only after a failure
      assert.deepEqual(readdirSync(tmp).map((f) => f.replace(/\..*/, '')), aptExit === 0 ? [] : ['latchkey-bench-deps-log']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
