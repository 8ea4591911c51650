// latchkey-sync: run by latchkey-sync.service (a oneshot on latchkey-sync.timer) as the daemon's
// account on a secondary. It fetches the primary's published snapshot with rsync over ssh into
// <dir of [local] db_path>/incoming/local.db and records the result in incoming/sync-status.json;
// latchkeyd's SnapshotFollower (snapshot.ts) checks the file and swaps it in. This program never
// touches the store itself, so a hostile or broken primary can at worst fill incoming/ with one
// file the daemon refuses.
//
// rsync writes the new file under a temporary name in the same directory and renames it over
// the old one when complete (rsync(1), "--temp-dir" and "--inplace" describe the default), so
// the follower never sees a partial file; --inplace and --partial are never passed.
import { spawn } from 'node:child_process';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync, constants } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseConfig } from '../config/load.js';
import type { LocalConfig } from '../config/types.js';
import { MAX_SNAPSHOT_BYTES } from './store.js';

/** The files beside the store that sync uses (issue 16 layout). */
export interface SyncPaths {
  /** the directory of [local] db_path */
  dir: string;
  /** primary: what it publishes, and what the sync account's rrsync serves */
  snapshotDir: string;
  snapshotFile: string;
  snapshotTmp: string;
  /** secondary: where latchkey-sync drops the primary's snapshot */
  incomingDir: string;
  incomingFile: string;
  statusFile: string;
}

export function syncPaths(dbPath: string): SyncPaths {
  const dir = dirname(resolve(dbPath));
  const snapshotDir = join(dir, 'snapshot');
  const incomingDir = join(dir, 'incoming');
  return {
    dir, snapshotDir, snapshotFile: join(snapshotDir, 'local.db'), snapshotTmp: join(snapshotDir, '.local.db.tmp'),
    incomingDir, incomingFile: join(incomingDir, 'local.db'), statusFile: join(incomingDir, 'sync-status.json'),
  };
}

/** The file name the primary publishes, relative to the directory its rrsync serves. */
export const SNAPSHOT_NAME = 'local.db';
/** A store of local users is a few MB at most; rsync refuses to bring anything bigger. */
export { MAX_SNAPSHOT_BYTES };
/** rsync --timeout: no data moving for this long ends the run. */
export const RSYNC_IO_TIMEOUT_SEC = 60;
/** ssh ConnectTimeout: an unreachable primary fails the run quickly. */
export const SSH_CONNECT_TIMEOUT_SEC = 15;
/** The whole run, whatever happens (the unit's TimeoutStartSec is the outer bound). */
export const RUN_TIMEOUT_MS = 4 * 60_000;
/** How much of rsync's/ssh's stderr reaches the status file. */
const MAX_ERROR_CHARS = 600;

/** incoming/sync-status.json: latchkey-sync's last result, read by the daemon for `status`. */
export interface SyncStatusFile {
  /** when the run ended, epoch ms */
  at: number;
  ok: boolean;
  error: string | null;
}

/** Reads and checks a status file's text; null when it is not one (the daemon shows that). */
export function parseSyncStatus(text: string): SyncStatusFile | null {
  let v: unknown;
  try { v = JSON.parse(text); } catch { return null; }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  if (!Number.isSafeInteger(o.at) || (o.at as number) < 0 || typeof o.ok !== 'boolean') return null;
  if (o.error !== null && typeof o.error !== 'string') return null;
  return { at: o.at as number, ok: o.ok, error: o.error === null ? null : (o.error as string).slice(0, MAX_ERROR_CHARS) };
}

/** A value that rsync's -e splitter keeps as one word: single quotes, refused if it holds one. */
function shellWord(v: string, what: string): string {
  if (v.includes("'") || /[\u0000-\u001f]/.test(v)) throw new SyncError(`${what} ${JSON.stringify(v)} contains a quote or a control character; rename it`);
  return `'${v}'`;
}

export class SyncError extends Error {}

