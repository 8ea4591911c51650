// Argument parsing for latchkeyctl: global options anywhere on the line, per-command flags
// declared by each command, positionals kept in order. A mistake is a UsageError (exit 2).

export class UsageError extends Error {
  constructor(message: string, readonly command = '') {
    super(message);
    this.name = 'UsageError';
  }
}

/** Options every command accepts. */
export interface GlobalOptions {
  json: boolean;
  utc: boolean;
  help: boolean;
  socketDir: string | undefined;
  /** how long to wait for the daemon's answer, ms */
  timeoutMs: number;
}

/** A stuck daemon must not hang a script: a few seconds by default, --timeout to change. */
export const DEFAULT_CLI_TIMEOUT_MS = 5000;

/** `5`, `5s`, `500ms`, `2m`: 0.1 s .. 1 h. */
function parseTimeout(v: string | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v ?? '');
  const ms = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000) : NaN;
  if (!(ms >= 100 && ms <= 3_600_000)) throw new UsageError('--timeout needs a duration from 100ms to 1h, e.g. 5, 10s, 500ms');
  return ms;
}

export interface FlagSpec {
  /** flags that take no value, e.g. ['stale', 'negative'] for --stale --negative */
  bool?: readonly string[];
  /** flags that take one value, e.g. ['user'] for --user NAME or --user=NAME */
  value?: readonly string[];
  /** value flags that may be repeated (--key A --key B): their values joined by NUL, which no
   *  argv string can hold; `listFlag` splits them again */
  multi?: readonly string[];
}

/** The values of a repeatable flag (FlagSpec.multi), in the order given. */
export function listFlag(v: string | boolean | undefined): string[] {
  return typeof v === 'string' ? v.split('\0') : [];
}

export interface Parsed {
  global: GlobalOptions;
  command: string;
  positionals: string[];
  flags: Record<string, string | boolean>;
}

const GLOBAL_BOOL: Record<string, keyof GlobalOptions> = { '--json': 'json', '--utc': 'utc', '--help': 'help', '-h': 'help' };

/** Splits argv into the command word and the rest, taking global options from anywhere. */
export function parseGlobal(argv: readonly string[]): { global: GlobalOptions; command: string; rest: string[] } {
  const global: GlobalOptions = { json: false, utc: false, help: false, socketDir: undefined, timeoutMs: DEFAULT_CLI_TIMEOUT_MS };
  const rest: string[] = [];
  let command = '';
  let dashdash = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (dashdash) { if (command) rest.push(a); else command = a; continue; }
    if (a === '--') { dashdash = true; rest.push(a); continue; }
    const g = GLOBAL_BOOL[a];
    if (g) { (global[g] as boolean) = true; continue; }
    if (a === '--socket-dir') {
      const v = argv[++i];
      if (v === undefined || v === '') throw new UsageError('--socket-dir needs a directory');
      global.socketDir = v;
      continue;
    }
    if (a === '--timeout') { global.timeoutMs = parseTimeout(argv[++i]); continue; }
    if (a.startsWith('--timeout=')) { global.timeoutMs = parseTimeout(a.slice('--timeout='.length)); continue; }
    if (a.startsWith('--socket-dir=')) {
      const v = a.slice('--socket-dir='.length);
      if (!v) throw new UsageError('--socket-dir needs a directory');
      global.socketDir = v;
      continue;
    }
    if (!command && !a.startsWith('-')) { command = a; continue; }
    if (!command && a === '--version') { command = 'version'; continue; }
    if (!command) throw new UsageError(`unknown option ${a} before the command`);
    rest.push(a);
  }
  return { global, command, rest };
}

/** Parses one command's arguments against its declared flags. */
export function parseCommand(command: string, rest: readonly string[], spec: FlagSpec): { positionals: string[]; flags: Record<string, string | boolean> } {
  const bool = new Set(spec.bool ?? []);
  const multi = new Set(spec.multi ?? []);
  const value = new Set([...(spec.value ?? []), ...multi]);
  const positionals: string[] = [];
  const flags: Record<string, string | boolean> = {};
  let dashdash = false;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (dashdash || !a.startsWith('-') || a === '-') { positionals.push(a); continue; }
    if (a === '--') { dashdash = true; continue; }
    if (!a.startsWith('--')) throw new UsageError(`unknown option ${a}`, command);
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (bool.has(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`, command);
      flags[name] = true;
    } else if (value.has(name)) {
      const v = eq >= 0 ? a.slice(eq + 1) : rest[++i];
      if (v === undefined || v === '') throw new UsageError(`--${name} needs a value`, command);
      flags[name] = multi.has(name) && typeof flags[name] === 'string' ? `${flags[name]}\0${v}` : v;
    } else {
      throw new UsageError(`unknown option --${name}`, command);
    }
  }
  return { positionals, flags };
}

/** A user given as NAME or numeric local UID, as the daemon's admin commands take it. */
export function userArg(s: string, command: string): string | number {
  if (/^[0-9]+$/.test(s)) {
    const n = Number(s);
    if (!Number.isSafeInteger(n) || n > 0xffffffff) throw new UsageError(`uid ${s} is out of range`, command);
    return n;
  }
  if (s.length === 0 || s.length > 256 || /[\u0000-\u001f:/]/.test(s)) throw new UsageError(`"${s}" is not a user name or uid`, command);
  return s;
}

export function expectPositionals(command: string, got: readonly string[], min: number, max: number, what: string): void {
  if (got.length < min) throw new UsageError(`${command} needs ${what}`, command);
  if (got.length > max) throw new UsageError(`${command}: unexpected argument ${got[max]}`, command);
}
