// latchkey-rootd, the root helper, through its real socket: a real rootd (native/rootd) runs as
// root on a scratch socket with a scratch homes base and its own latchkey.conf, and a real client
// process runs as the test daemon user (a numeric uid, spawned with {uid, gid}) and sends the
// fixed-size frames of spec.json "rootd" (native/rootd/rootd_proto.h, src/protocol/rootd.ts):
// valid ones from the daemon's encoder, malformed ones built here. What a compromised daemon could send is sent:
// every malformed and out-of-policy request must be refused with nothing changed on disk (the
// whole scratch tree and /etc are snapshotted before and compared after), and END_SESSION must
// signal only the recorded process. Everything lives in a mkdtemp dir; only pids started here
// are signalled.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../lib/paths.js';
import { scratchDir } from '../lib/tmp.js';
import { encodeRootdRequest, decodeRootdReply, ROOTD_REPLY_SIZE as REPLY_SIZE, ROOTD_REQUEST_SIZE as REQ_SIZE } from '../../src/protocol/rootd.js';
import { RootdFlag, RootdOpcode, RootdStatus as S } from '../../src/protocol/generated.js';
import { parseConfig } from '../../src/config/load.js';

const ROOTD = join(ROOT, 'native/rootd/latchkey-rootd');
const DAEMON_UID = 4242; // the test "daemon user": a uid no local account has
const OTHER_UID = 4243;
const GID = 10000;
const NOBODY = 65534;

const OP_CREATE_HOME = RootdOpcode.CREATE_HOME;
const OP_END_SESSION = RootdOpcode.END_SESSION;
const FLAG_CREATED = RootdFlag.CREATED;
/** The session user of the END_SESSION tests: a served uid, set as the loginuid of its "login". */
const SESSION_UID = 20020;

interface FrameFields {
  version?: number; op: number; uid?: number; gid?: number; pid?: number; start?: bigint;
  name?: string | Buffer; nameLen?: number; reserved?: number;
}

function frame(f: FrameFields): Buffer {
  const b = Buffer.alloc(REQ_SIZE);
  const name = typeof f.name === 'string' ? Buffer.from(f.name) : (f.name ?? Buffer.alloc(0));
  b.writeUInt16BE(f.version ?? 1, 0);
  b.writeUInt16BE(f.op, 2);
  b.writeUInt32BE(f.uid ?? 0, 4);
  b.writeUInt32BE(f.gid ?? 0, 8);
  b.writeUInt32BE(f.pid ?? 0, 12);
  b.writeBigUInt64BE(f.start ?? 0n, 16);
  b.writeUInt8(f.nameLen ?? name.length, 24);
  b.writeUInt8(f.reserved ?? 0, 25);
  name.copy(b, 32, 0, Math.min(name.length, 32));
  return b;
}

const create = (name: string | Buffer, uid: number, extra: Partial<FrameFields> = {}): Buffer =>
  typeof name === 'string' && Object.keys(extra).length === 0
    ? encodeRootdRequest({ op: 'create_home', name, uid, gid: GID })
    : frame({ op: OP_CREATE_HOME, name, uid, gid: GID, ...extra });
const endSession = (pid: number, start: bigint, uid = SESSION_UID, name?: string): Buffer =>
  encodeRootdRequest({ op: 'end_session', uid, pid, pidStart: start, ...(name ? { name } : {}) });
const reloadReq = (): Buffer => encodeRootdRequest({ op: 'reload' });

interface Reply { status: number; flags: number; msg: string }

function decode(b: Buffer): Reply {
  const r = decodeRootdReply(b);
  return { status: r.code, flags: (r.created ? RootdFlag.CREATED : 0) | (r.repaired ? RootdFlag.REPAIRED : 0), msg: r.message };
}

// The client: a separate node process, so the peer uid rootd sees is the one it runs as.
// argv: socket, mode (end = half-close after writing, keep = wait for every reply, hold = send
// and wait for rootd to close), then frames in hex; "SELF" sends END_SESSION for the client's
// own pid and start time.
const CLIENT = `
const net = require('net');
const fs = require('fs');
const [sock, mode, ...frames] = process.argv.slice(1);
const t0 = Date.now();
const bufs = frames.map((f) => {
  if (f !== 'SELF') return Buffer.from(f, 'hex');
  const st = fs.readFileSync('/proc/self/stat', 'utf8');
  const b = Buffer.alloc(${REQ_SIZE});
  b.writeUInt16BE(1, 0); b.writeUInt16BE(${OP_END_SESSION}, 2); b.writeUInt32BE(${SESSION_UID}, 4); b.writeUInt32BE(process.pid, 12);
  b.writeBigUInt64BE(BigInt(st.slice(st.lastIndexOf(')') + 2).split(' ')[19]), 16);
  return b;
});
let got = Buffer.alloc(0);
const s = net.createConnection(sock);
s.on('connect', () => { for (const b of bufs) s.write(b); if (mode === 'end') s.end(); });
s.on('data', (d) => {
  got = Buffer.concat([got, d]);
  if (mode === 'keep' && got.length >= ${REPLY_SIZE} * bufs.length) s.end();
});
let error;
s.on('error', (e) => { error = e.code; });
s.on('close', () => console.log(JSON.stringify({ replies: got.toString('hex'), error, ms: Date.now() - t0 })));
`;

interface ClientResult { replies: Reply[]; error?: string; ms: number }

function client(frames: (Buffer | 'SELF')[], opts: { uid?: number; mode?: 'end' | 'keep' | 'hold' } = {}): Promise<ClientResult> {
  const uid = opts.uid ?? DAEMON_UID;
  const args = ['-e', CLIENT, sock, opts.mode ?? 'keep', ...frames.map((f) => (f === 'SELF' ? f : f.toString('hex')))];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { uid, gid: uid, stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' });
    let out = '';
    let err = '';
    p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const timer = setTimeout(() => p.kill('SIGKILL'), 20000);
    p.on('close', () => {
      clearTimeout(timer);
      try {
        const r = JSON.parse(out) as { replies?: string; error?: string; ms: number };
        const raw = Buffer.from(r.replies ?? '', 'hex');
        const replies: Reply[] = [];
        for (let i = 0; i + REPLY_SIZE <= raw.length; i += REPLY_SIZE) replies.push(decode(raw.subarray(i, i + REPLY_SIZE)));
        assert.equal(raw.length % REPLY_SIZE, 0, 'replies come in whole frames');
        resolve({ replies, ...(r.error ? { error: r.error } : {}), ms: r.ms });
      } catch (e) {
        reject(new Error(`client failed: ${String(e)}\n${out}\n${err}`));
      }
    });
  });
}

