// The oldest Node.js latchkey runs on: undici 7 needs 20.18.1 (package.json "engines", and the
// Debian package's Depends). Checked first by every program (bin/*), so an older Node gets one
// line saying what to install instead of a stack trace from inside a dependency.
export const MIN_NODE = [20, 18, 1] as const;

/** The problem with running on `version` (process.versions.node), or null when it is new enough. */
export function nodeVersionProblem(version: string): string | null {
  const v = version.split('.').map((p) => Number.parseInt(p, 10));
  for (let i = 0; i < MIN_NODE.length; i++) {
    const have = Number.isFinite(v[i]) ? v[i]! : 0;
    if (have > MIN_NODE[i]!) return null;
    if (have < MIN_NODE[i]!) return `Node.js ${version} is too old; latchkey needs Node.js ${MIN_NODE.join('.')} or newer (Debian 12's own nodejs is 18: use NodeSource or a backport)`;
  }
  return null;
}

/** Exits 1 with that line when this Node is too old. */
export function requireNode(program: string): void {
  const problem = nodeVersionProblem(process.versions.node);
  if (problem === null) return;
  process.stderr.write(`${program}: ${problem}\n`);
  process.exit(1);
}
