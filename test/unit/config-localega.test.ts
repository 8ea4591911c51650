// Issue 18: every mistake of a config file is reported in one run; LocalEGA's auth.conf is read as
// LocalEGA read it (a value runs to the end of the line; older key names); its db_path outside
// the daemon's runtime dir is moved there with a notice; `latchkeyctl import-ega` turns real
// LocalEGA files into a latchkey.conf and a 0600 secrets file that latchkeyd accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configNotices, loadConfig, parseConfig } from '../../src/config/load.js';
import { ConfigError, ConfigErrors } from '../../src/errors.js';
import { ROOT } from '../lib/paths.js';
import { scratchDir } from '../lib/tmp.js';

const URLS = '[upstream]\nby_name_url = https://u.example/users/\nby_uid_url = https://u.example/uids/\n';
const FIX = join(ROOT, 'test/fixtures/localega');

function errorsOf(fn: () => unknown): ConfigError[] {
  try { fn(); } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e instanceof ConfigErrors ? [...e.errors] : [e];
  }
  assert.fail('no ConfigError');
}

test('every mistake of a file is reported in one run, each as FILE:LINE: key: problem, in line order', () => {
  const text = `cega_creds = lega\nbogus = 1\n${URLS}tll = 1\n[cache]\nttl = abc\nrefresh_ahead = 2h\nttl = 5m\n[pam]\nprompt = a#b\n`
    + '[nope]\nx = 1\n[users]\nmin_uid = 5000\nmax_uid = 4000\n';
  let e: unknown;
  try { parseConfig(text, 'x.conf'); } catch (err) { e = err; }
  assert.ok(e instanceof ConfigErrors, String(e));
  const lines = e.message.split('\n');
  // The file's own lines in order, then the checks across keys.
  assert.deepEqual(lines.map((l) => l.replace(/: .*$/, '')), [
    'x.conf:1', 'x.conf:2', 'x.conf:6', 'x.conf:8', 'x.conf:10', 'x.conf:12', 'x.conf:13', 'x.conf:16', 'x.conf:15',
  ], e.message);
  assert.match(lines[0]!, /cega_creds: the value \(not shown\) is not of the form user:password/);
  assert.match(lines[1]!, /bogus: unknown key/);
  assert.match(lines[2]!, /upstream\.tll: unknown key/);
  assert.match(lines[3]!, /cache\.ttl: "abc" is not a duration/);
  assert.match(lines[4]!, /cache\.ttl: is given twice \(x\.conf:8 and x\.conf:10\)/);
  assert.match(lines[5]!, /pam\.prompt: contains # or ;/);
  assert.match(lines[6]!, /\[nope\]: unknown section/);
  assert.match(lines[7]!, /users\.min_uid: is above max_uid \(4000\)/);
  assert.match(lines[8]!, /users\.uid_shift: is above max_uid \(4000\)/);
  // refresh_ahead = 2h is only "too long" against the default ttl standing in for the refused
  // one: that check is not made. The keys of the unknown section are not judged one by one.
  assert.ok(!e.message.includes('refresh_ahead') && !e.message.includes('nope.x'), e.message);
  // The first error stays the ConfigError's own file/line/key.
  assert.deepEqual([e.file, e.line, e.key], ['x.conf', 1, 'cega_creds']);
});

test('loadConfig reports the mode of the file and its parse errors together', () => {
  const dir = scratchDir('latchkey-lega-');
  const file = join(dir, 'auth.conf');
  writeFileSync(file, 'cega_endpoint_username = https://h/u/\ncega_endpoint_uid = https://h/i/\ncega_creds = a:b\nega_gid = x\n');
  chmodSync(file, 0o644);
  const errs = errorsOf(() => loadConfig(file));
  assert.deepEqual(errs.map((x) => [x.line, x.key]), [[4, 'ega_gid'], [0, '']], errs.map((x) => x.message).join('\n'));
  assert.match(errs[1]!.problem, /holds secrets \(cega_creds\).*chmod 600/);
});

test('a LocalEGA line runs to the end of the line, as EGA-auth read it; older key names are accepted', () => {
  const c = parseConfig('cega_endpoint = https://h/u/\ncega_endpoint_uid = https://h/i/%u\ncega_creds = lega:pa#ss; x # y\n'
    + 'gid = 997\nshell = /bin/aspshell-r\nhomedir_prefix = /ega/in#box\nprompt = Knock # Knock:\nega_dir_attrs = 2750 # rwxr-s---\n', 'auth.conf');
  assert.deepEqual(c.upstream.basicAuth, { user: 'lega', password: 'pa#ss; x # y' });
  assert.equal(c.upstream.byNameUrl, 'https://h/u/');
  assert.deepEqual([c.users.gid, c.users.shell, c.homes.base, c.pam.prompt, c.homes.mode], [997, '/bin/aspshell-r', '/ega/in#box', 'Knock # Knock:', 0o2750]);
  // A sectioned latchkey.conf keeps its own rules: a glued # is refused there.
  assert.match(errorsOf(() => parseConfig(`${URLS}password = pa#ss\nusername = u\n`, 'x.conf'))[0]!.problem, /quote it/);
});

test('LocalEGA lines that are ambiguous or name settings latchkey does not have are refused, with the fix', () => {
  const errs = errorsOf(() => parseConfig("cega_creds = 'a:b'\ncega_json_prefix = a\\#b\nenable_cega = yes\nshadow_max = 99999\ngid = 1\nega_gid = 2\n"
    + 'cega_endpoint_username = https://h/u/\ncega_endpoint_uid = https://h/i/\n', 'a.conf'));
  const text = errs.map((e) => e.message).join('\n');
  assert.match(text, /a\.conf:1: cega_creds: is in quotes; .*LocalEGA took the quotes as part of it/);
  assert.match(text, /a\.conf:2: cega_json_prefix: has a backslash/);
  assert.match(text, /a\.conf:3: enable_cega: is a key of an older LocalEGA .*remove it/);
  assert.match(text, /a\.conf:4: shadow_max: .*no shadow entries/);
  assert.match(text, /a\.conf:6: ega_gid: sets the same thing as gid \(a\.conf:5 and a\.conf:6\)/);
  assert.ok(!text.includes('a:b'), text);
});

test('a LocalEGA db_path outside [daemon] socket_dir is moved into it, with a notice; [cache] db_path stays', () => {
  const dir = scratchDir('latchkey-lega-');
  const file = join(dir, 'auth.conf');
  writeFileSync(file, `${readFileSync(join(FIX, 'inbox-auth.conf'), 'utf8')}\n[daemon]\nsocket_dir = /run/lk/\n`);
  chmodSync(file, 0o600);
  const c = loadConfig(file);
  assert.equal(c.cache.dbPath, '/run/lk/ega.db');
  assert.equal(configNotices(c).length, 1);
  assert.match(configNotices(c)[0]!, /auth\.conf:25: db_path: \/run\/ega\.db is outside \[daemon\] socket_dir \(\/run\/lk\).*kept at \/run\/lk\/ega\.db/);
  assert.equal(c.upstream.basicAuth?.password, 's3cr#t;pw');
  const sectioned = join(dir, 'latchkey.conf');
  writeFileSync(sectioned, `${URLS}[cache]\ndb_path = /run/ega.db\n`);
  chmodSync(sectioned, 0o644);
  const s = loadConfig(sectioned);
  assert.deepEqual([s.cache.dbPath, configNotices(s)], ['/run/ega.db', []]);
});

test('import-ega: each real LocalEGA file becomes a latchkey.conf + 0600 secrets that latchkeyd loads to the same settings', () => {
  for (const src of [join(FIX, 'inbox-auth.conf'), join(ROOT, 'etc/ega-auth.conf'), join(FIX, 'ega-auth-sample.conf'), join(FIX, 'fega-nss-sample.conf')]) {
    const name = src.replace(/.*\//, '');
    const out = scratchDir('latchkey-import-');
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/latchkeyctl'), 'import-ega', src, '--output', out, '--json'], { encoding: 'utf8' });
    const j = JSON.parse(r.stdout);
    const lega = parseConfig(readFileSync(src, 'utf8').replace(/^db_path = .*$/m, '').replace(/^(verify_peer|verify_hostname) = .*$/gm, '')
      .replace(/^(shadow_\w+|use_cache) = .*$/gm, '').replace(/^cega_endpoint_username = http:/m, 'insecure_http = yes\n$&'), name);
    assert.equal(statSync(j.secrets_file).mode & 0o777, 0o600, name);
    assert.equal(statSync(j.config_file).mode & 0o777, 0o600, name);
    const { user } = lega.upstream.basicAuth!;
    assert.ok(!/^(username|password) =|cega_creds =/m.test(readFileSync(j.config_file, 'utf8')), name);
    assert.match(readFileSync(j.secrets_file, 'utf8'), new RegExp(`^username = ${user}\n`, 'm'));
    assert.ok(j.changes.some((c: string) => c.startsWith('TLS: latchkeyd verifies')), name);
    assert.ok(j.changes.some((c: string) => c.startsWith('homes:')) && j.changes.some((c: string) => c.startsWith('group:')), name);
    assert.ok(j.not_carried_over.some((d: { key: string }) => d.key === 'db_path'), name);
    if (name === 'inbox-auth.conf' || name === 'ega-auth.conf') {
      assert.deepEqual([r.status, j.ok, j.to_fix], [0, true, []], r.stdout + r.stderr);
      const c = loadConfig(j.config_file);
      assert.deepEqual(c.upstream.basicAuth, { user: 'lega', password: name === 'inbox-auth.conf' ? 's3cr#t;pw' : 'change-me' });
      assert.deepEqual({ ...c, source: '' }, { ...lega, source: '' });
    } else {
      // EGA-auth's samples point at http://cega_users: latchkeyd refuses that until insecure_http
      // is set (named in to_fix and the changes); with the commented line enabled it loads.
      assert.deepEqual([r.status, j.ok, j.code], [1, false, 'needs_edits'], r.stdout + r.stderr);
      assert.match(j.to_fix.join('\n'), /clear text over http:\/\//);
      writeFileSync(j.config_file, readFileSync(j.config_file, 'utf8').replace('#insecure_http = yes', 'insecure_http = yes'));
      const c = loadConfig(j.config_file);
      assert.deepEqual({ ...c, source: '' }, { ...lega, source: '' }, name);
    }
    if (name === 'fega-nss-sample.conf') {
      const keys = j.not_carried_over.map((d: { key: string }) => d.key);
      for (const k of ['shadow_min', 'shadow_max', 'shadow_warn']) assert.ok(keys.includes(k), `${k}: ${keys}`);
      assert.match(readFileSync(j.config_file, 'utf8'), /homedir_prefix\nbase = \/ega\/inbox/);
    }
    // Never over an existing file.
    const again = spawnSync(process.execPath, [join(ROOT, 'bin/latchkeyctl'), 'import-ega', src, '--output', out, '--json'], { encoding: 'utf8' });
    assert.deepEqual([again.status, JSON.parse(again.stdout).code], [1, 'unwritable']);
  }
});

test('check-config --json lists every error of the file in "errors"', () => {
  const dir = scratchDir('latchkey-lega-');
  const file = join(dir, 'bad.conf');
  writeFileSync(file, `${URLS}[cache]\nttl = abc\n[pam]\nmax_failures = 0\n`);
  chmodSync(file, 0o644);
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/latchkeyctl'), 'check-config', file, '--json'], { encoding: 'utf8' });
  const j = JSON.parse(r.stdout);
  assert.equal(r.status, 1);
  assert.deepEqual(j.errors.map((e: { line: number; key: string }) => [e.line, e.key]), [[5, 'cache.ttl'], [7, 'pam.max_failures']]);
  assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('latchkeyctl: ' + file)).length, 3, r.stderr);
});

test('import-ega: a cega_creds without ":" is a setting to fix, not a silent loss of the credentials; a bare line is not quoted', async () => {
  const { convertEgaAuth } = await import('../../src/config/import-ega.js');
  const c = convertEgaAuth('cega_endpoint_username = https://u.example/u/%s\ncega_endpoint_uid = https://u.example/i/%u\ncega_creds = S3cr3tOnly\nS3cr3tBare\n', 'auth.conf', '/etc/latchkey/secrets');
  assert.equal(c.secrets, null);
  assert.ok(c.problems.some((p) => /cega_creds .* no credentials were carried over/.test(p)), c.problems.join('\n'));
  assert.doesNotMatch(JSON.stringify(c), /S3cr3t/);
});
