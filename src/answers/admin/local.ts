// local_add, local_passwd, local_keys, local_disable, local_enable, local_remove, local_list,
// local_show, local_contexts: the persistent local users' store (issue 16), seen and changed by
// `latchkeyctl local`. No reply carries a hash (kind, cost and context only); every change logs
// one line (who: latchkeyctl, never a password or hash).
import { homePath } from '../../homes/home.js';
import { log } from '../../log.js';
import { hashInfo } from '../../verify/hash.js';
import { LocalStoreError, type LocalUser } from '../../localusers/types.js';
import { nameProblem } from '../../users/rules.js';
import type { AdminCommand, LocalKeyView, LocalUserView } from '../../protocol/admin.js';
import type { Peer } from '../../server/dispatch.js';
import { type AdminContext, type AdminHandlers, type LocalUsersFacade, AdminRefusal, refuse } from './context.js';
import { keyInfo } from './users.js';

type LocalCommand = 'local_add' | 'local_passwd' | 'local_keys' | 'local_disable' | 'local_enable' | 'local_remove' | 'local_list' | 'local_show' | 'local_contexts';

/** Longest password hashed: crypt(3) implementations differ beyond this, and the frame is 8 KiB. */
export const MAX_LOCAL_PASSWORD_BYTES = 4096;

export function localKeyViews(keys: readonly string[]): LocalKeyView[] {
  return keys.map((k, i) => ({ index: i + 1, ...keyInfo(k) }));
}

/** A stored user as the admin may see it: never the hash. */
export function localUserView(u: LocalUser, homesBase: Parameters<typeof homePath>[0]): LocalUserView {
  const h = hashInfo(u.passwordHash);
  return {
    name: u.name, uid: u.uid, gecos: u.gecos, shell: u.shell, home: homePath(homesBase, u.name),
    password: h.kind === 'none' ? null : { kind: h.kind, cost: h.cost, cost_name: h.costName, context: u.context },
    keys: localKeyViews(u.keys),
    expires_at: u.expiresAt, disabled: u.disabled, created_at: u.createdAt, updated_at: u.updatedAt,
  };
}

/** Why a password may not be hashed, or null. */
function passwordProblem(p: string): string | null {
  if (p.length === 0) return 'the password is empty';
  if (Buffer.byteLength(p) > MAX_LOCAL_PASSWORD_BYTES) return `the password is longer than ${MAX_LOCAL_PASSWORD_BYTES} bytes`;
  // crypt(3) takes a C string: a NUL would silently cut the password short.
  if (p.includes('\u0000')) return 'the password contains a NUL character';
  return null;
}

const CODE: Record<LocalStoreError['code'], string> = {
  exists: 'conflict', uid_taken: 'conflict', not_found: 'not_found', invalid: 'invalid', range_full: 'range_full',
  read_only: 'read_only', io: 'unavailable',
};

