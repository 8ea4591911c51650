// A user's home under the configured base, made on first login (DESIGN.md "Homes and sessions").
// The filesystem work needs root and is latchkey-rootd's (native/rootd/homes.c): dirfd-relative,
// never following a symlink, never chown -R, never deleting, with the path, layout and mode taken
// from rootd's own reading of latchkey.conf (the request names only the user). Here: what the
// daemon makes of the answer — what counts as fatal, what is logged.
import type { HomesConfig } from '../config/types.js';
import { HomeError } from '../errors.js';
import type { RootdClient } from '../privsep/rootd.js';
import { log } from '../log.js';

export interface HomeUser { name: string; uid: number; gid: number }
export interface HomeResult { path: string; created: boolean; problems: string[] }

/** base/name. The home is always derived from config and the validated name, never from upstream. */
export function homePath(cfg: HomesConfig, name: string): string {
  const base = cfg.base.length > 1 ? cfg.base.replace(/\/+$/, '') : cfg.base;
  return base === '/' ? `/${name}` : `${base}/${name}`;
}

function isPathComponent(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

/**
 * Makes sure the home exists with the configured layout, owner and mode (rootd CREATE_HOME).
 * Resolves with the repairs rootd made (a wrong mode or group on a directory whose owner is right)
 * in `problems`; throws HomeError when the home is unsafe to use (a symlink or file in its place, a
 * directory owned by someone else, an unsafe base: left untouched for an admin) or rootd refused
 * or could not be asked (RootdUnavailable).
 */
export async function ensureHome(cfg: HomesConfig, user: HomeUser, rootd: RootdClient): Promise<HomeResult> {
  const path = homePath(cfg, user.name);
  if (!isPathComponent(user.name) || (cfg.layout === 'chroot' && !isPathComponent(cfg.uploadDir))) {
    throw new HomeError(`refusing home for "${user.name}": the name and the upload dir must be single path components`);
  }
  const r = await rootd.call({ op: 'create_home', name: user.name, uid: user.uid, gid: user.gid });
  const problems = r.message ? [r.message] : [];
  if (r.status !== 'ok') {
    log('error', 'home.problem', { user: user.name, path, refused: true, rootd: r.status, problems });
    throw new HomeError(`home ${path} for ${user.name} not made: latchkey-rootd answered ${r.status}${r.message ? ': ' + r.message : ''}`);
  }
  if (r.created) log('info', 'home.created', { user: user.name, path, layout: cfg.layout });
  if (r.repaired) log('warn', 'home.problem', { user: user.name, path, refused: false, problems });
  return { path, created: r.created, problems: r.repaired ? problems : [] };
}
