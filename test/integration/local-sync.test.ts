// Primary/secondary sync of the local users (issue 16) between two "hosts": two network
// namespaces joined by a veth pair, made inside one `unshare -m -n` (namespace-local addresses,
// nothing under the host's /run/netns). The primary's real sshd listens in one of them with the
// sync account and the shipped forced rrsync line in a private /etc overlay; the shipped
// latchkey-sync.service's ExecStart runs once in the other, as the daemon's uid, with real rsync
// over real ssh. A user added on the primary with `latchkeyctl local add` then logs in on the
// secondary through the shipped PAM stack (pamtester); a truncated snapshot dropped in incoming/
// afterwards is refused, the old store kept, and `latchkeyctl status` says why.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  ROOT, TEST_DAEMON_PASSWD_LINE, TEST_DAEMON_UID, runCommand, startEnv, type RunResult, type TestEnv,
} from '../lib/harness.js';
import { makePrivateEtc, planSshd, shippedPamStack, spawnSshdScript, sshdNamespaceScript, type PrivateEtc } from '../lib/sshd.js';
import { makePamDir, pamtester } from '../lib/pam.js';
import { scratchDir } from '../lib/tmp.js';

const CTL = join(ROOT, 'bin/latchkeyctl');
const PRIMARY_ADDR = '10.231.16.1';
const SECONDARY_ADDR = '10.231.16.2';
const SYNC_USER = 'latchkey-sync';
const SYNC_UID = 64198;
const PASSWORD = 'Synced-pass-16';

/** [Service] key → values of a unit file (no line continuations in ours). */
function serviceKeys(text: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) { section = s[1]!; continue; }
    if (section !== 'Service') continue;
    const eq = line.indexOf('=');
    (out[line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
  }
  return out;
}

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The two network namespaces: pids of a process in each, and the lab process that made them. */
interface Lab { proc: ChildProcess; a: number; b: number; stop(): Promise<void> }

// Run by `unshare -m -n`: two children with their own network namespace each (unshare -n), a
// veth pair moved into them by pid, an address on each end. Prints the pids, then waits.
const LAB_SCRIPT = `
set -e
unshare -n sleep 100000 & A=$!
unshare -n sleep 100000 & B=$!
me=$(readlink /proc/$$/ns/net)
for p in $A $B; do
  i=0
  while [ "$(readlink /proc/$p/ns/net)" = "$me" ]; do i=$((i+1)); [ $i -lt 500 ] || exit 3; sleep 0.01; done
done
ip link add lk-a type veth peer name lk-b
ip link set lk-a netns $A
ip link set lk-b netns $B
nsenter -t $A -n sh -c 'ip link set lo up && ip addr add ${PRIMARY_ADDR}/30 dev lk-a && ip link set lk-a up'
nsenter -t $B -n sh -c 'ip link set lo up && ip addr add ${SECONDARY_ADDR}/30 dev lk-b && ip link set lk-b up'
echo "lab $A $B"
wait
`;