export function localCommands(ctx: AdminContext): AdminHandlers<LocalCommand> {
  const facade = (cmd: AdminCommand): LocalUsersFacade => {
    if (ctx.local) return ctx.local;
    throw new AdminRefusal('unavailable', `${cmd}: this latchkeyd has no local users' store open; see its log (local.store_*)`, {});
  };
  /** The facade of a command that changes the store; refused on a secondary. */
  const writable = (cmd: AdminCommand, name: string): LocalUsersFacade => {
    const l = facade(cmd);
    const why = l.readOnly();
    if (why !== null) {
      log('info', 'local.change_refused', { cmd, user: name, reason: why });
      throw new AdminRefusal('read_only', why, {});
    }
    return l;
  };
  /** Runs a store change; its LocalStoreError becomes the command's refusal. */
  const change = <T>(fn: () => T): T => {
    try { return fn(); } catch (e) {
      if (e instanceof LocalStoreError) throw new AdminRefusal(CODE[e.code], e.message, {});
      throw e;
    }
  };
  const view = (u: LocalUser): LocalUserView => localUserView(u, ctx.config().homes);
  const changed = (event: string, peer: Peer, fields: Record<string, unknown>): void =>
    log('info', event, { who: 'latchkeyctl', peer_pid: peer.pid, ...fields });
  /**
   * Ends the user's open sessions after a change that took away its login. The change is made
   * and stays made when this fails (rootd down): the failure is logged with what to do, and the
   * reply says 0.
   */
  const endSessions = async (name: string, uid: number | undefined, reason: 'disabled' | 'removed', detail: string): Promise<number> => {
    try {
      // By uid too: an upstream user of the same name (precedence) keeps its sessions.
      return await ctx.sessions.revoke(name, reason, detail, uid);
    } catch (e) {
      log('error', 'local.end_sessions_failed', { user: name, reason, error: e instanceof Error ? e.message : String(e), fix: `latchkeyctl sessions kill --user ${name}` });
      return 0;
    }
  };
  const hash = async (l: LocalUsersFacade, password: string): Promise<{ hash: string; context: string }> => {
    const problem = passwordProblem(password);
    if (problem) throw new AdminRefusal('invalid', problem, {});
    return l.hashNew(password);
  };

  return {
    async local_add(args, peer) {
      const l = writable('local_add', args.name);
      const rules = l.rules();
      const np = nameProblem(args.name, ctx.config().users);
      if (np) throw refuse('local_add', 'invalid', `the name ${args.name} ${np}`);
      const host = l.hostHas(args.name, args.uid ?? null);
      if (host !== null) throw refuse('local_add', 'conflict', host);
      if (l.store.get(args.name) !== null) throw refuse('local_add', 'conflict', `a local user ${args.name} exists`);
      if (args.uid !== undefined) {
        const holder = l.store.getByUid(args.uid);
        if (holder) throw refuse('local_add', 'conflict', `uid ${args.uid} is the local user ${holder.name}'s`);
      }
      // A local user shadowing an upstream one (or being shadowed by it) is a conflict the admin
      // must choose; only --force takes it (a deliberate override, [local] precedence decides
      // who answers, and the conflict is logged and shown by status), or the risk when the
      // upstream cannot say.
      const up = await l.upstreamHas(args.name);
      if (up === 'yes' && args.force !== true) {
        throw refuse('local_add', 'conflict', `the upstream has a user ${args.name}; choose another name, or add --force to add it anyway ([local] precedence decides who answers)`);
      }
      if (typeof up === 'object' && args.force !== true) {
        throw refuse('local_add', 'unavailable', `cannot tell whether the upstream has a user ${args.name} (${up.unavailable}); retry, or add --force to add it anyway`);
      }
      const pw = args.password !== undefined ? await hash(l, args.password) : null;
      const u = change(() => l.store.add({
        name: args.name, uid: args.uid ?? null, gecos: args.gecos ?? '', shell: args.shell ?? null,
        passwordHash: pw?.hash ?? null, context: pw?.context ?? null, keys: args.keys ?? [], expiresAt: args.expires_at ?? null,
      }, rules, (uid) => l.hostHas(args.name, uid) !== null));
      changed('local.user_added', peer, {
        user: u.name, uid: u.uid, password: pw !== null, context: u.context, keys: u.keys.length, expires_at: u.expiresAt,
        ...(up !== 'no' ? { forced: true, upstream: up === 'yes' ? 'has this name' : up.unavailable } : {}),
      });
      if (up === 'yes') l.addedOverUpstream(u.name);
      return { user: view(u) };
    },

    async local_passwd(args, peer) {
      const l = writable('local_passwd', args.name);
      const pw = await hash(l, args.password);
      const u = change(() => l.store.setPassword(args.name, pw.hash, pw.context));
      changed('local.password_set', peer, { user: u.name, context: pw.context });
      return { user: view(u) };
    },

    local_keys(args, peer) {
      if (args.action === 'list') {
        const u = facade('local_keys').store.get(args.name);
        if (!u) throw refuse('local_keys', 'not_found', `no local user ${args.name}`);
        return { name: u.name, keys: localKeyViews(u.keys) };
      }
      const l = writable('local_keys', args.name);
      if (args.key === undefined) throw refuse('local_keys', 'invalid', `local_keys ${args.action} needs "key"`);
      const key = args.key;
      let u: LocalUser;
      if (args.action === 'add') {
        u = change(() => l.store.addKey(args.name, key));
        const added = u.keys[u.keys.length - 1]!;
        changed('local.key_added', peer, { user: u.name, fingerprint: keyInfo(added).fingerprint });
      } else {
        const which = /^[0-9]{1,3}$/.test(key) ? Number(key) : key;
        const before = l.store.get(args.name)?.keys ?? [];
        u = change(() => l.store.removeKey(args.name, which));
        const gone = before.filter((k) => !u.keys.includes(k)).map((k) => keyInfo(k).fingerprint);
        changed('local.key_removed', peer, { user: u.name, fingerprint: gone[0] ?? null });
      }
      return { name: u.name, keys: localKeyViews(u.keys) };
    },

    async local_disable(args, peer) {
      const l = writable('local_disable', args.name);
      const u = change(() => l.store.setDisabled(args.name, true));
      changed('local.user_disabled', peer, { user: u.name, uid: u.uid });
      // An account that may not log in must not keep a login it already has.
      const ended = await endSessions(u.name, u.uid, 'disabled', 'local account disabled (latchkeyctl local disable)');
      return { user: view(u), sessions_ended: ended };
    },

    local_enable(args, peer) {
      const l = writable('local_enable', args.name);
      const u = change(() => l.store.setDisabled(args.name, false));
      changed('local.user_enabled', peer, { user: u.name, uid: u.uid });
      return { user: view(u) };
    },

    async local_remove(args, peer) {
      const l = writable('local_remove', args.name);
      const uid = l.store.get(args.name)?.uid;
      change(() => l.store.remove(args.name));
      changed('local.user_removed', peer, { user: args.name, uid: uid ?? null });
      const ended = await endSessions(args.name, uid, 'removed', 'local account removed (latchkeyctl local remove)');
      // A row the index did not serve (refused by rows.ts) is removed too; it has no uid to report.
      return { removed: args.name, uid: uid ?? null, sessions_ended: ended };
    },

    local_list() {
      const l = facade('local_list');
      const c = ctx.config().local;
      return {
        now: Date.now(), role: c.role, primary: c.primary,
        users: l.store.list().map((u) => ({
          name: u.name, uid: u.uid, gecos: u.gecos, has_password: hashInfo(u.passwordHash).kind !== 'none',
          context: u.passwordHash === null ? null : u.context, keys: u.keys.length, expires_at: u.expiresAt, disabled: u.disabled,
        })),
      };
    },

    local_show(args) {
      const l = facade('local_show');
      const u = typeof args.name === 'number' ? l.store.getByUid(args.name) : l.store.get(args.name);
      if (!u) throw refuse('local_show', 'not_found', `no local user ${args.name}`);
      return { user: view(u) };
    },

    local_contexts() {
      const l = facade('local_contexts');
      const c = ctx.config().local;
      const counts = l.store.contextCounts();
      const contexts = c.contexts.map((x) => ({ id: x.id, algorithm: x.algorithm as string | null, cost: x.cost as number | null, default: x.id === c.defaultContext, users: counts[x.id] ?? 0 }));
      // Ids the store holds that the config no longer defines (or never did: "unknown").
      for (const [id, n] of Object.entries(counts)) {
        if (!c.contexts.some((x) => x.id === id)) contexts.push({ id, algorithm: null, cost: null, default: false, users: n });
      }
      return { default_context: c.defaultContext, upgrade: c.upgrade, contexts };
    },
  };
}
