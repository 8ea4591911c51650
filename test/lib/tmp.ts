// Temporary directories that a test file removes when it ends, so `make test` leaves /tmp as
// it found it.
import { after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
let hooked = false;

export function scratchDir(prefix: string): string {
  if (!hooked) {
    hooked = true;
    after(() => { for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true }); });
  }
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}
