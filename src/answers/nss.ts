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
import type { LoginDecisions } from '../verify/decisions.js';
import { identityFailure, lookupFailure } from './replies.js';

/** Rough wire size of a passwd record, to fill list pages without encoding twice. */
function passwdSize(p: PasswdEntry): number {
  return 4 + 4 + 2 * 4 + Buffer.byteLength(p.name) + Buffer.byteLength(p.gecos) + Buffer.byteLength(p.dir) + Buffer.byteLength(p.shell);
}

/** An encoded enumeration page is reused for at most this long (entries also expire by time). */
export const PAGE_TTL_MS = 1000;
/**
 * Bytes of encoded enumeration pages kept at most (~80,000 users' entries); past it a page is
 * sent without being kept (PageCache).
 */
export const MAX_CACHED_PAGE_BYTES = 8 << 20;
/** Reply frames kept for cached users are packed into slabs of this size. */
const SLAB_BYTES = 16 << 10;

/**
 * Keeps encoded frames compactly. encodeReply's buffer comes from Node's shared 8 KiB pool (or,
 * grown, is up to twice its length): a kept frame pinned the whole pool chunk, ~1 KiB per cached
 * user in practice (19 MiB at a full memo, measured), and a Buffer of its own costs ~300 bytes
 * more than its length. A copy into a slab costs its length. A slab lives while any frame in it
 * does: frames die with their user objects, which the memo drops together (full, invalidate,
 * expiry sweep) or replaces on refresh, so a slab outlives its frames by at most that long.
 */
class FrameSlabs {
  private slab = Buffer.allocUnsafeSlow(0);
  private used = 0;
  keep(frame: Buffer): Buffer {
    if (frame.length > SLAB_BYTES / 4) return exactCopy(frame);
    if (this.used + frame.length > this.slab.length) {
      this.slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.used = 0;
    }
    const out = this.slab.subarray(this.used, this.used + frame.length);
    frame.copy(out);
    this.used += frame.length;
    return out;
  }
}

/** A copy in memory of its own, exactly its length (a grown encoder buffer is up to twice that). */
function exactCopy(frame: Buffer): Buffer {
  const own = Buffer.allocUnsafeSlow(frame.length);
  frame.copy(own);
  return own;
}

interface Page { gen: number; cfg: Config; at: number; next: number; frame: Buffer }

/**
 * Encoded enumeration pages, by start uid. A page is kept only when a walk from uid 0 reaches
 * its start (0, or the next_uid of a kept page): `getent passwd` in a loop hits them, while
 * start uids a peer makes up each cost one encode and keep nothing (they were kept, 1,024 pages
 * of up to 64 KiB: 64 MiB any local user could pin). The bytes kept are bounded, and a timer
 * drops stale pages, so an idle daemon does not hold the last enumeration.
 */
export class PageCache {
  private readonly pages = new Map<number, Page>();
  private kept = 0;
  private timer: NodeJS.Timeout | null = null;
  constructor(private readonly now: () => number = Date.now, private readonly maxBytes = MAX_CACHED_PAGE_BYTES) {}

  /** bytes of pages kept */
  get bytes(): number { return this.kept; }
  get size(): number { return this.pages.size; }

  get(start: number, gen: number, cfg: Config): Buffer | null {
    const p = this.pages.get(start);
    return p && p.gen === gen && p.cfg === cfg && this.now() - p.at < PAGE_TTL_MS ? p.frame : null;
  }

  /** Keeps the page when a walk from 0 reaches it and it fits; returns the frame to send. */
  offer(start: number, gen: number, cfg: Config, next: number, frame: Buffer): Buffer {
    if (start === 0) this.sweep();
    if (!this.reachable(start, gen, cfg)) return frame;
    this.drop(start);
    if (this.kept + frame.length > this.maxBytes) return frame;
    const own = exactCopy(frame);
    this.pages.set(start, { gen, cfg, at: this.now(), next, frame: own });
    this.kept += own.length;
    this.arm();
    return own;
  }

  /** Drops stale pages (also run by a timer while any are kept). */
  sweep(): void {
    const now = this.now();
    for (const [start, p] of this.pages) if (now - p.at >= PAGE_TTL_MS) this.drop(start);
    this.arm();
  }

  private arm(): void {
    if (this.timer || this.pages.size === 0) return;
    this.timer = setTimeout(() => { this.timer = null; this.sweep(); }, PAGE_TTL_MS);
    this.timer.unref();
  }

  private drop(start: number): void {
    const p = this.pages.get(start);
    if (!p) return;
    this.pages.delete(start);
    this.kept -= p.frame.length;
  }

  private reachable(start: number, gen: number, cfg: Config): boolean {
    if (start === 0) return true;
    for (const p of this.pages.values()) if (p.next === start && p.gen === gen && p.cfg === cfg) return true;
    return false;
  }
}

/** `decisions`: where KEYS_FOR_LOGIN's answers are recorded for `latchkeyctl why`. */
export function nssHandlers(
  resolver: Resolver, identity: LoginIdentity, cfg: () => Config, cacheGeneration: () => number = () => NaN,
  decisions: LoginDecisions | null = null,
): HandlerTable {
  // The cache hands out the same object for a user until it changes, so the reply frame can be
  // encoded once and written as it is: a warm hit is then a WeakMap lookup and a write. A new
  // object (refetch) makes a new frame; a reloaded config (home base, shell, gid) drops them all.
  // One WeakMap per opcode, values the frames themselves: no per-user record around them.
  const slabs = new FrameSlabs();
  let framesCfg: Config | null = null;
  let byName = new WeakMap<CachedUser, Buffer>();
  let byUid = new WeakMap<CachedUser, Buffer>();
  const passwdReply = (op: number, l: Lookup, peer: Peer): HandlerResult => {
    if (l.status !== 'found') return lookupFailure(l, peer);
    const current = cfg();
    if (current !== framesCfg) { framesCfg = current; byName = new WeakMap(); byUid = new WeakMap(); }
    const frames = op === Op.PW_BY_NAME ? byName : byUid;
    let frame = frames.get(l.user);
    if (!frame) {
      frame = slabs.keep(encodeReply(op, Status.OK, { entry: passwdEntry(current, l.user) as unknown as Fields }));
      frames.set(l.user, frame);
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
  const pages = new PageCache();

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
      const current = cfg();
      const hit = pages.get(start, gen, current);
      if (hit) return { status: Status.OK, frame: hit };
      const fields = listPage(start);
      return { status: Status.OK, frame: pages.offer(start, gen, current, fields.next_uid as number, encodeReply(Op.PW_LIST, Status.OK, fields)) };
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
      const name = f.name as string;
      const id = await identity.check(name, f.uid as number, 'authorized-keys', peer.uid);
      // Any local user may send this for any name: decisions.ts keeps such records apart.
      decisions?.record(name, 'keys_for_login', id.kind === 'served', {
        result: id.kind, uid: f.uid as number,
        detail: id.kind === 'served' ? `${id.user.sshPublicKeys.length} public key(s) handed to sshd` : id.kind === 'unavailable' ? id.reason : id.detail,
        source: id.kind === 'served' || id.kind === 'notfound' ? id.source : null,
        keys: id.kind === 'served' ? id.user.sshPublicKeys.length : null,
      }, peer.uid);
      return id.kind === 'served' ? ok({ keys: id.user.sshPublicKeys }) : identityFailure(id, peer);
    },
  };
}
