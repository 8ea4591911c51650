// Pure formatting and argument parsing of latchkeyctl: no daemon, no terminal, fixed clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chooseMode, formatDuration, relativeTime, isoUtc, formatTime, formatBytes, formatRatio, formatMs,
  renderTable, renderTsv, renderPairs, renderJson, renderListing, cleanCell, flatten, bar, yesNo, formatHash,
} from '../../src/cli/format.js';
import { parseGlobal, parseCommand, userArg, UsageError } from '../../src/cli/args.js';
import { resolveSocketDir, privSocketPath, adminCall, DaemonUnavailable, NOT_ROOT_MESSAGE } from '../../src/cli/client.js';
import { statusPairs, renderStats, statValue, asHistogram } from '../../src/cli/cmd-status.js';
import { userColumns, showPairs } from '../../src/cli/cmd-users.js';
import { readFirstLine } from '../../src/cli/cmd-auth.js';
import { MAIN_HELP, COMMAND_HELP } from '../../src/cli/help.js';
import { Readable } from 'node:stream';
import { publicUrl } from '../../src/answers/admin/status.js';
import { keyInfo, entryState } from '../../src/answers/admin/users.js';
import type { AdminOkReply, AdminReplyData, UserSummary } from '../../src/protocol/admin.js';

const NOW = Date.UTC(2024, 4, 1, 12, 0, 0);
const S = 1000;
const M = 60 * S;
const H = 60 * M;

test('chooseMode: --json wins, then terminal → table, pipe → tsv', () => {
  assert.equal(chooseMode(true, true), 'json');
  assert.equal(chooseMode(true, false), 'json');
  assert.equal(chooseMode(false, true), 'table');
  assert.equal(chooseMode(false, false), 'tsv');
});

test('relativeTime: future "in", past "ago", coarse single unit, "now" under a second', () => {
  assert.equal(relativeTime(NOW + 42 * M, NOW), 'in 42m');
  assert.equal(relativeTime(NOW - 3 * H, NOW), '3h ago');
  assert.equal(relativeTime(NOW - 3 * H - 59 * M, NOW), '3h ago');
  assert.equal(relativeTime(NOW + 5 * S, NOW), 'in 5s');
  assert.equal(relativeTime(NOW - 2 * 86400 * S, NOW), '2d ago');
  assert.equal(relativeTime(NOW + 400, NOW), 'now');
  assert.equal(relativeTime(NOW, NOW), 'now');
});

test('formatTime: relative by default, ISO UTC with --utc, "-" when absent', () => {
  assert.equal(formatTime(NOW - 90 * S, { now: NOW, utc: false }), '1m ago');
  assert.equal(formatTime(NOW + 30 * M, { now: NOW, utc: true }), '2024-05-01T12:30:00Z');
  assert.equal(formatTime(null, { now: NOW, utc: false }), '-');
  assert.equal(formatTime(undefined, { now: NOW, utc: true }), '-');
  assert.equal(formatTime(Number.NaN, { now: NOW, utc: true }), '-');
  assert.equal(isoUtc(NOW + 123), '2024-05-01T12:00:00Z');
});

test('formatDuration: two largest units', () => {
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(59), '59s');
  assert.equal(formatDuration(90), '1m30s');
  assert.equal(formatDuration(7200), '2h');
  assert.equal(formatDuration(90061), '1d1h');
  assert.equal(formatDuration(86400 + 60), '1d');
  assert.equal(formatDuration(-5), '0s');
});

test('formatBytes, formatRatio, formatMs, yesNo', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(49152), '48 KiB');
  assert.equal(formatBytes(5 * 1024 * 1024), '5.0 MiB');
  assert.equal(formatBytes(null), '-');
  assert.equal(formatRatio(0.8734), '87.3%');
  assert.equal(formatRatio(null), '-');
  assert.equal(formatMs(0.42), '0.42ms');
  assert.equal(formatMs(12.34), '12.3ms');
  assert.equal(formatMs(1520), '1.52s');
  assert.equal(formatMs(250), '250ms');
  assert.equal(formatMs(undefined), '-');
  assert.equal(yesNo(true), 'yes');
  assert.equal(yesNo(false), 'no');
  assert.equal(yesNo(null), '-');
});

