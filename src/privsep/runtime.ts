// The runtime directory of an unprivileged daemon. Started as root, latchkeyd hands socket_dir
// (sockets, cache.db, sessions.db) to [daemon] user before dropping root, and makes the directory
// of rootd's socket (root's). Started by systemd, RuntimeDirectory= has done the same.
import { accessSync, constants, lchownSync, lstatSync, mkdirSync, readdirSync, chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../config/types.js';
import type { DaemonAccount } from './account.js';
import { checkDir } from '../native/addon.js';
import { ConfigError, LatchkeyError } from '../errors.js';
import { log } from '../log.js';

/** Files latchkeyd keeps in its runtime dir (SQLite adds -wal/-shm/-journal beside them). */
const OWN_FILES = /^(cache|sessions)\.db(-wal|-shm|-journal)?$|^(cache|sessions)\.db\.bad-/;

function fail(message: string): never {
  throw new LatchkeyError('E_SOCKET', message);
}

/** As root: socket_dir owned by the daemon user (0755), its files too; rootd's socket dir root's. */
export function prepareRuntime(cfg: Config, account: DaemonAccount): void {
  const dir = cfg.daemon.socketDir;
  // The parent is checked (and made) as root's: nobody else may swap the directory we hand over.
  const parent = checkDir({ path: dirname(dir), what: 'parent of the socket_dir', parentOf: 'socket_dir', create: true, rootOnly: true, mode: 0o755 });
  if (!parent.ok) fail(`cannot use [daemon] socket_dir ${dir}: ${parent.problem}`);
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    mkdirSync(dir, { mode: 0o755 });
    st = lstatSync(dir);
  }
  if (!st.isDirectory()) fail(`[daemon] socket_dir ${dir} exists and is not a directory (a symlink?); move it away and restart`);
  if (st.uid !== 0 && st.uid !== account.uid) fail(`[daemon] socket_dir ${dir} is owned by uid ${st.uid}, neither root nor ${account.name}; fix: chown ${account.name} ${dir}`);
  lchownSync(dir, account.uid, account.gid);
  // The parent is root's and not writable by others (checked above): the path cannot be swapped.
  if ((st.mode & 0o022) !== 0) chmodSync(dir, 0o755);
  for (const name of readdirSync(dir)) {
    if (!OWN_FILES.test(name)) continue;
    const f = join(dir, name);
    const fst = lstatSync(f);
    if (fst.isFile() && fst.uid !== account.uid) {
      lchownSync(f, account.uid, account.gid);
      log('info', 'daemon.runtime_chown', { file: f, user: account.name });
    }
  }
  const rootdDir = dirname(cfg.daemon.rootdSocket);
  const r = checkDir({ path: rootdDir, what: 'directory of rootd_socket', parentOf: 'rootd_socket', create: true, rootOnly: true, mode: 0o755 });
  if (!r.ok) fail(`cannot use [daemon] rootd_socket ${cfg.daemon.rootdSocket}: ${r.problem}`);
}

/**
 * After the drop: the directory of the cache (and of sessions.db beside it) must be one only root
 * or the daemon can change — in a directory others can write, a user could plant a cache full of
 * users with hashes, or a sessions file — and the daemon's to write (SQLite makes journals there).
 */
export function requireWritableCacheDir(cfg: Config): void {
  if (cfg.cache.dbPath === ':memory:') return;
  const dir = dirname(cfg.cache.dbPath);
  const safe = checkDir({ path: dir, what: 'directory of db_path', parentOf: 'db_path', create: false, rootOnly: false, mode: 0o755 });
  if (!safe.ok) throw new ConfigError(cfg.source || 'config', 0, 'cache.db_path', safe.problem ?? 'is unsafe');
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch {
    throw new ConfigError(cfg.source || 'config', 0, 'cache.db_path',
      `${dir} is not writable by latchkeyd's user ([daemon] user = ${cfg.daemon.user}); SQLite keeps its journal beside the file; fix: put the cache under [daemon] socket_dir (default /run/latchkey/cache.db)`);
  }
}
