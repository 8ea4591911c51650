import type { CachedUser } from '../types.js';

/** The one answer the resolver gives for a lookup. */
export type Lookup =
  | { status: 'found'; user: CachedUser; source: 'cache' | 'upstream' | 'stale' }
  | { status: 'notfound'; source: 'cache' | 'upstream' | 'rule' }
  | { status: 'unavail'; reason: string };
