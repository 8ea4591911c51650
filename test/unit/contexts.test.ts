// Hash contexts (src/localusers/contexts.ts): every algorithm makes a hash that verifies under the
// [pam] ceilings, a yescrypt cost means what libxcrypt's own crypt_gensalt makes of it (compared
// against the real library, and its memory measured on the addon), and the ceilings refuse a
// context whose hashes could never log in, at config load already.
import { scratchDir } from '../lib/tmp.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HashContext } from '../../src/config/types.js';
import { defaultConfig, parseConfig } from '../../src/config/load.js';
import { contextProblem, contextSetting, newHash, UnhashablePassword } from '../../src/localusers/contexts.js';
import { encodeYescryptSalt, parseHash, yescryptGensalt } from '../../src/verify/hash.js';
import { verifyPassword } from '../../src/verify/password.js';
import { addonPath } from '../../src/native/addon.js';

const { maxBcryptCost, maxShaRounds, maxYescryptMemory } = defaultConfig().pam;
const CEILINGS = { maxBcryptCost, maxShaRounds, maxYescryptMemory };

const CONTEXTS: HashContext[] = [
  { id: 'b5', algorithm: 'bcrypt', cost: 5 },
  { id: 'y1', algorithm: 'yescrypt', cost: 1 },
  { id: 'y5', algorithm: 'yescrypt', cost: 5 },
  { id: 's6', algorithm: 'sha512crypt', cost: 5000 },
  { id: 's5', algorithm: 'sha256crypt', cost: 12345 },
];

for (const ctx of CONTEXTS) {
  test(`newHash ${ctx.algorithm}:${ctx.cost} makes a hash of that setting that verifies, with a fresh salt`, async () => {
    assert.equal(contextProblem(ctx, CEILINGS), null);
    const pw = 'correct horse ünï';
    const a = await newHash(pw, ctx);
    const b = await newHash(pw, ctx);
    assert.notEqual(a, b, 'two hashes of one password differ (salt)');
    for (const h of [a, b]) {
      assert.equal(parseHash(h).kind, ctx.algorithm);
      assert.equal(parseHash(h).setting, contextSetting(ctx).setting);
      assert.equal(await verifyPassword(pw, h, CEILINGS), true);
      assert.equal(await verifyPassword(pw + 'x', h, CEILINGS), false);
    }
  });
}

test('newHash refuses a password no login would accept (NUL, over 256 bytes)', async () => {
  const ctx = CONTEXTS[0]!;
  await assert.rejects(newHash('abc\0def', ctx), UnhashablePassword);
  await assert.rejects(newHash('é'.repeat(129), ctx), UnhashablePassword);
  assert.ok(await newHash('x'.repeat(256), ctx));
});

/** libxcrypt's crypt_gensalt("$y$", count) for every count, from a C program linked against it. */
function libxcryptSettings(): Map<number, string | null> {
  const dir = scratchDir('lk-gensalt-');
  writeFileSync(join(dir, 'g.c'), [
    '#include <crypt.h>', '#include <stdio.h>',
    'int main(void) {',
    '  for (unsigned long c = 0; c <= 12; c++) {',
    '    char out[CRYPT_GENSALT_OUTPUT_SIZE];',
    '    const char *s = crypt_gensalt_rn("$y$", c, NULL, 0, out, sizeof out);',
    '    printf("%lu %s\\n", c, s && s[0] != \'*\' ? s : "-");',
    '  }',
    '  return 0;',
    '}',
  ].join('\n'));
  execFileSync('cc', ['-o', join(dir, 'g'), join(dir, 'g.c'), '-lcrypt']);
  const out = execFileSync(join(dir, 'g'), { encoding: 'utf8' });
  return new Map(out.trim().split('\n').map((l) => {
    const [c, s] = l.split(' ');
    return [Number(c), s === '-' ? null : s!];
  }));
}

