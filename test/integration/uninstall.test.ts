// `make install` puts runtime files only, and `make uninstall` takes back exactly what it put:
// into a DESTDIR tree, and on a live system (private mount namespace over throwaway overlays of
// /etc, /usr and /var; the host's are never written), where it refuses while a PAM service still
// uses latchkey, since removing the module then would lock everybody out of sshd.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../lib/paths.js';

let dest: string;

before(() => {
  assert.equal(process.getuid!(), 0, 'root-owned files and the namespaces need root');
  dest = mkdtempSync(join(tmpdir(), 'latchkey-uninstall-'));
});

after(() => {
  if (dest) rmSync(dest, { recursive: true, force: true });
});

const make = (...args: string[]) => spawnSync('make', ['-s', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
const filesUnder = (dir: string): string[] => spawnSync('find', [dir, '(', '-type', 'f', '-o', '-type', 'l', ')'], { encoding: 'utf8' })
  .stdout.split('\n').filter(Boolean).map((p) => p.slice(dir.length)).sort();

test('make install: the runtime node_modules only (no compiler, types or build tools), a few MB', () => {
  const r = make('install', `DESTDIR=${dest}`, 'PREFIX=/usr/local');
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const mods = join(dest, 'usr/local/lib/latchkey/node_modules');
  const top = readdirSync(mods).sort();
  for (const dep of Object.keys((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies)) {
    // node-addon-api is headers for compiling the addons: not needed once they are built.
    if (dep !== 'node-addon-api') assert.ok(top.includes(dep), `${dep} installed`);
  }
  for (const dev of ['typescript', '@types', 'node-gyp', '@biomejs', 'node-addon-api', 'prebuild-install']) assert.ok(!top.includes(dev), `${dev} not installed`);
  // Sources, objects, declarations, docs (licenses stay), other platforms' binaries.
  assert.deepEqual(filesUnder(mods).filter((p) => /\.(c|cc|cpp|h|o|d\.ts|md)$|\/obj\.target\/|\.musl\.node$|\/(darwin|win32)-/.test(p) && !/\/LICEN[CS]E[^/]*$/i.test(p)), []);
  const kb = Number(spawnSync('du', ['-sk', join(dest, 'usr/local/lib/latchkey')], { encoding: 'utf8' }).stdout.split('\t')[0]);
  assert.ok(kb < 20_000, `${kb} KiB installed under lib/latchkey (the development tree is 170 MB)`);
  // What is installed runs: the daemon loads better-sqlite3, bcrypt and the addon at --check.
  const v = spawnSync(join(dest, 'usr/local/bin/latchkeyd'), ['--version'], { encoding: 'utf8' });
  assert.match(v.stdout, /^latchkeyd \d+\.\d+\.\d+/, v.stderr);
  const sqlite = spawnSync(process.execPath, ['-e', `const D=require(${JSON.stringify(join(mods, 'better-sqlite3'))});new D(':memory:').prepare('select 1').get();require(${JSON.stringify(join(mods, 'bcrypt'))}).hashSync('x',4)`], { encoding: 'utf8' });
  assert.equal(sqlite.status, 0, sqlite.stderr);
});

test('make uninstall DESTDIR=…: every installed file goes except the config; PURGE=1 takes the config too', () => {
  if (!existsSync(join(dest, 'usr/local/lib/latchkey'))) assert.equal(make('install', `DESTDIR=${dest}`, 'PREFIX=/usr/local').status, 0);
  writeFileSync(join(dest, 'etc/latchkey/latchkey.conf'), '# the admin\'s\n');
  const r = make('uninstall', `DESTDIR=${dest}`, 'PREFIX=/usr/local');
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.deepEqual(filesUnder(dest), ['/etc/latchkey/latchkey.conf']);
  assert.equal(readFileSync(join(dest, 'etc/latchkey/latchkey.conf'), 'utf8'), '# the admin\'s\n');
  assert.ok(!existsSync(join(dest, 'usr/local/share/latchkey')), 'latchkey\'s own directories go when empty');
  // Again: nothing installed any more, nothing to do.
  const again = make('uninstall', `DESTDIR=${dest}`, 'PREFIX=/usr/local');
  assert.equal(again.status, 0, again.stderr);
  // A PREFIX install, then PURGE=1: nothing of latchkey's is left at all.
  assert.equal(make('install', `DESTDIR=${dest}`, 'PREFIX=/opt/lk').status, 0);
  assert.ok(filesUnder(dest).includes('/opt/lk/bin/latchkeyd'));
  const p = make('uninstall', `DESTDIR=${dest}`, 'PREFIX=/opt/lk', 'PURGE=1');
  assert.equal(p.status, 0, p.stdout + p.stderr);
  assert.deepEqual(filesUnder(dest), []);
  assert.ok(!existsSync(join(dest, 'etc/latchkey')));
});

// $1: the repo, $2: a scratch dir for the overlays.
const LIVE = `
set -e
mount --make-rprivate /
w=$2
mount -t tmpfs tmpfs "$w"
for d in etc usr var; do
  mkdir "$w/$d.up" "$w/$d.wk"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$w/$d.up,workdir=$w/$d.wk" "/$d"
done
cd "$1"
scripts/install '' /usr/local >/dev/null
cp /etc/pam.d/sshd "$w/sshd.orig" 2>/dev/null || : > "$w/sshd.orig"
echo '@include latchkey-sshd' > /etc/pam.d/sshd
set +e
scripts/uninstall '' /usr/local >"$w/out1" 2>&1
echo "refused=$?"
echo "refusal=$(tr '\\n' ' ' < "$w/out1")"
echo "module_kept=$(test -e /lib/$(gcc -print-multiarch)/security/pam_latchkey.so && echo yes || echo no)"
cp "$w/sshd.orig" /etc/pam.d/sshd
scripts/uninstall '' /usr/local >"$w/out2" 2>&1
echo "removed=$?"
echo "said=$(tr '\\n' ' ' < "$w/out2")"
echo "left=$(cd "$w" && find usr.up etc.up \\( -type f -o -type l \\) | grep -E 'latchkey' | grep -v '^etc.up/latchkey/latchkey.conf$' | tr '\\n' ' ')"
echo "conf=$(test -e /etc/latchkey/latchkey.conf && echo kept)"
echo "user=$(grep -c '^_latchkey:' /etc/passwd)"
`;

test('make uninstall on a live system: refuses while /etc/pam.d uses latchkey, then removes everything but the config and the account', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'latchkey-live-uninstall-'));
  let r;
  try {
    r = spawnSync('unshare', ['-m', 'bash', '-c', LIVE, 'live', ROOT, scratch], { encoding: 'utf8', timeout: 300_000 });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const f = Object.fromEntries(r.stdout.split('\n').filter((l) => /^\w+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  assert.equal(f.refused, '1', r.stdout);
  assert.match(f.refusal!, /PAM services still use latchkey.*\/etc\/pam\.d\/sshd/);
  assert.equal(f.module_kept, 'yes', 'a refusal changes nothing');
  assert.equal(f.removed, '0', r.stdout);
  assert.match(f.said!, /kept \/etc\/latchkey\/latchkey\.conf/);
  assert.match(f.said!, /kept the account _latchkey/);
  assert.equal(f.left, '', 'no file of latchkey is left under /usr or /etc but the config');
  assert.equal(f.conf, 'kept');
  assert.equal(f.user, '1');
});