test('renderTable: header, alignment, right-aligned numbers, no trailing spaces', () => {
  const rows = [{ n: 'alice', u: 10001 }, { n: 'bob', u: 7 }];
  const out = renderTable(rows, [
    { header: 'NAME', cell: (r) => r.n },
    { header: 'UID', cell: (r) => String(r.u), right: true },
  ]);
  assert.equal(out, 'NAME     UID\nalice  10001\nbob        7\n');
  for (const line of out.split('\n')) assert.doesNotMatch(line, / $/);
});

test('renderTable: empty rows still print the header', () => {
  assert.equal(renderTable([], [{ header: 'NAME', cell: () => '' }, { header: 'UID', cell: () => '' }]), 'NAME  UID\n');
});

test('cells never break the layout: control characters become spaces', () => {
  assert.equal(cleanCell('a\nb\tc\u0000d'), 'a b c d');
  assert.equal(cleanCell(null), '-');
  assert.equal(cleanCell(12), '12');
  const out = renderTable([{ g: 'Evil\nInjected row' }], [{ header: 'GECOS', cell: (r) => r.g }]);
  assert.equal(out.split('\n').length, 3); // header, row, trailing ''
});

test('renderTsv: tab-separated, no header, tabs in values flattened', () => {
  assert.equal(renderTsv([['alice', 10001, true], ['b\tob', null, 'x']]), 'alice\t10001\ttrue\nb ob\t-\tx\n');
  assert.equal(renderTsv([]), '');
});

test('renderPairs: aligned on a terminal, key<TAB>value in a pipe', () => {
  const pairs = [['daemon', 'up'], ['cache file', '/run/latchkey/cache.db']] as const;
  assert.equal(renderPairs(pairs, 'table'), 'daemon:      up\ncache file:  /run/latchkey/cache.db\n');
  assert.equal(renderPairs(pairs, 'tsv'), 'daemon\tup\ncache file\t/run/latchkey/cache.db\n');
});

test('renderJson: indented, newline-terminated, RegExp as source, bigint as number', () => {
  assert.equal(renderJson({ a: 1 }), '{\n  "a": 1\n}\n');
  assert.deepEqual(JSON.parse(renderJson({ re: /^[a-z]+$/, n: 5n })), { re: '^[a-z]+$', n: 5 });
});

test('renderListing: json verbatim, table with headers, tsv with machine cells', () => {
  const rows = [{ name: 'alice', at: NOW - H }];
  const cols = [
    { header: 'NAME', cell: (r: typeof rows[number]) => r.name },
    { header: 'FETCHED', cell: (r: typeof rows[number]) => relativeTime(r.at, NOW), tsv: (r: typeof rows[number]) => isoUtc(r.at) },
  ];
  assert.equal(renderListing('table', rows, cols, {}), 'NAME   FETCHED\nalice  1h ago\n');
  assert.equal(renderListing('tsv', rows, cols, {}), 'alice\t2024-05-01T11:00:00Z\n');
  assert.deepEqual(JSON.parse(renderListing('json', rows, cols, { users: [{ name: 'alice' }] })), { users: [{ name: 'alice' }] });
});

test('formatHash: kind and cost only', () => {
  assert.equal(formatHash({ kind: 'bcrypt', cost: 10, cost_name: 'cost' }), 'bcrypt (cost 10)');
  assert.equal(formatHash({ kind: 'sha512crypt', cost: 5000, cost_name: 'rounds' }), 'sha512crypt (rounds 5000)');
  assert.equal(formatHash({ kind: 'unknown', cost: null, cost_name: null }), 'unknown');
  assert.equal(formatHash(null), 'none');
});

test('flatten and bar', () => {
  assert.deepEqual(flatten({ a: { b: 1, c: { d: 2 } }, e: [1, 2] }), [['a.b', 1], ['a.c.d', 2], ['e', [1, 2]]]);
  assert.equal(bar(0, 10), '');
  assert.equal(bar(10, 10, 5), '#####');
  assert.equal(bar(1, 1000, 20), '#');
});

