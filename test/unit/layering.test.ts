// The layers of src/ as ARCHITECTURE.md draws them, checked on the import lines of the sources:
// the domain modules (what latchkey knows and decides) never import the transport (src/server)
// or what the sockets answer (src/answers), and no module imports itself round a cycle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ROOT } from '../lib/paths.js';

const SRC = join(ROOT, 'src');
/** Folders that hold domain code: they may import each other, never the layers above them. */
const DOMAIN = ['directory', 'cache', 'sessions', 'verify', 'homes', 'users', 'upstream', 'config', 'cleanup'];
/** The transport and the answers: built on the domain, never imported by it. */
const ABOVE_DOMAIN = ['server', 'answers'];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/**
 * Every module a source file imports, `import type` included, as paths relative to src/ (`a/b.ts`).
 * Static imports and re-exports (`import … from`, `export … from`, bare `import '…'`) and
 * dynamic `import('…')`; only relative specifiers are ours.
 */
function importsOf(file: string, text: string): string[] {
  const specs = [
    ...text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+['"]([^'"]+)['"]/gms),
    ...text.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm),
    ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
  ].map((m) => m[1]!);
  return [...new Set(specs.filter((s) => s.startsWith('.')).map((s) =>
    relative(SRC, resolve(dirname(file), s)).replace(/\.js$/, '.ts')))];
}

function graph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const f of sources(SRC)) g.set(relative(SRC, f), importsOf(f, readFileSync(f, 'utf8')));
  return g;
}

/** Import edges from a domain folder into the transport or the answers. */
function layerViolations(g: Map<string, string[]>): string[] {
  const top = (p: string): string => p.split('/')[0]!;
  const out: string[] = [];
  for (const [from, tos] of g) {
    if (!DOMAIN.includes(top(from))) continue;
    for (const to of tos) if (ABOVE_DOMAIN.includes(top(to))) out.push(`${from} imports ${to}`);
  }
  return out;
}

/** One cycle per strongly connected component of more than one module (or a self-import). */
function cycles(g: Map<string, string[]>): string[][] {
  // Tarjan's strongly connected components; recursive, which is fine for a hundred-odd modules.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index); low.set(v, index); index++;
    stack.push(v); on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!g.has(w)) continue;
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do { w = stack.pop()!; on.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1 || (g.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

test('the import parser sees every form of import this code base uses', () => {
  const file = join(SRC, 'directory', 'x.ts');
  const text = [
    "import { a } from '../server/dispatch.js';",
    "import type { B } from './resolver.js';",
    'import {\n  c,\n  d,\n} from "../answers/nss.js";',
    "export { e } from '../cache/db.js';",
    "import '../log.js';",
    "const m = await import('../sessions/store.js');",
    "import { readFileSync } from 'node:fs';",
  ].join('\n');
  assert.deepEqual(importsOf(file, text).sort(), [
    'answers/nss.ts', 'cache/db.ts', 'directory/resolver.ts', 'log.ts', 'server/dispatch.ts', 'sessions/store.ts',
  ]);
});

test('the checks fail on a domain module importing the transport or the answers, and on a cycle', () => {
  const bad = new Map<string, string[]>([
    ['sessions/registry.ts', ['server/dispatch.ts', 'log.ts']],
    ['directory/resolver.ts', ['answers/nss.ts', 'cache/db.ts']],
    ['cache/db.ts', ['directory/resolver.ts']],
    ['answers/nss.ts', ['directory/resolver.ts', 'server/dispatch.ts']],
    ['log.ts', []], ['server/dispatch.ts', []],
  ]);
  assert.deepEqual(layerViolations(bad), ['sessions/registry.ts imports server/dispatch.ts', 'directory/resolver.ts imports answers/nss.ts']);
  assert.deepEqual(cycles(bad), [['answers/nss.ts', 'cache/db.ts', 'directory/resolver.ts']]);
});

test('src/: no domain module imports src/server or src/answers', () => {
  const g = graph();
  assert.ok(g.size > 50 && [...g.keys()].some((k) => k.startsWith('directory/')), `read ${g.size} modules`);
  assert.deepEqual(layerViolations(g), []);
});

test('src/: no import cycles', () => {
  assert.deepEqual(cycles(graph()), []);
});