async function one(req: Buffer | 'SELF', opts: { uid?: number; mode?: 'end' | 'keep' | 'hold' } = {}): Promise<Reply> {
  const r = await client([req], opts);
  assert.equal(r.error, undefined, `client error ${r.error}`);
  assert.equal(r.replies.length, 1, 'one reply');
  return r.replies[0]!;
}

// ---- the scratch world ----
let dir = '';
let base = '';
let sock = '';
let config = '';
let rootd: ChildProcess | null = null;
let rootdLog = '';
let rootdExit: Promise<number | null> = Promise.resolve(null);
const started: ChildProcess[] = [];

function writeConf(homes: Record<string, string> = {}, local: Record<string, string> = {}): void {
  const h = { base, layout: 'chroot', mode: '2750', upload_dir: 'inbox', ...homes };
  writeFileSync(config, [
    '# latchkeyd reads everything; rootd only [homes] and a few [users] keys',
    '[upstream]',
    'by_name_url = https://users.example.org/users/%s',
    "password = 'not;read#by rootd'",
    '[users]',
    `gid = ${GID}`,
    'uid_shift = 10000',
    'min_uid = 20000',
    'max_uid = 29999',
    'deny_names = admin, backup',
    `local_passwd = ${join(dir, 'passwd')}`,
    // The local store's section: rootd reads only min_uid/max_uid (default 9000..9999, clear of
    // this upstream range 20000..29999) and reads past the rest, which is latchkeyd's alone.
    '[local]',
    'db_path = /var/lib/latchkey/local.db',
    'precedence = local',
    'contexts = y5=yescrypt:5, b12=bcrypt:12',
    'default_context = y5',
    'upgrade = remote',
    'upgrade_url = https://primary.example.org:8443/latchkey/v1/upgrade?from=secondary',
    'upgrade_timeout = 2s',
    'role = secondary',
    'primary = latchkey-sync@primary.example.org',
    "upgrade_bearer_token = 'not;read#by rootd'",
    ...Object.entries(local).map(([k, v]) => `${k} = ${v}`),
    '[homes]',
    ...Object.entries(h).map(([k, v]) => `${k} = ${v}`),
    '',
  ].join('\n'), { mode: 0o644 });
}

