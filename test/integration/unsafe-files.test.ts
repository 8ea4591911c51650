// Unsafe files and settings, through the real bin/latchkeyd and bin/latchkeyctl: a daemon asked
// to run on something another user could change or swap refuses to start, says why and how to
// fix it, and touches nothing; a daemon running with an insecure_* setting says so at every
// start and reload and in `latchkeyctl status`. Everything lives in mkdtemp dirs; the host's
// /etc and /run are never used.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { LATCHKEYD, ROOT, startEnv, writeConfig, type TestEnv } from '../lib/harness.js';
import { scratchDir } from '../lib/tmp.js';

const CTL = join(ROOT, 'bin/latchkeyctl');
const NOBODY = 65534;
const EX_CONFIG = 78;
const envs: TestEnv[] = [];
after(async () => { for (const e of envs.splice(0)) await e.stop(); });

interface Run { code: number | null; stdout: string; stderr: string }

function run(cmd: string, args: string[], env: Record<string, string> = {}, timeoutMs = 15000): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    // A daemon that starts when it should have refused is killed (by its pid) and reported.
    const timer = setTimeout(() => { stderr += '\n[test: still running, killed]'; p.kill('SIGKILL'); }, timeoutMs);
    p.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

/** A root 0755 scratch dir and a config in it; no upstream is ever reached by these daemons. */
function setup(over: Record<string, Record<string, string>> = {}): { dir: string; config: string } {
  const dir = scratchDir('latchkey-unsafe-');
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'homes'), { mode: 0o755 });
  const config = writeConfig(dir, 'https://127.0.0.1:9', over);
  return { dir, config };
}

function owner(path: string): string {
  const st = lstatSync(path);
  return `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8).padStart(4, '0')}`;
}

async function refusesToStart(config: string, ...hints: (string | RegExp)[]): Promise<Run> {
  const r = await run(process.execPath, [LATCHKEYD, '--config', config]);
  assert.notEqual(r.code, 0, `latchkeyd started: ${r.stderr}`);
  assert.notEqual(r.code, null, `latchkeyd did not exit: ${r.stderr}`);
  for (const h of hints) {
    if (typeof h === 'string') assert.ok(r.stderr.includes(h), `stderr should contain "${h}":\n${r.stderr}`);
    else assert.match(r.stderr, h);
  }
  assert.match(r.stderr, /"event":"daemon.start_failed"/);
  return r;
}

test('a socket_dir replaced by a symlink to another directory: no start, the target untouched', async () => {
  const { dir, config } = setup();
  // Someone else's directory (0700), as the link's target: the old code chowned it to root and
  // chmodded it 0755 through the link.
  const target = join(dir, 'elsewhere');
  mkdirSync(target, { mode: 0o700 });
  chownSync(target, NOBODY, NOBODY);
  symlinkSync(target, join(dir, 'run'));
  await refusesToStart(config, 'socket_dir', `${join(dir, 'run')} is a symbolic link (to ${target})`);
  assert.equal(owner(target), `${NOBODY}:${NOBODY} 0700`);
  assert.deepEqual(readdirSync(target), [], 'no socket made in the target');
  assert.ok(lstatSync(join(dir, 'run')).isSymbolicLink(), 'the link is left for the admin to look at');

  // A link to a root-owned 0700 directory (think /root): not opened up to 0755 either.
  const { dir: d2, config: c2 } = setup();
  const rootDir = join(d2, 'private');
  mkdirSync(rootDir, { mode: 0o700 });
  symlinkSync(rootDir, join(d2, 'run'));
  await refusesToStart(c2, 'symbolic link');
  assert.equal(owner(rootDir), '0:0 0700');
});

test('a socket_dir owned by another user, writable by others, or under a writable parent: no start, unchanged', async () => {
  const foreign = setup();
  const run1 = join(foreign.dir, 'run');
  mkdirSync(run1, { mode: 0o755 });
  chownSync(run1, NOBODY, NOBODY);
  await refusesToStart(foreign.config, `the socket_dir ${run1} is owned by uid ${NOBODY}`, `chown root:root ${run1}`);
  assert.equal(owner(run1), `${NOBODY}:${NOBODY} 0755`);

  const open = setup();
  const run2 = join(open.dir, 'run');
  mkdirSync(run2);
  chmodSync(run2, 0o777);
  await refusesToStart(open.config, 'mode 0777', `chmod go-w ${run2}`);
  assert.equal(owner(run2), '0:0 0777');

  const parent = setup();
  const shared = join(parent.dir, 'shared');
  mkdirSync(shared);
  chmodSync(shared, 0o777);
  const cfg = writeConfig(parent.dir, 'https://127.0.0.1:9', { daemon: { socket_dir: join(shared, 'run') } });
  await refusesToStart(cfg, `${shared}, a parent of the socket_dir`);
  assert.ok(!existsSync(join(shared, 'run')), 'nothing made under a parent others can write');
});

