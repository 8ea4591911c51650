// issue 20: the systemd userdb provider through the real client, systemd's userdbctl, in a private
// mount namespace whose /run/systemd/userdb/ (on a tmpfs) holds only our link, as the shipped
// tmpfiles.d makes it (io.latchkey -> <socket_dir>/userdb.sock), and a second tiny varlink
// service of the test's (io.test.Other). `-N --with-dropin=no` keeps NSS, drop-ins and the
// synthesized root/nobody out, so every answer is a varlink service's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { exampleUsers, latchkeyctl, runInNamespace, startEnv, writeConfig, type TestEnv } from '../lib/harness.js';
import { VarlinkReader, encodeError, encodeReply } from '../../src/userdb/varlink.js';

const ALICE_KEY = exampleUsers().find((u) => u.username === 'alice')!.sshPublicKeys![0]!;
const UD = 'userdbctl -N --with-dropin=no --no-pager';
/** An account of the host ("daemon" is in every /etc/passwd) that the upstream also lists. */
const HOST_NAME = 'daemon';

let env: TestEnv;
let other: Server;
let otherPath: string;

/** io.test.Other: answers GetUserRecord for "otheruser" only; everything else NoRecordFound. */
function startOther(path: string): Promise<Server> {
  const srv = createServer((sock) => {
    const r = new VarlinkReader();
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      for (const m of r.push(d)) {
        const call = JSON.parse(m.toString()) as { method: string; parameters?: { userName?: string; uid?: number } };
        const p = call.parameters ?? {};
        if (call.method.endsWith('.GetUserRecord') && (p.userName === 'otheruser' || p.uid === 4242)) {
          sock.write(encodeReply({ record: { userName: 'otheruser', uid: 4242, gid: 4242, service: 'io.test.Other', disposition: 'regular' }, incomplete: false }));
        } else {
          sock.write(encodeError('io.systemd.UserDatabase.NoRecordFound'));
        }
      }
    });
  });
  return new Promise((resolve) => srv.listen(path, () => resolve(srv)));
}

/** Runs userdbctl command lines in one namespace; each one's output (stdout+stderr) and exit code. */
async function userdbctl(cmds: string[]): Promise<Array<{ out: string; rc: number }>> {
  // A tmpfs over all of /run (the sockets live under the test's dir in /tmp): works on a host
  // without /run/systemd, and nothing of the host's own userdb services is seen.
  const setup = `mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/systemd/userdb
ln -s ${env.socketDir}/userdb.sock /run/systemd/userdb/io.latchkey
ln -s ${otherPath} /run/systemd/userdb/io.test.Other
`;
  const body = cmds.map((c, i) => `echo "@@${i}"; ( ${c} ) 2>&1; echo "@@rc=$?"`).join('\n');
  const r = await runInNamespace(setup + body, {}, { timeoutMs: 20_000 });
  const parts = r.stdout.split(/^@@\d+\n/m).slice(1);
  assert.equal(parts.length, cmds.length, r.stdout + r.stderr);
  return parts.map((p) => {
    const m = /@@rc=(\d+)\n?$/.exec(p)!;
    return { out: p.slice(0, m.index), rc: Number(m[1]) };
  });
}

before(async () => {
  // A small per-uid share, so the budget test below can fill it (the test runs as root, one uid).
  env = await startEnv({ daemon: { max_connections_per_uid: 8 }, userdb: { enabled: 'yes' } }, [...exampleUsers(), { username: HOST_NAME, uid: 1999, passwordHash: null, sshPublicKeys: [], gecos: 'not ours' }]);
  otherPath = join(env.dir, 'other.sock');
  other = await startOther(otherPath);
});

after(async () => {
  await new Promise<void>((r) => other.close(() => r()));
  await env.stop();
});

