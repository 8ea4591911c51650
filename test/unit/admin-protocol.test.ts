// The admin protocol (src/protocol/admin.ts) against its golden samples (test/golden/admin/):
// every command has a sample; every sample request passes the daemon's request check and every
// sample reply the CLI's reply check, unchanged; every wrong field is refused by name. Then the
// CLI end of it: latchkeyctl, given a malformed reply by a fake daemon, names the field instead
// of printing the table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ADMIN_COMMANDS, ADMIN_COMMAND_NAMES, ADMIN_ERROR_CODES, ShapeError, checkAdminReply, checkAdminRequest, isAdminCommand, type AdminCommand,
} from '../../src/protocol/admin.js';
import { COMMAND_HELP } from '../../src/cli/help.js';
import { FrameReader, encodeReply, messageByName, splitRequest } from '../../src/protocol/codec.js';
import { MAX_REQUEST, Status } from '../../src/protocol/generated.js';
import { run, type IO } from '../../src/cli/main.js';
import { ROOT } from '../lib/paths.js';

const GOLDEN = join(ROOT, 'test/golden/admin');

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface Sample {
  command: string;
  requests: Json[];
  replies: Json[];
  errors?: Json[];
  /** requests the daemon must refuse with bad_request, and the field its message must name */
  bad_requests: Array<{ request: Json; field: string }>;
}

function samples(): Map<AdminCommand, Sample> {
  const out = new Map<AdminCommand, Sample>();
  for (const f of readdirSync(GOLDEN).filter((n) => n.endsWith('.json')).sort()) {
    const s = JSON.parse(readFileSync(join(GOLDEN, f), 'utf8')) as Sample;
    assert.equal(f, `${s.command}.json`, `${f} holds the samples of "${s.command}"`);
    assert.ok(isAdminCommand(s.command), `${f}: "${s.command}" is not a command of the admin protocol`);
    out.set(s.command, s);
  }
  return out;
}

/** Fields of a reply that may be left out (record entries, optional fields): "cmd:path". */
const MAY_BE_ABSENT = [/^users:negative$/, /^status:local$/, /^stats:upgrades$/, /^stats:lookups\.local(_notfound)?$/, /^status:local\.contexts\.[^.]+$/, /^stats:upstream_latency\.buckets\.[^.]+$/, /^stats:verify\.by_kind\.[^.]+$/,
  /^local_(disable|remove):sessions_ended$/, /^(status|stats):events$/, /^status:upstream\.(auth|health)$/, /^sessions:ended$/, /^(sessions|show):(sessions|ended)\[\d+\]\.renewed_at$/, /^flush:user$/, /^status:(config|metrics)$/,
  // issue 19 (upstream pacing): absent from an older daemon
  /^status:upstream\.holdoff$/, /^status:cache\.(jitter_pct|warm_start)$/, /^stats:upstream\.(held_off|rate_limited)$/,
  // issue 19 (fault matrix): absent from an older daemon
  /^status:cache\.(write_error|held_in_memory|recreated)$/, /^status:clock$/,
  // issue 20 (systemd userdb): absent from an older daemon
  /^status:userdb$/];

/** Every [path, parent, key] of a JSON value, as ShapeError names paths: a.b[0].c */
function* fieldsOf(v: Json, path = ''): Generator<[string, { [k: string]: Json } | Json[], string | number]> {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) { yield [`${path}[${i}]`, v, i]; yield* fieldsOf(v[i]!, `${path}[${i}]`); }
  } else if (v !== null && typeof v === 'object') {
    for (const k of Object.keys(v)) {
      const p = path ? `${path}.${k}` : k;
      yield [p, v, k];
      yield* fieldsOf(v[k]!, p);
    }
  }
}

const clone = (v: Json): Json => JSON.parse(JSON.stringify(v)) as Json;

/** Runs fn on a copy of `reply` with one field changed, addressed by its index in fieldsOf. */
function mutated(reply: Json, index: number, change: (parent: { [k: string]: Json } | Json[], key: string | number) => void): { path: string; value: Json } {
  const copy = clone(reply);
  const [path, parent, key] = [...fieldsOf(copy)][index]!;
  change(parent, key);
  return { path, value: copy };
}

