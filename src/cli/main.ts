// latchkeyctl entry point: parses the command line, runs one command, maps every failure to
// its exit code (0 ok, 1 not found / check failed, 2 usage, 3 daemon unavailable, 4 not managed
// by latchkey) and prints errors on stderr; with --json also one {"ok": false, "error", "code"}
// object on stdout, so a script reading stdout never gets nothing. The process is left to exit
// on its own so piped output is never cut short.
import { parseGlobal, parseCommand, UsageError } from './args.js';
import { adminCall, AdminError, DaemonUnavailable, resolveSocketDir } from './client.js';
import { type CommandDef, type Ctx, EXIT_FAIL, EXIT_NOT_MANAGED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE } from './command.js';
import { chooseMode, renderJson } from './format.js';
import { MAIN_HELP, helpFor } from './help.js';
import { status, stats } from './cmd-status.js';
import { users, show, lookup, invalidate, flush, describeLookupFailure } from './cmd-users.js';
import { sessions } from './cmd-sessions.js';
import { throttle } from './cmd-throttle.js';
import { authTest } from './cmd-auth.js';
import { checkConfig } from './cmd-config.js';
import { local } from './cmd-local.js';
import { purge } from './cmd-purge.js';
import { reload } from './cmd-reload.js';
import { importEga } from './cmd-import-ega.js';
import { why } from './cmd-why.js';
import { DAEMON_VERSION } from '../protocol/generated.js';

const COMMANDS: Record<string, CommandDef> = {
  status, users, show, lookup, invalidate, flush, sessions, stats,
  'check-config': checkConfig, 'import-ega': importEga, 'auth-test': authTest, throttle, local, reload, purge, why,
};

/** Daemon error codes (src/protocol/admin.ts) → exit codes; a name the host keeps is 4. */
function exitForAdminError(e: AdminError): number {
  if (e.reply && 'not_managed' in e.reply && e.reply.not_managed) return EXIT_NOT_MANAGED;
  return e.code === 'bad_request' ? EXIT_USAGE : EXIT_FAIL;
}

/**
 * The --json form of a failure: {"ok": false, "error", "code", ...}. code: usage (exit 2),
 * daemon_unavailable with reason (exit 3: not_root, no_socket, refused, denied, timeout,
 * protocol), the daemon's own code for a refused command (src/protocol/admin.ts ADMIN_ERROR_CODES,
 * with that command's extra fields), internal for anything else.
 */
export function jsonFailure(e: unknown, message: string): Record<string, unknown> {
  if (e instanceof UsageError) return { ok: false, error: message, code: 'usage' };
  if (e instanceof DaemonUnavailable) return { ok: false, error: message, code: 'daemon_unavailable', reason: e.reason };
  if (e instanceof AdminError) {
    const { ok: _ok, error: _error, code: _code, ...extra } = (e.reply ?? {}) as Record<string, unknown>;
    return { ok: false, error: message, code: e.code, ...extra };
  }
  return { ok: false, error: message, code: 'internal' };
}

/** --json before any `--`, for failures that come before (or during) the parse. */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json');
}

export interface IO {
  out(text: string): void;
  err(text: string): void;
  stdin: NodeJS.ReadStream;
  stdoutIsTTY: boolean;
  env: NodeJS.ProcessEnv;
}

const processIO = (): IO => ({
  out: (t) => { process.stdout.write(t); },
  err: (t) => { process.stderr.write(t); },
  stdin: process.stdin,
  stdoutIsTTY: process.stdout.isTTY === true,
  env: process.env,
});

/** Runs latchkeyctl with these arguments and returns the exit code. */
export async function run(argv: readonly string[], io: IO = processIO()): Promise<number> {
  let command = '';
  try {
    const g = parseGlobal(argv);
    command = g.command;
    if (command === 'version') { io.out(`latchkeyctl ${DAEMON_VERSION}\n`); return EXIT_OK; }
    if (command === 'help') {
      const topic = g.rest.find((a) => !a.startsWith('-'));
      const text = topic ? helpFor(topic) : MAIN_HELP;
      if (!text) throw new UsageError(`no such command: ${topic}`);
      io.out(text);
      return EXIT_OK;
    }
    if (!command) {
      if (g.global.help) { io.out(MAIN_HELP); return EXIT_OK; }
      io.err(`latchkeyctl: a command is needed\n\n${MAIN_HELP}`);
      if (g.global.json) io.out(renderJson(jsonFailure(new UsageError('a command is needed'), 'a command is needed')));
      return EXIT_USAGE;
    }
    const def = COMMANDS[command];
    if (!def) throw new UsageError(`unknown command "${command}"; commands: ${Object.keys(COMMANDS).join(', ')}`);
    if (g.global.help) { io.out(helpFor(command)!); return EXIT_OK; }
    const { positionals, flags } = parseCommand(command, g.rest, { bool: def.bool ?? [], value: def.value ?? [], multi: def.multi ?? [] });
    const socketDir = resolveSocketDir(g.global.socketDir, io.env);
    const ctx: Ctx = {
      global: g.global,
      mode: chooseMode(g.global.json, io.stdoutIsTTY),
      time: { now: Date.now(), utc: g.global.utc },
      call: (c) => adminCall({ socketDir, timeoutMs: g.global.timeoutMs }, c),
      out: io.out,
      err: io.err,
      stdin: io.stdin,
    };
    return await def.run(ctx, positionals, flags);
  } catch (e) {
    const fail = (message: string, code: number): number => {
      io.err(`latchkeyctl: ${message}\n`);
      if (wantsJson(argv)) io.out(renderJson(jsonFailure(e, message)));
      return code;
    };
    if (e instanceof UsageError) {
      const cmd = e.command || command;
      const hint = cmd && COMMANDS[cmd] ? `latchkeyctl ${cmd} --help` : 'latchkeyctl --help';
      io.err(`latchkeyctl: ${e.message}\nTry '${hint}'.\n`);
      if (wantsJson(argv)) io.out(renderJson(jsonFailure(e, e.message)));
      return EXIT_USAGE;
    }
    if (e instanceof DaemonUnavailable) return fail(e.message, EXIT_UNAVAILABLE);
    if (e instanceof AdminError) return fail(e.isFor('lookup') ? describeLookupFailure(e) : e.message, exitForAdminError(e));
    return fail(`unexpected error: ${e instanceof Error ? e.message : String(e)}`, EXIT_FAIL);
  }
}

export async function main(argv: string[]): Promise<void> {
  // Like latchkeyd: never resolve users through our own NSS module from inside a tool that
  // talks to the daemon (a down daemon must not make us hang on getpw* calls).
  process.env.LATCHKEY_NSS_DISABLE = '1';
  // `latchkeyctl users | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0); });
  process.exitCode = await run(argv);
}
