// Runs the C test suites (native/: NSS module against a fake daemon, the same under valgrind,
// golden vectors, a short fuzz run; pam/: the module's exports, linkage and file sizes;
// native/rootd: its frame decoder and encoder against the rootd golden vectors) inside the single
// `node --test` run; fails if they fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ROOT } from '../lib/paths.js';

test('C suites: make -s -C native test', { timeout: 15 * 60 * 1000 }, () => {
  const r = spawnSync('make', ['-s', '-C', 'native', 'test'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  assert.equal(r.status, 0, `make -C native test failed (exit ${r.status ?? r.signal}):\n${out.slice(-8000)}`);
});

test('PAM module checks: make -s -C pam test', () => {
  const r = spawnSync('make', ['-s', '-C', 'pam', 'test'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, `make -C pam test failed (exit ${r.status ?? r.signal}):\n${r.stdout ?? ''}${r.stderr ?? ''}`);
  assert.match(r.stdout, /pam: ok/);
});

test('latchkey-rootd frames: make -s -C native/rootd check (golden vectors, valgrind)', () => {
  const r = spawnSync('make', ['-s', '-C', 'native/rootd', 'check'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, `make -C native/rootd check failed (exit ${r.status ?? r.signal}):\n${r.stdout ?? ''}${r.stderr ?? ''}`);
  assert.match(r.stdout, /rootd golden: [1-9]\d* requests decoded, [1-9]\d* replies encoded, [1-9]\d* bad requests refused: ok/);
});