test('yescrypt costs 0 .. 11 give exactly the parameters libxcrypt\'s crypt_gensalt writes; 12 is refused by both', () => {
  const real = libxcryptSettings();
  for (let count = 0; count <= 11; count++) {
    const made = real.get(count);
    assert.ok(made, `crypt_gensalt made a setting for ${count}`);
    // "$y$j9T$SALT": the parameter field is everything before the salt.
    const prefix = made.slice(0, made.lastIndexOf('$') + 1);
    const ours = yescryptGensalt(count);
    assert.equal(ours.setting, prefix, `count ${count}`);
    const parsed = parseHash(`${made}$${'A'.repeat(43)}`);
    assert.equal(parsed.kind, 'yescrypt');
    assert.equal(parsed.kind === 'yescrypt' && parsed.memory, ours.memory, `count ${count}: memory`);
    if (count > 0) assert.equal(contextSetting({ id: 'y', algorithm: 'yescrypt', cost: count }).setting, prefix);
  }
  assert.equal(real.get(12), null);
  assert.throws(() => yescryptGensalt(12), RangeError);
  assert.equal(yescryptGensalt(5).memory, 16 * 2 ** 20);
  assert.equal(yescryptGensalt(11).memory, 2 ** 30);
});

test('the memory a yescrypt context claims is what the addon\'s crypt uses (peak RSS of a child)', () => {
  // Cost 7: 64 MiB by the mapping, the default [pam] max_yescrypt_memory. A child process, so the
  // peak RSS is of this one hash and not of whatever this test file did before.
  const { setting, memory } = yescryptGensalt(7);
  const script = `
    const addon = require(${JSON.stringify(addonPath())});
    const before = process.resourceUsage().maxRSS;
    addon.crypt('pw', ${JSON.stringify(setting + encodeYescryptSalt(randomBytes(16)))}).then((h) => {
      const after = process.resourceUsage().maxRSS;
      process.stdout.write(JSON.stringify({ ok: typeof h === 'string' && h.startsWith(${JSON.stringify(setting)}), kib: after - before }));
    });`;
  const r = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as { ok: boolean; kib: number };
  assert.ok(r.ok, 'the addon made a hash of the setting');
  const used = r.kib * 1024;
  assert.ok(used >= memory * 0.9 && used <= memory * 1.3, `crypt used ${used} bytes, the mapping says ${memory}`);
});

test('contextProblem: a context above a [pam] ceiling is refused, naming the key', () => {
  const over = (ctx: HashContext) => contextProblem(ctx, CEILINGS);
  assert.equal(over({ id: 'b', algorithm: 'bcrypt', cost: 14 })?.key, 'max_bcrypt_cost');
  assert.equal(over({ id: 'b', algorithm: 'bcrypt', cost: 13 }), null);
  assert.equal(over({ id: 's', algorithm: 'sha512crypt', cost: 1_000_001 })?.key, 'max_sha_rounds');
  assert.equal(over({ id: 'y', algorithm: 'yescrypt', cost: 7 }), null);
  const y8 = over({ id: 'y', algorithm: 'yescrypt', cost: 8 });
  assert.equal(y8?.key, 'max_yescrypt_memory');
  assert.equal(y8?.value, 128 * 2 ** 20);
  assert.equal(contextProblem({ id: 'y', algorithm: 'yescrypt', cost: 8 }, { ...CEILINGS, maxYescryptMemory: 128 * 2 ** 20 }), null);
});

test('config load refuses a yescrypt context whose memory is above [pam] max_yescrypt_memory', () => {
  const base = '[upstream]\nby_name_url = https://u.example/users/\nby_uid_url = https://u.example/uids/\n';
  assert.throws(() => parseConfig(`${base}[local]\ncontexts = y5=yescrypt:5, y9=yescrypt:9\ndefault_context = y5\n`, 'x.conf'),
    (e: Error) => /y9/.test(e.message) && /max_yescrypt_memory/.test(e.message) && /256 MiB/.test(e.message));
  const ok = parseConfig(`${base}[pam]\nmax_yescrypt_memory = 256M\n[local]\ncontexts = y5=yescrypt:5, y9=yescrypt:9\ndefault_context = y9\n`, 'x.conf');
  assert.equal(ok.local.defaultContext, 'y9');
  assert.doesNotThrow(() => parseConfig(`${base}[local]\ncontexts = y7=yescrypt:7\ndefault_context = y7\n`, 'x.conf'));
});
