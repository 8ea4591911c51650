// What pam_latchkey tells the admin when latchkeyd cannot be asked or cannot answer: the auth.log
// line names the priv.sock path and the cause (no daemon, timeout, protocol error, system error)
// or the daemon's status and detail, while the PAM code the application sees stays the one the
// module always returned. pamtester runs under the real libpam in a private mount namespace
// whose /dev/log is a socket this test reads (glibc's syslog falls back to a stream socket), so
// these are the lines sshd's auth.log would get.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NSS_LIB_DIR } from '../lib/harness.js';
import { latchkeyStack, makePamDir, runPamNs, startFakePriv, PamMsg, type FakePriv, type NsResult } from '../lib/pam.js';
import { ok, fail } from '../../src/server/dispatch.js';
import { Status } from '../../src/protocol/generated.js';

const SVC = 'latchkey-reasons';
const UNAVAIL_DETAIL = 'HTTP 401 from the user service: check cega_creds';
const LONG_DIR = `/tmp/${'d'.repeat(120)}`;

/** A Unix stream socket standing in for /dev/log: every message glibc's syslog writes to it. */
async function startSyslog(path: string): Promise<{ lines: string[]; close(): Promise<void> }> {
  const lines: string[] = [];
  const conns = new Set<Socket>();
  const srv = createServer((s) => {
    conns.add(s);
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      // stream syslog: each message ends with a NUL (glibc misc/syslog.c)
      const parts = buf.split('\0');
      buf = parts.pop()!;
      lines.push(...parts.filter((p) => p.length > 0));
    });
    s.on('close', () => conns.delete(s));
  });
  await new Promise<void>((r) => srv.listen(path, r));
  chmodSync(path, 0o666);
  return { lines, close: () => new Promise<void>((r) => { for (const c of conns) c.destroy(); srv.close(() => r()); }) };
}

/** A priv.sock that accepts and then never answers, or answers a frame that breaks the protocol. */
async function startBadPriv(path: string, mode: 'silent' | 'garbage'): Promise<() => Promise<void>> {
  const conns = new Set<Socket>();
  const srv: Server = createServer((s) => {
    conns.add(s);
    s.on('error', () => { /* the module gives up and closes */ });
    s.on('close', () => conns.delete(s));
    // A length prefix of 2: shorter than any reply header (u16 version, opcode, status).
    if (mode === 'garbage') s.once('data', () => s.write(Buffer.from([0, 0, 0, 2, 0, 1])));
  });
  await new Promise<void>((r) => srv.listen(path, r));
  return () => new Promise<void>((r) => { for (const c of conns) c.destroy(); srv.close(() => r()); });
}

