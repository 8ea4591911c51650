// latchkeyctl why NAME: the last login decision latchkeyd recorded for a user, phase by phase,
// and what is true of the user now (throttle budget, cached account, the session's fate).
import type { AdminReplyData } from '../protocol/admin.js';
import { type CommandDef, type Ctx, EXIT_OK } from './command.js';
import { formatHash, formatMs, formatTime, isoUtc, renderJson, renderPairs } from './format.js';
import { expectPositionals, userArg, UsageError } from './args.js';

type Why = AdminReplyData<'why'>;
type Decision = NonNullable<Why['phases']['login_check']>;
type Pair = readonly [string, string];

/** The phases in login order, as the output names them. */
const PHASE_LABELS: ReadonlyArray<readonly [keyof Why['phases'], string]> = [
  ['keys_for_login', 'key lookup'],
  ['login_check', 'login check'],
  ['auth_password', 'password'],
  ['acct_mgmt', 'account'],
  ['session_open', 'session'],
];

/** One decision on one line: "ok 3m ago from 192.0.2.7 (sshd): password accepted; bcrypt (cost 10), source cache, 41ms". */
export function decisionLine(d: Decision, ctx: Pick<Ctx, 'mode' | 'time'>): string {
  const when = ctx.mode === 'tsv' ? isoUtc(d.at) : formatTime(d.at, ctx.time);
  const where = [d.rhost ? `from ${d.rhost}` : '', d.service ? `(${d.service})` : ''].filter(Boolean).join(' ');
  const facts = [
    d.hash ? formatHash(d.hash) : '',
    d.source ? `source ${d.source}` : '',
    d.uid !== null ? `uid ${d.uid}` : '',
    d.peer_uid !== 0 ? `asked by uid ${d.peer_uid}` : '',
    d.ms !== null ? formatMs(d.ms) : '',
  ].filter(Boolean).join(', ');
  return `${d.result} ${when}${where ? ' ' + where : ''}: ${d.detail}${facts ? '; ' + facts : ''}`;
}

export function whyPairs(r: Why, ctx: Pick<Ctx, 'mode' | 'time'>): Pair[] {
  const t = (v: number | null): string => (v === null ? '-' : ctx.mode === 'tsv' ? isoUtc(v) : formatTime(v, ctx.time));
  const pairs: Pair[] = [
    ['user', `${r.user}${r.served ? '' : ' (not served by latchkey when last asked)'}`],
    ['recorded since', t(r.since)],
  ];
  for (const [key, label] of PHASE_LABELS) {
    const d = r.phases[key];
    pairs.push([label, d ? decisionLine(d, ctx) : 'nothing recorded']);
  }
  if (r.session) {
    const s = r.session;
    pairs.push(['session now', s.state === 'open' ? `${s.id} still open`
      : s.state === 'ended' ? `${s.id} ended ${t(s.ended_at)}: ${s.end_reason}${s.end_detail ? ` (${s.end_detail})` : ''}`
        : `${s.id} no longer known (ended more than 24 h ago)`]);
  }
  const th = r.throttle;
  pairs.push(['throttle', `${th.failures} of ${th.limit} failures${th.in_flight > 0 ? `, ${th.in_flight} being checked` : ''}${th.locked_until !== null ? `, locked until ${t(th.locked_until)} (latchkeyctl throttle reset ${r.user})` : ', not locked'}`]);
  const a = r.account;
  pairs.push(['account now', a === null ? 'not cached (the next lookup asks the user service)'
    : `${a.state}${a.expired_at !== null && a.state === 'expired' ? ` since ${t(a.expired_at)}` : ''}; cache entry ${a.cache_state}, fetched ${t(a.fetched_at)}, expires ${t(a.expires_at)}`]);
  return pairs;
}

export const why: CommandDef = {
  async run(ctx, pos) {
    expectPositionals('why', pos, 1, 1, 'a user NAME');
    const ref = userArg(pos[0]!, 'why');
    if (typeof ref === 'number') throw new UsageError('why takes a user NAME (decisions are recorded by the name PAM was given)', 'why');
    const r = await ctx.call({ cmd: 'why', user: ref });
    const { ok: _ok, ...json } = r;
    ctx.out(ctx.mode === 'json' ? renderJson(json) : renderPairs(whyPairs(r, ctx), ctx.mode));
    return EXIT_OK;
  },
};
