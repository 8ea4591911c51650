// What every latchkeyctl command gets: parsed options, output mode and time style, a way to
// call the daemon, and stdout/stderr writers. Commands return an exit code and never exit.
import type { GlobalOptions } from './args.js';
import type { AdminCommand, AdminOkReply, AdminRequest } from '../protocol/admin.js';
import type { OutputMode, TimeStyle } from './format.js';

export const EXIT_OK = 0;
/** not found, check failed, authentication failed */
export const EXIT_FAIL = 1;
export const EXIT_USAGE = 2;
/** daemon not running, not answering, or caller not root */
export const EXIT_UNAVAILABLE = 3;
/** lookup, show, why: the name or uid is the host's (an account in /etc/passwd, a group's name or
 *  member, the deny list) or refused by a rule: latchkey never answers for it */
export const EXIT_NOT_MANAGED = 4;

export interface Ctx {
  global: GlobalOptions;
  mode: OutputMode;
  time: TimeStyle;
  /** sends one admin command, returns its checked reply; throws DaemonUnavailable or AdminError */
  call<C extends AdminCommand>(command: AdminRequest<C>): Promise<AdminOkReply<C>>;
  out(text: string): void;
  err(text: string): void;
  /** stdin, for auth-test */
  stdin: NodeJS.ReadStream;
}

export interface CommandDef {
  /** per-command flags (global ones are handled by main) */
  bool?: readonly string[];
  value?: readonly string[];
  /** value flags that may be repeated (args.ts listFlag reads them) */
  multi?: readonly string[];
  run(ctx: Ctx, positionals: string[], flags: Record<string, string | boolean>): Promise<number>;
}

/** A value as a cell: "-" for null or absent (replies are checked, so nothing else is odd). */
export function str(v: string | number | boolean | null | undefined): string {
  return v === null || v === undefined ? '-' : String(v);
}

/** Helpers for the shape-agnostic counter walk of `stats` (cmd-status.ts), which reads JSON it does not name. */
export function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
export function obj(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}
