// latchkeyctl entry point: parses the command line, runs one command, maps every failure to
// its exit code (0 ok, 1 not found / check failed, 2 usage, 3 daemon unavailable) and prints
// errors on stderr. The process is left to exit on its own so piped output is never cut short.
import { parseGlobal, parseCommand, UsageError } from './args.js';
import { adminCall, AdminError, DaemonUnavailable, resolveSocketDir } from './client.js';
import { type CommandDef, type Ctx, EXIT_FAIL, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE } from './command.js';
import { chooseMode } from './format.js';
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
import { DAEMON_VERSION } from '../protocol/generated.js';

const COMMANDS: Record<string, CommandDef> = {
  status, users, show, lookup, invalidate, flush, sessions, stats,
  'check-config': checkConfig, 'auth-test': authTest, throttle, local, reload, purge,
};

/** Daemon error codes (src/protocol/admin.ts) → exit codes. */
function exitForAdminCode(code: string): number {
  return code === 'bad_request' ? EXIT_USAGE : EXIT_FAIL;
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
    if (e instanceof UsageError) {
      const cmd = e.command || command;
      const hint = cmd && COMMANDS[cmd] ? `latchkeyctl ${cmd} --help` : 'latchkeyctl --help';
      io.err(`latchkeyctl: ${e.message}\nTry '${hint}'.\n`);
      return EXIT_USAGE;
    }
    if (e instanceof DaemonUnavailable) {
      io.err(`latchkeyctl: ${e.message}\n`);
      return EXIT_UNAVAILABLE;
    }
    if (e instanceof AdminError) {
      io.err(`latchkeyctl: ${e.isFor('lookup') ? describeLookupFailure(e) : e.message}\n`);
      return exitForAdminCode(e.code);
    }
    io.err(`latchkeyctl: unexpected error: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT_FAIL;
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
