// What a stuck daemon costs one process, and what one process costs the daemon (issue 12), with
// the real libnss_latchkey.so.2 in real programs (ls, python3) against the real latchkeyd:
// - the process-local breaker: with the daemon SIGSTOPped, `ls -l` over files owned by four
//   latchkey uids waits one client timeout, not four (it took 20 s before); after SIGCONT the
//   same process is answered again once the breaker period is over;
// - the connection pool: a program with 300 threads, each calling getpwnam once and then asleep,
//   holds at most LK_NSS_POOL connections to nss.sock (it held 300 before), and after the idle
//   time one more lookup leaves it holding one.
// The constants come from the sources they test (spec-generated timeout, C headers), so the test
// follows them when they change.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEnv, haveCommand, runInNamespace, ROOT, type TestEnv, type RunResult } from '../lib/harness.js';
import { CLIENT_TIMEOUT_MS } from '../../src/protocol/generated.js';

const skip = process.getuid?.() !== 0 ? 'needs root (mount namespaces, chown)'
  : !haveCommand('unshare') ? 'needs unshare(1)'
    : !haveCommand('/usr/bin/python3') ? 'needs /usr/bin/python3' : false;

/** A `#define NAME <number>` from one of the shims' headers. */
function cDefine(file: string, name: string): number {
  const m = new RegExp(`^#define ${name} (\\d+)`, 'm').exec(readFileSync(join(ROOT, file), 'utf8'));
  assert.ok(m, `${name} not found in ${file}`);
  return Number(m[1]);
}
const POOL = cDefine('native/nss/nss_call.h', 'LK_NSS_POOL');
const IDLE_MS = cDefine('native/common/lk_client.h', 'LK_CLIENT_IDLE_MS');
const BREAKER_MS = cDefine('native/common/lk_client.h', 'LK_BREAKER_MS');
/** latchkey users of etc/example-users.json (upstream uid + the default shift of 10000) */
const UIDS = [11001, 11002, 11003, 11004];

let env: TestEnv;
const ns = (script: string, extra: Record<string, string> = {}): Promise<RunResult> =>
  runInNamespace(script, { ...env.shimEnv, ...extra }, { timeoutMs: 60_000 });

