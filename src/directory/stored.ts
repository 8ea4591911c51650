// The persistent local users (src/localusers/) as the directory sees them: CachedUser records,
// made once per store generation so that answers/nss.ts, which keeps reply frames by object,
// encodes each user once rather than on every lookup.
import type { CachedUser } from '../types.js';
import type { LocalUser } from '../localusers/types.js';

/** What the directory needs of the store (src/localusers/store.ts implements it). */
export interface StoredUsers {
  get(name: string): LocalUser | null;
  getByUid(uid: number): LocalUser | null;
  /** ascending uid */
  list(): LocalUser[];
  /** bumps on every change of the store, a snapshot swap included */
  readonly generation: number;
}

/** A stored user in the shape every answer is built from. */
export function storedToCached(s: LocalUser): CachedUser {
  return {
    username: s.name, upstreamUid: -1, uid: s.uid, gecos: s.gecos,
    passwordHash: s.passwordHash, sshPublicKeys: s.keys.slice(),
    // 0 is "disabled" to account.ts, as for an upstream `"enabled": false`.
    accountExpiresAt: s.disabled ? 0 : s.expiresAt,
    fetchedAt: s.updatedAt, expiresAt: Number.MAX_SAFE_INTEGER,
    local: { context: s.context, shell: s.shell },
  };
}

export class StoredView {
  private gen = -1;
  private readonly byName = new Map<string, CachedUser>();
  private readonly byUid = new Map<number, CachedUser>();
  private sorted: CachedUser[] = [];

  constructor(readonly store: StoredUsers) {}

  private current(): void {
    if (this.store.generation === this.gen) return;
    this.byName.clear();
    this.byUid.clear();
    this.sorted = this.store.list().map(storedToCached);
    for (const u of this.sorted) {
      this.byName.set(u.username, u);
      this.byUid.set(u.uid, u);
    }
    this.gen = this.store.generation;
  }

  get(name: string): CachedUser | null { this.current(); return this.byName.get(name) ?? null; }
  getByUid(uid: number): CachedUser | null { this.current(); return this.byUid.get(uid) ?? null; }
  /** ascending uid */
  all(): readonly CachedUser[] { this.current(); return this.sorted; }
  has(name: string): boolean { this.current(); return this.byName.has(name); }
}