/** The rsync argument vector for one pull; pure, so the unit tests and the docs can show it. */
export function rsyncArgs(l: Pick<LocalConfig, 'primary' | 'syncPort' | 'syncKey' | 'syncKnownHosts'>, paths: SyncPaths): string[] {
  if (l.primary === null) throw new SyncError('[local] primary is not set; set primary = USER@HOST (the primary\'s sync account)');
  // -F none: no ~/.ssh/config or /etc/ssh/ssh_config can add a ProxyCommand, another identity
  // or a relaxed host key policy; only what latchkey.conf says applies.
  const ssh = [
    'ssh', '-F', 'none', '-i', shellWord(l.syncKey, 'sync_key'), '-p', String(l.syncPort),
    '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${shellWord(l.syncKnownHosts, 'sync_known_hosts')}`,
    '-o', 'GlobalKnownHostsFile=none', '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none',
    '-o', `ConnectTimeout=${SSH_CONNECT_TIMEOUT_SEC}`, '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=2',
  ].join(' ');
  return [
    `--timeout=${RSYNC_IO_TIMEOUT_SEC}`,
    // --checksum: a file is skipped only when its content is the same (the quick check on size
    // and mtime would miss two snapshots of one size taken within the same second); an unchanged
    // snapshot then leaves incoming/local.db alone, and a changed one is sent as deltas into a
    // new temp file. --times keeps the primary's mtime on it.
    '--checksum',
    '--times',
    `--max-size=${MAX_SNAPSHOT_BYTES}`,
    // Says when --max-size skipped the file, which would otherwise look like success.
    '--info=skip1',
    '-e', ssh,
    '--',
    `${l.primary}:${SNAPSHOT_NAME}`,
    paths.incomingFile,
  ];
}

/** What an admin should do about a failed run, from ssh's and rsync's words. */
export function explainFailure(code: number | null, stderr: string, l: Pick<LocalConfig, 'primary' | 'syncKey' | 'syncKnownHosts' | 'syncPort'>): string {
  const lines = stderr.split('\n').map((s) => s.trim()).filter((s) => s !== '');
  const said = lines.join('; ').slice(0, MAX_ERROR_CHARS);
  const host = l.primary?.replace(/^[^@]*@/, '') ?? '?';
  // Every cause that applies: a missing key and an unreachable host are both worth fixing.
  const hints: string[] = [];
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No [A-Z0-9-]+ host key is known/i.test(stderr)) {
    hints.push(`the primary's host key is not in ${l.syncKnownHosts}; add it (ssh-keyscan -p ${l.syncPort} ${host}, checked against the primary's own key)`);
  }
  if (/Permission denied \(/.test(stderr)) {
    hints.push(`the primary refused the key ${l.syncKey}; put its .pub line in ${l.primary}'s authorized_keys with the forced rrsync command (see etc/sync/)`);
  }
  if (/UNPROTECTED PRIVATE KEY FILE|Load key .*: (bad permissions|Permission denied)|Identity file .* not accessible/i.test(stderr)) {
    hints.push(`${l.syncKey} must exist, be owned by the daemon account and be mode 0600`);
  }
  if (/Connection refused|Connection timed out|No route to host|Could not resolve hostname|Network is unreachable/i.test(stderr)) {
    hints.push(`the primary's sshd is not reachable at ${host} port ${l.syncPort}`);
  }
  if (/No such file or directory \(2\)|change_dir .* failed|link_stat .* failed/i.test(stderr)) {
    hints.push('the primary has no snapshot yet: is latchkeyd running there with [local] role = primary?');
  }
  if (/over max-size/.test(stderr)) hints.push(`the primary's snapshot is larger than ${MAX_SNAPSHOT_BYTES} bytes; it was not fetched`);
  if (code === null) hints.push(`rsync did not finish within ${RUN_TIMEOUT_MS / 1000}s and was stopped`);
  const hint = hints.join('; ');
  const base = code === null ? 'rsync was stopped' : `rsync exited ${code}`;
  return `${base}${hint ? `: ${hint}` : ''}${said ? ` (${said})` : ''}`;
}

interface RunResult { code: number | null; stdout: string; stderr: string }

function runRsync(args: string[]): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    // A fixed environment: nothing from the caller (LD_PRELOAD, RSYNC_RSH, SSH_AUTH_SOCK)
    // changes which binary runs or how it authenticates.
    const p = spawn('rsync', args, {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const cap = (s: string, d: Buffer): string => (s.length > 64 * 1024 ? s : s + d.toString());
    p.stdout.on('data', (d: Buffer) => { stdout = cap(stdout, d); });
    p.stderr.on('data', (d: Buffer) => { stderr = cap(stderr, d); });
    let killed = false;
    const timer = setTimeout(() => { killed = true; p.kill('SIGKILL'); }, RUN_TIMEOUT_MS);
    p.on('error', (e) => { clearTimeout(timer); resolvePromise({ code: 127, stdout, stderr: `${stderr}${e.message}\n` }); });
    p.on('close', (code) => { clearTimeout(timer); resolvePromise({ code: killed ? null : code, stdout, stderr }); });
  });
}

