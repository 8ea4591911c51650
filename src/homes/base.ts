// The homes base, checked when the daemon starts and reloads rather than at the first login: a
// base that others can write (a 1777 directory, a group-writable parent) or that is a symlink
// would let a local user plant or swap homes, so latchkeyd refuses to run on it at all. The same
// walk (native/common/safedir.c) guards every home creation as well (latchkey-rootd, native/rootd/homes.c).
import type { Config } from '../config/types.js';
import { ConfigError } from '../errors.js';
import { checkDir } from '../native/addon.js';
import { log } from '../log.js';

/**
 * Throws a ConfigError (naming the config file, homes.base and the chown/chmod fix) when the base
 * is unsafe. A base that does not exist yet is only logged: it is the admin's to create, and
 * logins fail with the same message until it is there.
 */
export function checkHomeBase(cfg: Config): void {
  // rootOnly: sshd's ChrootDirectory wants root, whoever the daemon runs as.
  const r = checkDir({ path: cfg.homes.base, what: 'home base', parentOf: 'base', create: false, rootOnly: true, mode: 0o755 });
  if (r.ok) return;
  if (r.missing) {
    log('warn', 'homes.base_missing', { base: cfg.homes.base, problem: r.problem });
    return;
  }
  throw new ConfigError(cfg.source || 'config', 0, 'homes.base', r.problem ?? 'is unsafe');
}
