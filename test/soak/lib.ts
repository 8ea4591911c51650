// The moving parts of `make soak` (test/soak/driver.ts): the example user service and latchkeyd
// as child processes, root's load (lkload, pamtester) and the unprivileged attackers (flood.js,
// python threads). Everything started here is registered in `started` and killed by pid by
// killStarted(); nothing is looked up or killed by name.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../lib/paths.js';
import { killStarted, track } from '../lib/children.js';
export { killStarted, track };
import { startServiceProc, waitForDaemon, type ServiceProc } from '../lib/service-proc.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const say = (s: string): void => { process.stderr.write(`soak: ${s}\n`); };

export const FLOOD_JS = join(ROOT, 'dist/test/soak/flood.js');
export const LKLOAD = join(ROOT, 'test/bench/build/lkload');
export const LKBENCH = join(ROOT, 'test/bench/build/lkbench');


export type Json = Record<string, unknown>;

/**
 * A child that speaks JSON lines on stdout: `next()` resolves with the next line (rejects when
 * the child exits first), `end()` closes its stdin and resolves with its last line.
 */
export class JsonChild {
  private readonly lines: Json[] = [];
  private waiters: Array<{ resolve: (j: Json) => void; reject: (e: Error) => void }> = [];
  private err = '';
  private code: number | null | undefined;
  private last: Json | null = null;
  readonly exited: Promise<number | null>;
  constructor(readonly proc: ChildProcess, readonly what: string) {
    track(proc);
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const l = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!l.startsWith('{')) continue;
        const j = JSON.parse(l) as Json;
        this.last = j;
        const w = this.waiters.shift();
        if (w) w.resolve(j); else this.lines.push(j);
      }
    });
    proc.stderr!.on('data', (d: Buffer) => { this.err = (this.err + d.toString()).slice(-4000); });
    proc.stdin?.on('error', () => { /* exited early: its exit code tells */ });
    this.exited = new Promise((r) => proc.once('close', (code) => {
      this.code = code;
      for (const w of this.waiters.splice(0)) w.reject(new Error(`${what} exited ${code}: ${this.err}`));
      r(code);
    }));
  }
  next(timeoutMs = 30_000): Promise<Json> {
    const j = this.lines.shift();
    if (j) return Promise.resolve(j);
    if (this.code !== undefined) return Promise.reject(new Error(`${this.what} exited ${this.code}: ${this.err}`));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.what}: no output within ${timeoutMs} ms: ${this.err}`)), timeoutMs);
      this.waiters.push({ resolve: (x) => { clearTimeout(t); resolve(x); }, reject: (e) => { clearTimeout(t); reject(e); } });
    });
  }
  write(line: string): void { this.proc.stdin!.write(line + '\n'); }
  /** Closes stdin (the child's signal to finish) and resolves with its last line once it exited. */
  async end(): Promise<Json> {
    this.proc.stdin!.end();
    const killer = setTimeout(() => { if (this.proc.pid) { try { process.kill(this.proc.pid, 'SIGKILL'); } catch { /* gone */ } } }, 15_000);
    const code = await this.exited;
    clearTimeout(killer);
    if (code !== 0 || !this.last) throw new Error(`${this.what} exited ${code}: ${this.err}`);
    return this.last;
  }
  get stderr(): string { return this.err; }
}

// ---- the example user service and the daemon ------------------------------------------------------

export type Service = ServiceProc;

export function startService(usersFile: string, auth: { user: string; password: string }): Promise<Service> {
  return startServiceProc(usersFile, auth, (p) => { track(p); });
}

export interface Daemon {
  pid: number;
  log: string;
  /** bytes of log written so far: a mark for logSince() */
  logSize(): number;
  /** the JSON log lines written since a logSize() mark */
  logSince(mark: number): Json[];
  stop(): Promise<void>;
}

/** `buildRoot`'s bin/latchkeyd (the build under test), logging to `log`. */
export async function startDaemon(buildRoot: string, config: string, sockDir: string, log: string): Promise<Daemon> {
  const fd = openSync(log, 'a');
  const proc = track(spawn(join(buildRoot, 'bin/latchkeyd'), ['--config', config], {
    stdio: ['ignore', fd, fd], env: { ...process.env, LATCHKEY_NSS_DISABLE: '1' },
  }));
  closeSync(fd);
  await waitForDaemon(proc, sockDir, () => readFileSync(log, 'utf8'));
  return {
    pid: proc.pid!, log,
    logSize: () => statSync(log).size,
    logSince: (mark) => readFileSync(log).subarray(mark).toString('utf8').split('\n').flatMap((l) => {
      try { return l.startsWith('{') ? [JSON.parse(l) as Json] : []; } catch { return []; }
    }),
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const done = new Promise((r) => proc.once('exit', r));
      process.kill(proc.pid!, 'SIGTERM');
      const t = setTimeout(() => { if (proc.exitCode === null) process.kill(proc.pid!, 'SIGKILL'); }, 10_000);
      await done;
      clearTimeout(t);
    },
  };
}

export function rssKb(pid: number): number {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(s)?.[1] ?? NaN);
}

/** The open-file limit a process runs with (what the daemon sizes its connection budget from). */
export function fdLimit(pid: number): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return m ? Number(m[1]) : 1024;
}

// ---- root's load ------------------------------------------------------------------------------------

/** Stats lkload prints for one phase. */
export interface PhaseStats { phase: string; n: number; found: number; notfound: number; errors: number; last_errno: number; errors_under_1ms: number; errors_over_1s: number; rate: number; p50_us: number; p90_us: number; p99_us: number; p999_us: number; max_us: number }

/** lkload rate: root's lookups through the NSS module at a pinned rate; mark() closes a phase. */
export class RootLoad {
  private constructor(private readonly c: JsonChild) {}
  static async start(namesFile: string, rate: number, threads: number, env: NodeJS.ProcessEnv): Promise<RootLoad> {
    const c = new JsonChild(spawn(LKLOAD, ['rate', namesFile, String(rate), String(threads)], { stdio: ['pipe', 'pipe', 'pipe'], env }), 'lkload rate');
    await c.next(60_000);
    return new RootLoad(c);
  }
  async mark(label: string): Promise<PhaseStats> {
    this.c.write(label);
    return (await this.c.next()) as unknown as PhaseStats;
  }
  async end(): Promise<PhaseStats> { return (await this.c.end()) as unknown as PhaseStats; }
}

export interface LoginStats { ok: number; failed: number; skipped: number; p50_ms: number; p99_ms: number; max_ms: number; failures: string[] }

/**
 * PAM logins at a pinned rate: `workers` shells each run pamtester for one login at a time (the
 * namespace's /etc/pam.d has `service`). A tick that finds every worker busy is counted as
 * skipped, so an overloaded daemon shows up as fewer logins, not as a growing queue.
 */
export class LoginLoad {
  private readonly workers: Array<{ proc: ChildProcess; busy: boolean; out: string; t0: number; user: string }> = [];
  private timer: NodeJS.Timeout | null = null;
  private times: number[] = [];
  private ok = 0;
  private failed = 0;
  private skipped = 0;
  private failures: string[] = [];
  private i = 0;

  constructor(service: string, private readonly users: Array<{ user: string; password: string }>, workers: number, env: NodeJS.ProcessEnv) {
    // One login per input line: "user<TAB>password"; prints the exit status of pamtester.
    const script = 'while IFS="\t" read -r u p; do printf "%s\\n" "$p" | pamtester "$1" "$u" authenticate acct_mgmt >/dev/null 2>&1; echo "rc $?"; done';
    for (let w = 0; w < workers; w++) {
      const proc = track(spawn('sh', ['-c', script, 'login', service], { stdio: ['pipe', 'pipe', 'pipe'], env }));
      const worker = { proc, busy: false, out: '', t0: 0, user: '' };
      proc.stdout!.on('data', (d: Buffer) => {
        worker.out += d.toString();
        let i;
        while ((i = worker.out.indexOf('\n')) >= 0) {
          const line = worker.out.slice(0, i);
          worker.out = worker.out.slice(i + 1);
          const rc = Number(/^rc (\d+)/.exec(line)?.[1] ?? -1);
          this.times.push(Date.now() - worker.t0);
          if (rc === 0) this.ok++;
          else { this.failed++; if (this.failures.length < 5) this.failures.push(`${worker.user}: pamtester exit ${rc}`); }
          worker.busy = false;
        }
      });
      proc.stdin!.on('error', () => { /* exited: counted as a stuck worker */ });
      this.workers.push(worker);
    }
  }

  start(perSec: number): void {
    if (perSec <= 0) return;
    this.timer = setInterval(() => {
      const w = this.workers.find((x) => !x.busy);
      if (!w) { this.skipped++; return; }
      const u = this.users[this.i++ % this.users.length]!;
      w.busy = true;
      w.t0 = Date.now();
      w.user = u.user;
      w.proc.stdin!.write(`${u.user}\t${u.password}\n`);
    }, 1000 / perSec);
  }

  mark(): LoginStats {
    const t = [...this.times].sort((a, b) => a - b);
    const at = (p: number): number => (t.length ? t[Math.min(t.length - 1, Math.floor(t.length * p))]! : 0);
    const s = { ok: this.ok, failed: this.failed, skipped: this.skipped, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: t.length ? t[t.length - 1]! : 0, failures: this.failures };
    this.times = [];
    this.ok = this.failed = this.skipped = 0;
    this.failures = [];
    return s;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.race([(async () => { while (this.workers.some((w) => w.busy)) await sleep(20); })(), sleep(10_000)]);
    for (const w of this.workers) w.proc.stdin!.end();
  }
}

/** lkbench each: every name of `file` looked up once, one after the other (first lookups). */
export async function lookupEach(file: string, env: NodeJS.ProcessEnv): Promise<{ found: number; errors: number; p99_us: number; max_us: number }> {
  const c = new JsonChild(spawn(LKBENCH, ['each', file], { stdio: ['ignore', 'pipe', 'pipe'], env }), 'lkbench each');
  const j = await c.next(120_000);
  await c.exited;
  return j as { found: number; errors: number; p99_us: number; max_us: number };
}

// ---- the attackers -------------------------------------------------------------------------------

/** 300 threads that each call getpwnam once and then sleep, each keeping its connection. */
export const IDLE_THREADS_PY = `
import json, pwd, sys, threading
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
lock = threading.Lock()
done = threading.Semaphore(0)
release = threading.Event()
res = {"ok": 0, "failed": 0, "errors": []}
def run():
    try:
        pwd.getpwnam("alice")
        with lock: res["ok"] += 1
    except KeyError as e:
        with lock:
            res["failed"] += 1
            if len(res["errors"]) < 3: res["errors"].append(str(e))
    done.release()
    release.wait()
