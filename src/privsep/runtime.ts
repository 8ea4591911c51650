// The runtime directory of an unprivileged daemon. Started as root, latchkeyd hands socket_dir
// (sockets, cache.db, sessions.db) to [daemon] user before dropping root, and makes the directory
// of rootd's socket (root's). Started by systemd, RuntimeDirectory= has done the same.
import { accessSync, closeSync, constants, fchownSync, fstatSync, lchownSync, lstatSync, openSync, readFileSync, readdirSync } from 'node:fs';
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
  handOver(dir, account, 'socket_dir', 'socket_dir', 0o755, '[daemon] socket_dir');
  for (const name of readdirSync(dir)) {
    if (!OWN_FILES.test(name)) continue;
    const f = join(dir, name);
    // The directory was the daemon's while it ran: whatever is in it may be planted (a hard link
    // to a root file named cache.db-wal, a symlink). Chown only through a descriptor of a plain
    // file with one link that root owns (an older root daemon's); leave everything else alone.
    let fd: number;
    try {
      fd = openSync(f, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch {
      continue;
    }
    try {
      const fst = fstatSync(fd);
      if (fst.isFile() && fst.nlink === 1 && fst.uid === 0) {
        fchownSync(fd, account.uid, account.gid);
        log('info', 'daemon.runtime_chown', { file: f, user: account.name });
      } else if (fst.uid !== account.uid) {
        log('warn', 'daemon.runtime_foreign_file', { file: f, uid: fst.uid, links: fst.nlink, effect: 'left as it is' });
      }
    } finally {
      closeSync(fd);
    }
  }
  prepareStateDir(cfg, account);
  const rootdDir = dirname(cfg.daemon.rootdSocket);
  const r = checkDir({ path: rootdDir, what: 'directory of rootd_socket', parentOf: 'rootd_socket', create: true, rootOnly: true, mode: 0o755 });
  if (!r.ok) fail(`cannot use [daemon] rootd_socket ${cfg.daemon.rootdSocket}: ${r.problem}`);
}

/**
 * As root: the directory of the persistent local users' store ([local] db_path, default
 * /var/lib/latchkey; systemd's StateDirectory= does the same) made or checked by the
 * symlink-free walk and handed to the daemon account, mode 0710: the store inside is 0600, and
 * the group (the daemon's, whose only other member is a primary's sync account) may reach the
 * published snapshot/ and nothing else.
 */
function prepareStateDir(cfg: Config, account: DaemonAccount): void {
  handOver(dirname(cfg.local.dbPath), account, 'directory of [local] db_path', 'db_path', 0o710, `[local] db_path ${cfg.local.dbPath}`);
}

/**
 * Makes or checks `dir` and gives it to the daemon account. Handed over before (an earlier
 * start): a real directory of the daemon's, in a parent only root can change. Anything else
 * (missing, root's, a symlink, someone else's) goes through the same symlink-free walk as ever,
 * which makes it (with `mode`) or names the problem and the fix.
 */
function handOver(dir: string, account: DaemonAccount, what: string, key: string, mode: number, shown: string): void {
  let st;
  try { st = lstatSync(dir); } catch { st = null; }
  const ours = st !== null && st.isDirectory() && !st.isSymbolicLink() && st.uid === account.uid && (st.mode & 0o022) === 0;
  const walked = ours
    ? checkDir({ path: dirname(dir), what: `parent of the ${what}`, parentOf: key, create: false, rootOnly: true, mode: 0o755 })
    : checkDir({ path: dir, what, parentOf: key, create: true, rootOnly: false, mode });
  if (!walked.ok) fail(`cannot use ${shown}: ${walked.problem}`);
  // Every component is root's and not writable by others now: the path cannot be swapped.
  lchownSync(dir, account.uid, account.gid);
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

/** After the drop: the host's account files must be readable, or latchkey could not keep them apart. */
export function requireReadableAccountFiles(cfg: Config): void {
  for (const [key, file] of [['users.local_passwd', cfg.users.localPasswdFile], ['users.local_group', cfg.users.localGroupFile]] as const) {
    try {
      readFileSync(file);
    } catch (e) {
      throw new ConfigError(cfg.source || 'config', 0, key,
        `latchkeyd's user ([daemon] user = ${cfg.daemon.user}) cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)}); it must, to never answer for the host's own accounts; fix: make the file and its directories readable`);
    }
  }
}
