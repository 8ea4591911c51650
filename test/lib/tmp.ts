// Temporary directories that a test file removes when it ends, so `make test` leaves /tmp as
// it found it. The hook is registered when a test file imports this module (top level), so it
// belongs to the file, not to whichever test happened to make the first directory.
import { after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
after(() => { for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true }); });

export function scratchDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}