async function startLab(): Promise<Lab> {
  const proc = spawn('unshare', ['-m', '-n', '--propagation', 'private', 'sh', '-c', LAB_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const deadline = Date.now() + 10000;
  let m: RegExpExecArray | null = null;
  while (!(m = /^lab (\d+) (\d+)$/m.exec(out))) {
    if (proc.exitCode !== null || Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`lab did not start: ${out}`); }
    await new Promise((r) => setTimeout(r, 20));
  }
  const a = Number(m[1]);
  const b = Number(m[2]);
  return {
    proc, a, b,
    async stop() {
      // The two sleeps hold the namespaces; the lab's `wait` returns when they are gone.
      for (const p of [a, b]) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
      const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * The primary's sshd inside namespace A, as test/lib/sshd.ts startSshd sets it up (private /etc
 * overlay, PAM stack, /run tmpfs, the keys helper), listening on the veth address.
 */
async function startPrimarySshd(lab: Lab, dir: string, socketDir: string, env: Record<string, string>, etc: PrivateEtc): Promise<{ stop(): Promise<void>; logs(): string; hostKeyPub: string }> {
  const plan = await planSshd(dir, {
    before: [`ListenAddress ${PRIMARY_ADDR}:22`],
    after: () => [`Match User ${SYNC_USER}`, `    AuthorizedKeysFile /etc/${SYNC_USER}/authorized_keys`],
    etc,
  });
  const script = sshdNamespaceScript(plan.dir, socketDir, etc, plan.configFile);
  const run = spawnSshdScript(script, env, ['nsenter', '-t', String(lab.a), '-n', '--']);
  const deadline = Date.now() + 10000;
  while (!run.logs().includes(`Server listening on ${PRIMARY_ADDR} port 22`)) {
    if (run.proc.exitCode !== null || Date.now() > deadline) { run.proc.kill('SIGKILL'); throw new Error(`sshd did not listen:\n${run.logs()}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    logs: run.logs,
    hostKeyPub: readFileSync(join(plan.dir, 'host_ed25519.pub'), 'utf8').trim(),
    stop: run.stop,
  };
}

describe('sync: a user added on the primary logs in on the secondary after one latchkey-sync run', () => {
  let lab: Lab;
  let primary: TestEnv;
  let secondary: TestEnv;
  let sshd: Awaited<ReturnType<typeof startPrimarySshd>>;
  let work: string;
  let secondaryEtc: PrivateEtc;
  let pamDir: string;

  const ctl = (env: TestEnv, args: string[], input = ''): Promise<RunResult & { code: number | null }> => new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CTL, ...args], { env: { ...process.env, LATCHKEY_SOCKET_DIR: env.socketDir }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const t0 = Date.now();
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - t0 }));
    p.stdin.on('error', () => undefined);
    p.stdin.end(input);
  });
  const localStatus = async (env: TestEnv): Promise<{ snapshot: { taken_at: number | null; taken_on: string | null; users: number } | null; last_sync_at: number | null; last_sync_error: string | null; users: number }> => {
    const r = await ctl(env, ['status', '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return (JSON.parse(r.stdout) as { local: Awaited<ReturnType<typeof localStatus>> }).local;
  };
  const login = (env: TestEnv, user: string, password: string): Promise<RunResult> =>
    pamtester(pamDir, env.shimEnv, 'latchkey-sshd', user, ['authenticate', 'acct_mgmt'], { input: `${password}\n`, items: { rhost: '192.0.2.7' } });

  /** latchkey-sync.service's ExecStart as the unit runs it: the daemon's uid, the unit's
   *  environment and umask, inside namespace B, with /etc giving ssh the account's passwd line. */
  const runSyncUnit = async (): Promise<RunResult> => {
    const svc = serviceKeys(readFileSync(join(ROOT, 'etc/systemd/latchkey-sync.service'), 'utf8'));
    assert.deepEqual(svc.Type, ['oneshot']);
    assert.deepEqual(svc.User, ['_latchkey'], 'the daemon account (TEST_DAEMON_UID here)');
    const argv = svc.ExecStart![0]!.split(/\s+/);
    assert.equal(argv[0], '/usr/local/bin/latchkey-sync');
    const ci = argv.indexOf('--config');
    assert.equal(argv[ci + 1], '/etc/latchkey/latchkey.conf');
    argv[ci + 1] = secondary.configFile;
    const envs = (svc.Environment ?? []).map(q).join(' ');
    const umask = svc.UMask?.[0] ?? '0022';
    const cmd = [process.execPath, join(ROOT, 'bin/latchkey-sync'), ...argv.slice(1)].map(q).join(' ');
    const script = [
      'set -e',
      'mount --make-rprivate /',
      `mount -t overlay latchkey-test-etc -o lowerdir=/etc,upperdir=${secondaryEtc.upper},workdir=${secondaryEtc.work} /etc`,
      `umask ${umask}`,
      `exec setpriv --reuid=${TEST_DAEMON_UID} --regid=${TEST_DAEMON_UID} --clear-groups -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin ${envs} ${cmd}`,
    ].join('\n');
    return runCommand('nsenter', ['-t', String(lab.b), '-n', '--', 'unshare', '-m', '--propagation', 'private', 'sh', '-c', script], {}, 120000);
  };

  before(async () => {
    assert.equal(process.getuid!(), 0, 'namespaces, setpriv and sshd need root');
    work = scratchDir('latchkey-sync-it-');
    chmodSync(work, 0o755);
    lab = await startLab();
    const local = { contexts: 's5k=sha512crypt:5000', default_context: 's5k' };
    primary = await startEnv({ local: { ...local, role: 'primary' } });
    const snapshotDir = join(primary.dir, 'state', 'snapshot');

    // The secondary's sync key and the primary's host key, read by the daemon's account.
    const keys = join(work, 'keys');
    mkdirSync(keys, { mode: 0o755 });
    const syncKey = join(keys, 'sync_ed25519');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'latchkey-sync@secondary', '-f', syncKey]);
    chownSync(syncKey, TEST_DAEMON_UID, TEST_DAEMON_UID);
    chmodSync(syncKey, 0o600);

    // The primary's /etc: the sync account (a shell, no usable password), a member of the
    // daemon's group, and its authorized_keys: the shipped example line with this test's paths.
    const pEtc = makePrivateEtc(join(work, 'primary-etc'), [{ name: SYNC_USER, uid: SYNC_UID, password: `unused-${process.pid}-${Date.now()}` }]);
    appendFileSync(pEtc.passwd, `${TEST_DAEMON_PASSWD_LINE}\n`);
    appendFileSync(pEtc.group, `_latchkey:x:${TEST_DAEMON_UID}:${SYNC_USER}\n`);
    const example = readFileSync(join(ROOT, 'etc/sync/authorized_keys.example'), 'utf8').split('\n').find((l) => l.startsWith('restrict,'))!;
    assert.match(example, /^restrict,command="\/usr\/bin\/rrsync -ro \/var\/lib\/latchkey\/snapshot\/" ssh-ed25519 /);
    const line = example.replace('/var/lib/latchkey/snapshot/', `${snapshotDir}/`).replace(/ssh-ed25519 \S+ \S+$/, readFileSync(`${syncKey}.pub`, 'utf8').trim());
    mkdirSync(join(pEtc.upper, SYNC_USER), { mode: 0o755 });
    writeFileSync(join(pEtc.upper, SYNC_USER, 'authorized_keys'), `${line}\n`, { mode: 0o644 });
    sshd = await startPrimarySshd(lab, join(work, 'primary'), primary.socketDir, primary.shimEnv, pEtc);
    const knownHosts = join(keys, 'sync_known_hosts');
    writeFileSync(knownHosts, `${PRIMARY_ADDR} ${sshd.hostKeyPub}\n`, { mode: 0o644 });

    secondary = await startEnv({
      local: {
        ...local, role: 'secondary', primary: `${SYNC_USER}@${PRIMARY_ADDR}`, upgrade: 'off',
        sync_key: syncKey, sync_known_hosts: knownHosts, sync_port: 22,
      },
    });
    // The secondary's /etc for ssh: it needs a passwd entry for the uid it runs as.
    secondaryEtc = makePrivateEtc(join(work, 'secondary-etc'), []);
    appendFileSync(secondaryEtc.passwd, `${TEST_DAEMON_PASSWD_LINE}\n`);
    pamDir = makePamDir(work, { 'latchkey-sshd': shippedPamStack() });
  });

  after(async () => {
    await sshd?.stop();
    await secondary?.stop();
    await primary?.stop();
    await lab?.stop();
  });

  test('latchkey-sync over ssh + rrsync brings the new user; it logs in on the secondary', async () => {
    const added = await ctl(primary, ['local', 'add', 'syncuser', '--password-stdin', '--gecos', 'Synced User'], `${PASSWORD}\n`);
    assert.equal(added.code, 0, added.stdout + added.stderr);
    const refused = await ctl(secondary, ['local', 'add', 'other', '--password-stdin'], `${PASSWORD}\n`);
    assert.notEqual(refused.code, 0, 'a secondary takes no changes');
    assert.match(refused.stderr, new RegExp(`secondary.*${SYNC_USER}@${PRIMARY_ADDR.replace(/\./g, '\\.')}`));

    // Before the sync the secondary does not know the user.
    const before = await login(secondary, 'syncuser', PASSWORD);
    assert.notEqual(before.code, 0, before.stdout);

    // The primary's snapshot holds the user within its debounce.
    const snap = join(primary.dir, 'state', 'snapshot', 'local.db');
    const deadline = Date.now() + 10000;
    for (;;) {
      let names: unknown[] = [];
      try { names = new Database(snap, { readonly: true, fileMustExist: true }).prepare('SELECT name FROM users').pluck().all(); } catch { /* not yet */ }
      if (names.includes('syncuser')) break;
      assert.ok(Date.now() < deadline, 'the primary published a snapshot with the new user');
      await new Promise((r) => setTimeout(r, 100));
    }

    const run = await runSyncUnit();
    assert.equal(run.code, 0, `latchkey-sync: ${run.stdout}${run.stderr}\n--- sshd ---\n${sshd.logs().slice(-3000)}`);
    assert.match(sshd.logs(), new RegExp(`Accepted publickey for ${SYNC_USER} from ${SECONDARY_ADDR.replace(/\./g, '\\.')}`), 'over the veth, from the secondary\'s address');

    let st = await localStatus(secondary);
    for (let i = 0; i < 100 && st.snapshot?.users !== 1; i++) {
      await new Promise((r) => setTimeout(r, 100));
      st = await localStatus(secondary);
    }
    assert.equal(st.snapshot?.users, 1, JSON.stringify(st));
    assert.equal(st.last_sync_error, null);
    assert.ok(st.last_sync_at !== null && Date.now() - st.last_sync_at < 60_000);
    const ok = await login(secondary, 'syncuser', PASSWORD);
    assert.equal(ok.code, 0, `${ok.stdout}${ok.stderr}\n${secondary.daemon.logs.slice(-10).join('\n')}`);
    const wrong = await login(secondary, 'syncuser', 'not the password');
    assert.notEqual(wrong.code, 0);
  });

  test('a truncated snapshot in incoming/ is refused: the old store is kept and status says why', async () => {
    const incoming = join(secondary.dir, 'state', 'incoming');
    const good = readFileSync(join(incoming, 'local.db'));
    const tmp = join(incoming, '.local.db.truncated');
    writeFileSync(tmp, good.subarray(0, Math.floor(good.length / 2)));
    chownSync(tmp, TEST_DAEMON_UID, TEST_DAEMON_UID);
    renameSync(tmp, join(incoming, 'local.db'));
    let st = await localStatus(secondary);
    for (let i = 0; i < 100 && st.last_sync_error === null; i++) {
      await new Promise((r) => setTimeout(r, 100));
      st = await localStatus(secondary);
    }
    assert.match(st.last_sync_error ?? '', /refused.*previous local users stay in use/, JSON.stringify(st));
    assert.equal(st.users, 1);
    assert.ok(secondary.daemon.logs.some((l) => l.includes('"local.snapshot_rejected"')), 'logged');
    const ok = await login(secondary, 'syncuser', PASSWORD);
    assert.equal(ok.code, 0, `the old store still serves: ${ok.stdout}`);
    const human = await ctl(secondary, ['status']);
    assert.match(human.stdout, /refused/);
  });
});