test('userdbctl sees latchkey users: text, JSON record fields, group, memberships, enumeration; keys for root only', async () => {
  const [text, json, unpriv, group, members, all, host, otherUser] = await userdbctl([
    `${UD} user alice`,
    `${UD} --output=json user alice`,
    `setpriv --reuid=65534 --regid=65534 --clear-groups ${UD} --output=json user alice`,
    `${UD} group lega`,
    `${UD} groups-of-user alice`,
    `${UD} --no-legend user`,
    `${UD} user ${HOST_NAME}`,
    `${UD} user otheruser`,
  ]);
  assert.equal(text!.rc, 0, text!.out);
  assert.match(text!.out, /User name: alice/);
  assert.match(text!.out, /UID: 11001/);
  assert.match(text!.out, /Service: io\.latchkey/);

  assert.equal(json!.rc, 0, json!.out);
  const rec = JSON.parse(json!.out) as Record<string, unknown>;
  assert.deepEqual(rec, {
    userName: 'alice', uid: 11001, gid: 10000, realName: 'Alice Demo (bcrypt 2b + ed25519 key)',
    homeDirectory: join(env.dir, 'homes', 'alice'), shell: '/bin/bash', memberOf: ['lega'],
    service: 'io.latchkey', disposition: 'regular', privileged: { sshAuthorizedKeys: [ALICE_KEY] },
  });
  // An unprivileged caller: the same record without the privileged section; no hash for anyone.
  assert.equal(unpriv!.rc, 0, unpriv!.out);
  const pub = JSON.parse(unpriv!.out) as Record<string, unknown>;
  assert.equal(pub.privileged, undefined);
  assert.equal(pub.userName, 'alice');
  for (const o of [json!.out, unpriv!.out]) assert.doesNotMatch(o, /\$2b\$|hashedPassword/);

  assert.equal(group!.rc, 0, group!.out);
  assert.match(group!.out, /Group name: lega/);
  assert.match(group!.out, /GID: 10000/);
  assert.match(members!.out, /alice\s+lega/);
  // Enumeration lists the cached users (alice, looked up above) and no one the cache lacks.
  assert.equal(all!.rc, 0, all!.out);
  assert.match(all!.out, /^\s*alice\s+regular\s+11001\s+10000/m);
  assert.doesNotMatch(all!.out, /\bcarol\b/);
  // The host's account is never answered by latchkey, and the upstream was never asked for it.
  assert.notEqual(host!.rc, 0);
  assert.match(host!.out, new RegExp(`User ${HOST_NAME} does not exist`));
  assert.equal(env.service.stats().byUser[HOST_NAME] ?? 0, 0);
  // The other service answers its own user beside ours.
  assert.equal(otherUser!.rc, 0, otherUser!.out);
  assert.match(otherUser!.out, /Service: io\.test\.Other/);

  // latchkeyctl status: the socket and what it served (the host name was an error reply).
  const st = await latchkeyctl(env.socketDir, ['status', '--json']);
  assert.equal(st.code, 0, st.stderr);
  const u = (JSON.parse(st.stdout) as { userdb: Record<string, unknown> }).userdb;
  assert.equal(u.enabled, true);
  assert.equal(u.path, join(env.socketDir, 'userdb.sock'));
  assert.ok((u.requests as number) >= 8 && (u.errors as number) >= 1 && (u.accepted as number) >= 8, JSON.stringify(u));
  assert.equal(u.malformed, 0);
  const text2 = await latchkeyctl(env.socketDir, ['status']);
  // (not a terminal: the tab-separated form) path, connections, requests, errors, refused, malformed, records_refused
  assert.match(text2.stdout, /^userdb\t\S+\/userdb\.sock\s\d+\s\d+\s[1-9]\d*\s0\s0\s0$/m);
});

/** A raw connection to userdb.sock (or another socket of the daemon); resolves once connected. */
function connect(name = 'userdb.sock'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const c = createConnection(join(env.socketDir, name));
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}
/** Everything the peer got until the daemon closed the connection, and how long that took. */
function untilClosed(c: Socket, what: string, timeoutMs = 6000): Promise<{ got: string; ms: number }> {
  const t0 = Date.now();
  let got = '';
  c.on('data', (d: Buffer) => { got += d.toString(); });
  c.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { c.destroy(); reject(new Error(`${what}: still open after ${timeoutMs} ms; got ${JSON.stringify(got)}`)); }, timeoutMs);
    c.once('close', () => { clearTimeout(timer); resolve({ got, ms: Date.now() - t0 }); });
  });
}
const CALL = '{"method":"io.systemd.UserDatabase.GetUserRecord","parameters":{"userName":"alice","service":"io.latchkey"}}';

