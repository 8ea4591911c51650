// What latchkeyd tells systemd (Type=notify, sd_notify(3)): READY=1 with a STATUS= line once its
// sockets serve, RELOADING=1 (with MONOTONIC_USEC) then READY=1 around every reload, taken or
// refused, and STOPPING=1; and a refused config at start exits 78, the status the unit's
// RestartPreventExitStatus= names so systemd does not restart it in a loop. A real datagram
// socket stands in for systemd's (test/c/notify_recv.c), NOTIFY_SOCKET points latchkeyd at it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../lib/paths.js';
import { scratchDir } from '../lib/tmp.js';
import { LATCHKEYD, latchkeyctl, startEnv } from '../lib/harness.js';

function receiver(dir: string, noRead = false): { path: string; proc: ChildProcess; lines: string[]; waitFor(re: RegExp, from?: number): Promise<number> } {
  const bin = join(dir, 'notify_recv');
  const cc = spawnSync('cc', ['-std=c11', '-Wall', '-Wextra', '-Werror', '-o', bin, join(ROOT, 'test/c/notify_recv.c')], { encoding: 'utf8' });
  assert.equal(cc.status, 0, cc.stderr);
  const path = join(dir, 'notify.sock');
  const proc = spawn(bin, noRead ? [path, '--no-read'] : [path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 1); }
  });
  const waitFor = async (re: RegExp, from = 0): Promise<number> => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const i = lines.findIndex((l, n) => n >= from && re.test(l));
      if (i >= 0) return i;
      if (Date.now() > deadline) throw new Error(`no ${re} in ${JSON.stringify(lines)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  return { path, proc, lines, waitFor };
}

type Receiver = ReturnType<typeof receiver>;
type Env = Awaited<ReturnType<typeof startEnv>>;

/** A receiver, a daemon started with NOTIFY_SOCKET pointing at it, `body`, then both stopped. */
async function withNotifyingDaemon(noRead: boolean, body: (rx: Receiver, env: Env) => Promise<void>): Promise<void> {
  const dir = scratchDir('lk-notify-');
  const rx = receiver(dir, noRead);
  await rx.waitFor(/^listening$/);
  // The daemon drops root: the receiving socket must be writable by its account.
  chmodSync(dir, 0o755);
  chmodSync(rx.path, 0o777);
  const prev = process.env.NOTIFY_SOCKET;
  process.env.NOTIFY_SOCKET = rx.path;
  let env: Env | null = null;
  try {
    env = await startEnv();
    await body(rx, env);
  } finally {
    if (prev === undefined) delete process.env.NOTIFY_SOCKET; else process.env.NOTIFY_SOCKET = prev;
    await env?.stop();
    rx.proc.kill('SIGKILL');
  }
}

test('READY, STATUS, RELOADING/READY around reloads (taken or refused), STOPPING', () => withNotifyingDaemon(false, async (rx, env) => {
  const ready = await rx.waitFor(/READY=1/);
  assert.match(rx.lines[ready]!, /STATUS=serving: \d+ fresh and \d+ stale cached users, \d+ open sessions; upstream ok/);

  process.kill(env.daemon.pid, 'SIGHUP');
  const reloading = await rx.waitFor(/RELOADING=1/, ready + 1);
  assert.match(rx.lines[reloading]!, /MONOTONIC_USEC=\d+/);
  const again = await rx.waitFor(/READY=1/, reloading + 1);

  // A refused reload still ends with READY=1: the old config serves on.
  appendFileSync(env.configFile, '[cache]\nttl = never\n');
  const r = await latchkeyctl(env.socketDir, ['reload']);
  assert.equal(r.code, 1);
  const reloading2 = await rx.waitFor(/RELOADING=1/, again + 1);
  await rx.waitFor(/READY=1/, reloading2 + 1);

  const n = rx.lines.length;
  await env.daemon.stop();
  await rx.waitFor(/STOPPING=1/, n);
}));

test('a receiver that never reads (a hung PID 1) cannot freeze the daemon: sends fail, logged once, lookups go on', () => withNotifyingDaemon(true, async (_rx, env) => {
  // Each reload sends two datagrams; the receiver's queue holds net.unix.max_dgram_qlen of
  // them (512 by default), so a few hundred reloads fill it. One SIGHUP at a time: signals
  // sent together would merge into one.
  const reloaded = (): number => env.daemon.logs.filter((l) => l.includes('"config.reloaded"')).length;
  const qlen = Number(readFileSync('/proc/sys/net/unix/max_dgram_qlen', 'utf8'));
  for (let i = 0; i < qlen / 2 + 20; i++) {
    const before = reloaded();
    process.kill(env.daemon.pid, 'SIGHUP');
    const deadline = Date.now() + 5000;
    while (reloaded() === before) {
      assert.ok(Date.now() < deadline, `reload ${i} did not finish: the daemon is stuck`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }
  const lookup = await latchkeyctl(env.socketDir, ['lookup', 'alice'], '', 10_000);
  assert.equal(lookup.code, 0, lookup.stderr);
  const failed = env.daemon.logs.filter((l) => l.includes('daemon.notify_failed'));
  assert.equal(failed.length, 1, failed.join('\n'));
  assert.match(failed[0]!, /EAGAIN|Resource temporarily unavailable/);
}));

test('a refused config at start exits 78 (EX_CONFIG): the unit does not restart it', async () => {
  const env = await startEnv();
  try {
    await env.daemon.stop();
    writeFileSync(env.configFile, readFileSync(env.configFile, 'utf8') + '[pam]\nmax_failures = lots\n');
    const p = spawn(process.execPath, [LATCHKEYD, '--config', env.configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const code = await new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
    assert.equal(code, 78, err);
    assert.match(err, /latchkey\.conf:\d+: pam\.max_failures/);
    const unit = readFileSync(join(ROOT, 'etc/systemd/latchkeyd.service'), 'utf8');
    assert.match(unit, /^RestartPreventExitStatus=.*\b78\b/m);
    assert.match(unit, /^Type=notify$/m);
  } finally {
    await env.stop();
  }
});
