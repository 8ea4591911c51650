// `scripts/bench --quick` completes and prints/writes the whole table. Timing is never asserted:
// the numbers of a 200-user run on a busy test machine mean nothing; only the plumbing is checked
// (namespaces, service, daemon, driver, hyperfine or its fallback, the storm, the output files).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, haveCommand } from '../lib/harness.js';
import { ROW_IDS } from '../bench/rows.js';

const skip = process.getuid?.() !== 0 ? 'needs root (mount namespaces)'
  : !haveCommand('unshare') ? 'needs unshare(1)'
    : !haveCommand('cc') ? 'needs a C compiler for test/bench/lkbench.c' : false;

test('scripts/bench --quick prints a table with every row and writes the JSON', { skip, timeout: 240_000 }, () => {
  const out = mkdtempSync(join(tmpdir(), 'latchkey-bench-smoke-'));
  try {
    const r = spawnSync(join(ROOT, 'scripts/bench'), ['--quick', '--out', out], { cwd: ROOT, encoding: 'utf8', timeout: 230_000 });
    assert.equal(r.status, 0, `scripts/bench --quick failed (${r.signal ?? r.status}):\n${r.stdout}\n${r.stderr}`);

    const table = r.stdout.split('\n').filter((l) => l.startsWith('|'));
    assert.match(table[0] ?? '', /\| measurement \| latchkey \| files/);
    const body = table.slice(2);
    assert.equal(body.length, ROW_IDS.length, `one table row per measurement:\n${table.join('\n')}`);
    for (const line of body) assert.equal(line.split('|').length, 8, `7 cells: ${line}`);
    assert.ok(!r.stdout.includes('not measured'), r.stdout);

    const files = readdirSync(out);
    const json = files.find((f) => /^bench-.*\.json$/.test(f));
    assert.ok(json, `no JSON in ${out}: ${files.join(', ')}`);
    assert.ok(files.some((f) => /^bench-.*\.md$/.test(f)), 'the Markdown copy of the table');
    const doc = JSON.parse(readFileSync(join(out, json), 'utf8')) as { users: number; quick: boolean; rows: { id: string; latchkey: string }[] };
    assert.equal(doc.users, 200);
    assert.equal(doc.quick, true);
    assert.deepEqual(doc.rows.map((x) => x.id), [...ROW_IDS]);
    for (const row of doc.rows) assert.ok(row.latchkey.length > 0, `row ${row.id} has a latchkey cell`);
    // the temp dir (a tmpfs inside the bench's own namespace) is removed
    const work = /^bench: work dir (\S+)$/m.exec(r.stderr)?.[1];
    assert.ok(work, `the bench names its temp dir on stderr:\n${r.stderr}`);
    assert.ok(!existsSync(work), `${work} left behind`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