function shapeErrorAt(path: string): (e: unknown) => boolean {
  return (e) => e instanceof ShapeError && e.path === path && e.message.includes(`"${path}"`);
}

test('every admin command has a golden sample with requests and replies, and every sample a command', () => {
  const s = samples();
  assert.deepEqual([...s.keys()].sort(), [...ADMIN_COMMAND_NAMES].sort());
  for (const [cmd, sample] of s) {
    assert.ok(sample.requests.length > 0, `${cmd}: no request sample`);
    assert.ok(sample.replies.length > 0, `${cmd}: no reply sample`);
  }
});

test('golden requests pass the daemon\'s request check unchanged, for their own command', () => {
  for (const [cmd, sample] of samples()) {
    for (const req of sample.requests) {
      const r = checkAdminRequest(JSON.stringify(req));
      assert.ok(r.ok, `${cmd}: ${JSON.stringify(req)} refused: ${r.ok ? '' : r.error}`);
      assert.equal(r.request.cmd, cmd);
      assert.deepEqual(r.request, req);
    }
  }
});

test('golden replies pass the CLI\'s reply check unchanged; error samples carry a code of their command', () => {
  for (const [cmd, sample] of samples()) {
    for (const reply of sample.replies) assert.deepEqual(checkAdminReply(cmd, reply), reply, cmd);
    for (const err of sample.errors ?? []) {
      const r = checkAdminReply(cmd, err);
      assert.equal(r.ok, false);
      assert.deepEqual(r, err, cmd);
    }
  }
});

test('bad requests are refused with bad_request naming the field, and that refusal is a valid reply', () => {
  for (const [cmd, sample] of samples()) {
    for (const { request, field } of sample.bad_requests) {
      const r = checkAdminRequest(JSON.stringify(request));
      assert.ok(!r.ok, `${cmd}: ${JSON.stringify(request)} was accepted`);
      assert.equal(r.code, 'bad_request');
      assert.ok(r.error.includes(`"${field}"`), `${cmd}: "${r.error}" does not name "${field}"`);
      assert.deepEqual(checkAdminReply(cmd, { ok: false, error: r.error, code: r.code }), { ok: false, error: r.error, code: r.code });
    }
  }
});

test('every field of every golden reply is checked: a wrong type or a missing field is named by its path', () => {
  let checked = 0;
  for (const [cmd, sample] of samples()) {
    for (const reply of [...sample.replies, ...(sample.errors ?? [])]) {
      const n = [...fieldsOf(reply)].length;
      for (let i = 0; i < n; i++) {
        // An object is no leaf value of any reply field except where a record is expected.
        const wrong = mutated(reply, i, (p, k) => { (p as Record<string | number, Json>)[k] = { wrong: [1] }; });
        if (wrong.path === 'ok') {
          assert.throws(() => checkAdminReply(cmd, wrong.value), shapeErrorAt('ok'));
          continue;
        }
        assert.throws(() => checkAdminReply(cmd, wrong.value), (e: unknown) => e instanceof ShapeError && e.path.startsWith(wrong.path),
          `${cmd}: ${wrong.path} = {"wrong": [1]} passed the check`);
        checked++;
        const gone = mutated(reply, i, (p, k) => { if (Array.isArray(p)) p.splice(k as number, 1); else delete p[k as string]; });
        if (typeof [...fieldsOf(reply)][i]![2] === 'number') continue; // a shorter list is still a list
        if (MAY_BE_ABSENT.some((re) => re.test(`${cmd}:${gone.path}`)) || (reply as { ok: boolean }).ok === false && !['ok', 'error', 'code'].includes(gone.path)) {
          assert.doesNotThrow(() => checkAdminReply(cmd, gone.value), `${cmd}: ${gone.path} may be absent`);
        } else {
          assert.throws(() => checkAdminReply(cmd, gone.value), shapeErrorAt(gone.path), `${cmd}: a reply without ${gone.path} passed the check`);
        }
      }
    }
  }
  assert.ok(checked > 300, `only ${checked} fields checked`);
});

