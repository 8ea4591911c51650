// latchkeyctl auth-test NAME: reads a password (no echo on a terminal; first line of stdin
// otherwise) and asks the daemon to verify it the way pam_latchkey would. The password goes
// only into the ADMIN frame on priv.sock; it is never printed or kept.
import { type CommandDef, EXIT_FAIL, EXIT_OK } from './command.js';
import type { AdminReplyData } from '../protocol/admin.js';
import { formatHash, formatMs, renderJson, renderPairs } from './format.js';
import { UsageError, expectPositionals, userArg } from './args.js';

/** Longest password accepted: the ADMIN request must fit MAX_REQUEST (8 KiB) with its JSON. */
export const MAX_PASSWORD_BYTES = 4096;

/** Reads the first line of a non-terminal stream (without its \n or \r\n). */
export function readFirstLine(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = (v: string): void => {
      stream.off('data', onData); stream.off('end', onEnd); stream.off('error', onError);
      stream.pause();
      resolve(v.replace(/\r$/, ''));
    };
    const onData = (d: Buffer | string): void => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(buf.slice(0, nl));
      else if (Buffer.byteLength(buf) > MAX_PASSWORD_BYTES) done(buf);
    };
    const onEnd = (): void => done(buf);
    const onError = (e: Error): void => reject(e);
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.resume();
  });
}

/**
 * All of a stream (a file given as "-": key lines, a credential), or up to one byte past `max`,
 * where it stops reading (the caller then refuses it as too large). Decoded once at the end, so
 * a multi-byte character split across two chunks stays whole.
 */
export function readInput(stream: NodeJS.ReadableStream, max = Number.POSITIVE_INFINITY): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const done = (): void => resolve(Buffer.concat(chunks).toString('utf8'));
    const onData = (d: Buffer | string): void => {
      const b = typeof d === 'string' ? Buffer.from(d) : d;
      chunks.push(b);
      n += b.length;
      if (n > max) {
        stream.off('data', onData);
        stream.off('end', done);
        stream.pause();
        done();
      }
    };
    stream.on('data', onData);
    stream.on('end', done);
    stream.on('error', reject);
  });
}

/** Prompts on stderr and reads a line from a terminal with echo off (raw mode). */
export function readHidden(stdin: NodeJS.ReadStream, prompt: string, write: (s: string) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    write(prompt);
    let value = '';
    stdin.setRawMode(true);
    stdin.setEncoding('utf8');
    const finish = (err: Error | null): void => {
      stdin.setRawMode(false);
      stdin.off('data', onData);
      stdin.pause();
      write('\n');
      if (err) reject(err); else resolve(value);
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return finish(null);
        if (ch === '\u0003') return finish(new UsageError('interrupted'));
        if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('');
        else if (ch === '\u0015') value = '';
        else if (ch >= ' ') value += ch;
      }
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}

const RESULT_TEXT: Record<AdminReplyData<'auth-test'>['result'], string> = {
  ok: 'password accepted',
  wrong_password: 'wrong password',
  no_password: 'the user has no password upstream (key login only)',
  unknown_user: 'no such user upstream',
  throttled: 'too many recent failures: logins are throttled',
  unavailable: 'the user service is unavailable and nothing usable is cached',
};

export const authTest: CommandDef = {
  async run(ctx, pos) {
    expectPositionals('auth-test', pos, 1, 1, 'a user NAME');
    const user = userArg(pos[0]!, 'auth-test');
    if (typeof user === 'number') throw new UsageError('auth-test takes a user NAME, as PAM does', 'auth-test');
    const password = ctx.stdin.isTTY
      ? await readHidden(ctx.stdin, `password for ${user}: `, ctx.err)
      : await readFirstLine(ctx.stdin);
    if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES) throw new UsageError(`password longer than ${MAX_PASSWORD_BYTES} bytes`, 'auth-test');
    const r = await ctx.call({ cmd: 'auth-test', user, password });
    const { ok: _ok, ...json } = r;
    if (ctx.mode === 'json') ctx.out(renderJson(json));
    else if (ctx.mode === 'tsv') ctx.out(`${user}\t${r.result}\t${r.hash ? r.hash.kind : '-'}\t${r.ms}\n`);
    else {
      ctx.out(renderPairs([
        ['user', user],
        ['result', `${r.authenticated ? 'OK' : 'FAILED'}: ${r.reason || RESULT_TEXT[r.result]}`],
        ['hash', formatHash(r.hash)],
        ['source', r.source ?? '-'],
        ['time', formatMs(r.ms)],
      ], 'table'));
    }
    return r.authenticated ? EXIT_OK : EXIT_FAIL;
  },
};
