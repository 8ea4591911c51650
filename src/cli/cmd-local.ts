// latchkeyctl local: the persistent local users (issue 16). add, passwd, keys, disable, enable,
// remove, list, show, contexts. Passwords are read with no echo (twice on a terminal) or as one
// line of stdin, and go only into the ADMIN frame on priv.sock; no reply carries a hash.
import { readFileSync } from 'node:fs';
import { type CommandDef, type Ctx, EXIT_OK, str } from './command.js';
import { type Column, formatHash, formatTime, isoUtc, renderJson, renderListing, renderPairs, renderTable, yesNo } from './format.js';
import { UsageError, expectPositionals, listFlag, userArg } from './args.js';
import { MAX_PASSWORD_BYTES, readFirstLine, readHidden, readInput } from './cmd-auth.js';
import type { LocalKeyView, LocalUserSummary, LocalUserView } from '../protocol/admin.js';

type Pair = readonly [string, string];
type Flags = Record<string, string | boolean>;

const DAY = 86_400_000;
const UNIT_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: DAY, w: 7 * DAY };

/**
 * --expires WHEN: YYYY-MM-DD (the start of that day, UTC), an ISO 8601 date-time with a zone
 * (2025-01-31T18:00:00Z, ...+01:00), or a duration from now: 30d, 12h, 90m, 2w.
 */
export function parseWhen(v: string, now: number): number {
  const dur = /^(\d{1,6})([mhdw])$/.exec(v);
  if (dur) return now + Number(dur[1]) * UNIT_MS[dur[2]!]!;
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v);
  if (day) {
    const t = Date.UTC(Number(day[1]), Number(day[2]) - 1, Number(day[3]));
    // Date.UTC rolls 2025-02-31 over into March: refuse instead of guessing.
    if (new Date(t).toISOString().slice(0, 10) === v) return t;
  } else if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/.test(v)) {
    const t = Date.parse(v);
    if (Number.isFinite(t)) return t;
  }
  throw new UsageError(`--expires takes YYYY-MM-DD, an ISO date-time with its zone (2025-01-31T18:00:00Z) or a duration (30d, 12h); not "${v}"`, 'local');
}

/** A local user NAME (local users are changed by name; show also takes a uid). */
function nameArg(s: string | undefined, what: string): string {
  if (s === undefined) throw new UsageError(`local ${what} needs a user NAME`, 'local');
  const n = userArg(s, 'local');
  if (typeof n === 'number') throw new UsageError(`local ${what} takes a user NAME, not a uid`, 'local');
  return n;
}

function checkPassword(p: string): string {
  if (p === '') throw new UsageError('the password is empty', 'local');
  if (Buffer.byteLength(p) > MAX_PASSWORD_BYTES) throw new UsageError(`password longer than ${MAX_PASSWORD_BYTES} bytes`, 'local');
  return p;
}

/** The new password: one line of stdin (--password-stdin, or stdin is no terminal), else asked
 *  twice with no echo, and both must match. */
async function readNewPassword(ctx: Ctx, name: string, fromStdin: boolean): Promise<string> {
  if (fromStdin || !ctx.stdin.isTTY) return checkPassword(await readFirstLine(ctx.stdin));
  const first = await readHidden(ctx.stdin, `new password for ${name}: `, ctx.err);
  const again = await readHidden(ctx.stdin, `again: `, ctx.err);
  if (first !== again) throw new UsageError('the passwords do not match; nothing was changed', 'local');
  return checkPassword(first);
}

