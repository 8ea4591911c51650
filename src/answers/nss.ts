// What nss.sock answers (every opcode the spec gives that socket): public passwd/group data and
// public keys, nothing secret. priv.sock answers these too (daemon/main.ts). The decisions are
// the directory's (src/directory); here they become reply frames.
import { ok, fail, type HandlerResult, type HandlerTable, type Peer } from '../server/dispatch.js';
import { Status, Op, LIST_BATCH_BYTES, DAEMON_VERSION } from '../protocol/generated.js';
import { encodeReply, type Fields } from '../protocol/codec.js';
import type { Config } from '../config/types.js';
import type { Lookup } from '../cache/types.js';
import type { Resolver } from '../directory/resolver.js';
import { groupEntry, passwdEntry } from '../directory/entries.js';
import type { LoginIdentity } from '../directory/identity.js';
import type { CachedUser, GroupEntry, PasswdEntry } from '../types.js';
import { identityFailure, lookupFailure } from './replies.js';

/** Rough wire size of a passwd record, to fill list pages without encoding twice. */
function passwdSize(p: PasswdEntry): number {
  return 4 + 4 + 2 * 4 + Buffer.byteLength(p.name) + Buffer.byteLength(p.gecos) + Buffer.byteLength(p.dir) + Buffer.byteLength(p.shell);
}

/** The encoded PW_BY_NAME/PW_BY_UID reply frames of one cached user, for the config they were built with. */
interface EncodedPasswd { cfg: Config; byOp: Map<number, Buffer> }

/** An encoded enumeration page is reused for at most this long (entries also expire by time). */
const PAGE_TTL_MS = 1000;
const MAX_CACHED_PAGES = 1024;

export function nssHandlers(resolver: Resolver, identity: LoginIdentity, cfg: () => Config, cacheGeneration: () => number = () => NaN): HandlerTable {
  // The cache hands out the same object for a user until it changes, so the reply frame can be
  // encoded once and written as it is: a warm hit is then a Map lookup and a write. A new object
  // (refetch) or a reloaded config (home base, shell, gid) makes a new frame.
  const frames = new WeakMap<CachedUser, EncodedPasswd>();
  const passwdReply = (op: number, l: Lookup, peer: Peer): HandlerResult => {
    if (l.status !== 'found') return lookupFailure(l, peer);
    const current = cfg();
    let e = frames.get(l.user);
    if (!e || e.cfg !== current) { e = { cfg: current, byOp: new Map() }; frames.set(l.user, e); }
    let frame = e.byOp.get(op);
    if (!frame) {
      frame = encodeReply(op, Status.OK, { entry: passwdEntry(current, l.user) as unknown as Fields });
      e.byOp.set(op, frame);
    }
    return { status: Status.OK, frame };
  };

  // Fill one page up to LIST_BATCH_BYTES; the client passes next_uid back and stops at an
  // empty page. next_uid is always one past the last uid sent, so paging never repeats.
  const listPage = (startUid: number): Fields => {
    let next = startUid;
    const current = cfg();
    const entries: PasswdEntry[] = [];
    let size = 16;
    for (;;) {
      const batch = resolver.list(next, 256);
      for (const u of batch) {
        const p = passwdEntry(current, u);
        const s = passwdSize(p);
        if (size + s > LIST_BATCH_BYTES && entries.length > 0) return { next_uid: next, entries: entries as unknown as Fields[] };
        entries.push(p);
        size += s;
        next = u.uid + 1;
      }
      if (batch.length < 256) break;
    }
    return { next_uid: next, entries: entries as unknown as Fields[] };
  };
  const pages = new Map<number, { gen: number; cfg: Config; at: number; frame: Buffer }>();

  const groupFrames = new Map<number, { key: string; frame: Buffer }>();
  const groupReply = (op: number, g: GroupEntry): HandlerResult => {
    const key = `${g.name}:${g.gid}`;
    let e = groupFrames.get(op);
    if (!e || e.key !== key) {
      e = { key, frame: encodeReply(op, Status.OK, { entry: { ...g } as unknown as Fields }) };
      groupFrames.set(op, e);
    }
    return { status: Status.OK, frame: e.frame };
  };

  return {
    PING: () => ok({ daemon_version: DAEMON_VERSION }),
    PW_BY_NAME: async (f, peer) => passwdReply(Op.PW_BY_NAME, await resolver.byName(f.name as string, peer.uid), peer),
    PW_BY_UID: async (f, peer) => passwdReply(Op.PW_BY_UID, await resolver.byUid(f.uid as number, peer.uid), peer),
    PW_LIST: (f) => {
      // Enumeration pages are encoded once and reused until the cache changes (its generation)
      // or PAGE_TTL_MS passes (entries also die by time): `getent passwd` in a loop costs a
      // Map lookup, not a SQLite scan, however many users are cached.
      const start = f.start_uid as number;
      const gen = cacheGeneration();
      const now = Date.now();
      const hit = pages.get(start);
      if (hit && hit.gen === gen && hit.cfg === cfg() && now - hit.at < PAGE_TTL_MS) return { status: Status.OK, frame: hit.frame };
      if (pages.size >= MAX_CACHED_PAGES) pages.clear();
      const frame = encodeReply(Op.PW_LIST, Status.OK, listPage(start));
      pages.set(start, { gen, cfg: cfg(), at: now, frame });
      return { status: Status.OK, frame };
    },
    // The group reply is a constant of the config (no member list): encoded once per config.
    GR_BY_NAME: (f) => {
      const g = groupEntry(cfg().users, resolver.local);
      return g && f.name === g.name ? groupReply(Op.GR_BY_NAME, g) : fail(Status.NOTFOUND);
    },
    GR_BY_GID: (f) => {
      const g = groupEntry(cfg().users, resolver.local);
      return g && f.gid === g.gid ? groupReply(Op.GR_BY_GID, g) : fail(Status.NOTFOUND);
    },
    GR_LIST: (f) => {
      const g = groupEntry(cfg().users, resolver.local);
      if (!g || (f.start_gid as number) > g.gid) return ok({ next_gid: 0, entries: [] });
      return ok({ next_gid: (g.gid + 1) >>> 0, entries: [{ ...g }] });
    },
    KEYS_BY_NAME: async (f, peer) => {
      const l = await resolver.byName(f.name as string, peer.uid);
      if (l.status !== 'found') return lookupFailure(l, peer);
      return ok({ keys: l.user.sshPublicKeys });
    },
    // latchkey-authorized-keys: keys only when latchkey serves exactly this name with the uid
    // NSS resolved (directory/identity.ts).
    KEYS_FOR_LOGIN: async (f, peer) => {
      const id = await identity.check(f.name as string, f.uid as number, 'authorized-keys', peer.uid);
      return id.kind === 'served' ? ok({ keys: id.user.sshPublicKeys }) : identityFailure(id, peer);
    },
  };
}
