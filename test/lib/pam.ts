// Helpers for tests that drive the real PAM stack: a private /etc/pam.d holding our service
// files (bind-mounted over /etc/pam.d inside `unshare -m`, never touching the host's), pamtester
// run asynchronously (so an in-process fake daemon can answer), and a scripted daemon (priv.sock
// for the module, nss.sock for the NSS lookups the module and the keys helper make).
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, writeFileSync, rmSync, mkdirSync, chmodSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './harness.js';
import { serveConnection } from '../../src/server/connection.js';
import type { HandlerTable } from '../../src/server/dispatch.js';

export const PAM_MODULE = join(ROOT, 'pam/pam_latchkey.so');

/** Messages pamtester prints (pam_strerror) for the codes the module returns. */
export const PamMsg = {
  AUTH_ERR: 'Authentication failure',
  USER_UNKNOWN: 'User not known to the underlying authentication module',
  AUTHINFO_UNAVAIL: 'Authentication service cannot retrieve authentication info',
  MAXTRIES: 'Have exhausted maximum number of retries for service',
  ACCT_EXPIRED: 'User account has expired',
  PERM_DENIED: 'Permission denied',
  SESSION_ERR: 'Cannot make/remove an entry for the specified session',
  AUTHTOK_ERR: 'Authentication token manipulation error',
} as const;

/** What pam_latchkey tells a latchkey user who tries to change the password. */
export const PASSWORD_CHANGE_MSG = 'Passwords are changed in the user service, not on this host.';

/**
 * The LocalEGA stack, with the module by absolute path; `args` go to every pam_latchkey line.
 * PAM_IGNORE alone makes a stack fail (libpam); the deployment file falls through to the
 * common-* files, here pam_permit stands in for them (account, password, session).
 */
export function latchkeyStack(args = '', opts: { accountFallthrough?: boolean } = {}): string {
  const m = `${PAM_MODULE}${args ? ' ' + args : ''}`;
  const fallthrough = opts.accountFallthrough !== false;
  return [
    `auth     requisite  ${m}`,
    `account  requisite  ${m}`,
    ...(fallthrough ? ['account  required   pam_permit.so'] : []),
    `password requisite  ${m}`,
    'password required   pam_permit.so',
    `session  requisite  ${m}`,
    ...(fallthrough ? ['session  required   pam_permit.so'] : []),
    '',
  ].join('\n');
}

/** A copy of the host's /etc/pam.d plus our service files; returns its path. */
export function makePamDir(parent: string, services: Record<string, string>): string {
  const dir = join(parent, 'pam.d');
  mkdirSync(dir, { recursive: true });
  cpSync('/etc/pam.d', dir, { recursive: true, dereference: true });
  for (const [name, text] of Object.entries(services)) writeFileSync(join(dir, name), text);
  return dir;
}

export interface NsResult { code: number | null; stdout: string; stderr: string; ms: number }

/**
 * Runs `script` with sh in a private mount namespace where /etc/pam.d is `pamDir` and
 * /etc/nsswitch.conf says `passwd: files latchkey`. Asynchronous: the event loop keeps serving.
 */
export function runPamNs(script: string, env: Record<string, string>, pamDir: string, opts: { input?: string; timeoutMs?: number; extraMounts?: string } = {}): Promise<NsResult> {
  const tmp = mkdtempSync(join(tmpdir(), 'latchkey-pamns-'));
  const ns = join(tmp, 'nsswitch.conf');
  writeFileSync(ns, 'passwd: files latchkey\ngroup: files latchkey\nshadow: files\nhosts: files\n');
  const wrapped = `set -e\nmount --make-rprivate /\nmount --bind ${ns} /etc/nsswitch.conf\nmount --bind ${pamDir} /etc/pam.d\n${opts.extraMounts ?? ''}\nset +e\n${script}\n`;
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', wrapped], {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 30000);
    p.stdin.on('error', () => { /* pamtester may exit before reading */ });
    p.stdin.end(opts.input ?? '');
    p.on('close', (code) => {
      clearTimeout(timer);
      rmSync(tmp, { recursive: true, force: true });
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/** `passwd`: a file bind-mounted over /etc/passwd inside the namespace (what NSS `files` reads). */
export interface PamtesterOpts { items?: Record<string, string>; pamEnv?: Record<string, string>; input?: string; passwd?: string }

/** `pamtester -v SERVICE USER OPS…` inside the namespace; the password (if any) on stdin. */
export function pamtester(pamDir: string, env: Record<string, string>, service: string, user: string, ops: string[], o: PamtesterOpts = {}): Promise<NsResult> {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const args = [
    ...Object.entries(o.items ?? {}).map(([k, v]) => `-I ${q(`${k}=${v}`)}`),
    ...Object.entries(o.pamEnv ?? {}).map(([k, v]) => `-E ${q(`${k}=${v}`)}`),
    '-v', q(service), q(user), ...ops.map(q),
  ];
  const extraMounts = o.passwd ? `mount --bind ${q(o.passwd)} /etc/passwd` : '';
  return runPamNs(`exec pamtester ${args.join(' ')} 2>&1`, env, pamDir, { input: o.input ?? '', extraMounts });
}

/** A recorded request: which socket, which opcode, the decoded fields. */
export interface FakeRequest { op: string; fields: Record<string, unknown> }

/**
 * A scripted daemon: priv.sock answers `handlers`, nss.sock answers `nssHandlers` (what the
 * NSS module asks when pam_latchkey or the keys helper resolve a name), with the real framing
 * and dispatch. `requests` records priv.sock, `nssRequests` nss.sock. Both sockets are served
 * by this (root) process, so the shims' peer check accepts them.
 */
export interface FakePriv { dir: string; requests: FakeRequest[]; nssRequests: FakeRequest[]; close(): Promise<void> }

export async function startFakePriv(parent: string, handlers: HandlerTable, nssHandlers: HandlerTable = {}): Promise<FakePriv> {
  const dir = join(parent, 'fake-run');
  mkdirSync(dir, { recursive: true });
  const requests: FakeRequest[] = [];
  const nssRequests: FakeRequest[] = [];
  const record = (table: HandlerTable, into: FakeRequest[]): HandlerTable => {
    const out: HandlerTable = {};
    for (const [op, h] of Object.entries(table)) {
      out[op as keyof HandlerTable] = (fields, peer) => {
        into.push({ op, fields: { ...fields } });
        return h!(fields, peer);
      };
    }
    return out;
  };
  const servers: Server[] = [];
  for (const [name, socket, table] of [['priv.sock', 'priv', record(handlers, requests)], ['nss.sock', 'nss', record(nssHandlers, nssRequests)]] as const) {
    const srv: Server = createServer((s) => serveConnection(s, { socket, uid: 0, pid: 0 }, { idleTimeoutMs: 5000, handlers: () => table }));
    await new Promise<void>((r) => srv.listen(join(dir, name), r));
    servers.push(srv);
  }
  chmodSync(join(dir, 'nss.sock'), 0o666);
  return {
    dir, requests, nssRequests,
    close: () => Promise.all(servers.map((srv) => new Promise<void>((r) => srv.close(() => r())))).then(() => undefined),
  };
}