test('users columns: relative on a terminal, exact in TSV', () => {
  const row: UserSummary = {
    name: 'alice', uid: 10001, upstream_uid: 1, gid: 10000, fetched_at: NOW - 2 * M, expires_at: NOW + 58 * M, state: 'fresh', keys: 2,
    has_password: true, home: '/lega/alice', home_exists: false,
  };
  const cols = userColumns({ time: { now: NOW, utc: false } });
  const table = renderListing('table', [row], cols, {});
  assert.match(table, /^NAME\s+UID\s+FETCHED\s+EXPIRES\s+STATE\s+KEYS\s+PASSWORD\s+HOME\n/);
  assert.match(table, /alice\s+10001\s+2m ago\s+in 58m\s+fresh\s+2\s+yes\s+no/);
  assert.equal(renderListing('tsv', [row], cols, {}), 'alice\t10001\t2024-05-01T11:58:00Z\t2024-05-01T12:58:00Z\tfresh\t2\tyes\tno\n');
});

test('status pairs: human on a terminal, machine values in TSV', () => {
  const r: AdminOkReply<'status'> = {
    ok: true, version: '0.1.0', pid: 42, started_at: NOW - 2 * H, uptime_s: 7200, config_file: '/etc/latchkey/latchkey.conf',
    sockets: { dir: '/run/latchkey', nss: '/run/latchkey/nss.sock', priv: '/run/latchkey/priv.sock' },
    upstream: {
      by_name_url: 'https://cega/username/', by_uid_url: 'https://cega/user-id/', reachable: true, probe_ms: 3.2, probe_error: null,
      last_error: { message: 'timeout', at: NOW - 5 * M },
    },
    cache: {
      file: '/run/latchkey/cache.db', size_bytes: 49152, ttl_s: 3600, negative_ttl_s: 60, stale_grace_s: 86400,
      entries: { fresh: 3, stale: 1, expired: 0, negative: 2, total: 6 }, hit_ratio: 0.75,
    },
    sessions: { open: 1 },
    rootd: { socket: '/run/latchkey-rootd/rootd.sock', reachable: false, error: 'not running' },
    map: { file: '/run/latchkey/nss.map', state: 'on', reason: null, users: 3, negative: 2, size_bytes: 82112, rebuilds: 1, not_published: 0 },
    insecure: [],
  };
  const human = renderPairs(statusPairs(r, { mode: 'table', time: { now: NOW, utc: false } }), 'table');
  assert.match(human, /^map:\s+on: 3 users, 2 negative, 80 KiB \(\/run\/latchkey\/nss\.map\)$/m);
  const failed = renderPairs(statusPairs({ ...r, map: { ...r.map, state: 'failed', reason: 'No space left on device' } }, { mode: 'table', time: { now: NOW, utc: false } }), 'table');
  assert.match(failed, /^map:\s+failed: No space left on device \(\/run\/latchkey\/nss\.map\); lookups go over nss\.sock$/m);
  assert.match(human, /^rootd:\s+unreachable: not running \(\/run\/latchkey-rootd\/rootd\.sock\)$/m);
  assert.match(human, /^daemon:\s+up \(pid 42, version 0\.1\.0\)$/m);
  assert.match(human, /^uptime:\s+2h$/m);
  assert.match(human, /^upstream:\s+reachable \(probe 3\.20ms\)$/m);
  assert.match(human, /^last upstream error:\s+timeout \(5m ago\)$/m);
  assert.match(human, /^cache size:\s+48 KiB$/m);
  assert.match(human, /^entries:\s+3 fresh, 1 stale, 0 expired, 2 negative$/m);
  assert.match(human, /^hit ratio:\s+75\.0%$/m);
  const tsv = renderPairs(statusPairs(r, { mode: 'tsv', time: { now: NOW, utc: false } }), 'tsv');
  assert.match(tsv, /^version\t0\.1\.0$/m);
  assert.match(tsv, /^uptime\t7200$/m);
  assert.match(tsv, /^cache size\t49152$/m);
  assert.match(tsv, /^started\t2024-05-01T10:00:00Z$/m);
  assert.match(tsv, /^rootd\tunreachable$/m);
  assert.match(tsv, /^map\ton 3 2 82112$/m);
  assert.doesNotMatch(tsv, /^daemon\t/m);
});