/** The key lines of a file ('-': stdin): every line that is not empty or a # comment. */
async function keyLines(ctx: Ctx, file: string): Promise<string[]> {
  let text: string;
  try {
    text = file === '-' ? await readInput(ctx.stdin) : readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read the key file ${file}: ${(e as Error).message}`, 'local');
  }
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length === 0) throw new UsageError(`${file} holds no key line`, 'local');
  return lines;
}


const exact = (at: number | null): string => (at === null ? '-' : isoUtc(at));

/** `list` columns; TSV gets exact times. STATE: enabled, disabled or expired. */
export function localColumns(ctx: Pick<Ctx, 'time'>): Array<Column<LocalUserSummary> & { tsv?: (r: LocalUserSummary) => string }> {
  const state = (r: LocalUserSummary): string => (r.disabled ? 'disabled' : r.expires_at !== null && r.expires_at <= ctx.time.now ? 'expired' : 'enabled');
  return [
    { header: 'NAME', cell: (r) => r.name },
    { header: 'UID', cell: (r) => String(r.uid), right: true },
    { header: 'STATE', cell: state },
    { header: 'PASSWORD', cell: (r) => yesNo(r.has_password) },
    { header: 'CONTEXT', cell: (r) => str(r.context) },
    { header: 'KEYS', cell: (r) => String(r.keys), right: true },
    { header: 'EXPIRES', cell: (r) => (r.expires_at === null ? 'never' : formatTime(r.expires_at, ctx.time)), tsv: (r) => exact(r.expires_at) },
    { header: 'GECOS', cell: (r) => r.gecos },
  ];
}

const keyText = (k: LocalKeyView): string => `${k.index} ${k.type} ${k.fingerprint}${k.comment ? ' ' + k.comment : ''}`;

/** The `show` view (and what every change prints): one pair per fact, never a hash. */
export function localUserPairs(u: LocalUserView, ctx: Pick<Ctx, 'mode' | 'time'>): Pair[] {
  const machine = ctx.mode === 'tsv';
  const t = (v: number | null): string => (v === null ? (machine ? '-' : 'never') : machine ? exact(v) : formatTime(v, ctx.time));
  const pw = u.password;
  const pairs: Pair[] = [
    ['name', u.name],
    ['uid', String(u.uid)],
    ['gecos', u.gecos],
    ['shell', u.shell ?? (machine ? '-' : '(the [users] shell)')],
    ['home', u.home],
    ['state', u.disabled ? 'disabled' : 'enabled'],
    ['expires', t(u.expires_at)],
    ['password', pw === null ? 'none (key logins only)' : machine ? `${pw.kind}\t${str(pw.cost)}\t${str(pw.context)}` : `${formatHash(pw)}, context ${pw.context ?? 'unknown'}`],
    ['created', t(u.created_at)],
    ['updated', t(u.updated_at)],
  ];
  if (u.keys.length === 0) pairs.push(['keys', 'none']);
  // TSV lines need a key on every line so `grep ^keys` finds all of them.
  u.keys.forEach((k, i) => pairs.push([i === 0 || machine ? 'keys' : '', keyText(k)]));
  return pairs;
}

/** "; ended 2 open sessions" after a change that ended the user's logins; "" when none. */
const endedText = (n: number | undefined): string => (n ? `; ended ${n} open ${n === 1 ? 'session' : 'sessions'}` : '');
/** sessions_ended in --json output only when some were ended (the output stays as it was otherwise). */
const endedJson = (n: number | undefined): { sessions_ended?: number } => (n ? { sessions_ended: n } : {});

function printUser(ctx: Ctx, r: { user: LocalUserView; sessions_ended?: number }, done?: string): void {
  if (ctx.mode === 'json') { ctx.out(renderJson({ user: r.user, ...endedJson(r.sessions_ended) })); return; }
  if (done && ctx.mode === 'table') ctx.out(`${done}\n`);
  ctx.out(renderPairs(localUserPairs(r.user, ctx), ctx.mode));
}

async function add(ctx: Ctx, pos: string[], flags: Flags): Promise<number> {
  expectPositionals('local add', pos, 1, 1, 'a user NAME');
  const name = nameArg(pos[0], 'add');
  let uid: number | undefined;
  if (typeof flags.uid === 'string') {
    if (!/^[0-9]{1,10}$/.test(flags.uid) || Number(flags.uid) > 0xffffffff) throw new UsageError(`--uid takes a number, not "${flags.uid}"`, 'local');
    uid = Number(flags.uid);
  }
  const keys: string[] = [];
  for (const f of listFlag(flags.key)) keys.push(...await keyLines(ctx, f));
  const expires = typeof flags.expires === 'string' ? parseWhen(flags.expires, ctx.time.now) : undefined;
  const wantPassword = flags['password-stdin'] === true || flags.password === true;
  const password = wantPassword ? await readNewPassword(ctx, name, flags['password-stdin'] === true) : undefined;
  const r = await ctx.call({
    cmd: 'local_add', name,
    ...(uid !== undefined ? { uid } : {}),
    ...(typeof flags.gecos === 'string' ? { gecos: flags.gecos } : {}),
    ...(typeof flags.shell === 'string' ? { shell: flags.shell } : {}),
    ...(keys.length ? { keys } : {}),
    ...(expires !== undefined ? { expires_at: expires } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(flags.force === true ? { force: true } : {}),
  });
  printUser(ctx, r, `added ${r.user.name} (uid ${r.user.uid})`);
  return EXIT_OK;
}

async function keys(ctx: Ctx, pos: string[]): Promise<number> {
  const name = nameArg(pos[0], 'keys');
  const action = pos[1] ?? 'list';
  let reply: { name: string; keys: LocalKeyView[] };
  if (action === 'list') {
    expectPositionals('local keys NAME list', pos, 1, 2, 'NAME [list]');
    reply = await ctx.call({ cmd: 'local_keys', name, action: 'list' });
  } else if (action === 'add') {
    expectPositionals('local keys NAME add', pos, 3, 3, 'a key FILE (- for stdin)');
    const lines = await keyLines(ctx, pos[2]!);
    reply = { name, keys: [] };
    for (const key of lines) reply = await ctx.call({ cmd: 'local_keys', name, action: 'add', key });
  } else if (action === 'remove') {
    expectPositionals('local keys NAME remove', pos, 3, 3, 'the KEY to remove: its number in "keys NAME list", its SHA256: fingerprint or its line');
    reply = await ctx.call({ cmd: 'local_keys', name, action: 'remove', key: pos[2]! });
  } else {
    throw new UsageError(`local keys NAME takes add FILE, remove KEY or list; not "${action}"`, 'local');
  }
  if (ctx.mode === 'json') ctx.out(renderJson({ name: reply.name, keys: reply.keys }));
  else if (ctx.mode === 'tsv') ctx.out(reply.keys.map((k) => `${k.index}\t${k.type}\t${k.fingerprint}\t${k.comment}\n`).join(''));
  else ctx.out(renderTable(reply.keys, [
    { header: '#', cell: (k) => String(k.index), right: true }, { header: 'TYPE', cell: (k) => k.type },
    { header: 'FINGERPRINT', cell: (k) => k.fingerprint }, { header: 'COMMENT', cell: (k) => k.comment },
  ]));
  return EXIT_OK;
}

export const local: CommandDef = {
  bool: ['password-stdin', 'password', 'force'],
  value: ['uid', 'gecos', 'shell', 'expires'],
  multi: ['key'],
  async run(ctx, pos, flags) {
    const [sub, ...rest] = pos;
    const onlyFor = (allowed: string[]): void => {
      for (const f of Object.keys(flags)) {
        if (!allowed.includes(f)) throw new UsageError(`--${f} is not an option of "local ${sub ?? ''}"`, 'local');
      }
    };
    switch (sub) {
      case 'add':
        onlyFor(['password-stdin', 'password', 'force', 'uid', 'gecos', 'shell', 'expires', 'key']);
        return add(ctx, rest, flags);
      case 'passwd': {
        onlyFor(['password-stdin']);
        expectPositionals('local passwd', rest, 1, 1, 'a user NAME');
        const name = nameArg(rest[0], 'passwd');
        const password = await readNewPassword(ctx, name, flags['password-stdin'] === true);
        printUser(ctx, await ctx.call({ cmd: 'local_passwd', name, password }), `password of ${name} changed`);
        return EXIT_OK;
      }
      case 'keys':
        onlyFor([]);
        return keys(ctx, rest);
      case 'disable': case 'enable': case 'remove': {
        onlyFor([]);
        expectPositionals(`local ${sub}`, rest, 1, 1, 'a user NAME');
        const name = nameArg(rest[0], sub);
        if (sub === 'remove') {
          const r = await ctx.call({ cmd: 'local_remove', name });
          if (ctx.mode === 'json') ctx.out(renderJson({ removed: r.removed, uid: r.uid, ...endedJson(r.sessions_ended) }));
          else if (ctx.mode === 'tsv') ctx.out(`${r.removed}\t${str(r.uid)}\n`);
          else ctx.out(`removed ${r.removed}${r.uid !== null ? ` (uid ${r.uid})` : ''}; its home, if any, is left as it is${endedText(r.sessions_ended)}\n`);
          return EXIT_OK;
        }
        const r = await ctx.call({ cmd: sub === 'disable' ? 'local_disable' : 'local_enable', name });
        printUser(ctx, r, `${name} ${sub}d${endedText('sessions_ended' in r ? r.sessions_ended : undefined)}`);
        return EXIT_OK;
      }
      case 'list': {
        onlyFor([]);
        expectPositionals('local list', rest, 0, 0, 'no arguments');
        const r = await ctx.call({ cmd: 'local_list' });
        const { ok: _ok, ...json } = r;
        ctx.out(renderListing(ctx.mode, r.users, localColumns(ctx), json));
        return EXIT_OK;
      }
      case 'show': {
        onlyFor([]);
        expectPositionals('local show', rest, 1, 1, 'a user NAME or UID');
        printUser(ctx, await ctx.call({ cmd: 'local_show', name: userArg(rest[0]!, 'local') }));
        return EXIT_OK;
      }
      case 'contexts': {
        onlyFor([]);
        expectPositionals('local contexts', rest, 0, 0, 'no arguments');
        const r = await ctx.call({ cmd: 'local_contexts' });
        const { ok: _ok, ...json } = r;
        type Row = (typeof r.contexts)[number];
        ctx.out(renderListing<Row>(ctx.mode, r.contexts, [
          { header: 'ID', cell: (c) => c.id },
          { header: 'ALGORITHM', cell: (c) => c.algorithm ?? (ctx.mode === 'tsv' ? '-' : '(not configured)') },
          { header: 'COST', cell: (c) => str(c.cost), right: true },
          { header: 'DEFAULT', cell: (c) => yesNo(c.default) },
          { header: 'USERS', cell: (c) => String(c.users), right: true },
        ], json));
        return EXIT_OK;
      }
      case undefined:
        throw new UsageError('local needs a subcommand: add, passwd, keys, disable, enable, remove, list, show or contexts', 'local');
      default:
        throw new UsageError(`unknown subcommand "local ${sub}"; expected add, passwd, keys, disable, enable, remove, list, show or contexts`, 'local');
    }
  },
};
