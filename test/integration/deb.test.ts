// The Debian package (`make deb`, scripts/deb/): what it holds, what lintian says, and what
// `apt install ./latchkey_*.deb` and `apt purge latchkey` do to a system. The system is an overlay
// of the host's root (a tmpfs upper layer) in private mount and pid namespaces, entered with
// chroot: everything apt, dpkg and the maintainer scripts write lands in the tmpfs, the host's
// files are never written, and every process started in there dies with the namespace.
// After the purge, every path the upper layer still holds is compared with the host's: anything
// added, changed or deleted outside the package manager's own records is a leftover.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startUserService } from '../../src/example/userservice.js';
import { ROOT, exampleUsers, runCommand } from '../lib/harness.js';

let work: string;
let deb: string;
const MULTIARCH = spawnSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).stdout.trim();
const LIB = MULTIARCH ? `/lib/${MULTIARCH}` : '/lib';

before(() => {
  assert.equal(process.getuid!(), 0, 'apt, chroot and the namespaces need root');
  work = mkdtempSync(join(tmpdir(), 'latchkey-deb-'));
  const r = spawnSync(join(ROOT, 'scripts/deb/build'), [join(work, 'out')], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  deb = r.stdout.trim().split('\n').pop()!;
  assert.match(deb, /\/latchkey_\d+\.\d+\.\d+[^/]*_[a-z0-9]+\.deb$/);
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const field = (name: string): string => spawnSync('dpkg-deb', ['-f', deb, name], { encoding: 'utf8' }).stdout.trim();

test('the package: its name, Depends on the real runtime, runtime files only, units in /lib/systemd/system', () => {
  const version = (JSON.parse(spawnSync('cat', [join(ROOT, 'package.json')], { encoding: 'utf8' }).stdout) as { version: string }).version;
  const arch = spawnSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).stdout.trim();
  assert.ok(deb.endsWith(`/latchkey_${version}_${arch}.deb`), deb);
  const depends = field('Depends').split(/,\s*/);
  assert.ok(depends.includes('nodejs (>= 20.18.1)'), field('Depends'));
  for (const lib of ['libc6', 'libpam0g', 'libcrypt1']) assert.ok(depends.some((d) => d.startsWith(`${lib} (>= `)), `${lib} in ${field('Depends')}`);
  const list = spawnSync('dpkg-deb', ['-c', deb], { encoding: 'utf8', maxBuffer: 64 << 20 }).stdout;
  const paths = list.split('\n').filter(Boolean).map((l) => l.slice(l.indexOf('./') + 1).replace(/ -> .*$/, ''));
  for (const p of [
    '/usr/bin/latchkeyd', '/usr/bin/latchkeyctl', '/usr/bin/latchkey-sync',
    '/usr/lib/latchkey/dist/src/daemon/main.js', '/usr/lib/latchkey/package.json',
    '/usr/lib/latchkey/native/addon/build/Release/latchkey.node',
    '/usr/lib/latchkey/native/rootd/latchkey-rootd', '/usr/libexec/latchkey-authorized-keys',
    '/usr/lib/latchkey/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
    `${LIB}/libnss_latchkey.so.2`, `${LIB}/security/pam_latchkey.so`,
    '/lib/systemd/system/latchkeyd.service', '/lib/systemd/system/latchkey-rootd.service',
    '/lib/systemd/system/latchkey-sync.service', '/lib/systemd/system/latchkey-sync.timer',
    '/usr/lib/sysusers.d/latchkey.conf', '/usr/lib/tmpfiles.d/latchkey.conf',
    '/etc/latchkey/latchkey.conf', '/etc/pam.d/latchkey-sshd',
    '/usr/share/latchkey/sshd_config.d/latchkey.conf', '/usr/share/doc/latchkey/copyright',
  ]) assert.ok(paths.includes(p), `${p} is in the package`);
  // The development tree stays out: compilers, type packages, tests, the example service, maps.
  const dev = paths.filter((p) => /\/node_modules\/(typescript|@types|node-gyp\/|@biomejs|node-addon-api|prebuild-install)|\/dist\/test\/|\/dist\/src\/example\/|\.map$|\.ts$|\/obj\.target\//.test(p));
  assert.deepEqual(dev, []);
  // Nothing active in sshd's or the admin's systemd directories: sshd changes only when asked.
  assert.deepEqual(paths.filter((p) => p.startsWith('/etc/ssh') || p.startsWith('/etc/systemd') || p === '/etc/pam.d/sshd'), []);
  assert.deepEqual(spawnSync('sh', ['-c', `dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles`, 'sh', deb], { encoding: 'utf8' }).stdout.trim().split('\n').sort(),
    ['/etc/latchkey/latchkey.conf', '/etc/pam.d/latchkey-sshd']);
  // The units start the installed programs.
  const unit = spawnSync('sh', ['-c', `dpkg-deb --fsys-tarfile "$1" | tar -xO ./lib/systemd/system/latchkeyd.service`, 'sh', deb], { encoding: 'utf8' }).stdout;
  assert.match(unit, /^ExecStart=\/usr\/bin\/latchkeyd --config \/etc\/latchkey\/latchkey\.conf$/m);
  assert.doesNotMatch(unit, /\/usr\/local\//);
  const installedKb = Number(field('Installed-Size'));
  assert.ok(installedKb > 1000 && installedKb < 20_000, `Installed-Size ${installedKb} KiB (the dev tree was 74 MB)`);
});

test('lintian: no error and no warning (overrides each carry a reason in scripts/deb/lintian-overrides)', () => {
  const r = spawnSync('lintian', ['--fail-on', 'none', deb], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.error, undefined, 'lintian is installed (apt-get install lintian)');
  // Every program has its man page (dist/man/, from `make build`): no tag at all is allowed.
  const left = r.stdout.split('\n').filter((l) => /^[EW]: /.test(l));
  assert.deepEqual(left, [], r.stdout + r.stderr);
});

/** Shell run in `unshare -m -p -f`: an overlay of / at $W/root (tmpfs upper layer at $W/up),
 *  with /proc, /dev, /run and /tmp, the package copied to /tmp/latchkey.deb inside. $1: the .deb,
 *  $2: the scratch dir. `inroot CMD...` runs a command in the chroot. */
const OVERLAY = `
set -e
mount --make-rprivate /
W=$2
mount -t tmpfs tmpfs "$W"
mkdir "$W/up" "$W/wk" "$W/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$W/up,workdir=$W/wk" "$W/root"
R=$W/root
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
# /run as a booted system has it (0755): latchkeyd refuses a socket_dir under a writable parent.
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
cp "$1" "$R/tmp/latchkey.deb"
inroot() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
apt_q() { inroot apt-get -y -q -o Dpkg::Use-Pty=0 "$@" >"$W/apt.log" 2>&1 || { cat "$W/apt.log"; exit 1; }; }
`;

// Every path left in the upper layer after the purge, other than the package manager's and the
// account tools' own records, as "new", "changed" or "deleted" (an overlay whiteout).
const LEFTOVERS = `
umount "$R/proc"; umount -l "$R/dev"; umount "$R/run" "$R/tmp"
cd "$W/up"
find . -mindepth 1 \\( -path ./var/lib/dpkg -o -path ./var/log -o -path ./var/cache -o -path ./var/lib/apt \\
  -o -path ./etc/ld.so.cache -o -path ./etc/.pwd.lock -o -path './etc/*-' \\) -prune -o -print | while IFS= read -r p; do
  h=\${p#.}
  if [ -c "$p" ] && [ "$(stat -c %t%T "$p")" = 00 ]; then echo "LEFT deleted $h"
  elif [ -d "$p" ] && [ ! -L "$p" ]; then
    if [ ! -d "$h" ]; then echo "LEFT new dir $h"
    elif [ "$(stat -c %u:%g:%a "$p")" != "$(stat -c %u:%g:%a "$h")" ]; then echo "LEFT changed dir $h"; fi
  elif [ ! -e "$h" ] && [ ! -L "$h" ]; then echo "LEFT new $h"
  elif [ "$(stat -c %u:%g:%a:%F "$p")" != "$(stat -c %u:%g:%a:%F "$h")" ] || ! cmp -s "$p" "$h"; then echo "LEFT changed $h"
  fi
done
`;

function facts(out: string): Record<string, string> {
  return Object.fromEntries(out.split('\n').filter((l) => /^[a-z_0-9]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

test('apt install ./latchkey.deb: files, the _latchkey account, the config mode, nsswitch; apt purge: the system as it was', async () => {
  const scratch = mkdtempSync(join(work, 'ns-'));
  const script = `${OVERLAY}
ns_before=$(inroot grep -E '^(passwd|group|shadow):' /etc/nsswitch.conf)
apt_q install /tmp/latchkey.deb
echo "status=$(inroot dpkg-query -W -f='\${Status}' latchkey)"
echo "user=$(inroot getent -s files passwd _latchkey)"
echo "group=$(inroot getent -s files group _latchkey)"
echo "conf=$(inroot stat -c '%U:%G %a' /etc/latchkey/latchkey.conf)"
echo "override=$(inroot dpkg-statoverride --list /etc/latchkey/latchkey.conf)"
echo "run=$(inroot stat -c '%U:%G %a' /run/latchkey)"
echo "userdb_link=$(inroot readlink /run/systemd/userdb/io.latchkey)"
echo "state=$(inroot stat -c '%U:%G %a' /var/lib/latchkey)"
echo "passwd_line=$(inroot grep -E '^passwd:' /etc/nsswitch.conf)"
echo "group_line=$(inroot grep -E '^group:' /etc/nsswitch.conf)"
echo "shadow_line=$(inroot grep -E '^shadow:' /etc/nsswitch.conf)"
echo "shadow_before=$(echo "$ns_before" | grep '^shadow:')"
echo "enabled=$(ls "$R/etc/systemd/system/multi-user.target.wants/latchkeyd.service" 2>/dev/null || echo no)"
echo "said=$(grep -c 'systemctl enable --now latchkeyd' "$W/apt.log")"
echo "sshd_dropin=$(ls "$R/etc/ssh/sshd_config.d/latchkey.conf" 2>/dev/null || echo none)"
echo "pam_sshd=$(cmp -s "$R/etc/pam.d/sshd" /etc/pam.d/sshd && echo same || echo changed)"
echo "version=$(inroot latchkeyd --version)"
echo "nss_cached=$(inroot ldconfig -p | grep -c 'libnss_latchkey.so.2 ')"
# systemd's reading of the installed units (ExecStart= paths included): silent when all is well.
echo "verify=$(inroot systemd-analyze verify --man=no /lib/systemd/system/latchkeyd.service /lib/systemd/system/latchkey-rootd.service /lib/systemd/system/latchkey-sync.service /lib/systemd/system/latchkey-sync.timer 2>&1 | tr '\n' ' ')"
# An upgrade (the same version again) keeps the admin's choice and adds no second entry.
apt_q install --reinstall /tmp/latchkey.deb
echo "passwd_line2=$(inroot grep -E '^passwd:' /etc/nsswitch.conf)"
apt_q purge latchkey
echo "status_after=$(inroot dpkg-query -W -f='\${Status}' latchkey 2>&1 | tr -d '\\n' || true)"
echo "nsswitch_after=$(inroot grep -E '^(passwd|group|shadow):' /etc/nsswitch.conf | tr '\\n' '|')"
echo "userdb_link_after=$(inroot readlink /run/systemd/userdb/io.latchkey || echo none)"
echo "nsswitch_before=$(echo "$ns_before" | tr '\\n' '|')"
${LEFTOVERS}
echo done=1
`;
  const r = await runCommand('unshare', ['-m', '-p', '-f', 'bash', '-c', script, 'deb', deb, scratch], {}, 300_000);
  rmSync(scratch, { recursive: true, force: true });
  const f = facts(r.stdout);
  assert.equal(f.done, '1', r.stdout + r.stderr);
  assert.equal(f.status, 'install ok installed');
  const user = /^_latchkey:x:(\d+):(\d+):[^:]*:\/nonexistent:\/usr\/sbin\/nologin$/.exec(f.user!);
  assert.ok(user && Number(user[1]) < 1000, `a system account: ${f.user}`);
  assert.match(f.group!, new RegExp(`^_latchkey:x:${user[2]}:`));
  assert.equal(f.conf, 'root:_latchkey 640', 'the daemon reads it through its group; nobody else');
  assert.equal(f.override, 'root _latchkey 640 /etc/latchkey/latchkey.conf', 'dpkg keeps owner and mode on upgrades');
  assert.equal(f.run, '_latchkey:_latchkey 755');
  // issue 20: systemd's userdb clients find latchkeyd's userdb.sock through this link.
  assert.equal(f.userdb_link, '/run/latchkey/userdb.sock');
  assert.equal(f.state, '_latchkey:_latchkey 710');
  assert.match(f.passwd_line!, /^passwd:\s+files\b.*\slatchkey$/);
  assert.match(f.group_line!, /^group:\s+files\b.*\slatchkey$/);
  assert.equal(f.shadow_line, f.shadow_before, 'shadow stays as it was: latchkey never serves hashes');
  // The shipped config names users.example.org: not enabled, and apt's output says what to do.
  assert.equal(f.enabled, 'no');
  assert.notEqual(f.said, '0');
  assert.equal(f.sshd_dropin, 'none', 'sshd is not changed unasked');
  assert.equal(f.pam_sshd, 'same');
  assert.match(f.version!, /^latchkeyd \d+\.\d+\.\d+/);
  assert.equal(f.nss_cached, '1', 'the ldconfig trigger put the NSS module into ld.so.cache');
  assert.equal(f.verify, '', 'systemd-analyze verify has nothing to say about the installed units');
  assert.equal(f.passwd_line2, f.passwd_line, 'a reinstall does not add latchkey twice');
  assert.match(f.status_after!, /no packages found|not-installed/);
  assert.equal(f.nsswitch_after, f.nsswitch_before);
  assert.equal(f.userdb_link_after, 'none', 'purge removes the userdb link');
  const left = r.stdout.split('\n').filter((l) => l.startsWith('LEFT '));
  assert.deepEqual(left, [], 'apt purge leaves nothing behind');
});

test('the installed latchkeyd, started from the installed paths, serves a user to getent through the installed NSS module', async () => {
  const users = exampleUsers();
  const alice = users[0]!;
  const service = await startUserService({ host: '127.0.0.1', port: 0, users, basicAuth: { user: 'lega', password: 'testpass' } });
  const scratch = mkdtempSync(join(work, 'ns-'));
  try {
    const conf = [
      '[upstream]', `by_name_url = ${service.url}/username/`, `by_uid_url = ${service.url}/user-id/`,
      'username = lega', 'password = testpass', 'insecure_http = yes', 'json_prefix = response.result',
      '[users]', 'uid_shift = 10000', 'gid = 10000',
      // The host's own sshd_config must not decide whether the daemon starts.
      '[daemon]', 'sshd_config = /nonexistent/sshd_config', 'log_level = debug',
    ].join('\n');
    const script = `${OVERLAY}
apt_q install /tmp/latchkey.deb
# The config keeps the package's owner and mode (root:_latchkey 0640); only its text changes.
printf '%s\\n' "$3" > "$R/etc/latchkey/latchkey.conf"
inroot latchkeyd --check --config /etc/latchkey/latchkey.conf >"$W/check.log" 2>&1 || { echo "check failed"; cat "$W/check.log"; }
inroot latchkeyd --config /etc/latchkey/latchkey.conf >"$W/daemon.log" 2>&1 &
for i in $(seq 1 300); do [ -S "$R/run/latchkey/nss.sock" ] && break; sleep 0.05; done
echo "alice=$(inroot getent passwd ${alice.username})"
echo "gid=$(inroot getent group 10000)"
echo "root=$(inroot getent passwd root)"
# Inside the chroot: its /proc is this pid namespace's, its /etc/passwd the one with _latchkey.
inroot ps -eo user:20=,args= > "$W/ps"
echo "daemon_user=$(awk '$2 == "node" && index($0, " /usr/bin/latchkeyd --config ") { print $1 }' "$W/ps")"
echo "rootd_user=$(awk '$2 == "/usr/lib/latchkey/native/rootd/latchkey-rootd" { print $1 }' "$W/ps")"
cat "$W/daemon.log" | sed 's/^/LOG /'
echo done=1
`;
    // The user service runs in this process: runCommand does not block its event loop.
    const r = await runCommand('unshare', ['-m', '-p', '-f', 'bash', '-c', script, 'deb', deb, scratch, conf], {}, 120_000);
    const f = facts(r.stdout);
    assert.equal(f.done, '1', r.stdout + r.stderr);
    // Name, uid shifted, the group, the home under the default base: the daemon's answer.
    assert.match(f.alice!, new RegExp(`^${alice.username}:x:${alice.uid + 10000}:10000:[^:]*:/ega/inbox/${alice.username}:/bin/bash$`), r.stdout);
    assert.match(f.gid!, /^lega:x:10000:/);
    assert.match(f.root!, /^root:x:0:0:/);
    assert.equal(f.daemon_user, '_latchkey', `started as root, it runs as _latchkey\n${r.stdout}`);
    assert.equal(f.rootd_user, 'root', 'and it started the installed latchkey-rootd, which stays root');
  } finally {
    await service.close();
    rmSync(scratch, { recursive: true, force: true });
  }
});