test('show pairs: password as kind and cost, keys by fingerprint, every TSV line keyed', () => {
  const r: AdminReplyData<'show'> = {
    user: {
      name: 'alice', uid: 10001, upstream_uid: 1, gid: 10000, gecos: 'Alice', shell: '/bin/bash', home: '/lega/alice', home_exists: true,
      fetched_at: NOW - M, expires_at: NOW + H, state: 'fresh', has_password: true, password: { kind: 'bcrypt', cost: 10, cost_name: 'cost' },
      keys: [{ type: 'ssh-ed25519', fingerprint: 'SHA256:abc', comment: 'alice@laptop' }, { type: 'ssh-rsa', fingerprint: 'SHA256:def', comment: '' }],
    },
    sessions: [],
  };
  const human = renderPairs(showPairs(r, { mode: 'table', time: { now: NOW, utc: false } }), 'table');
  assert.match(human, /^password:\s+bcrypt \(cost 10\)$/m);
  assert.match(human, /^keys:\s+ssh-ed25519 SHA256:abc alice@laptop$/m);
  assert.match(human, /^\s+ssh-rsa SHA256:def$/m);
  assert.match(human, /^home:\s+\/lega\/alice \(exists\)$/m);
  assert.match(human, /^sessions:\s+none$/m);
  const tsv = renderPairs(showPairs(r, { mode: 'tsv', time: { now: NOW, utc: false } }), 'tsv');
  assert.equal(tsv.split('\n').filter((l) => l.startsWith('keys\t')).length, 2);
  for (const line of tsv.trim().split('\n')) assert.match(line, /^[a-z ]+\t/);
});

