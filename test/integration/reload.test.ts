// `latchkeyctl reload` (the unit's ExecReload): SIGHUP's work with an answer. A refused config
// fails the command (exit 1, the file:line and fix on stderr) and the daemon keeps serving with
// the previous one; a credential handed over with --credential-stdin (what --credential FILE
// gets from systemd-creds) replaces the copy systemd made at start ($CREDENTIALS_DIRECTORY), and
// later reloads keep it. Through the real daemon, latchkeyctl and the example user service.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startUserService } from '../../src/example/userservice.js';
import { TEST_DAEMON_UID, exampleUsers, latchkeyctl, startDaemon, writeConfig } from '../lib/harness.js';

test('latchkeyctl reload: refused config fails visibly and changes nothing; a pushed credential is used until replaced', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-reload-'));
  chmodSync(dir, 0o755);
  const service = await startUserService({ host: '127.0.0.1', port: 0, users: exampleUsers(), basicAuth: { user: 'lega', password: 'testpass' } });
  // The credentials come only from the systemd credential, as with LoadCredentialEncrypted=.
  const configFile = writeConfig(dir, service.url);
  writeFileSync(configFile, readFileSync(configFile, 'utf8').replace(/^(username|password) = .*\n/gm, ''));
  const creds = join(dir, 'creds');
  mkdirSync(creds, { mode: 0o750 });
  writeFileSync(join(creds, 'latchkey.secrets'), 'username=lega\npassword=testpass\n', { mode: 0o640 });
  chownSync(creds, 0, TEST_DAEMON_UID);
  chownSync(join(creds, 'latchkey.secrets'), 0, TEST_DAEMON_UID);
  const socketDir = join(dir, 'run');
  const daemon = await startDaemon(configFile, socketDir, { CREDENTIALS_DIRECTORY: creds });
  const ctl = (args: string[], input = ''): ReturnType<typeof latchkeyctl> => latchkeyctl(socketDir, args, input);
  try {
    assert.equal((await ctl(['lookup', 'alice'])).code, 0, 'the credential from $CREDENTIALS_DIRECTORY works');

    const plain = await ctl(['--json', 'reload']);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(JSON.parse(plain.stdout).credential, 'start');

    // A broken config: exit 1, the line and the fix, and the old config still serves.
    const good = readFileSync(configFile, 'utf8');
    appendFileSync(configFile, '[cache]\nttl = soon\n');
    const bad = await ctl(['reload']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /latchkey\.conf:\d+: cache\.ttl: .*previous configuration stays in force/);
    assert.equal((await ctl(['lookup', 'bob'])).code, 0, 'still serving, with the old credentials');
    assert.ok(daemon.logs.some((l) => l.includes('config.reload_failed')));
    writeFileSync(configFile, good);

    // A rotated credential handed over: a wrong one makes new lookups fail (401) ...
    const wrong = await ctl(['--json', 'reload', '--credential-stdin'], 'username=lega\npassword=rotated-wrong\n');
    assert.equal(wrong.code, 0, wrong.stderr);
    assert.equal(JSON.parse(wrong.stdout).credential, 'pushed');
    const refusedLookup = await ctl(['lookup', 'carol']);
    assert.notEqual(refusedLookup.code, 0);
    assert.match(refusedLookup.stdout + refusedLookup.stderr, /401|credentials refused|unavailable/i);
    // ... and a plain reload (SIGHUP) keeps the pushed one rather than systemd's older copy.
    process.kill(daemon.pid, 'SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    assert.notEqual((await ctl(['lookup', 'dave'])).code, 0);
    // the right one: served again, no restart
    const right = await ctl(['reload', '--credential-stdin'], 'username=lega\npassword=testpass\n');
    assert.equal(right.code, 0, right.stderr);
    assert.equal((await ctl(['lookup', 'erin'])).code, 0);
    // A credential text that is not secrets_file lines is refused like a bad config.
    const junk = await ctl(['reload', '--credential-stdin'], '[upstream]\npassword=x\n');
    assert.equal(junk.code, 1);
    assert.match(junk.stderr, /secrets_file has no sections/);
    // Too big for the protocol: refused by latchkeyctl without reading all of it, nothing sent.
    const big = await ctl(['reload', '--credential-stdin'], `password=${'x'.repeat(1 << 20)}\n`);
    assert.equal(big.code, 2);
    assert.match(big.stderr, /larger than 6144 bytes/);
    for (const l of daemon.logs) assert.ok(!l.includes('rotated-wrong') && !l.includes('testpass'), `no secret in the log: ${l}`);
  } finally {
    await daemon.stop();
    await service.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