before(async () => {
  if (skip) return;
  const built = spawnSync('make', ['-s', '-C', 'native', 'all'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(built.status, 0, built.stderr);
  env = await startEnv();
  // What is measured here is the socket client (breaker, pool, timeouts): with the shared-memory
  // map, lookups of cached users would never reach the socket (nss-map.test.ts covers the map).
  env.shimEnv.LATCHKEY_NSS_NO_MMAP = '1';
});
after(async () => { if (env) await env.stop(); });

/** One process, the daemon stopped: one timeout, then fast failures; SIGCONT'ed by the script
 * itself, then still held back until the breaker period is over, then answered. */
const BREAKER_PY = `
import json, os, pwd, signal, time
def look(name):
    t = time.monotonic()
    try:
        pwd.getpwnam(name)
        ok = True
    except KeyError:
        ok = False
    return {"ok": ok, "ms": round((time.monotonic() - t) * 1000)}
res = {"first": look("alice"), "next": [look(n) for n in ("bob", "carol", "dave")]}
os.kill(int(os.environ["LK_DAEMON_PID"]), signal.SIGCONT)
res["held"] = look("erin")
time.sleep(int(os.environ["LK_BREAKER_MS"]) / 1000 + 0.3)
res["probe"] = look("frank")
res["after"] = look("alice")
print(json.dumps(res))
`;

test('daemon SIGSTOPped: ls -l over four latchkey owners waits one timeout, not four', { skip }, async (t) => {
  const dir = join(env.dir, 'owned');
  mkdirSync(dir);
  for (const uid of UIDS) {
    const f = join(dir, `home-${uid}`);
    writeFileSync(f, 'x');
    chownSync(f, uid, 0); // group root: only the owners are asked of latchkey
  }
  const warm = await ns(`ls -l '${dir}'`);
  assert.equal(warm.code, 0, warm.stderr);
  assert.match(warm.stdout, / alice root /);
  process.kill(env.daemon.pid, 'SIGSTOP');
  let r: RunResult;
  try {
    r = await ns(`ls -l '${dir}'`);
  } finally {
    process.kill(env.daemon.pid, 'SIGCONT');
  }
  t.diagnostic(`ls -l with the daemon stopped: ${r.ms} ms (client timeout ${CLIENT_TIMEOUT_MS} ms)`);
  assert.equal(r.code, 0, r.stderr);
  for (const uid of UIDS) assert.match(r.stdout, new RegExp(` ${uid} root `), 'unresolved owners show as numbers');
  // one timeout (the first owner), then the breaker answers the other three at once
  assert.ok(r.ms >= CLIENT_TIMEOUT_MS - 100, `ls -l took ${r.ms} ms: was the daemon stopped?`);
  assert.ok(r.ms < 2 * CLIENT_TIMEOUT_MS, `ls -l took ${r.ms} ms: more than one timeout`);
  const again = await ns(`ls -l '${dir}'`);
  assert.match(again.stdout, / alice root /, 'a new process is answered at once after SIGCONT');
});

test('the breaker: fast failures while open, one probe after LK_BREAKER_MS, then answers again', { skip }, async (t) => {
  process.kill(env.daemon.pid, 'SIGSTOP');
  let r: RunResult;
  try {
    r = await ns('exec /usr/bin/python3 -c "$LK_PY"',
      { LK_PY: BREAKER_PY, LK_DAEMON_PID: String(env.daemon.pid), LK_BREAKER_MS: String(BREAKER_MS) });
  } finally {
    process.kill(env.daemon.pid, 'SIGCONT'); // the script did already, unless it failed first
  }
  assert.equal(r.code, 0, r.stderr);
  type Look = { ok: boolean; ms: number };
  const res = JSON.parse(r.stdout) as { first: Look; next: Look[]; held: Look; probe: Look; after: Look };
  t.diagnostic(`one process: ${JSON.stringify(res)}`);
  assert.equal(res.first.ok, false);
  assert.ok(res.first.ms >= CLIENT_TIMEOUT_MS - 100, `first lookup: ${JSON.stringify(res)}`);
  for (const n of res.next) assert.ok(!n.ok && n.ms < 500, `lookups while the breaker is open: ${JSON.stringify(res)}`);
  assert.ok(!res.held.ok && res.held.ms < 500, `the daemon is back, but the period is not over: ${JSON.stringify(res)}`);
  assert.ok(res.probe.ok, `the probe after the breaker period: ${JSON.stringify(res)}`);
  assert.ok(res.after.ok, `after the probe: ${JSON.stringify(res)}`);
});

/** 300 threads, one getpwnam each, then asleep; counts this process's connections to nss.sock. */
const THREADS_PY = `
import json, os, pwd, socket, threading, time
N = 300
SOCK = os.environ["LK_NSS_SOCK"]
def held():
    n = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink("/proc/self/fd/" + name).startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            n += s.family == socket.AF_UNIX and s.getpeername() == SOCK
        except OSError:
            pass
        finally:
            s.close()
    return n
lock = threading.Lock()
done = threading.Semaphore(0)
release = threading.Event()
ok = [0]
def run():
    try:
        pwd.getpwnam("alice")
        with lock:
            ok[0] += 1
    except KeyError:
        pass
    done.release()
    release.wait()
res = {"held_before": held()}
ts = [threading.Thread(target=run, daemon=True) for _ in range(N)]
for t in ts:
    t.start()
for _ in range(N):
    done.acquire()
res["ok"] = ok[0]
res["held_all_asleep"] = held()
time.sleep(int(os.environ["LK_IDLE_MS"]) / 1000 + 0.5)
res["held_after_idle"] = held()
pwd.getpwnam("bob")
res["held_after_one_more_lookup"] = held()
release.set()
for t in ts:
    t.join()
print(json.dumps(res))
`;

test(`300 threads, one getpwnam each, then asleep: at most LK_NSS_POOL (${POOL}) connections held`, { skip }, async (t) => {
  const r = await ns('exec /usr/bin/python3 -c "$LK_PY"',
    { LK_PY: THREADS_PY, LK_NSS_SOCK: join(env.socketDir, 'nss.sock'), LK_IDLE_MS: String(IDLE_MS) });
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as Record<string, number>;
  t.diagnostic(`connections to nss.sock: ${JSON.stringify(res)}`);
  assert.equal(res.held_before, 0, JSON.stringify(res));
  assert.equal(res.ok, 300, `every thread's lookup succeeds: ${JSON.stringify(res)}`);
  assert.ok(res.held_all_asleep! <= POOL, `connections held by 300 sleeping threads: ${JSON.stringify(res)}`);
  assert.ok(res.held_after_idle! <= POOL, JSON.stringify(res));
  // the lookup after the idle time closes the expired connections and keeps the one it used
  assert.equal(res.held_after_one_more_lookup, 1, JSON.stringify(res));
});
