// What io.systemd.UserDatabase answers (systemd docs/USER_GROUP_API.md). Every answer comes from
// the directory exactly as nss.sock's do (answers/nss.ts): the resolver applies the name and uid
// rules, refuses the host's accounts and the deny list, serves stale entries only within the
// grace, and charges never-seen names to the asking uid; an unavailable upstream is
// ServiceNotAvailable, never NoRecordFound.
import type { Config } from '../config/types.js';
import type { Resolver } from '../directory/resolver.js';
import { groupEntry } from '../directory/entries.js';
import type { Lookup } from '../cache/types.js';
import type { CachedUser, GroupEntry } from '../types.js';
import { DAEMON_VERSION } from '../protocol/generated.js';
import { logLimited } from '../log.js';
import { encodeError, encodeReply, type VarlinkCall } from './varlink.js';
import { USERDB_SERVICE, groupRecord, userRecord, validateGroupRecord, validateUserRecord } from './records.js';

const IFACE = 'io.systemd.UserDatabase';
export const E = {
  noRecord: `${IFACE}.NoRecordFound`,
  badService: `${IFACE}.BadService`,
  unavailable: `${IFACE}.ServiceNotAvailable`,
  // systemd 252's clients know this one (ESRCH: no record is both); NonMatchingRecordFound came
  // later and a 252 client reads it as an I/O error.
  conflicting: `${IFACE}.ConflictingRecordFound`,
  methodNotFound: 'org.varlink.service.MethodNotFound',
  invalidParameter: 'org.varlink.service.InvalidParameter',
  expectedMore: 'org.varlink.service.ExpectedMore',
  interfaceNotFound: 'org.varlink.service.InterfaceNotFound',
} as const;

/**
 * Records one enumeration may send. The cache holds at most what [cache] allows; this bounds a
 * single `more` call whatever it holds, and the stream is paced page by page like nss.sock's
 * requests. Past it the call ends with ServiceNotAvailable (the records sent stay valid).
 */
export const MAX_ENUMERATED = 200_000;
/** users read from the cache per page of an enumeration */
const PAGE = 256;
/**
 * Records of an enumeration per pacer token. Each record is built, validated and stringified
 * afresh (nss.sock reuses encoded pages): one token per 256-record page let one uid's looping
 * enumerations stream ~54,000 records/s and hold the event loop, so nss.sock and priv.sock
 * answers took ~0.4 s instead of 0.3 ms. At 4 a uid gets at most 4 × the pacer's rate.
 */
const RECORDS_PER_TOKEN = 4;

export interface UserdbCounters { requests: number; errors: number; refusedRecords: number }

export interface MethodContext {
  resolver: Resolver;
  cfg: () => Config;
  /** SO_PEERCRED of the caller */
  peer: { uid: number; pid: number };
  /**
   * Whose budgets (scheduler, pacer) the call spends: the peer's uid, except for systemd-userdbd's
   * workers, which are root but relay any local user's calls (server.ts chargeUidOf).
   */
  chargeUid: number;
  /** writes one message; resolves once the socket can take more (backpressure) */
  send: (msg: Buffer) => Promise<void>;
  /** waits for the caller's next request token (RequestPacer): enumeration pages pay too */
  pace: () => Promise<void>;
  /** the connection closed: stop streaming */
  closed: () => boolean;
  counters: UserdbCounters;
}

/** The interface as varlink IDL, for GetInterfaceDescription (what systemd 252 declares). */
const IDL = `interface io.systemd.UserDatabase

method GetUserRecord(uid: ?int, userName: ?string, service: string) -> (record: object, incomplete: bool)
method GetGroupRecord(gid: ?int, groupName: ?string, service: string) -> (record: object, incomplete: bool)
method GetMemberships(userName: ?string, groupName: ?string, service: string) -> (userName: string, groupName: string)

error NoRecordFound()
error BadService()
error ServiceNotAvailable()
error ConflictingRecordFound()
error EnumerationNotSupported()
`;

type Params = Record<string, unknown>;
type Spec = Record<string, 'id' | 'name' | 'service'>;

