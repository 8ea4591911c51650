// A user's home under the configured base, made on first login (DESIGN.md "Homes and sessions").
// The filesystem work is native (native/addon/homes.c): dirfd-relative, never following a symlink,
// never chown -R, never deleting. Here: the policy around it — what counts as fatal, what is logged.
import type { HomesConfig } from '../config/types.js';
import { HomeError } from '../errors.js';
import { createHome } from '../native/addon.js';
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
 * Makes sure the home exists with the configured layout, owner and mode. Resolves with repairs it
 * made (a wrong mode or group on a directory whose owner is right) in `problems`; throws HomeError
 * when the home is unsafe to use (a symlink or file in its place, a directory owned by someone
 * else, an unsafe base) — those are left untouched for an admin to look at.
 */
export async function ensureHome(cfg: HomesConfig, user: HomeUser): Promise<HomeResult> {
  const path = homePath(cfg, user.name);
  if (!isPathComponent(user.name) || (cfg.layout === 'chroot' && !isPathComponent(cfg.uploadDir))) {
    throw new HomeError(`refusing home for "${user.name}": the name and the upload dir must be single path components`);
  }
  const r = await createHome({
    base: cfg.base, name: user.name, uid: user.uid, gid: user.gid,
    layout: cfg.layout, mode: cfg.mode, uploadDir: cfg.uploadDir,
  });
  if (r.refused) {
    log('error', 'home.problem', { user: user.name, path, refused: true, problems: r.problems });
    throw new HomeError(`home ${path} for ${user.name} left untouched: ${r.problems.join('; ')}`);
  }
  if (r.created) log('info', 'home.created', { user: user.name, path, layout: cfg.layout });
  if (r.problems.length > 0) log('warn', 'home.problem', { user: user.name, path, refused: false, problems: r.problems });
  return { path: r.path, created: r.created, problems: r.problems };
}