/** Writes the status file by rename, so the daemon never reads half of one. */
export function writeSyncStatus(paths: SyncPaths, s: SyncStatusFile): void {
  const tmp = join(paths.incomingDir, '.sync-status.json.tmp');
  try { unlinkSync(tmp); } catch { /* absent */ }
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, JSON.stringify(s) + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, paths.statusFile);
}

export interface PullResult { ok: boolean; error: string | null }

/** One pull for a loaded config: rsync, then the status file. Never throws. */
export async function pull(l: LocalConfig): Promise<PullResult> {
  const paths = syncPaths(l.dbPath);
  let result: PullResult;
  try {
    if (l.role !== 'secondary') {
      // No status file either: on a primary or standalone host there is nothing to report on.
      return { ok: false, error: `[local] role is ${l.role}; latchkey-sync runs on a secondary only (disable latchkey-sync.timer here)` };
    }
    // Normally made by the unit (StateDirectory=) or the daemon; 0700: only the daemon account.
    mkdirSync(paths.incomingDir, { recursive: true, mode: 0o700 });
    const r = await runRsync(rsyncArgs(l, paths));
    if (r.code === 0 && /over max-size/.test(r.stdout + r.stderr)) {
      result = { ok: false, error: explainFailure(r.code, r.stdout + r.stderr, l) };
    } else if (r.code !== 0) {
      result = { ok: false, error: explainFailure(r.code, r.stderr, l) };
    } else {
      try {
        statSync(paths.incomingFile);
        result = { ok: true, error: null };
      } catch {
        result = { ok: false, error: `rsync succeeded but ${paths.incomingFile} is missing` };
      }
    }
  } catch (e) {
    result = { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  try {
    writeSyncStatus(paths, { at: Date.now(), ...result });
  } catch (e) {
    const why = `cannot write ${paths.statusFile}: ${e instanceof Error ? e.message : String(e)}`;
    result = { ok: false, error: result.error ? `${result.error}; ${why}` : why };
  }
  return result;
}

const USAGE = `usage: latchkey-sync [--config FILE]
Fetches the primary's snapshot of the local users (rsync over ssh, [local] primary, sync_port,
sync_key, sync_known_hosts) into the incoming/ directory beside [local] db_path, where latchkeyd
checks it and swaps it in. Run by latchkey-sync.service as the daemon's account; on a secondary
only. Exit 0 when the snapshot was fetched (or was unchanged), 1 on failure (reason on stderr),
2 on a usage error.
`;

export async function main(argv: readonly string[]): Promise<void> {
  process.exitCode = await run(argv, (t) => process.stderr.write(t));
}

/** Runs latchkey-sync; returns the exit code. */
export async function run(argv: readonly string[], err: (text: string) => void): Promise<number> {
  let config = '/etc/latchkey/latchkey.conf';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') { err(USAGE); return 0; }
    if (a === '--config' && i + 1 < argv.length) { config = argv[++i]!; continue; }
    if (a.startsWith('--config=')) { config = a.slice('--config='.length); continue; }
    err(`latchkey-sync: unexpected argument ${JSON.stringify(a)}\n${USAGE}`);
    return 2;
  }
  if (process.geteuid?.() === 0) {
    // Files made as root in incoming/ would be unreadable to latchkeyd: run it as its account.
    err('latchkey-sync: refusing to run as root; run it as the daemon\'s account: systemctl start latchkey-sync.service\n');
    return 1;
  }
  let l: LocalConfig;
  try {
    // parseConfig, not loadConfig: this account may not read the root-only secrets_file, and
    // only [local] matters here.
    l = parseConfig(readFileSync(config, 'utf8'), config, { secretsUnread: true }).local;
  } catch (e) {
    err(`latchkey-sync: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  const r = await pull(l);
  if (!r.ok) {
    err(`latchkey-sync: ${r.error}\n`);
    return 1;
  }
  return 0;
}
