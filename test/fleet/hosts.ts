// The fleet's machines, all on this one: the driver runs in a private network + mount namespace
// (scripts/fleet's `unshare -m -n`) holding a bridge, and each host is a child network + mount
// namespace held open by a `sleep` (the holder): a veth to the bridge with a namespace-local
// address, its own tmpfs over /run (so /run/latchkey, the cache file and the sockets are the
// host's own), one latchkeyd started inside with nsenter. The driver reaches a host's sockets as
// /proc/<holder>/root/run/latchkey/*.sock. Every process is spawned here and killed by its pid;
// when the holder and the daemon are gone, the host's namespaces and its veth go with them.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, chownSync, chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from './client.js';
import { killStarted, track } from '../lib/children.js';
export { killStarted, track };

export const BRIDGE = 'lkfleet0';
export const SERVICE_IP = '10.77.0.1';
export const SERVICE_PORT = 8080;
export const hostIp = (i: number): string => `10.77.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const say = (s: string): void => { process.stderr.write(`fleet: ${s}\n`); };


export function mustRun(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

/** The bridge in the driver's namespace; refuses to run in the namespace scripts/fleet started from. */
export function setUpBridge(): void {
  const hostNs = process.env.LATCHKEY_FLEET_HOST_NS;
  if (!hostNs || readlinkNs('net') === hostNs) {
    throw new Error('run me through scripts/fleet (a private network + mount namespace): I create a bridge and veths');
  }
  mustRun('ip', ['-batch', '-'], [
    'link set lo up',
    `link add ${BRIDGE} type bridge`,
    `addr add ${SERVICE_IP}/16 dev ${BRIDGE}`,
    `link set ${BRIDGE} up`,
  ].join('\n') + '\n');
}

function readlinkNs(kind: string): string {
  return spawnSync('readlink', [`/proc/self/ns/${kind}`], { encoding: 'utf8' }).stdout.trim();
}

export interface DaemonConf {
  scale: { ttl: number; refreshAhead: number; grace: number; negative: number };
  /** keys the build knows: the ones added by later work are set only where they exist */
  knownKeys: string;
  serviceUrl: string;
  auth: { user: string; password: string };
  daemonUid: number;
}

export class Host {
  holder!: ChildProcess;
  daemon: ChildProcess | null = null;
  nss!: Pool;
  priv!: Pool;
  readonly dir: string;
  readonly conf: string;
  readonly log: string;
  daemonExited: Promise<unknown> = Promise.resolve();
  constructor(readonly index: number, work: string, private readonly build: string) {
    this.dir = join(work, `h${String(index).padStart(2, '0')}`);
    this.conf = join(this.dir, 'latchkey.conf');
    this.log = join(this.dir, 'daemon.log');
  }
  get name(): string { return `h${String(this.index).padStart(2, '0')}`; }
  get ip(): string { return hostIp(this.index); }
  /** the host's /run/latchkey as the driver sees it */
  get runDir(): string { return `/proc/${this.holder.pid}/root/run/latchkey`; }

  /** The namespaces, the veth and the tmpfs; then the config. */
  async create(c: DaemonConf): Promise<void> {
    mkdirSync(join(this.dir, 'state'), { recursive: true, mode: 0o755 });
    // The holder: new network and mount namespaces; inside, a tmpfs over /run (this namespace's
    // only), then it sleeps until killed. It dies with the driver (--pdeathsig) if that is killed.
    this.holder = track(spawn('unshare', ['-n', '-m', '--propagation', 'private', 'setpriv', '--pdeathsig', 'KILL', '--', 'sh', '-c',
      'mount -t tmpfs -o mode=0755,size=32m tmpfs /run && mkdir -m 0755 /run/latchkey && echo ready && exec sleep 1000000'],
    { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    this.holder.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    this.holder.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const deadline = Date.now() + 20_000;
    while (!out.includes('ready')) {
      if (this.holder.exitCode !== null || Date.now() > deadline) throw new Error(`${this.name}: namespace holder failed: ${err}`);
      await sleep(20);
    }
    const pid = String(this.holder.pid);
    const veth = `lkv${this.index}`;
    mustRun('ip', ['-batch', '-'], `link add ${veth} type veth peer name eth0 netns ${pid}\nlink set ${veth} master ${BRIDGE} up\n`);
    mustRun('nsenter', ['-t', pid, '-n', 'ip', '-batch', '-'], `link set lo up\naddr add ${this.ip}/16 dev eth0\nlink set eth0 up\n`);
    this.writeConf(c);
  }

  private writeConf(c: DaemonConf): void {
    const known = (k: string): boolean => c.knownKeys.includes(`'${k}'`);
    const text = `[upstream]