/** The parameters as the method declares them, or the name of the first that is not. */
function checkParams(p: Params, spec: Spec): { ok: true } | { ok: false; parameter: string } {
  for (const [k, v] of Object.entries(p)) {
    // Own keys only: "__proto__" or "constructor" would find Object.prototype's and pass.
    const kind = Object.hasOwn(spec, k) ? spec[k] : undefined;
    // A parameter this interface does not declare (newer clients' filters, e.g. uidMin) is
    // refused, as systemd 252's own services refuse it: ignoring a filter would answer wrong.
    if (!kind) return { ok: false, parameter: k };
    if (v === null && kind !== 'service') continue;
    if (kind === 'id' && !(Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff)) return { ok: false, parameter: k };
    if ((kind === 'name' || kind === 'service') && typeof v !== 'string') return { ok: false, parameter: k };
  }
  if (typeof p.service !== 'string') return { ok: false, parameter: 'service' };
  return { ok: true };
}

/**
 * Answers one call through ctx.send. Never throws for anything a client sends; a `oneway` call
 * is checked and then dropped unanswered: these methods only look things up, and a lookup nobody
 * reads would only spend the caller's upstream budget.
 */
export async function answerCall(call: VarlinkCall, ctx: MethodContext): Promise<void> {
  ctx.counters.requests++;
  const reply = async (params: Params, continues = false): Promise<void> => { if (!call.oneway) await ctx.send(encodeReply(params, continues)); };
  const error = async (name: string, params: Params = {}): Promise<void> => {
    ctx.counters.errors++;
    if (!call.oneway) await ctx.send(encodeError(name, params));
  };
  const p = call.parameters;
  switch (call.method) {
    case 'org.varlink.service.GetInfo':
      return reply({ vendor: 'latchkey', product: 'latchkeyd', version: DAEMON_VERSION, url: 'https://github.com/latchkey', interfaces: ['org.varlink.service', IFACE] });
    case 'org.varlink.service.GetInterfaceDescription':
      if (p.interface === IFACE) return reply({ description: IDL });
      return error(E.interfaceNotFound, { interface: typeof p.interface === 'string' ? p.interface.slice(0, 200) : null });
    case `${IFACE}.GetUserRecord`:
    case `${IFACE}.GetGroupRecord`:
    case `${IFACE}.GetMemberships`:
      break;
    default:
      return error(E.methodNotFound, { method: call.method.slice(0, 200) });
  }
  const spec: Spec = call.method.endsWith('GetUserRecord') ? { uid: 'id', userName: 'name', service: 'service' }
    : call.method.endsWith('GetGroupRecord') ? { gid: 'id', groupName: 'name', service: 'service' }
      : { userName: 'name', groupName: 'name', service: 'service' };
  const ok = checkParams(p, spec);
  if (!ok.ok) return error(E.invalidParameter, { parameter: ok.parameter });
  // The client names the service by the socket's file name; another name means it reached us
  // through some other path and expects another database's records.
  if (p.service !== USERDB_SERVICE) return error(E.badService);
  if (call.oneway) return;
  const out = { reply, error };
  if (call.method.endsWith('GetUserRecord')) return getUser(call, ctx, out);
  if (call.method.endsWith('GetGroupRecord')) return getGroup(call, ctx, out);
  return getMemberships(call, ctx, out);
}

interface Out { reply: (p: Params, continues?: boolean) => Promise<void>; error: (name: string, p?: Params) => Promise<void> }

function group(ctx: MethodContext): GroupEntry | null {
  return groupEntry(ctx.cfg().users, ctx.resolver.local);
}

/** The record for this caller, or null (logged, counted) when it fails systemd's rules. */
function recordFor(ctx: MethodContext, u: CachedUser): { record: Params; incomplete: boolean } | null {
  const root = ctx.peer.uid === 0;
  const r = userRecord(ctx.cfg(), u, group(ctx), root) as unknown as Params;
  const problem = validateUserRecord(r);
  if (problem) {
    ctx.counters.refusedRecords++;
    logLimited(`userdb.record_refused:${problem.field}`, 'warn', 'userdb.record_refused', {
      name: u.username, uid: u.uid, field: problem.field, problem: problem.problem,
      detail: 'systemd would refuse this user record; not sent (NSS still answers). Fix the upstream field or the [users]/[homes] setting it comes from',
    });
    return null;
  }
  // systemd marks a record whose privileged section was withheld as incomplete.
  return { record: r, incomplete: !root && u.sshPublicKeys.length > 0 };
}