async function startRootd(): Promise<void> {
  rootdLog = '';
  const p = spawn(ROOTD, ['--config', config, '--daemon-user', String(DAEMON_UID), '--socket', sock], { stdio: ['ignore', 'ignore', 'pipe'] });
  rootd = p;
  p.stderr!.on('data', (d: Buffer) => { rootdLog += d.toString(); });
  rootdExit = new Promise((resolve) => p.on('exit', (code) => resolve(code)));
  for (let i = 0; i < 100 && !rootdLog.includes('event=start '); i++) await sleep(20);
  assert.match(rootdLog, /event=start /, `rootd did not start:\n${rootdLog}`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Every entry under the scratch dir and /etc itself: type, owner, mode and times. */
function snapshot(): string {
  const rows: string[] = [];
  const walk = (p: string): void => {
    const st = lstatSync(p);
    rows.push(`${p} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.mtimeMs} ${st.ctimeMs}`);
    if (st.isDirectory()) for (const e of readdirSync(p).sort()) walk(join(p, e));
  };
  walk(dir);
  const etc = lstatSync('/etc');
  rows.push(`/etc ${etc.mode.toString(8)} ${etc.uid}:${etc.gid} ${etc.mtimeMs} ${etc.ctimeMs}`);
  return rows.join('\n');
}

async function refusedUnchanged(req: Buffer, status: number, why: RegExp, opts: { mode?: 'end' | 'keep' } = {}): Promise<Reply> {
  const before = snapshot();
  const r = await one(req, opts);
  assert.equal(r.status, status, `status ${r.status} (${r.msg}), expected ${status}`);
  assert.match(r.msg, why);
  assert.equal(snapshot(), before, 'a refused request changed something on disk');
  return r;
}

function startTime(pid: number): bigint {
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return BigInt(st.slice(st.lastIndexOf(')') + 2).split(' ')[19]!);
}

/** A stand-in for a session process: sleep, running as `uid`, with /proc/self/loginuid set as
 *  pam_loginuid sets it at login (4294967295 = unset). */
function startSleep(uid = 0, loginuid = SESSION_UID): ChildProcess {
  // A loginuid once set stays (unless CAP_AUDIT_CONTROL); an unset one can be set by its own
  // process, so the check proves a login of that uid, not which program it is (README).
  const script = uid === 0 ? `echo ${loginuid} > /proc/self/loginuid && exec sleep 60` : 'exec sleep 60';
  const p = spawn('sh', ['-c', script], { stdio: 'ignore', uid, gid: uid === 0 ? 0 : uid });
  started.push(p);
  return p;
}

const alive = (p: ChildProcess): boolean => p.exitCode === null && p.signalCode === null;

/** SIGHUP, then the reload line rootd logs for it. */
async function reload(): Promise<string> {
  const from = rootdLog.length;
  rootd!.kill('SIGHUP');
  const re = /[^\n]*event=reload\.(done|failed)[^\n]*/;
  for (let i = 0; i < 100 && !re.test(rootdLog.slice(from)); i++) await sleep(20);
  const m = re.exec(rootdLog.slice(from));
  assert.ok(m, `no reload line after SIGHUP:\n${rootdLog.slice(from)}`);
  return m[0];
}

before(async () => {
  assert.equal(process.getuid!(), 0, 'rootd tests run rootd as root and clients as other uids');
  const built = spawnSync('make', ['-s', '-C', join(ROOT, 'native/rootd')], { encoding: 'utf8' });
  assert.equal(built.status, 0, `make -C native/rootd failed:\n${built.stdout}${built.stderr}`);
  dir = scratchDir('latchkey-rootd-');
  chmodSync(dir, 0o755);
  base = join(dir, 'homes');
  mkdirSync(base, { mode: 0o755 });
  sock = join(dir, 'run', 'rootd.sock');
  config = join(dir, 'latchkey.conf');
  // The host's own accounts, as rootd sees them ([users] local_passwd).
  writeFileSync(join(dir, 'passwd'), 'root:x:0:0:root:/root:/bin/bash\nalice:x:20050:20050::/home/alice:/bin/sh\n', { mode: 0o644 });
  writeConf();
  await startRootd();
});

after(async () => {
  for (const p of started) if (alive(p)) p.kill('SIGKILL');
  if (rootd && rootd.exitCode === null) rootd.kill('SIGKILL');
});

test('CREATE_HOME makes the chroot home root:root 0755 and the upload dir uid:gid 2750; again = checked', async () => {
  const r = await one(create('jdoe', 20001));
  assert.equal(r.status, S.OK, r.msg);
  assert.equal(r.flags & FLAG_CREATED, FLAG_CREATED);
  const home = lstatSync(join(base, 'jdoe'));
  assert.deepEqual([home.uid, home.gid, home.mode & 0o7777], [0, 0, 0o755]);
  const up = lstatSync(join(base, 'jdoe', 'inbox'));
  assert.ok(up.isDirectory());
  assert.deepEqual([up.uid, up.gid, up.mode & 0o7777], [20001, GID, 0o2750]);
  // The same request again on one connection, twice: nothing new, nothing refused.
  const again = await client([create('jdoe', 20001), create('jdoe', 20001)]);
  assert.deepEqual(again.replies.map((x) => [x.status, x.flags]), [[S.OK, 0], [S.OK, 0]]);
  assert.match(rootdLog, /<6>latchkey-rootd: event=request.done op=CREATE_HOME status=OK .*name="jdoe" uid=20001/);
});

test('malformed frames are refused, logged, and change nothing', async () => {
  const good = create('mallory', 20002);
  const cases: [string, Buffer, RegExp][] = [
    ['short frame', good.subarray(0, 20), /short frame: 20 of 64/],
    ['wrong version', frame({ version: 2, op: OP_CREATE_HOME, name: 'mallory', uid: 20002, gid: GID }), /version 2/],
    ['unknown opcode', frame({ op: 7, name: 'mallory', uid: 20002, gid: GID }), /unknown opcode 7/],
    ['reserved byte set', create('mallory', 20002, { reserved: 1 }), /reserved/],
    ['name longer than 32 bytes', create(Buffer.from('m'.repeat(32)), 20002, { nameLen: 33 }), /name_len 33/],
    ['bytes after name_len', create(Buffer.from('mallory/x'), 20002, { nameLen: 7 }), /name_len 7/],
    ['NUL inside the name', create(Buffer.from('mal\0lory'), 20002), /NUL/],
    ['CREATE_HOME carrying a pid', create('mallory', 20002, { pid: 1, start: 1n }), /non-zero pid/],
    ['END_SESSION carrying a gid', frame({ op: OP_END_SESSION, uid: SESSION_UID, gid: GID, pid: 1234, start: 5n }), /END_SESSION with a non-zero gid/],
    ['RELOAD carrying a uid', frame({ op: RootdOpcode.RELOAD, uid: 1 }), /RELOAD with a non-zero/],
    ['RELOAD carrying a name', frame({ op: RootdOpcode.RELOAD, name: 'x' }), /RELOAD with a non-zero/],
  ];
  for (const [what, req, why] of cases) {
    await test(what, async () => {
      await refusedUnchanged(req, S.MALFORMED, why, { mode: 'end' });
    });
  }
  // After a malformed frame the connection is closed: the valid request behind it is not read.
  const r = await client([frame({ version: 9, op: OP_CREATE_HOME }), good]);
  assert.deepEqual(r.replies.map((x) => x.status), [S.MALFORMED]);
  assert.equal(existsSync(join(base, 'mallory')), false);
  assert.match(rootdLog, /<4>latchkey-rootd: event=request.refused op=\? status=MALFORMED/);
});

test('out-of-policy names, uids and gids are refused with nothing changed', async () => {
  const cases: [string, Buffer, RegExp][] = [
    ["a name with '/'", create('a/b', 20003), /portable user name/],
    ["the name '..'", create('..', 20003), /portable user name/],
    ["the name '.'", create('.', 20003), /portable user name/],
    ['a name starting with -', create('-rf', 20003), /portable user name/],
    ['a hidden name (.quarantine): an admin directory of the base', create('.quarantine', 20003), /portable user name/],
    ['a name with a space', create('a b', 20003), /portable user name/],
    ['a non-ASCII name', create('jos\u00e9', 20003), /portable user name/],
    ['an empty name', create('', 20003), /portable user name/],
    ['a local account name (root)', create('root', 20003), /root is a local account/],
    ['a local account name (alice)', create('alice', 20003), /alice is a local account/],
    ['a name on deny_names', create('backup', 20003), /deny_names/],
    ['uid 0', create('bob', 0), /uid 0 is outside/],
    ['uid below min_uid', create('bob', 19999), /uid 19999 is outside/],
    ['uid above max_uid', create('bob', 30000), /uid 30000 is outside/],
    ['the daemon uid', create('bob', DAEMON_UID), /uid 4242 is outside/],
    ['the uid of a local account', create('bob', 20050), /uid 20050 belongs to the local account alice/],
    ['a gid other than [users] gid', create('bob', 20003, { gid: 0 }), /gid 0 is not the configured/],
  ];
  for (const [what, req, why] of cases) {
    await test(what, async () => {
      await refusedUnchanged(req, S.REFUSED, why);
    });
  }
  assert.equal(existsSync(join(base, 'bob')), false);
});

test('unsafe homes and bases are refused and left as they were', async (t) => {
  await t.test('a symlinked home (base/name -> /etc)', async () => {
    symlinkSync('/etc', join(base, 'evil'));
    await refusedUnchanged(create('evil', 20004), S.UNSAFE, /symbolic link/);
    assert.equal(existsSync('/etc/inbox'), false);
    assert.ok(lstatSync(join(base, 'evil')).isSymbolicLink());
  });
  await t.test("a home owned by someone else (another user's directory)", async () => {
    mkdirSync(join(base, 'taken'), { mode: 0o700 });
    chownSync(join(base, 'taken'), NOBODY, NOBODY);
    await refusedUnchanged(create('taken', 20005), S.UNSAFE, /owned by uid 65534/);
  });
  await t.test('a base writable by others (0777)', async () => {
    chmodSync(base, 0o777);
    try {
      await refusedUnchanged(create('carol', 20006), S.UNSAFE, /home base .* mode 0777/);
    } finally {
      chmodSync(base, 0o755);
    }
  });
  await t.test('a base owned by a user', async () => {
    chownSync(base, 20006, GID);
    try {
      await refusedUnchanged(create('carol', 20006), S.UNSAFE, /home base .* owned by uid 20006/);
    } finally {
      chownSync(base, 0, 0);
    }
  });
  await t.test('a base reached through a symlink (config edited to point through one)', async () => {
    symlinkSync(base, join(dir, 'via-link'));
    writeConf({ base: join(dir, 'via-link') });
    assert.match(await reload(), /event=reload.done base=\S*via-link/);
    try {
      await refusedUnchanged(create('carol', 20006), S.UNSAFE, /symbolic link/);
    } finally {
      writeConf();
      assert.match(await reload(), /event=reload.done/);
    }
  });
  assert.equal(existsSync(join(base, 'carol')), false);
});


test('SIGHUP reloads the policy: plain layout, and a bad config keeps the old policy', async () => {
  writeConf({ layout: 'plain', mode: '0750' });
  assert.match(await reload(), /event=reload.done/);
  const r = await one(create('dave', 20007));
  assert.equal(r.status, S.OK, r.msg);
  const st = lstatSync(join(base, 'dave'));
  assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [20007, GID, 0o750]);
  // A plain-layout symlinked home is refused too.
  symlinkSync('/etc', join(base, 'evil2'));
  await refusedUnchanged(create('evil2', 20008), S.UNSAFE, /symbolic link/);

  writeFileSync(config, `[homes]\nbase = ${base}\nmode = 0777\n`);
  assert.match(await reload(), /<3>latchkey-rootd: event=reload.failed reason=".*latchkey.conf:3: homes.mode: "0777" is world-writable.*the old policy stays/);
  const still = await one(create('erin', 20009));
  assert.equal(still.status, S.OK, still.msg);
  assert.equal(lstatSync(join(base, 'erin')).mode & 0o7777, 0o750, 'the old (plain, 0750) policy is still in force');
  writeConf();
  assert.match(await reload(), /event=reload.done/);
});

test('RELOAD (the daemon cannot signal rootd after its drop) re-reads the config; a bad one answers FAILED and keeps the old policy', async () => {
  writeConf({ layout: 'plain', mode: '0750' });
  const r = await one(reloadReq());
  assert.equal(r.status, S.OK, r.msg);
  assert.match(r.msg, /reloaded .*latchkey\.conf/);
  assert.equal((await one(create('ivan', 20014))).status, S.OK);
  assert.deepEqual([lstatSync(join(base, 'ivan')).uid, lstatSync(join(base, 'ivan')).mode & 0o7777], [20014, 0o750], 'the plain policy is in force');

  writeFileSync(config, `[homes]\nbase = ${base}\nlayout = flat\n`);
  const before = snapshot();
  const bad = await one(reloadReq());
  assert.equal(bad.status, S.FAILED, bad.msg);
  assert.match(bad.msg, /latchkey\.conf:3: homes\.layout: "flat" is not one of chroot, plain \(the old policy stays\)/);
  assert.equal(snapshot(), before);
  assert.equal((await one(create('judy', 20015))).status, S.OK);
  assert.equal(lstatSync(join(base, 'judy')).uid, 20015, 'still the plain layout: the old policy stayed');
  assert.match(rootdLog, /<3>latchkey-rootd: event=reload.failed reason=".*homes.layout/);
  assert.match(rootdLog, /event=request.failed op=RELOAD status=FAILED/);
  writeConf();
  assert.equal((await one(reloadReq())).status, S.OK);
});

test('--exit-with-parent: rootd stops (socket removed) when the process that started it dies', async (t) => {
  const sock2 = join(dir, 'run3', 'rootd.sock');
  mkdirSync(join(dir, 'run3'), { mode: 0o755 });
  // sh starts rootd in the background and becomes `sleep` (same pid): rootd's parent, then killed.
  const parent = spawn('sh', ['-c', `"$0" "$@" & echo $!; exec sleep 60`, ROOTD, '--config', config, '--daemon-user', String(DAEMON_UID),
    '--socket', sock2, '--exit-with-parent'], { stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(parent);
  let out = '';
  let log = '';
  parent.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  parent.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
  for (let i = 0; i < 100 && !(existsSync(sock2) && out.includes('\n')); i++) await sleep(20);
  const pid = Number(out.trim());
  assert.ok(pid > 1 && existsSync(sock2), `rootd did not start:\n${log}`);
  const gone = (): boolean => !existsSync(`/proc/${pid}`) || /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.equal(gone(), false);
  parent.kill('SIGKILL');
  for (let i = 0; i < 100 && !gone(); i++) await sleep(20);
  const outlived = !gone();
  if (outlived) process.kill(pid, 'SIGKILL'); // ours, orphaned: not left behind on failure
  assert.ok(!outlived, 'rootd outlived its parent');
  assert.equal(existsSync(sock2), false, 'the socket is removed');
  await t.test('also when the parent dropped root first (latchkeyd after its drop: the death signal cannot reach root)', async () => {
    // A root node process starts rootd, then setuid()s to another uid, as latchkeyd does.
    const script = `const { spawn } = require('child_process');
      const r = spawn(process.argv[1], process.argv.slice(2), { stdio: ['ignore', 'ignore', 'ignore'] });
      const wait = setInterval(() => { try { require('fs').statSync(process.argv[process.argv.indexOf('--socket') + 1]);
        clearInterval(wait); process.setgid(${OTHER_UID}); process.setuid(${OTHER_UID}); console.log(r.pid); } catch {} }, 20);
      setTimeout(() => {}, 60000);`;
    const dropper = spawn(process.execPath, ['-e', script, ROOTD, '--config', config, '--daemon-user', String(DAEMON_UID),
      '--socket', sock2, '--exit-with-parent'], { stdio: ['ignore', 'pipe', 'ignore'] });
    started.push(dropper);
    let o = '';
    dropper.stdout!.on('data', (d: Buffer) => { o += d.toString(); });
    for (let i = 0; i < 200 && !o.includes('\n'); i++) await sleep(20);
    const rpid = Number(o.trim());
    assert.ok(rpid > 1 && existsSync(sock2), 'rootd started and its parent dropped root');
    assert.match(readFileSync(`/proc/${dropper.pid!}/status`, 'utf8'), new RegExp(`Uid:\\s+${OTHER_UID}\\s`));
    dropper.kill('SIGKILL');
    const rgone = (): boolean => !existsSync(`/proc/${rpid}`) || /^State:\s+Z/m.test(readFileSync(`/proc/${rpid}/status`, 'utf8'));
    for (let i = 0; i < 100 && !rgone(); i++) await sleep(20);
    const stayed = !rgone();
    if (stayed) process.kill(rpid, 'SIGKILL'); // ours, orphaned: not left behind on failure
    assert.ok(!stayed, 'rootd outlived a parent that had dropped root');
    for (let i = 0; i < 50 && existsSync(sock2); i++) await sleep(20);
    assert.equal(existsSync(sock2), false, 'the socket is removed');
  });
  await t.test('without the flag it stays (the systemd unit: its own service)', async () => {
    const p2 = spawn('sh', ['-c', `"$0" "$@" & echo $!; exec sleep 60`, ROOTD, '--config', config, '--daemon-user', String(DAEMON_UID),
      '--socket', sock2], { stdio: ['ignore', 'pipe', 'ignore'] });
    let o2 = '';
    p2.stdout!.on('data', (d: Buffer) => { o2 += d.toString(); });
    for (let i = 0; i < 100 && !(existsSync(sock2) && o2.includes('\n')); i++) await sleep(20);
    const pid2 = Number(o2.trim());
    p2.kill('SIGKILL');
    await sleep(300);
    assert.ok(existsSync(`/proc/${pid2}`) && existsSync(sock2), 'rootd without --exit-with-parent keeps running');
    process.kill(pid2, 'SIGTERM');
    for (let i = 0; i < 100 && existsSync(sock2); i++) await sleep(20);
    assert.equal(existsSync(sock2), false);
  });
});

test('a peer that is not the daemon user is refused', async () => {
  // root: passes the 0600 socket's permission check, fails SO_PEERCRED.
  const before = snapshot();
  const r = await one(create('frank', 20010), { uid: 0 });
  assert.equal(r.status, S.BAD_PEER);
  assert.match(r.msg, /uid 0 is not the daemon user/);
  // Another uid cannot even connect to the 0600 socket...
  const denied = await client([create('frank', 20010)], { uid: OTHER_UID });
  assert.equal(denied.error, 'EACCES');
  // ...and if the socket were opened up, SO_PEERCRED still refuses it.
  assert.equal(snapshot(), before);
  chmodSync(sock, 0o666);
  try {
    const opened = snapshot();
    const r2 = await one(create('frank', 20010), { uid: OTHER_UID });
    assert.equal(r2.status, S.BAD_PEER);
    assert.equal(snapshot(), opened);
  } finally {
    chmodSync(sock, 0o600);
  }
  assert.match(rootdLog, /<4>latchkey-rootd: event=peer.refused peer_uid=4243 .*expected_uid=4242/);
});

test('END_SESSION: refuses foreign, pid 1, its own, its parent, the peer and daemon-user pids; ends the recorded one', async (t) => {
  const victim = startSleep();
  const otherLogin = startSleep(0, SESSION_UID + 1);
  const noLogin = startSleep(0, 4294967295);
  const daemonOwned = startSleep(DAEMON_UID);
  await sleep(50);
  const start = startTime(victim.pid!);
  assert.equal(readFileSync(`/proc/${victim.pid!}/loginuid`, 'utf8'), String(SESSION_UID), 'the stand-in login has its loginuid');

  const refused = async (req: Buffer | 'SELF', why: RegExp): Promise<void> => {
    const r = await one(req);
    assert.equal(r.status, S.REFUSED, `${r.status} ${r.msg}`);
    assert.match(r.msg, why);
  };
  await t.test('a foreign pid (start time differs)', async () => {
    await refused(endSession(victim.pid!, start + 1n), /another process has the pid now/);
    assert.ok(alive(victim));
  });
  await t.test('pid 1', () => refused(endSession(1, startTime(1)), /pid 1 is not a session process/));
  await t.test("rootd's own pid", async () => {
    await refused(endSession(rootd!.pid!, startTime(rootd!.pid!)), /latchkey-rootd itself/);
    assert.equal(rootd!.exitCode, null);
  });
  await t.test("rootd's parent (this test)", () => refused(endSession(process.pid, startTime(process.pid)), /parent/));
  await t.test('the peer itself', () => refused('SELF', /the daemon itself/));
  await t.test('a process of the daemon user', async () => {
    await refused(endSession(daemonOwned.pid!, startTime(daemonOwned.pid!)), /runs as the daemon user/);
    assert.ok(alive(daemonOwned));
  });
  await t.test('no recorded start time', () => refused(endSession(victim.pid!, 0n), /without a recorded start time/));
  await t.test("another user's login (loginuid differs)", async () => {
    await refused(endSession(otherLogin.pid!, startTime(otherLogin.pid!)), new RegExp(`loginuid ${SESSION_UID + 1}, not the session user's uid ${SESSION_UID}`));
    assert.ok(alive(otherLogin));
  });
  await t.test('a process outside any login (loginuid unset)', async () => {
    await refused(endSession(noLogin.pid!, startTime(noLogin.pid!)), /has loginuid unset, not the session user's uid/);
    assert.ok(alive(noLogin));
  });
  await t.test('a session uid outside the policy: 0, a local account, below min_uid, the daemon', async () => {
    for (const [uid, why] of [[0, /uid 0 is outside/], [20050, /uid 20050 belongs to the local account alice/],
      [19999, /uid 19999 is outside/], [DAEMON_UID, /uid 4242 is outside/]] as const) {
      await refused(endSession(victim.pid!, start, uid), why);
    }
    await refused(endSession(victim.pid!, start, SESSION_UID, 'root'), /root is a local account/);
    await refused(endSession(victim.pid!, start, SESSION_UID, 'a/b'), /portable user name/);
    assert.ok(alive(victim));
  });

  await t.test('the recorded process: SIGTERM, then GONE', async () => {
    const exited = new Promise<string | null>((resolve) => victim.on('exit', (_c, sig) => resolve(sig)));
    const r = await one(endSession(victim.pid!, start, SESSION_UID, 'sess'));
    assert.equal(r.status, S.OK, r.msg);
    assert.equal(await exited, 'SIGTERM');
    const again = await one(endSession(victim.pid!, start));
    assert.equal(again.status, S.GONE, again.msg);
  });
  for (const p of [daemonOwned, otherLogin, noLogin]) p.kill('SIGKILL');
  assert.match(rootdLog, /event=request.done op=END_SESSION status=OK .*name="sess" uid=20020/);
});

// ---- issue 16: the local store's uid range ([local] min_uid/max_uid) ----

/** latchkeyd's own loader on the same text (with the upstream URLs it requires): its error, or ''. */
function daemonLoaderError(text: string, file: string): string {
  const upstream = '[upstream]\nby_name_url = https://u.example/u/\nby_uid_url = https://u.example/i/\n';
  try {
    parseConfig(upstream + text, file);
    return '';
  } catch (e) {
    return (e as Error).message;
  }
}

test("[local] uids (default 9000..9999) get homes and end sessions; a uid in neither range is refused", async (t) => {
  const r = await one(create('lena', 9000));
  assert.equal(r.status, S.OK, r.msg);
  assert.equal(r.flags & FLAG_CREATED, FLAG_CREATED);
  const up = lstatSync(join(base, 'lena', 'inbox'));
  assert.deepEqual([up.uid, up.gid, up.mode & 0o7777], [9000, GID, 0o2750]);
  const last = await one(create('omar', 9999));
  assert.equal(last.status, S.OK, last.msg);
  assert.equal(lstatSync(join(base, 'omar', 'inbox')).uid, 9999);

  for (const uid of [8999, 10000, 19999, 30000]) {
    await t.test(`uid ${uid}: neither upstream (20000..29999) nor local (9000..9999)`, async () => {
      await refusedUnchanged(create('bob', uid), S.REFUSED,
        new RegExp(`^uid ${uid} is outside the served ranges \\(upstream 20000\\.\\.29999, local 9000\\.\\.9999; never 0`));
    });
  }
  await t.test('END_SESSION for a local uid: outside both refused, the recorded login ended', async () => {
    const victim = startSleep(0, 9100);
    await sleep(50);
    const start = startTime(victim.pid!);
    const no = await one(endSession(victim.pid!, start, 10000, 'lena'));
    assert.equal(no.status, S.REFUSED, no.msg);
    assert.match(no.msg, /uid 10000 is outside the served ranges/);
    assert.ok(alive(victim));
    const exited = new Promise<string | null>((resolve) => victim.on('exit', (_c, sig) => resolve(sig)));
    const ok = await one(endSession(victim.pid!, start, 9100, 'lena'));
    assert.equal(ok.status, S.OK, ok.msg);
    assert.equal(await exited, 'SIGTERM');
  });
});

test('an explicit [local] range is used; one overlapping the upstream range (or bad) stops rootd as it stops latchkeyd', async (t) => {
  await t.test('min_uid = 5000, max_uid = 5999 (reload): 5000 served, the default 9000 no longer', async () => {
    writeConf({}, { min_uid: '5000', max_uid: '5999' });
    assert.equal((await one(reloadReq())).status, S.OK);
    assert.equal((await one(create('mia', 5000))).status, S.OK);
    assert.equal(lstatSync(join(base, 'mia', 'inbox')).uid, 5000);
    await refusedUnchanged(create('bob', 9000), S.REFUSED, /uid 9000 is outside the served ranges \(upstream 20000\.\.29999, local 5000\.\.5999;/);
  });
  await t.test('an overlapping range on RELOAD answers FAILED with file:line and key; the old range stays', async () => {
    writeConf({}, { min_uid: '9000', max_uid: '20000' });
    const line = readFileSync(config, 'utf8').split('\n').indexOf('min_uid = 9000') + 1;
    const bad = await one(reloadReq());
    assert.equal(bad.status, S.FAILED, bad.msg);
    assert.match(bad.msg, new RegExp(`latchkey\\.conf:${line}: local\\.min_uid: makes the local users' range 9000 \\.\\. 20000 overlap the upstream's shifted range 20000 \\.\\. 29999`));
    assert.equal((await one(create('nina', 5001))).status, S.OK, 'the old range 5000..5999 stays');
    await refusedUnchanged(create('bob', 9001), S.REFUSED, /local 5000\.\.5999/);
  });
  const bad = join(dir, 'local-bad.conf');
  const cases: [string, string, RegExp][] = [
    ['both set, overlapping uid_shift 10000..', '[users]\nuid_shift = 10000\n[local]\nmin_uid = 9500\nmax_uid = 10500\n',
      /local-bad\.conf:4: local\.min_uid: makes the local users' range 9500 \.\. 10500 overlap the upstream's shifted range 10000 \.\. 2147483647 \(\[users\] uid_shift, min_uid, max_uid\); choose a local range outside it/],
    ['only max_uid set, reaching the default uid_shift', '[local]\nmax_uid = 10000\n',
      /local-bad\.conf:2: local\.max_uid: makes the local users' range 9000 \.\. 10000 overlap the upstream's shifted range 10000 \.\. 2147483647/],
    ['only min_uid set, reaching into [users] min_uid..max_uid', '[users]\nuid_shift = 100\nmin_uid = 1000\nmax_uid = 8999\n[local]\nmin_uid = 8000\n',
      /local-bad\.conf:6: local\.min_uid: makes the local users' range 8000 \.\. 9999 overlap the upstream's shifted range 1000 \.\. 8999/],
    ['min_uid above max_uid', '[local]\nmin_uid = 9500\nmax_uid = 9400\n', /local-bad\.conf:2: local\.min_uid: is above max_uid \(9400\)/],
    ['a range holding 65534', '[users]\nmax_uid = 60000\n[local]\nmin_uid = 65000\nmax_uid = 66000\n',
      /local-bad\.conf:5: local\.max_uid: makes the range 65000 \.\. 66000 include 65534 \(nobody\/\(uint16\)-1\)/],
  ];
  const run = (text: string): { code: number | null; err: string } => {
    writeFileSync(bad, text, { mode: 0o644 });
    const r = spawnSync(ROOTD, ['--config', bad, '--daemon-user', String(DAEMON_UID), '--socket', join(dir, 'run4', 's')], { encoding: 'utf8', timeout: 5000 });
    return { code: r.status, err: r.stderr };
  };
  for (const [what, text, why] of cases) {
    await t.test(`at start: ${what}`, () => {
      const r = run(text);
      assert.equal(r.code, 78, r.err);
      assert.match(r.err, why);
      // The same refusal, word for word, as latchkeyd's loader (src/config/load.ts) gives.
      const reason = /event=start\.failed reason="(.*)"$/m.exec(r.err)?.[1] ?? '';
      const daemon = daemonLoaderError(text, bad).replace(/^(\S+?):(\d+):/, (_m, f: string, n: string) => `${f}:${Number(n) - 3}:`);
      assert.equal(reason, daemon);
    });
  }
  await t.test('at start: a [local] uid below 1000', () => {
    const r = run('[local]\nmin_uid = 999\n');
    assert.equal(r.code, 78, r.err);
    assert.match(r.err, /local-bad\.conf:2: local\.min_uid: "999" is not a number from 1000 to 2147483647/);
    assert.match(daemonLoaderError('[local]\nmin_uid = 999\n', bad), /local\.min_uid: "999" is out of range/);
  });
  assert.equal(existsSync(join(dir, 'run4')), false, 'no socket dir made by a refused start');
  writeConf();
  assert.equal((await one(reloadReq())).status, S.OK);
});

test('a LocalEGA auth.conf with a small ega_uid_shift is still accepted: the default local range gives way (no local uids)', async () => {
  // ega_uid_shift 1000 makes the upstream's range 1000..9500 cover the default 9000..9999; neither
  // [local] key is set, so there is no local range (latchkeyd: minUid = maxUid = 0), not an error.
  const text = [
    'cega_endpoint_username = https://cega.example.org/username/',
    'cega_endpoint_uid = https://cega.example.org/user-id/',
    `ega_dir = ${base}`,
    'ega_dir_attrs = 2750',
    `ega_gid = ${GID}`,
    'ega_uid_shift = 1000',
    '[users]',
    'max_uid = 9500',
    `local_passwd = ${join(dir, 'passwd')}`,
    '',
  ].join('\n');
  const daemon = parseConfig(text, config);
  assert.deepEqual([daemon.local.minUid, daemon.local.maxUid], [0, 0], "latchkeyd's reading: no local range");
  writeFileSync(config, text, { mode: 0o644 });
  const r = await one(reloadReq());
  assert.equal(r.status, S.OK, r.msg);
  assert.equal((await one(create('ola', 1500))).status, S.OK, 'an upstream uid (1000 + 500)');
  assert.equal((await one(create('pia', 9400))).status, S.OK, 'an upstream uid inside the default local range');
  await refusedUnchanged(create('bob', 9700), S.REFUSED,
    /^uid 9700 is outside the served ranges \(upstream 1000\.\.9500, local none; never 0, 65534, 65535 or the daemon's\)$/);
  writeConf();
  assert.equal((await one(reloadReq())).status, S.OK);
});

test('a slow peer is dropped after the receive timeout and does not block the next one', async () => {
  const slow = client([create('gina', 20011).subarray(0, 10)], { mode: 'hold' });
  await sleep(200);
  const fast = await one(create('gina', 20011));
  const held = await slow;
  assert.equal(fast.status, S.OK, fast.msg);
  assert.equal(held.replies.length, 0, 'the slow peer gets no reply');
  assert.ok(held.ms >= 4500 && held.ms < 9000, `rootd closed the slow peer after ${held.ms} ms (timeout 5000)`);
  assert.match(rootdLog, /event=conn.dropped .*reason=timeout bytes=10/);
});

test('a peer dripping one request every 2 s holds the only slot at most ROOTD_IO_TIMEOUT_MS', async () => {
  const drip = `
const net = require('node:net');
const [sockPath, hex] = process.argv.slice(1);
const s = net.connect(sockPath);
const t0 = Date.now();
let replies = 0;
s.on('data', (d) => { replies += Math.floor(d.length / ${REPLY_SIZE}); });
let n = 0;
const tick = () => { if (n++ < 6 && !s.destroyed) { s.write(Buffer.from(hex, 'hex')); setTimeout(tick, 2000); } };
s.on('connect', tick);
s.on('error', () => {});
s.on('close', () => { console.log(JSON.stringify({ replies, ms: Date.now() - t0 })); process.exit(0); });
`;
  const p = spawn(process.execPath, ['-e', drip, sock, create('root', 20013).toString('hex')], { uid: DAEMON_UID, gid: DAEMON_UID, stdio: ['ignore', 'pipe', 'inherit'], cwd: '/' });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  const done = new Promise<void>((r) => p.on('close', () => r()));
  await sleep(300);
  const t0 = Date.now();
  const next = await one(create('gina', 20011));
  const waited = Date.now() - t0;
  await done;
  const r = JSON.parse(out) as { replies: number; ms: number };
  assert.equal(next.status, S.OK, next.msg);
  assert.ok(r.ms < 7000, `the dripping peer kept its connection ${r.ms} ms`);
  assert.ok(r.replies >= 1 && r.replies <= 3, `${r.replies} replies`);
  assert.ok(waited < 7000, `the next peer waited ${waited} ms`);
});

test('refusal logging is rate-limited; SIGTERM stops rootd cleanly and removes its socket', async () => {
  // ROOTD_LOG_BURST (100) lines per 10 s window: 300 refusals in well under a window can show
  // at most two windows' worth.
  const flood = Array.from({ length: 300 }, () => create('root', 20012));
  const logBefore = rootdLog.length;
  const r = await client(flood);
  assert.equal(r.replies.length, 300);
  assert.ok(r.replies.every((x) => x.status === S.REFUSED));
  await sleep(100);
  const lines = rootdLog.slice(logBefore).split('\n').filter((l) => l.includes('event=request.refused'));
  assert.ok(lines.length <= 200, `${lines.length} refusal lines for 300 refusals`);
  rootd!.kill('SIGTERM');
  assert.equal(await rootdExit, 0);
  assert.match(rootdLog, /event=log.suppressed count=\d+/);
  assert.match(rootdLog, /<6>latchkey-rootd: event=stop/);
  assert.equal(existsSync(sock), false, 'the socket is removed');
});

test('socket activation: rootd serves the socket systemd passes (LISTEN_FDS), with the same peer check', async (t) => {
  if (spawnSync('systemd-socket-activate', ['--help']).error) {
    t.skip('systemd-socket-activate is not installed');
    return;
  }
  const actSock = join(dir, 'activated.sock');
  // systemd-socket-activate binds, then execs rootd in place (same pid) with fd 3 and
  // LISTEN_PID/LISTEN_FDS set, as a .socket unit with Accept=no does.
  const p = spawn('systemd-socket-activate', ['-l', actSock, ROOTD, '--config', config, '--daemon-user', String(DAEMON_UID)],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  started.push(p);
  let log = '';
  p.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
  for (let i = 0; i < 100 && !existsSync(actSock); i++) await sleep(20);
  chmodSync(actSock, 0o666); // so another uid gets as far as SO_PEERCRED
  const saved = sock;
  sock = actSock;
  try {
    const r = await one(create('hank', 20013));
    assert.equal(r.status, S.OK, `${r.msg}\n${log}`);
    assert.equal(lstatSync(join(base, 'hank', 'inbox')).uid, 20013);
    assert.equal((await one(create('hank', 20013), { uid: OTHER_UID })).status, S.BAD_PEER);
  } finally {
    sock = saved;
  }
  assert.match(log, /event=start config=\S+ socket=\(systemd\)/);
  const exited = new Promise((resolve) => p.on('exit', resolve));
  p.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.match(log, /event=stop/);
});

test('a bad or untrusted config stops rootd at start with file, line and fix', async (t) => {
  const run = (conf: string): { code: number | null; err: string } => {
    const r = spawnSync(ROOTD, ['--config', conf, '--daemon-user', String(DAEMON_UID), '--socket', join(dir, 'run2', 's')], { encoding: 'utf8', timeout: 5000 });
    return { code: r.status, err: r.stderr };
  };
  const bad = join(dir, 'bad.conf');
  const cases: [string, string, RegExp][] = [
    ['world-writable mode', '[homes]\nmode = 0777\n', /bad.conf:2: homes.mode: "0777" is world-writable/],
    ['a relative base', '[homes]\nbase = ega/inbox\n', /bad.conf:2: homes.base: "ega\/inbox" must be an absolute path/],
    ['base = /', '[homes]\nbase = /\n', /bad.conf:2: homes.base: must not be \//],
    ['an unknown layout', '[homes]\nlayout = flat\n', /bad.conf:2: homes.layout: "flat" is not one of chroot, plain/],
    ['an upload_dir path', '[homes]\nupload_dir = ../x\n', /bad.conf:2: homes.upload_dir: .*one directory name/],
    ['gid 65534', '[users]\ngid = 65534\n', /bad.conf:2: users.gid: "65534" is reserved/],
    ['min_uid above max_uid', '[users]\nmin_uid = 5000\nmax_uid = 4000\n', /bad.conf:2: users.min_uid: is above max_uid \(4000\)/],
    ['a key and its LocalEGA alias', 'ega_dir = /srv/a\n[homes]\nbase = /srv/b\n', /bad.conf:3: homes.base: sets the same thing as line 1/],
    ['a line without =', '[homes]\nbase\n', /bad.conf:2: base: has no "="/],
    ['a glued comment', '[homes]\nbase = /srv/a#b\n', /bad.conf:2: homes.base: has # or ;/],
  ];
  for (const [what, text, why] of cases) {
    await t.test(what, () => {
      writeFileSync(bad, text, { mode: 0o644 });
      const r = run(bad);
      assert.equal(r.code, 78, r.err);
      assert.match(r.err, /^<3>latchkey-rootd: event=start.failed reason=/);
      assert.match(r.err, why);
    });
  }
  await t.test('a config others can write', () => {
    writeFileSync(bad, '[homes]\n', { mode: 0o644 });
    chmodSync(bad, 0o666);
    const r = run(bad);
    assert.equal(r.code, 78);
    assert.match(r.err, /owned by root and not writable by group or others; fix: chown root .* chmod go-w/);
  });
  await t.test('a config owned by the daemon user', () => {
    writeFileSync(bad, '[homes]\n', { mode: 0o644 });
    chownSync(bad, DAEMON_UID, DAEMON_UID);
    assert.equal(run(bad).code, 78);
  });
  await t.test('a config reached through a symlink', () => {
    rmSync(bad);
    writeFileSync(bad, '[homes]\n', { mode: 0o644 });
    symlinkSync(bad, join(dir, 'link.conf'));
    const r = run(join(dir, 'link.conf'));
    assert.equal(r.code, 78);
    assert.match(r.err, /symbolic link/);
  });
  assert.equal(existsSync(join(dir, 'run2')), false, 'no socket dir made by a refused start');
});
