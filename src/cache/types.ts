import type { CachedUser } from '../types.js';

/** The one answer the resolver gives for a lookup. `local`: latchkey's own store of persistent
 *  users (src/localusers/), not the upstream. */
export type Lookup =
  | { status: 'found'; user: CachedUser; source: 'cache' | 'upstream' | 'stale' | 'local' }
  | { status: 'notfound'; source: 'cache' | 'upstream' | 'rule' | 'local' }
  | { status: 'unavail'; reason: string };