async function lookupAnswer(l: Lookup, ctx: MethodContext, out: Out, alsoUid: number | null): Promise<void> {
  if (l.status === 'unavail') return out.error(E.unavailable);
  if (l.status === 'notfound') return out.error(E.noRecord);
  if (alsoUid !== null && l.user.uid !== alsoUid) return out.error(E.conflicting);
  const rec = recordFor(ctx, l.user);
  if (!rec) return out.error(E.unavailable);
  return out.reply(rec);
}

function getId(v: unknown): number | null { return typeof v === 'number' ? v : null; }
function getName(v: unknown): string | null { return typeof v === 'string' ? v : null; }

async function getUser(call: VarlinkCall, ctx: MethodContext, out: Out): Promise<void> {
  const uid = getId(call.parameters.uid);
  const name = getName(call.parameters.userName);
  if (name !== null) return lookupAnswer(await ctx.resolver.byName(name, ctx.chargeUid), ctx, out, uid);
  if (uid !== null) return lookupAnswer(await ctx.resolver.byUid(uid, ctx.chargeUid), ctx, out, null);
  if (!call.more) return out.error(E.expectedMore);
  return stream(ctx, out, (u) => recordFor(ctx, u));
}

async function getGroup(call: VarlinkCall, ctx: MethodContext, out: Out): Promise<void> {
  const gid = getId(call.parameters.gid);
  const name = getName(call.parameters.groupName);
  const g = group(ctx);
  // One group, from the config: no upstream, so never unavailable. The host's group (g null)
  // is the host's to answer.
  const hit = g !== null && (name === null || name === g.name) && (gid === null || gid === g.gid);
  if (!hit) return out.error(name !== null && gid !== null && g !== null && (name === g.name || gid === g.gid) ? E.conflicting : E.noRecord);
  const r = groupRecord(g) as unknown as Params;
  const problem = validateGroupRecord(r);
  if (problem) {
    ctx.counters.refusedRecords++;
    logLimited(`userdb.record_refused:group:${problem.field}`, 'warn', 'userdb.record_refused', { group: g.name, field: problem.field, problem: problem.problem, detail: 'fix [users] group_name' });
    return out.error(E.unavailable);
  }
  return out.reply({ record: r, incomplete: false });
}

async function getMemberships(call: VarlinkCall, ctx: MethodContext, out: Out): Promise<void> {
  const user = getName(call.parameters.userName);
  const groupName = getName(call.parameters.groupName);
  const g = group(ctx);
  if (groupName !== null && (g === null || groupName !== g.name)) return out.error(E.noRecord);
  if (user !== null) {
    const l = await ctx.resolver.byName(user, ctx.chargeUid);
    if (l.status === 'unavail') return out.error(E.unavailable);
    if (l.status === 'notfound' || g === null) return out.error(E.noRecord);
    return out.reply({ userName: l.user.username, groupName: g.name });
  }
  if (g === null) return out.error(E.noRecord);
  if (!call.more) return out.error(E.expectedMore);
  // Every served user has the group (memberOf): the members are the enumeration's users.
  return stream(ctx, out, (u) => ({ record: { userName: u.username, groupName: g.name }, incomplete: false }), true);
}

/**
 * Streams the cached users (what nss.sock's enumeration lists) one reply each, the last without
 * `continues`; none at all is NoRecordFound. `bare`: the item is the reply's parameters (a
 * membership), not a {record, incomplete} pair.
 */
async function stream(ctx: MethodContext, out: Out, item: (u: CachedUser) => { record: Params; incomplete: boolean } | null, bare = false): Promise<void> {
  let pending: Params | null = null;
  let sent = 0;
  let next = 0;
  for (;;) {
    const batch = ctx.resolver.list(next, PAGE);
    for (const u of batch) {
      next = u.uid + 1;
      const it = item(u);
      if (!it) continue;
      if (pending) {
        await out.reply(pending, true);
        if (sent % RECORDS_PER_TOKEN === 0) await ctx.pace();
        if (ctx.closed()) return;
      }
      pending = bare ? it.record : it;
      if (++sent > MAX_ENUMERATED) {
        logLimited(`userdb.enumeration_capped:${ctx.peer.uid}`, 'warn', 'userdb.enumeration_capped', { peer_uid: ctx.peer.uid, max: MAX_ENUMERATED, detail: 'an enumeration stopped at the cap; use name or uid lookups' });
        return out.error(E.unavailable);
      }
    }
    if (batch.length < PAGE || next > 0xffffffff) break;
    if (ctx.closed()) return;
  }
  if (!pending) return out.error(E.noRecord);
  return out.reply(pending);
}
