// latchkeyctl reload [--credential FILE | --credential-stdin]: SIGHUP with an answer. The unit's
// ExecReload runs it, so `systemctl reload latchkeyd` fails when the new config was refused.
// --credential decrypts a systemd credential (systemd-creds decrypt, as root) and hands its text
// to the daemon: Debian 12's systemd copies LoadCredentialEncrypted= credentials only at start, so
// this is how a rotated credential reaches a running daemon without a restart.
import { execFile } from 'node:child_process';
import { type CommandDef, EXIT_OK } from './command.js';
import { formatTime, renderJson } from './format.js';
import { UsageError, expectPositionals } from './args.js';
import { readInput } from './cmd-auth.js';

/** The admin protocol's bound on the credential text (src/protocol/admin.ts reload). */
const MAX_CREDENTIAL = 6144;

function decrypt(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('systemd-creds', ['decrypt', '--name=latchkey.secrets', file, '-'], { maxBuffer: MAX_CREDENTIAL, timeout: 30_000, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) reject(new UsageError(`systemd-creds could not decrypt ${file}: ${(stderr || err.message).trim()}`, 'reload'));
        else resolve(stdout);
      });
  });
}

export const reload: CommandDef = {
  value: ['credential'],
  bool: ['credential-stdin'],
  async run(ctx, pos, flags) {
    expectPositionals('reload', pos, 0, 0, 'no arguments');
    const file = typeof flags.credential === 'string' ? flags.credential : undefined;
    if (file !== undefined && flags['credential-stdin'] === true) throw new UsageError('give --credential FILE or --credential-stdin, not both', 'reload');
    let credential: string | undefined;
    if (file !== undefined) credential = await decrypt(file);
    else if (flags['credential-stdin'] === true) credential = await readInput(ctx.stdin, MAX_CREDENTIAL);
    if (credential !== undefined && Buffer.byteLength(credential) > MAX_CREDENTIAL) {
      throw new UsageError(`the credential is larger than ${MAX_CREDENTIAL} bytes; it holds only secrets_file lines`, 'reload');
    }
    const r = await ctx.call(credential !== undefined ? { cmd: 'reload', credential } : { cmd: 'reload' });
    const { ok: _ok, ...json } = r;
    if (ctx.mode === 'json') ctx.out(renderJson(json));
    else if (ctx.mode === 'tsv') ctx.out(`${r.file}\t${r.credential}\n`);
    else ctx.out(`reloaded ${r.file} ${formatTime(r.reloaded_at, ctx.time)}${r.credential === 'pushed' ? ' with the credential given' : ''}\n`);
    return EXIT_OK;
  },
};
