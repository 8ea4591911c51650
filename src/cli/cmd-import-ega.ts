// latchkeyctl import-ega [FILE] [--output DIR]: a LocalEGA auth.conf becomes DIR/latchkey.conf
// and DIR/secrets (0600, the credentials), with the list of what was not carried over and what
// latchkeyd does differently (src/config/import-ega.ts). Offline: no daemon needed. Existing
// files are never overwritten (an admin's config, or an earlier import, stays as it is).
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { convertEgaAuth } from '../config/import-ega.js';
import { ConfigError } from '../errors.js';
import { type CommandDef, EXIT_FAIL, EXIT_OK } from './command.js';
import { renderJson } from './format.js';
import { UsageError, expectPositionals } from './args.js';

export const DEFAULT_EGA_FILE = '/etc/ega/auth.conf';
export const DEFAULT_IMPORT_DIR = '/etc/latchkey';

/** Creates `file` with `mode`, failing if it exists (O_EXCL, no symlink followed at the last step). */
function create(file: string, text: string, mode: number): void {
  const fd = openSync(file, 'wx', mode);
  try { writeSync(fd, text); } finally { closeSync(fd); }
}

export const importEga: CommandDef = {
  value: ['output'],
  async run(ctx, pos, flags) {
    expectPositionals('import-ega', pos, 0, 1, 'at most one FILE');
    const from = resolve(pos[0] ?? DEFAULT_EGA_FILE);
    const dir = resolve(typeof flags.output === 'string' ? flags.output : DEFAULT_IMPORT_DIR);
    const configFile = join(dir, 'latchkey.conf');
    const secretsFile = join(dir, 'secrets');
    let text: string;
    try { text = readFileSync(from, 'utf8'); } catch (e) {
      throw new UsageError(`cannot read ${from}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, 'import-ega');
    }
    let conv;
    try { conv = convertEgaAuth(text, from, secretsFile); } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      if (ctx.mode === 'json') ctx.out(renderJson({ ok: false, code: 'invalid', error: e.message, file: from }));
      ctx.err(`latchkeyctl: ${e.message}\n`);
      return EXIT_FAIL;
    }
    const written: string[] = [];
    try {
      // As the package installs it: root's, and no one else's to read (the daemon's group is
      // given by chgrp, as the report says); the file may name endpoints with tokens in them.
      create(configFile, conv.config, 0o600);
      written.push(configFile);
      if (conv.secrets !== null) { create(secretsFile, conv.secrets, 0o600); written.push(secretsFile); }
    } catch (e) {
      // All or nothing: a config naming a secrets file that was not written would not start.
      for (const f of written) unlinkSync(f);
      const err = e as NodeJS.ErrnoException;
      const why = err.code === 'EEXIST' ? `${err.path ?? configFile} exists; move it away or choose another --output DIR` : `cannot write in ${dir}: ${err.code ?? err.message}`;
      if (ctx.mode === 'json') ctx.out(renderJson({ ok: false, code: 'unwritable', error: why, file: from }));
      ctx.err(`latchkeyctl: ${why}\n`);
      return EXIT_FAIL;
    }
    const ok = conv.problems.length === 0;
    if (ctx.mode === 'json') {
      ctx.out(renderJson({
        ok, ...(ok ? {} : { code: 'needs_edits', error: `${conv.problems.length} setting(s) to fix before latchkeyd starts` }),
        file: from, config_file: configFile, secrets_file: conv.secrets !== null ? secretsFile : null,
        not_carried_over: conv.dropped, changes: conv.changes, to_fix: conv.problems,
      }));
      return ok ? EXIT_OK : EXIT_FAIL;
    }
    const lines = [`wrote ${written.join(' and ')}${conv.secrets !== null ? ' (0600: the credentials)' : ''}`];
    lines.push('', conv.dropped.length === 0 ? 'every line was carried over' : 'not carried over:');
    for (const d of conv.dropped) lines.push(`  ${from}:${d.line}: ${d.key}: ${d.reason}`);
    lines.push('', 'what latchkeyd does differently from LocalEGA:');
    for (const c of conv.changes) lines.push(`  - ${c}`);
    if (!ok) {
      lines.push('', `to fix in ${configFile} before latchkeyd starts:`);
      for (const p of conv.problems) lines.push(`  ${p}`);
    }
    lines.push('', `then: latchkeyctl check-config ${configFile}`);
    // The report goes to stdout as a whole (it is what the command is for), also when piped.
    ctx.out(lines.join('\n') + '\n');
    return ok ? EXIT_OK : EXIT_FAIL;
  },
};