test('request framing: not JSON, not an object, no cmd, unknown cmd', () => {
  assert.deepEqual(checkAdminRequest('{'), { ok: false, code: 'bad_request', error: 'the admin request is not JSON', cmd: '?' });
  assert.deepEqual(checkAdminRequest('[1]'), { ok: false, code: 'bad_request', error: 'the admin request must be a JSON object', cmd: '?' });
  assert.deepEqual(checkAdminRequest('{"cmd": 5}'), { ok: false, code: 'bad_request', error: '"cmd" is required', cmd: '?' });
  const u = checkAdminRequest('{"cmd": "frobnicate"}');
  assert.ok(!u.ok);
  assert.equal(u.code, 'unknown_command');
  for (const c of ADMIN_COMMAND_NAMES) assert.ok(u.error.includes(c), `the refusal lists ${c}`);
  // A prototype key is not a command.
  assert.equal((checkAdminRequest('{"cmd": "toString"}') as { code: string }).code, 'unknown_command');
  // Any command may be answered bad_request, unknown_command (an older daemon) or internal.
  for (const c of ADMIN_COMMAND_NAMES) {
    for (const code of ['bad_request', 'unknown_command', 'internal']) checkAdminReply(c, { ok: false, error: 'x', code });
  }
});

test('a command answers only its own error codes; a reply without "ok" is refused', () => {
  assert.throws(() => checkAdminReply('status', { ok: false, error: 'x', code: 'not_found' }), shapeErrorAt('code'));
  assert.throws(() => checkAdminReply('show', { ok: false, error: 'x', code: 'unavailable' }), shapeErrorAt('code'));
  assert.throws(() => checkAdminReply('show', { ok: false, error: 'x', code: 'nonsense' }), shapeErrorAt('code'));
  checkAdminReply('lookup', { ok: false, error: 'x', code: 'unavailable', result: 'unavail', reason: 'r', ms: 1 });
  assert.throws(() => checkAdminReply('lookup', { ok: false, error: 'x', code: 'not_found', source: 'nowhere' }), shapeErrorAt('source'));
  assert.throws(() => checkAdminReply('users', { users: [] }), shapeErrorAt('ok'));
  assert.throws(() => checkAdminReply('users', [1]), (e: unknown) => e instanceof ShapeError);
  assert.deepEqual([...ADMIN_ERROR_CODES].sort(), ['bad_request', 'internal', 'not_found', 'unavailable', 'unknown_command']);
});

test('a request\'s null alternative counts as absent; unknown fields pass through', () => {
  const r = checkAdminRequest('{"cmd": "kill-session", "id": "abc", "user": null}');
  assert.ok(r.ok);
  assert.deepEqual(r.request, { cmd: 'kill-session', id: 'abc' });
  const u = checkAdminRequest('{"cmd": "users", "stale": null, "future": 1}');
  assert.ok(u.ok);
  assert.deepEqual(u.request, { cmd: 'users', future: 1 });
  const reply = { ok: true, removed: 1, negative_only: false, added_later: 'x' };
  assert.deepEqual(checkAdminReply('flush', reply), reply);
});

test('latchkeyctl --help lists every field of the command\'s reply under "--json fields"', () => {
  // The latchkeyctl command that prints each admin command's reply.
  const cli: Record<AdminCommand, string> = {
    status: 'status', users: 'users', show: 'show', lookup: 'lookup', invalidate: 'invalidate', flush: 'flush',
    sessions: 'sessions', 'kill-session': 'sessions', 'renew-session': 'sessions', stats: 'stats', throttle: 'throttle', 'throttle-reset': 'throttle', 'auth-test': 'auth-test',
    local_add: 'local', local_passwd: 'local', local_keys: 'local', local_disable: 'local', local_enable: 'local',
    local_remove: 'local', local_list: 'local', local_show: 'local', local_contexts: 'local', reload: 'reload',
    purge: 'purge', why: 'why',
  };
  // Field names of an object shape and of the object shapes inside it (list items and
  // nullable parts are documented with their parent).
  const names = (shape: unknown): string[] => {
    const fields = (shape as { fields?: Record<string, unknown> }).fields;
    return fields ? Object.entries(fields).flatMap(([k, sub]) => [k, ...names(sub)]) : [];
  };
  for (const cmd of ADMIN_COMMAND_NAMES) {
    const help = COMMAND_HELP[cli[cmd]]!;
    const section = help.slice(help.indexOf('--json fields:'));
    const missing = names(ADMIN_COMMANDS[cmd].reply).filter((n) => !new RegExp(`(^|[^a-z_])${n}([^a-z_]|$)`).test(section));
    assert.deepEqual(missing, [], `latchkeyctl ${cli[cmd]} --help does not list these fields of the ${cmd} reply`);
  }
});