ts = [threading.Thread(target=run, daemon=True) for _ in range(N)]
for t in ts: t.start()
for _ in range(N): done.acquire()
print(json.dumps({"ready": 1, **res}), flush=True)
sys.stdin.read()
release.set()
for t in ts: t.join()
print(json.dumps(res), flush=True)
`;

/** flood.js as `uid` (an unprivileged user) against `nssSock`; resolves once it is ready. */
export async function startFlood(nssSock: string, args: string[], uid: number): Promise<JsonChild> {
  const c = new JsonChild(spawn(process.execPath, [FLOOD_JS, '--sock', nssSock, ...args], {
    uid, gid: uid, stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' },
  }), `flood ${args.join(' ')} (uid ${uid})`);
  await c.next(30_000);
  return c;
}

/** python3 with `threads` threads as `uid`, through the NSS module (`env`: LD_LIBRARY_PATH, socket dir). */
export async function startIdleThreads(threads: number, uid: number, env: NodeJS.ProcessEnv): Promise<JsonChild> {
  const c = new JsonChild(spawn('/usr/bin/python3', ['-c', IDLE_THREADS_PY, String(threads)], {
    uid, gid: uid, stdio: ['pipe', 'pipe', 'pipe'], env,
  }), `python ${threads} idle threads (uid ${uid})`);
  await c.next(60_000);
  return c;
}
