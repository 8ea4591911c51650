// Typed loader for latchkey.node (native/addon). Loaded on first use, not at import, so modules
// that merely import this file (and their tests) work before the addon has been built.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LatchkeyError } from '../errors.js';

export interface PeerCred { pid: number; uid: number; gid: number }

export interface CheckDirOptions {
  /** absolute path of the directory */
  path: string;
  /** names it in messages: "the <what> /x is ..." and "/w, a parent of the <parentOf> /x, ..." */
  what: string;
  parentOf: string;
  /** make missing components and set the target's mode (through its fd) */
  create: boolean;
  /** only root may own the path (sshd's ChrootDirectory rule); else root or the daemon's euid */
  rootOnly: boolean;
  /** mode of the target when create is set (never group/world-writable) */
  mode: number;
}

export interface CheckDirResult {
  ok: boolean;
  /** the only problem is that the directory (or a parent) does not exist */
  missing: boolean;
  /** why it is unsafe, naming the path and the chown/chmod fix; null when ok */
  problem: string | null;
}

/** What lkw_get_stats reports about the shared-memory map (native/common/lk_map_write.h). */
export interface MapWriterStats {
  generation: number; fileSize: number; slots: number; users: number; negNames: number; negUids: number;
  dataUsed: number; dataSize: number; rebuilds: number; notPublished: number;
}

/**
 * The writer of <socket_dir>/nss.map (native/addon/map_napi.cc over native/common/lk_map_write.c).
 * Methods throw an Error (with `errno`) naming the file and the cause; 1 means "not published"
 * (a record too large, or negative entries over their cap), 0 published.
 */
export interface MapWriter {
  putUser(name: string, uid: number, gid: number, gecos: string, dir: string, shell: string, expiresMs: number): 0 | 1;
  putNegName(name: string, expiresMs: number): 0 | 1;
  putNegUid(uid: number, expiresMs: number): 0 | 1;
  /** the user of this name; with `negativeToo`, a negative entry for it as well */
  removeName(name: string, negativeToo?: boolean): 0;
  removeUid(uid: number, negativeToo?: boolean): 0;
  /** a new file holding only what is kept (and the group) */
  reset(keepUsers: boolean, keepNegatives: boolean): 0;
  /** the group (null: none); a new file when it changed, else only its expiry moves */
  setGroup(name: string | null, gid: number, expiresMs: number): 0;
  touchGroup(expiresMs: number): void;
  stats(): MapWriterStats;
  /** retires the file; with unlinkFile, removes it (a clean stop) */
  close(unlinkFile: boolean): void;
}

export interface LatchkeyAddon {
  /** SO_PEERCRED of a connected Unix socket; throws an Error with the errno text */
  peerCred(fd: number): PeerCred;
  /** crypt_rn(3) on the threadpool; null when the setting is invalid or crypt fails */
  crypt(password: string, setting: string): Promise<string | null>;
  /** opens a directory from "/" without following any symlink, checking every component
   *  (native/common/safedir.c); synchronous */
  checkDir(opts: CheckDirOptions): CheckDirResult;
  /** creates an empty map at `path`, retiring any previous one this uid owns */
  MapWriter: new (path: string, expectUsers: number) => MapWriter;
  /** one datagram to systemd's notification socket (a path or @abstract); throws with the errno text */
  sdNotify(socketPath: string, message: string): boolean;
}

const RELATIVE_PATH = join('native', 'addon', 'build', 'Release', 'latchkey.node');

/** The repo (or install) root: the nearest ancestor of this file holding latchkey's package.json.
 *  Works from src/native (tsx, tests) and dist/src/native (compiled) alike. */
export function packageRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'latchkey') return dir;
      } catch { /* not ours; keep walking */ }
    }
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/** Where latchkey.node is looked for: $LATCHKEY_ADDON, else <root>/native/addon/build/Release. */
export function addonPath(): string {
  const override = process.env.LATCHKEY_ADDON;
  if (override) return resolve(override);
  const root = packageRoot();
  return root ? join(root, RELATIVE_PATH) : resolve(RELATIVE_PATH);
}

let loaded: LatchkeyAddon | null = null;

export function loadAddon(): LatchkeyAddon {
  if (loaded) return loaded;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new LatchkeyError('E_ADDON',
      `native addon not found at ${path}; run \`make\` in the latchkey source tree to build it` +
      ' (or set LATCHKEY_ADDON to the path of latchkey.node)');
  }
  try {
    loaded = createRequire(import.meta.url)(path) as LatchkeyAddon;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new LatchkeyError('E_ADDON',
      `native addon ${path} failed to load (${why}); rebuild it with \`make\` for this Node version`);
  }
  return loaded;
}

export function peerCred(fd: number): PeerCred {
  return loadAddon().peerCred(fd);
}

export function crypt(password: string, setting: string): Promise<string | null> {
  return loadAddon().crypt(password, setting);
}

export function checkDir(opts: CheckDirOptions): CheckDirResult {
  return loadAddon().checkDir(opts);
}
