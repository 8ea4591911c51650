// Log lines carry their journald priority when stderr is the journal: systemd says so with
// JOURNAL_STREAM=DEV:INODE of the stream it gave as stderr, and journald reads a "<N>" prefix as
// the line's priority, so `journalctl -p warning` finds warnings and errors. A JOURNAL_STREAM that
// does not name fd 2 (inherited, then redirected) leaves lines plain JSON.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../lib/paths.js';
import { scratchDir } from '../lib/tmp.js';

const SCRIPT = `
const { log, setLogLevel } = await import(${JSON.stringify(join(ROOT, 'dist/src/log.js'))});
setLogLevel('debug');
log('error', 'e.v', { a: 1 }); log('warn', 'w.v'); log('info', 'i.v'); log('debug', 'd.v');
`;

function run(journalStream: (st: { dev: bigint; ino: bigint }) => string): string[] {
  const dir = scratchDir('lk-log-');
  const file = join(dir, 'stderr');
  const fd = openSync(file, 'w');
  const st = fstatSync(fd, { bigint: true });
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', SCRIPT], {
    stdio: ['ignore', 'ignore', fd], env: { ...process.env, JOURNAL_STREAM: journalStream(st) },
  });
  closeSync(fd);
  assert.equal(r.status, 0);
  return readFileSync(file, 'utf8').trim().split('\n');
}

test('on the journal: <3> err, <4> warning, <6> info, <7> debug, then the JSON', () => {
  const lines = run((st) => `${st.dev}:${st.ino}`);
  assert.deepEqual(lines.map((l) => l.slice(0, 3)), ['<3>', '<4>', '<6>', '<7>']);
  const rec = JSON.parse(lines[0]!.slice(3)) as Record<string, unknown>;
  assert.equal(rec.event, 'e.v');
  assert.equal(rec.level, 'error');
});

test('a JOURNAL_STREAM naming another stream leaves the lines plain JSON', () => {
  const lines = run((st) => `${st.dev}:${st.ino + 1n}`);
  assert.equal(lines.length, 4);
  for (const l of lines) assert.equal(l[0], '{');
});
