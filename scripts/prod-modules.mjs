#!/usr/bin/env node
// scripts/prod-modules.mjs DEST — copies the part of node_modules that runs to DEST/node_modules.
// Called by scripts/install (so by `make install` and `make deb`).
//
// Which packages: package.json's "dependencies" and, through package-lock.json (the record of
// what `npm ci` installed), everything they depend on, resolved as node resolves a require()
// (nested node_modules first). Not followed: BUILD_ONLY below, packages that only building a
// native module needs. Copying from the built tree keeps the native modules this tree compiled
// and tested (better-sqlite3 builds from source, ~80 s) instead of building them again, and
// nothing is fetched. Inside each package, what only building or reading it needs stays behind
// (keep() below). The result: 8 packages and ~4 MB instead of the 170 MB development tree.
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const dest = process.argv[2];
if (!dest) {
  process.stderr.write('usage: prod-modules.mjs DEST\n');
  process.exit(64);
}
const fail = (msg) => {
  process.stderr.write(`prod-modules: ${msg}\n`);
  process.exit(1);
};

// node-addon-api: C++ headers for compiling native/addon and bcrypt. prebuild-install (and its
// tar/http tree): better-sqlite3's install script, which downloads a prebuilt binary; ours is
// compiled, and its loader (bindings) does not need it.
const BUILD_ONLY = new Set(['node-addon-api', 'prebuild-install']);

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
if (!(lock.lockfileVersion >= 2) || !lock.packages) fail('package-lock.json has no "packages" map (lockfileVersion >= 2 needed)');

/** The lockfile path node would load `name` from, when required by the package at `from`. */
function resolve(from, name) {
  for (let dir = from; ; dir = dir.slice(0, Math.max(0, dir.lastIndexOf('/node_modules/')))) {
    const candidate = `${dir === '' ? '' : `${dir}/`}node_modules/${name}`;
    if (lock.packages[candidate]) return candidate;
    if (dir === '') return null;
  }
}

const wanted = new Set();
const queue = Object.keys(pkg.dependencies ?? {}).map((name) => ['', name, false]);
while (queue.length > 0) {
  const [from, name, optional] = queue.shift();
  if (BUILD_ONLY.has(name)) continue;
  const path = resolve(from, name);
  if (path === null) {
    if (optional) continue;
    fail(`${name} (needed by ${from || 'latchkey'}) is not in package-lock.json`);
  }
  if (wanted.has(path)) continue;
  wanted.add(path);
  const info = lock.packages[path];
  for (const dep of Object.keys(info.dependencies ?? {})) queue.push([path, dep, false]);
  for (const dep of Object.keys(info.optionalDependencies ?? {})) queue.push([path, dep, true]);
}

// node's names for the platform, as prebuildify lays out prebuilds/<platform>-<arch>/.
const platformDir = `${process.platform}-${process.arch}`;
// Documentation, and TypeScript declarations (only a compiler reads them).
const DOC = /\.(md|markdown|d\.ts|d\.mts|d\.cts)$/i;
const NOT_RUNTIME = new Set(['test', 'tests', 'example', 'examples', 'docs', 'benchmark', '.github']);

/** Whether a path inside a package is needed at run time (licenses always are). */
function keep(pkgDir, hasGyp, src) {
  const rel = relative(pkgDir, src);
  if (rel === '') return true;
  const parts = rel.split(sep);
  const name = basename(src);
  // Nested node_modules are packages of their own, copied when the walk reaches them.
  if (parts[0] === 'node_modules') return false;
  if (/^(licen[cs]e|copying|notice)/i.test(name)) return true;
  // .npmignore, .travis.yml, .eslintrc and the like: the package's development files.
  if (name.startsWith('.')) return false;
  if (NOT_RUNTIME.has(parts[0]) || DOC.test(name) || /^Dockerfile/.test(name)) return false;
  if (parts[0] === 'build') {
    if (parts.length === 1) return true;
    if (parts[1] !== 'Release') return false;
    if (parts.length === 2) return true;
    // Only the compiled modules; better-sqlite3's test_extension.node is for its own tests.
    return parts.length === 3 && name.endsWith('.node') && name !== 'test_extension.node';
  }
  // The C/C++ sources and build files of a native module.
  if (hasGyp && (['deps', 'src', 'binding.gyp', 'Makefile'].includes(parts[0]) || name.endsWith('.sh'))) return false;
  if (parts[0] === 'prebuilds') {
    if (parts.length === 1) return true;
    if (parts[1] !== platformDir) return false;
    // The glibc build only: Debian's libc.
    return parts.length === 2 || !name.includes('.musl.');
  }
  return true;
}

const out = join(dest, 'node_modules');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const path of [...wanted].sort()) {
  const from = join(ROOT, path);
  if (!existsSync(join(from, 'package.json'))) fail(`${path} is in package-lock.json but not installed; run make first`);
  const hasGyp = existsSync(join(from, 'binding.gyp'));
  cpSync(from, join(dest, path), { recursive: true, preserveTimestamps: true, filter: (src) => keep(from, hasGyp, src) });
}
if (process.env.LATCHKEY_VERBOSE) process.stdout.write(`prod-modules: ${wanted.size} packages\n`);