test('a homes base with mode 1777 stops latchkeyd at start, naming homes.base and the fix', async () => {
  const { dir, config } = setup();
  chmodSync(join(dir, 'homes'), 0o1777);
  const r = await refusesToStart(config, `${config}: homes.base: the home base ${join(dir, 'homes')} is owned by uid 0 with mode 1777`,
    `chmod go-w ${join(dir, 'homes')}`);
  assert.equal(r.code, EX_CONFIG);
  assert.ok(!existsSync(join(dir, 'run', 'nss.sock')));
});

test('a config owned by another user, group-writable, or in a world-writable dir: no start', async () => {
  const a = setup();
  chownSync(a.config, NOBODY, NOBODY);
  assert.equal((await refusesToStart(a.config, `owned by uid ${NOBODY}`, `chown root ${a.config}`)).code, EX_CONFIG);
  const b = setup();
  chmodSync(b.config, 0o664);
  // It holds the upstream password, so the fix asked for is the stricter 0600.
  assert.equal((await refusesToStart(b.config, 'mode is 0664', `chmod 600 ${b.config}`)).code, EX_CONFIG);
  const c = setup();
  const open = join(c.dir, 'open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  const moved = join(open, 'latchkey.conf');
  writeFileSync(moved, readFileSync(c.config), { mode: 0o600 });
  assert.equal((await refusesToStart(moved, `sits in ${open}`, `chmod go-w ${open}`)).code, EX_CONFIG);
});

test('credentials over http:// without insecure_http: latchkeyd, --check and check-config refuse', async () => {
  const { config } = setup({ upstream: { by_name_url: 'http://127.0.0.1:9/username/', by_uid_url: 'http://127.0.0.1:9/user-id/', insecure_http: 'no' } });
  const r = await refusesToStart(config, 'upstream.by_name_url', 'clear text over http://', 'insecure_http = yes');
  assert.equal(r.code, EX_CONFIG);
  assert.ok(!r.stderr.includes('testpass'), 'the password is never shown');
  const check = await run(process.execPath, [LATCHKEYD, '--check', '--config', config]);
  assert.equal(check.code, EX_CONFIG);
  assert.match(check.stderr, /insecure_http = yes/);
  const cc = await run(process.execPath, [CTL, 'check-config', config]);
  assert.equal(cc.code, 1, cc.stderr);
  assert.match(cc.stderr, /by_name_url.*insecure_http = yes/);
  // verify_peer = no without insecure_tls: the same.
  const tls = setup({ upstream: { verify_peer: 'no' } });
  assert.equal((await refusesToStart(tls.config, 'upstream.verify_peer', 'insecure_tls = yes')).code, EX_CONFIG);
});

test('with insecure_http = yes the daemon runs, and says so at start, at every reload and in status', async () => {
  // The harness config: the example service on http://127.0.0.1 with basic credentials.
  const env = await startEnv();
  envs.push(env);
  const insecureLines = (): string[] => env.daemon.logs.filter((l) => l.includes('"event":"config.insecure"'));
  const first = insecureLines();
  assert.equal(first.length, 1, env.daemon.logs.join('\n'));
  const rec = JSON.parse(first[0]!) as { level: string; settings: string[]; file: string };
  assert.equal(rec.level, 'warn');
  assert.equal(rec.file, env.configFile);
  assert.match(rec.settings[0]!, /^insecure_http: the upstream password goes in clear text over http:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(!first[0]!.includes('testpass'));

  process.kill(env.daemon.pid, 'SIGHUP');
  const deadline = Date.now() + 5000;
  while (insecureLines().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(insecureLines().length, 2, 'said again after the reload');

  const status = await run(process.execPath, [CTL, 'status'], { LATCHKEY_SOCKET_DIR: env.socketDir });
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^insecure\tinsecure_http: the upstream password goes in clear text over http:\/\/127\.0\.0\.1:\d+$/m);
  const js = await run(process.execPath, [CTL, 'status', '--json'], { LATCHKEY_SOCKET_DIR: env.socketDir });
  assert.equal((JSON.parse(js.stdout) as { insecure: string[] }).insecure.length, 1);
  assert.ok(!status.stdout.includes('testpass') && !js.stdout.includes('testpass'));
});
