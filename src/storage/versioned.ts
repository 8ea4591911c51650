// What every SQLite file of latchkey's own (sessions.db, the local users' store) does with its
// schema version and with a file it cannot use: the version in PRAGMA user_version, one
// migration per step, each in one transaction with its version bump (a crash leaves the old or
// the new version, never half of one); a file that cannot be used is moved aside and kept,
// never emptied. The cache is not one of them: it is disposable.
import type Database from 'better-sqlite3';
import { renameSync } from 'node:fs';
import { log } from '../log.js';

/** Runs MIGRATIONS[from] .. MIGRATIONS[to - 1], logging each step as `event`. */
export function migrate(db: Database.Database, path: string, from: number, to: number, migrations: ReadonlyArray<(db: Database.Database) => void>, event: string): void {
  for (let v = from; v < to; v++) {
    db.transaction(() => {
      migrations[v]!(db);
      db.pragma(`user_version = ${v + 1}`);
    })();
    log('info', event, { path, from_version: v, to_version: v + 1 });
  }
}

/**
 * Renames the file and its journals to `path.bad-TIME…`; returns the names they now have. A
 * rename that fails for another reason than a missing file throws, with `why` (the reason the
 * file was unusable) and the rename's error in `fail`'s message.
 */
export function moveAside(path: string, now: number, fail: (renameError: string) => Error): { aside: string; moved: string[] } {
  const aside = `${path}.bad-${new Date(now).toISOString().replace(/[-:.]/g, '')}`;
  const moved: string[] = [];
  for (const suffix of ['', '-journal', '-wal', '-shm']) {
    try {
      renameSync(path + suffix, aside + suffix);
      moved.push(aside + suffix);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw fail(e instanceof Error ? e.message : String(e));
    }
  }
  return { aside, moved };
}