test('stats: counters, and histograms drawn on a terminal / flattened in TSV', () => {
  const r = {
    ok: true, since: NOW - 2 * H, uptime_s: 7200, lookups: { hit: 3, miss: 1 }, hit_ratio: 0.75,
    upstream: { latency: { count: 5, mean_ms: 6, p50_ms: 10, p99_ms: 12.5, max_ms: 12.5, buckets: { le_5ms: 0, le_10ms: 4, '+inf': 1 } } },
  };
  const table = renderStats(r, 'table', { now: NOW, utc: false });
  assert.match(table, /^since\s+2h ago$/m);
  assert.match(table, /^uptime\s+2h$/m);
  assert.match(table, /^hit_ratio\s+75\.0%$/m);
  assert.match(table, /> 10\.0ms\s+1\s+#+$/m);
  assert.match(table, /lookups\.hit\s+3/);
  assert.match(table, /upstream\.latency \(5 requests, mean 6\.00ms, p50 10\.0ms, p99 12\.5ms\)/);
  assert.match(table, /<= 10\.0ms\s+4\s+#{20}/);
  const tsv = renderStats(r, 'tsv', { now: NOW, utc: false });
  assert.match(tsv, /^since\t2024-05-01T10:00:00Z$/m);
  assert.match(tsv, /^hit_ratio\t0\.75$/m);
  assert.match(tsv, /^lookups\.miss\t1$/m);
  assert.match(tsv, /^upstream\.latency\.le_10\t4$/m);
  assert.match(tsv, /^upstream\.latency\.le_5\t0$/m);
  assert.match(tsv, /^upstream\.latency\.le_inf\t1$/m);
});

test('asHistogram: the daemon\'s object form and the array form; other objects are not histograms', () => {
  const h = asHistogram({ count: 2, mean_ms: 1.5, p50_ms: 1, p99_ms: 2, buckets: { le_1ms: 1, le_2ms: 1, '+inf': 0 } });
  assert.deepEqual(h?.buckets, [{ le: 1, count: 1 }, { le: 2, count: 1 }, { le: null, count: 0 }]);
  assert.equal(asHistogram({ buckets: [{ le: 5, count: 2 }] })?.count, 2);
  assert.equal(asHistogram({ hit: 1 }), null);
  assert.equal(asHistogram({ buckets: { weird: 1 } }), null);
});

test('statValue: fractions, lists, empty lists', () => {
  assert.equal(statValue(3), '3');
  assert.equal(statValue(2.5), '2.50');
  assert.equal(statValue([]), '-');
  assert.equal(statValue([{ user: 'alice', retryAfterSec: 120 }, { user: 'bob', retryAfterSec: 30 }]), 'alice 120, bob 30');
  assert.equal(statValue(null), '-');
});

test('parseGlobal: global options anywhere, command word, rest kept in order', () => {
  const g = parseGlobal(['--json', 'users', '--stale', '--socket-dir', '/tmp/x', '--utc']);
  assert.equal(g.command, 'users');
  assert.deepEqual(g.rest, ['--stale']);
  assert.deepEqual(g.global, { json: true, utc: true, help: false, socketDir: '/tmp/x', timeoutMs: 5000 });
  assert.equal(parseGlobal(['--socket-dir=/a', 'status']).global.socketDir, '/a');
  assert.equal(parseGlobal(['status', '--timeout', '30s']).global.timeoutMs, 30_000);
  assert.equal(parseGlobal(['--timeout=500ms', 'status']).global.timeoutMs, 500);
  assert.equal(parseGlobal(['--timeout', '2', 'status']).global.timeoutMs, 2000);
  assert.throws(() => parseGlobal(['--timeout', 'soon', 'status']), /--timeout needs a duration/);
  assert.equal(parseGlobal(['show', '-h']).global.help, true);
  assert.throws(() => parseGlobal(['--socket-dir']), UsageError);
  assert.throws(() => parseGlobal(['--bogus', 'status']), UsageError);
});

test('parseCommand: declared flags only, values with space or =', () => {
  assert.deepEqual(parseCommand('sessions', ['kill', '--user', 'alice'], { value: ['user'] }), { positionals: ['kill'], flags: { user: 'alice' } });
  assert.deepEqual(parseCommand('sessions', ['kill', '--user=bob'], { value: ['user'] }).flags, { user: 'bob' });
  assert.deepEqual(parseCommand('users', ['--stale'], { bool: ['stale'] }).flags, { stale: true });
  assert.deepEqual(parseCommand('show', ['--', '-odd'], {}).positionals, ['-odd']);
  assert.throws(() => parseCommand('users', ['--nope'], { bool: ['stale'] }), /unknown option --nope/);
  assert.throws(() => parseCommand('users', ['--stale=1'], { bool: ['stale'] }), /takes no value/);
  assert.throws(() => parseCommand('sessions', ['--user'], { value: ['user'] }), /needs a value/);
  assert.throws(() => parseCommand('users', ['-x'], {}), /unknown option -x/);
});

test('userArg: digits are a uid, anything else a name; nonsense is a usage error', () => {
  assert.equal(userArg('10001', 'show'), 10001);
  assert.equal(userArg('alice', 'show'), 'alice');
  assert.throws(() => userArg('a/b', 'show'), UsageError);
  assert.throws(() => userArg('a:b', 'show'), UsageError);
  assert.throws(() => userArg('99999999999', 'show'), UsageError);
});

test('socket dir: flag, then env, then /run/latchkey', () => {
  assert.equal(resolveSocketDir('/a', { LATCHKEY_SOCKET_DIR: '/b' }), '/a');
  assert.equal(resolveSocketDir(undefined, { LATCHKEY_SOCKET_DIR: '/b' }), '/b');
  assert.equal(resolveSocketDir(undefined, {}), '/run/latchkey');
  assert.equal(privSocketPath('/run/latchkey'), '/run/latchkey/priv.sock');
});

test('adminCall refuses a non-root caller before touching the socket', async () => {
  await assert.rejects(adminCall({ socketDir: '/nonexistent', uid: 1000 }, { cmd: 'status' }),
    (e: unknown) => e instanceof DaemonUnavailable && e.reason === 'not_root' && e.message === NOT_ROOT_MESSAGE);
});

test('adminCall: a missing socket is "daemon not running"', async () => {
  await assert.rejects(adminCall({ socketDir: '/nonexistent-latchkey', uid: 0 }, { cmd: 'status' }),
    (e: unknown) => e instanceof DaemonUnavailable && e.reason === 'no_socket' && /not running/.test(e.message));
});

test('readFirstLine: first line only, CRLF stripped, no newline at EOF is fine', async () => {
  assert.equal(await readFirstLine(Readable.from(['sec', 'ret\r\nsecond line\n'])), 'secret');
  assert.equal(await readFirstLine(Readable.from(['nonewline'])), 'nonewline');
  assert.equal(await readFirstLine(Readable.from([])), '');
});

test('every command has --help with examples and the documented --json fields', () => {
  for (const cmd of ['status', 'users', 'show', 'lookup', 'invalidate', 'flush', 'sessions', 'stats', 'check-config', 'auth-test']) {
    const h = COMMAND_HELP[cmd];
    assert.ok(h, `help for ${cmd}`);
    assert.match(h, new RegExp(`^usage: latchkeyctl ${cmd}`));
    assert.match(h, /examples:/);
    assert.match(h, /--json fields:/);
    assert.ok(MAIN_HELP.includes(cmd), `main help lists ${cmd}`);
  }
  assert.match(MAIN_HELP, /exit codes:/);
});

test('admin: URLs lose their credentials, placeholders survive', () => {
  assert.equal(publicUrl('https://cega.example/users/%u?idType=uid'), 'https://cega.example/users/%u?idType=uid');
  assert.equal(publicUrl('https://lega:s3cret@cega.example/users/%s?t=1'), 'https://cega.example/users/%s?t=1');
  assert.equal(publicUrl('https://lega:s3cret@cega.example/u/'), 'https://cega.example/u/');
  assert.doesNotMatch(publicUrl('not a url //lega:s3cret@host/x'), /s3cret/);
});

test('admin: key fingerprints as ssh-keygen -l prints them; entry state by the cache rule', () => {
  // `ssh-keygen -lf` on this key line prints SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4
  const blob = Buffer.from('0000000b7373682d65643235353139000000200102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20', 'hex').toString('base64');
  const k = keyInfo(`ssh-ed25519 ${blob} me@host`);
  assert.equal(k.type, 'ssh-ed25519');
  assert.equal(k.comment, 'me@host');
  assert.equal(k.fingerprint, 'SHA256:mKqU+0K8OhKmA8bBQi9Rz0Q5l7/g160hIP+rJYSTNj4');
  const cfg = { refreshAheadSec: 60, staleGraceSec: 3600 };
  assert.equal(entryState({ expiresAt: NOW + 30 * S }, NOW, cfg), 'fresh');
  assert.equal(entryState({ expiresAt: NOW - M }, NOW, cfg), 'stale');
  assert.equal(entryState({ expiresAt: NOW - 2 * H }, NOW, cfg), 'expired');
});

test('throttle: columns relative on a terminal, exact in TSV; help and the command table list it', async () => {
  const { throttleColumns } = await import('../../src/cli/cmd-throttle.js');
  const cols = throttleColumns({ time: { now: NOW, utc: false } });
  const rows: AdminReplyData<'throttle'>['entries'] = [
    { scope: 'user', key: 'alice', failures: 5, limit: 5, in_flight: 0, window_started_at: NOW - 90 * S, locked_until: NOW + 4 * M, retry_after_s: 240, refused: 12 },
    { scope: 'host', key: '192.0.2.7', failures: 7, limit: 20, in_flight: 2, window_started_at: NOW - 3 * M, locked_until: null, retry_after_s: 0, refused: 0 },
  ];
  const table = renderListing('table', rows, cols, {});
  assert.match(table, /^SCOPE\s+KEY\s+FAILURES\s+LIMIT\s+PENDING\s+WINDOW\s+LOCKED_UNTIL\s+REFUSED\n/);
  assert.match(table, /^user\s+alice\s+5\s+5\s+0\s+1m ago\s+in 4m\s+12$/m);
  assert.match(table, /^host\s+192\.0\.2\.7\s+7\s+20\s+2\s+3m ago\s+-\s+0$/m);
  assert.equal(renderListing('tsv', rows, cols, {}),
    'user\talice\t5\t5\t0\t2024-05-01T11:58:30Z\t2024-05-01T12:04:00Z\t12\n'
    + 'host\t192.0.2.7\t7\t20\t2\t2024-05-01T11:57:00Z\t-\t0\n');
  const h = COMMAND_HELP.throttle!;
  assert.match(h, /^usage: latchkeyctl throttle/);
  assert.match(h, /examples:/);
  assert.match(h, /--json fields:/);
  assert.match(MAIN_HELP, /throttle reset USER \| --host RHOST \| --all/);
});