test('nss.sock\'s limits: an oversized message, a dribbled one, bad JSON and a full per-uid share close the connection', async () => {
  const big = await connect();
  const bigClosed = untilClosed(big, 'oversized');
  big.write(Buffer.alloc(64 * 1024 + 1, 0x20));
  const slow = await connect();
  const slowClosed = untilClosed(slow, 'dribbled');
  slow.write(CALL.slice(0, 20)); // the rest never comes: the message deadline closes it
  const junk = await connect();
  const junkClosed = untilClosed(junk, 'not JSON');
  junk.write('not json\0');
  const [b, s, j] = await Promise.all([bigClosed, slowClosed, junkClosed]);
  for (const r of [b, s, j]) assert.equal(r.got, '', 'no reply to a message that is not a call');
  assert.ok(s.ms >= 1500 && s.ms < 5000, `closed after ${s.ms} ms`);
  // The oversized one is closed at once, not by the 2 s message deadline.
  assert.ok(b.ms < 1000 && j.ms < 1000, `oversized closed after ${b.ms} ms, not JSON after ${j.ms} ms`);
  // One uid's share is 8 connections, on nss.sock and userdb.sock together: a ninth closes that
  // uid's oldest idle one (here an nss.sock connection), never someone else's.
  const held = [];
  for (let i = 0; i < 4; i++) held.push(await connect('nss.sock'));
  for (let i = 0; i < 4; i++) held.push(await connect());
  const firstClosed = untilClosed(held[0]!, 'the oldest idle connection of a full share');
  const ninth = await connect();
  await firstClosed;
  // The newcomer is served.
  const reply = new Promise<string>((resolve) => { let got = ''; ninth.on('data', (d: Buffer) => { got += d.toString(); if (got.endsWith('\0')) resolve(got); }); });
  ninth.write(CALL + '\0');
  assert.match(await reply, /"userName":"alice"/);
  for (const c of [...held, ninth]) c.destroy();
});

test('upstream down: a cached user is still served, an unknown one is "not available", never "does not exist"', async () => {
  env.service.setFault('5xx');
  try {
    const [cached, unknown] = await userdbctl([`${UD} user alice`, `${UD} -s io.latchkey user carol`]);
    assert.equal(cached!.rc, 0, cached!.out);
    assert.match(cached!.out, /User name: alice/);
    assert.notEqual(unknown!.rc, 0);
    assert.match(unknown!.out, /not available/);
    assert.doesNotMatch(unknown!.out, /does not exist/);
  } finally {
    env.service.setFault(null);
  }
});

test('[userdb] enabled = no and a reload remove the socket; yes and a reload bring it back', async () => {
  const sock = join(env.socketDir, 'userdb.sock');
  const over = { daemon: { max_connections_per_uid: 8 }, userdb: { enabled: 'yes' } };
  try {
    writeConfig(env.dir, env.service.url, { ...over, userdb: { enabled: 'no' } }); // the default
    assert.equal((await latchkeyctl(env.socketDir, ['reload'])).code, 0);
    assert.equal(existsSync(sock), false);
    const st = JSON.parse((await latchkeyctl(env.socketDir, ['status', '--json'])).stdout) as { userdb: { enabled: boolean; path: string | null } };
    assert.deepEqual([st.userdb.enabled, st.userdb.path], [false, null]);
  } finally {
    writeConfig(env.dir, env.service.url, over);
    assert.equal((await latchkeyctl(env.socketDir, ['reload'])).code, 0);
  }
  for (let i = 0; i < 50 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20));
  const c = await connect();
  c.destroy();
});

test('daemon down: userdbctl says the service failed, and the other service still answers', async () => {
  await env.daemon.stop();
  const [ours, theirs] = await userdbctl([`${UD} -s io.latchkey user alice`, `${UD} user otheruser`]);
  assert.notEqual(ours!.rc, 0);
  assert.match(ours!.out, /Failed to find user alice: (No such file or directory|Connection refused)/);
  assert.equal(theirs!.rc, 0, theirs!.out);
  assert.match(theirs!.out, /User name: otheruser/);
});
