// The Debian package's nsswitch.conf edits (scripts/deb/postinst add_nss_entry, postrm
// remove_nss_entry), run by /bin/sh on sample files: latchkey goes last on the passwd and group
// lines and comes out again, leaving every other byte as it was (comments, CRLF, odd spacing),
// and a line that already names latchkey (outside a comment) is left alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../lib/paths.js';
import { scratchDir } from '../lib/tmp.js';

function fn(script: string, name: string): string {
  const text = readFileSync(join(ROOT, 'scripts/deb', script), 'utf8');
  const m = new RegExp(`^${name}\\(\\) \\{\\n[\\s\\S]*?^\\}\\n`, 'm').exec(text);
  assert.ok(m, `${name} in ${script}`);
  return m[0];
}

function run(file: string, call: 'add_nss_entry' | 'remove_nss_entry'): void {
  const dir = scratchDir('lk-nss-');
  const script = `set -e\nMARKERS=${dir}/markers\n${fn(call === 'add_nss_entry' ? 'postinst' : 'postrm', call)}\n${call}\n`;
  const r = spawnSync('/bin/sh', ['-c', script], { env: { ...process.env, NSSWITCH: file }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

const CASES: Array<[string, string, string]> = [
  ['Debian 12 default', 'passwd:         files systemd\ngroup:          files systemd\nshadow:         files\n',
    'passwd:         files systemd latchkey\ngroup:          files systemd latchkey\nshadow:         files\n'],
  ['no blank after the colon', 'passwd:files\ngroup:files\n', 'passwd:files latchkey\ngroup:files latchkey\n'],
  ['a comment naming latchkey', 'passwd: files # latchkey off, ticket 12\ngroup: files\n',
    'passwd: files latchkey # latchkey off, ticket 12\ngroup: files latchkey\n'],
  ['CRLF', 'passwd: files\r\ngroup: files\r\n', 'passwd: files latchkey\r\ngroup: files latchkey\r\n'],
  ['already there', 'passwd: files latchkey systemd\ngroup: files\n', 'passwd: files latchkey systemd\ngroup: files latchkey\n'],
];

for (const [what, before, after] of CASES) {
  test(`nsswitch.conf: ${what}`, () => {
    const file = join(scratchDir('lk-nss-'), 'nsswitch.conf');
    writeFileSync(file, before);
    run(file, 'add_nss_entry');
    assert.equal(readFileSync(file, 'utf8'), after);
    run(file, 'add_nss_entry');
    assert.equal(readFileSync(file, 'utf8'), after, 'a second configure changes nothing');
    if (what === 'already there') return; // purge removes only what the package added (markers)
    run(file, 'remove_nss_entry');
    assert.equal(readFileSync(file, 'utf8'), before, 'purge gives back the file byte for byte');
  });
}
