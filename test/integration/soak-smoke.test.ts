// `scripts/soak --seconds 20`: the soak of `make soak` in its short form. Its phases are ~2.5 s
// each, so only the loosest promises are checked, never a latency: root's lookups never fail (no
// error, no false "not found"), the first lookups of never-seen real users succeed during the
// name flood, no PAM login fails, the daemon's RSS does not run away, and the table and JSON are
// written and the work dir removed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, haveCommand } from '../lib/harness.js';
import { scratchDir } from '../lib/tmp.js';

const skip = process.getuid?.() !== 0 ? 'needs root (mount namespaces, setuid children)'
  : !haveCommand('unshare') || !haveCommand('pamtester') || !haveCommand('python3') ? 'needs unshare, pamtester and python3'
    : !haveCommand('cc') ? 'needs a C compiler for test/bench/lkload.c' : false;

interface Row {
  phase: string;
  root: { n: number; errors: number; notfound: number };
  first?: { ok: number; failed: number };
  logins: { ok: number; failed: number; failures: string[] };
  attacks: string[];
}

test('scripts/soak --seconds 20: root is always served, logins succeed, RSS stays put', { skip, timeout: 180_000 }, () => {
  const out = scratchDir('latchkey-soak-smoke-');
  const r = spawnSync(join(ROOT, 'scripts/soak'), ['--seconds', '20', '--out', out], { cwd: ROOT, encoding: 'utf8', timeout: 170_000 });
  assert.equal(r.status, 0, `scripts/soak failed (${r.signal ?? r.status}):\n${r.stdout}\n${r.stderr}`);
  process.stdout.write(r.stdout.split('\n').filter((l) => l.startsWith('|')).map((l) => `# ${l}\n`).join(''));

  const json = readdirSync(out).find((f) => /^soak-.*\.json$/.test(f));
  assert.ok(json, `no JSON in ${out}`);
  const doc = JSON.parse(readFileSync(join(out, json), 'utf8')) as { result: { rows: Row[]; rssStart: number; rssEnd: number } };
  const rows = doc.result.rows;
  assert.equal(rows.length, 8, rows.map((x) => x.phase).join(', '));
  for (const row of rows) {
    assert.ok(row.root.n > 0, `${row.phase}: root did no lookups`);
    assert.equal(row.root.errors + row.root.notfound, 0, `${row.phase}: root's lookups failed: ${JSON.stringify(row.root)}`);
    if (row.first) assert.equal(row.first.failed, 0, `${row.phase}: first lookups of real users failed: ${JSON.stringify(row.first)}`);
    assert.equal(row.logins.failed, 0, `${row.phase}: logins failed: ${row.logins.failures.join('; ')}`);
  }
  assert.ok(rows.filter((x) => x.logins.ok > 0).length >= 6, `logins ran in too few phases: ${JSON.stringify(rows.map((x) => x.logins))}`);
  // the idle threads' own lookups succeed too (eviction of their idle connections is transparent)
  for (const a of rows.flatMap((x) => x.attacks).filter((x) => x.startsWith('threads:'))) assert.match(a, /threads: 300 ok \/ 0 failed/);
  // The phases are short: this only catches a leak of the size of the floods themselves.
  const driftMiB = (doc.result.rssEnd - doc.result.rssStart) / 1024;
  assert.ok(driftMiB < 64, `daemon RSS grew by ${driftMiB.toFixed(1)} MiB in 20 s`);

  const work = /^soak: work dir (\S+)$/m.exec(r.stderr)?.[1];
  assert.ok(work, `the soak names its work dir on stderr:\n${r.stderr}`);
  assert.ok(!existsSync(work), `${work} left behind`);
});