by_name_url = ${c.serviceUrl}/username/
by_uid_url = ${c.serviceUrl}/user-id/
username = ${c.auth.user}
password = ${c.auth.password}
insecure_http = yes
json_prefix = response.result
connect_timeout = 1s
request_timeout = 3s
[cache]
db_path = /run/latchkey/cache.db
ttl = ${c.scale.ttl}s
negative_ttl = ${c.scale.negative}s
stale_grace = ${c.scale.grace}s
refresh_ahead = ${c.scale.refreshAhead}s
${known('recent_file') ? `recent_file = ${join(this.dir, 'state', 'recent-users')}\n` : ''}[users]
uid_shift = 10000
gid = 10000
group_name = lega
[homes]
base = ${join(this.dir, 'homes')}
[local]
db_path = ${join(this.dir, 'state', 'local.db')}
[daemon]
socket_dir = /run/latchkey
log_level = info
sshd_config = ${join(this.dir, 'no-sshd_config')}
user = ${c.daemonUid}
rootd_socket = /run/latchkey-rootd/rootd.sock
`;
    writeFileSync(this.conf, text, { mode: 0o640 });
    // root's, readable by the daemon's group (a reload after the drop re-reads it)
    chownSync(this.conf, 0, c.daemonUid);
    chmodSync(this.conf, 0o640);
    chownSync(join(this.dir, 'state'), c.daemonUid, c.daemonUid);
  }

  /** Starts latchkeyd inside the host's namespaces; resolves when it answers PING. */
  async start(): Promise<void> {
    const fd = openSync(this.log, 'a');
    const d = track(spawn('nsenter', ['-t', String(this.holder.pid), '-n', '-m', '--', process.execPath, join(this.build, 'bin/latchkeyd'), '--config', this.conf], {
      stdio: ['ignore', fd, fd], env: { ...process.env, LATCHKEY_NSS_DISABLE: '1' },
    }));
    closeSync(fd);
    this.daemon = d;
    this.daemonExited = new Promise((r) => d.once('exit', r));
    this.nss?.close();
    this.priv?.close();
    this.nss = new Pool(join(this.runDir, 'nss.sock'), 4);
    this.priv = new Pool(join(this.runDir, 'priv.sock'), 2);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (d.exitCode !== null) throw new Error(`${this.name}: latchkeyd exited ${d.exitCode}:\n${this.logTail()}`);
      if (existsSync(join(this.runDir, 'nss.sock'))) {
        const r = await this.nss.call('PING', {});
        if (r.outcome === 'OK') return;
      }
      if (Date.now() > deadline) throw new Error(`${this.name}: latchkeyd did not start:\n${this.logTail()}`);
      await sleep(100);
    }
  }

  /** SIGTERM (a clean stop, as systemd does), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    const d = this.daemon;
    if (!d || d.exitCode !== null || d.signalCode !== null) return;
    process.kill(d.pid!, 'SIGTERM');
    const t = setTimeout(() => { if (d.exitCode === null && d.signalCode === null) process.kill(d.pid!, 'SIGKILL'); }, 10_000);
    await this.daemonExited;
    clearTimeout(t);
  }

  async destroy(): Promise<void> {
    this.nss?.close();
    this.priv?.close();
    await this.stop().catch(() => undefined);
    if (this.holder?.exitCode === null && this.holder.signalCode === null) {
      const gone = new Promise((r) => this.holder.once('exit', r));
      process.kill(this.holder.pid!, 'SIGKILL');
      await gone;
    }
  }

  logTail(): string {
    try { return readFileSync(this.log, 'utf8').split('\n').slice(-20).join('\n'); } catch { return '(no log)'; }
  }
}
