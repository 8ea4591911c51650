// What every latchkeyctl command gets: parsed options, output mode and time style, a way to
// call the daemon, and stdout/stderr writers. Commands return an exit code and never exit.
import type { GlobalOptions } from './args.js';
import type { AdminReply } from './client.js';
import type { OutputMode, TimeStyle } from './format.js';

export const EXIT_OK = 0;
/** not found, check failed, authentication failed */
export const EXIT_FAIL = 1;
export const EXIT_USAGE = 2;
/** daemon not running, not answering, or caller not root */
export const EXIT_UNAVAILABLE = 3;

export interface Ctx {
  global: GlobalOptions;
  mode: OutputMode;
  time: TimeStyle;
  /** sends one admin command; throws DaemonUnavailable or AdminError */
  call(command: Record<string, unknown>): Promise<AdminReply>;
  out(text: string): void;
  err(text: string): void;
  /** stdin, for auth-test */
  stdin: NodeJS.ReadStream;
}

export interface CommandDef {
  /** per-command flags (global ones are handled by main) */
  bool?: readonly string[];
  value?: readonly string[];
  run(ctx: Ctx, positionals: string[], flags: Record<string, string | boolean>): Promise<number>;
}

/** Narrowing helpers for the daemon's JSON: the reply is trusted in shape, but not blindly. */
export function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
export function str(v: unknown): string {
  return typeof v === 'string' ? v : v === null || v === undefined ? '-' : String(v);
}
export function obj(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}
export function arr(v: unknown): Record<string, unknown>[] {
  return Array.isArray(v) ? v.map(obj) : [];
}