/** A fake latchkeyd: answers every ADMIN frame with `reply` (JSON text). */
async function fakeDaemon(reply: string): Promise<{ dir: string; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'latchkey-fake-'));
  const server = createServer((sock) => {
    const frames = new FrameReader(MAX_REQUEST);
    sock.on('data', (d: Buffer) => {
      for (const body of frames.push(d)) {
        const req = splitRequest(body);
        const admin = messageByName('ADMIN').opcode;
        assert.equal(req.opcode, admin);
        const payload = encodeReply(admin, Status.OK, { json: Buffer.from(reply, 'utf8') });
        sock.end(payload);
      }
    });
    sock.on('error', () => { /* the client may hang up first */ });
  });
  await new Promise<void>((res) => server.listen(join(dir, 'priv.sock'), res));
  return {
    dir,
    close: () => new Promise<void>((res) => server.close(() => { rmSync(dir, { recursive: true, force: true }); res(); })),
  };
}

async function ctl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: IO = { out: (t) => { out += t; }, err: (t) => { err += t; }, stdin: process.stdin, stdoutIsTTY: false, env: {} };
  const code = await run(args, io);
  return { code, out, err };
}

test('latchkeyctl: a reply of the wrong shape is a protocol error naming the field, nothing printed (exit 3)', { skip: process.getuid?.() !== 0 && 'latchkeyctl refuses non-root callers before connecting' }, async () => {
  const now = Date.UTC(2024, 4, 1);
  const good = { name: 'alice', uid: 11001, upstream_uid: 1001, gid: 10000, fetched_at: now, expires_at: now, state: 'fresh', keys: 1, has_password: true, home: '/lega/alice', home_exists: true };
  const cases: Array<[string[], unknown, string]> = [
    [['users'], { ok: true, now, users: [good, { ...good, uid: undefined }] }, 'users[1].uid'],
    [['users'], { ok: true, now, users: [{ ...good, state: 'rotten' }] }, 'users[0].state'],
    [['lookup', 'alice'], { ok: true, result: 'found', source: 'cache', ms: 1, entry: { name: 'alice', uid: 11001, gid: 10000, gecos: '', dir: '/lega/alice' } }, 'entry.shell'],
    [['sessions'], { ok: true, sessions: 'none' }, 'sessions'],
    [['show', 'alice'], { ok: false, error: 'boom', code: 'teapot' }, 'code'],
  ];
  for (const [args, reply, field] of cases) {
    const d = await fakeDaemon(JSON.stringify(reply));
    try {
      const r = await ctl(['--socket-dir', d.dir, ...args]);
      assert.equal(r.code, 3, `${args.join(' ')}: ${r.err}`);
      assert.equal(r.out, '', `${args.join(' ')} printed ${JSON.stringify(r.out)}`);
      assert.match(r.err, new RegExp(`malformed "${args[0]}" reply .*"${field.replace(/[[\].]/g, '\\$&')}" must be`), r.err);
      assert.doesNotMatch(r.err, /undefined/);
    } finally {
      await d.close();
    }
  }
  // The same fake daemon with a well-formed reply: the table is printed.
  const d = await fakeDaemon(JSON.stringify({ ok: true, now, users: [good] }));
  try {
    const r = await ctl(['--socket-dir', d.dir, 'users']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^alice\t11001\t/);
  } finally {
    await d.close();
  }
});