describe('pam_latchkey logs why latchkeyd could not answer, with the socket path', () => {
  let dir: string;
  let fake: FakePriv;
  let pamDir: string;
  let syslog: Awaited<ReturnType<typeof startSyslog>>;
  let devMounts: string;
  const stops: Array<() => Promise<void>> = [];
  /** Socket dirs: each holds nss.sock (the scripted daemon's, so NSS resolves the user) and a
   *  priv.sock of its own kind, or none. */
  const dirs: Record<'none' | 'silent' | 'garbage', string> = { none: '', silent: '', garbage: '' };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'latchkey-reasons-'));
    chmodSync(dir, 0o755);
    fake = await startFakePriv(dir, {
      LOGIN_CHECK: () => ok({ prompt: 'Password: ' }),
      AUTH_PASSWORD: () => fail(Status.UNAVAIL, UNAVAIL_DETAIL),
      ACCT_MGMT: () => fail(Status.UNAVAIL, UNAVAIL_DETAIL),
    }, {
      PW_BY_NAME: (f) => ok({ entry: { name: f.name as string, uid: 23001, gid: 10000, gecos: '', dir: '/nonexistent', shell: '/bin/sh' } }),
    });
    for (const kind of ['none', 'silent', 'garbage'] as const) {
      const d = join(dir, `run-${kind}`);
      mkdirSync(d);
      symlinkSync(join(fake.dir, 'nss.sock'), join(d, 'nss.sock'));
      if (kind !== 'none') stops.push(await startBadPriv(join(d, 'priv.sock'), kind));
      dirs[kind] = d;
    }
    syslog = await startSyslog(join(dir, 'log.sock'));
    // /dev/log does not exist on every host and must not be touched on this one: inside the
    // namespace /dev becomes a tmpfs holding the usual character devices and a log symlink.
    const dev = join(dir, 'dev');
    mkdirSync(dev);
    devMounts = [
      `mount -t tmpfs -o mode=755 tmpfs ${dev}`,
      `for n in null zero full random urandom tty; do [ -e /dev/$n ] && touch ${dev}/$n && mount --bind /dev/$n ${dev}/$n; done`,
      `ln -s /proc/self/fd ${dev}/fd`,
      `ln -s ${join(dir, 'log.sock')} ${dev}/log`,
      `mount --rbind ${dev} /dev`,
    ].join('\n');
    pamDir = makePamDir(dir, { [SVC]: latchkeyStack(), 'lk-longdir': latchkeyStack(`socket_dir=${LONG_DIR}`) });
  });
  after(async () => {
    for (const stop of stops) await stop();
    await fake.close();
    await syslog.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs pamtester, then returns the module's log lines of this run. */
  async function run(socketDir: string, service: string, user: string, op: string): Promise<{ r: NsResult; log: string[] }> {
    const from = syslog.lines.length;
    const r = await runPamNs(`exec pamtester -v ${service} ${user} ${op} 2>&1`,
      { LATCHKEY_SOCKET_DIR: socketDir, LD_LIBRARY_PATH: NSS_LIB_DIR }, pamDir, { input: 'secret\n', extraMounts: devMounts });
    // syslog(3) writes before pam_sm_* returns; give the socket a moment to deliver.
    await new Promise((res) => setTimeout(res, 100));
    return { r, log: syslog.lines.slice(from).filter((l) => l.includes('pam_latchkey(')) };
  }
  const failedWith = (r: NsResult, msg: string): void => {
    assert.notEqual(r.code, 0, r.stdout);
    assert.ok(r.stdout.includes(msg), `expected "${msg}":\n${r.stdout}${r.stderr}`);
  };
  const logged = (log: string[], ...parts: string[]): void => {
    assert.ok(log.some((l) => parts.every((p) => l.includes(p))), `no log line with ${JSON.stringify(parts)} in:\n${log.join('\n')}`);
  };

  test('no daemon on priv.sock: "no daemon" and the path; auth still AUTHINFO_UNAVAIL', async () => {
    const { r, log } = await run(dirs.none, SVC, 'alice', 'authenticate');
    failedWith(r, PamMsg.AUTHINFO_UNAVAIL);
    logged(log, `auth for alice: no answer from latchkeyd at ${dirs.none}/priv.sock: no daemon (`);
  });

  test('a priv.sock that never answers: "timeout" after the client timeout; account AUTHINFO_UNAVAIL', { timeout: 30000 }, async () => {
    const { r, log } = await run(dirs.silent, SVC, 'alice', 'acct_mgmt');
    failedWith(r, PamMsg.AUTHINFO_UNAVAIL);
    assert.ok(r.ms >= 4500, `gave up after ${r.ms} ms, before the client timeout`);
    logged(log, `account for alice: no answer from latchkeyd at ${dirs.silent}/priv.sock: timeout (daemon did not answer in time)`);
  });

  test('a reply that breaks the framing: "protocol error"; session SESSION_ERR', async () => {
    const { r, log } = await run(dirs.garbage, SVC, 'alice', 'open_session');
    failedWith(r, PamMsg.SESSION_ERR);
    logged(log, `session for alice: no answer from latchkeyd at ${dirs.garbage}/priv.sock: protocol error (daemon reply breaks the protocol)`);
  });

  test('a socket path the system cannot use: "system error"; auth AUTHINFO_UNAVAIL', async () => {
    const { r, log } = await run(fake.dir, 'lk-longdir', 'alice', 'authenticate');
    failedWith(r, PamMsg.AUTHINFO_UNAVAIL);
    logged(log, `auth for alice: no answer from latchkeyd at ${LONG_DIR.slice(0, 80)}`, ': system error (socket path too long for a Unix socket address)');
  });

  test('the daemon answered UNAVAIL: its detail and the path reach the log; codes unchanged', async () => {
    const acct = await run(fake.dir, SVC, 'bob', 'acct_mgmt');
    failedWith(acct.r, PamMsg.AUTHINFO_UNAVAIL);
    logged(acct.log, `account for bob: latchkeyd at ${fake.dir}/priv.sock answered UNAVAIL: ${UNAVAIL_DETAIL}`);
    const auth = await run(fake.dir, SVC, 'bob', 'authenticate');
    failedWith(auth.r, PamMsg.AUTHINFO_UNAVAIL);
    logged(auth.log, 'authentication UNAVAIL for bob from local: ', `latchkeyd at ${fake.dir}/priv.sock answered UNAVAIL: ${UNAVAIL_DETAIL}`);
  });
});
