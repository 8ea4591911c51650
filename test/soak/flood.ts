// The unprivileged attacker of the flood tests and of `make soak`: many connections to nss.sock
// doing what any local user may do. The tests start it as uid 65534 (spawn {uid, gid}); the
// daemon sees that uid through SO_PEERCRED. It runs until stdin reaches EOF (or SIGTERM), stops
// reopening, waits half a second for the daemon's last closes, then prints one JSON summary line;
// a {"ready":…} line comes first, once every connection was opened.
//
//   node flood.js --sock PATH --mode MODE [--conns N] [--rate R] …
//   idle     N connections, each asks --name once and then holds the connection (an idle thread)
//   drip     N connections, each sends a PW_BY_NAME frame one byte per --interval ms
//   names    N connections looking up never-seen random names back to back (or --rate per second)
//   groups   N connections alternating GR_BY_NAME --group and GR_LIST
//   known    N connections looking up --name (a cached user) back to back (or --rate per second)
//   stuck    N connections, each sends 64 PW_LIST requests at once and never reads a reply: the
//            daemon's writes back up, so each connection stays busy (not evictable) until the
//            idle timeout
// A connection the daemon closes is replaced after --reopen-ms, as a determined attacker would.
// What each connection saw is counted: replies by status, and connections closed with a request
// outstanding (the daemon dropped them: the client must see "unavailable", never "not found").
import { createConnection, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { encodeRequest } from '../../src/protocol/codec.js';
import { StatusName } from '../../src/protocol/generated.js';

const { values: a } = parseArgs({
  options: {
    sock: { type: 'string' }, mode: { type: 'string' }, conns: { type: 'string', default: '1' },
    rate: { type: 'string', default: '0' }, interval: { type: 'string', default: '300' },
    name: { type: 'string', default: 'alice' }, group: { type: 'string', default: 'lega' },
    'reopen-ms': { type: 'string', default: '100' },
  },
  strict: true,
});
const MODES = ['idle', 'drip', 'names', 'groups', 'known', 'stuck'] as const;
type Mode = typeof MODES[number];
const mode = a.mode as Mode;
if (!a.sock || !MODES.includes(mode)) {
  process.stderr.write(`usage: flood.js --sock PATH --mode ${MODES.join('|')} [--conns N] [--rate R] [--interval MS] [--name N] [--group G] [--reopen-ms MS]\n`);
  process.exit(2);
}
const SOCK = a.sock;
const CONNS = Number(a.conns);
const RATE = Number(a.rate);
const DRIP_MS = Number(a.interval);
const REOPEN_MS = Number(a['reopen-ms']);

const stats = {
  mode, uid: process.getuid?.() ?? -1, conns: CONNS, rate: RATE,
  opened: 0, connect_errors: 0, requests: 0,
  /** replies by status name */
  replies: {} as Record<string, number>,
  /** closed by the daemon (not by us) */
  closed_by_daemon: 0,
  /** …with a request outstanding: what a shim turns into "unavailable" */
  closed_with_request_outstanding: 0,
  /** drip: how long each dripping connection lived until the daemon closed it (ms) */
  drip_lifetimes_ms: [] as number[],
  /** drip: frames that got all their bytes through (the frame deadline should stop every one) */
  drip_frames_completed: 0,
  open_now: 0, open_max: 0,
  /** connections still open SETTLE_MS after the flood stopped reopening: what the daemon let it keep */
  held_after_settle: 0,
  wall_ms: 0,
};
let stopping = false;
const t0 = Date.now();

// Exact pacing over all connections: each request takes the next free slot of 1000/RATE ms.
let nextSlot = Date.now();
function slot(): Promise<void> {
  if (RATE <= 0) return Promise.resolve();
  const now = Date.now();
  nextSlot = Math.max(nextSlot, now - 100) + 1000 / RATE; // at most 100 ms of saved-up burst
  const wait = nextSlot - now;
  return wait > 1 ? new Promise((r) => setTimeout(r, wait)) : Promise.resolve();
}

function randomName(): string {
  // never-seen and valid under the default name rule: a letter, then base32-ish lowercase
  return 'zq' + randomBytes(8).toString('hex');
}

function request(): Buffer {
  switch (mode) {
    case 'names': return encodeRequest('PW_BY_NAME', { name: randomName() });
    case 'groups': return stats.requests % 2 === 0 ? encodeRequest('GR_BY_NAME', { name: a.group! }) : encodeRequest('GR_LIST', { start_gid: 0 });
    default: return encodeRequest('PW_BY_NAME', { name: a.name! });
  }
}

const sockets = new Set<Socket>();

function open(): void {
  if (stopping) return;
  const s = createConnection(SOCK);
  let buf = Buffer.alloc(0);
  let outstanding = false;
  let connectedAt = 0;
  let dripTimer: NodeJS.Timeout | null = null;
  let ours = false;
  const send = async (): Promise<void> => {
    await slot();
    if (stopping || s.destroyed) return;
    outstanding = true;
    stats.requests++;
    s.write(request());
  };
  s.on('connect', () => {
    stats.opened++;
    sockets.add(s);
    stats.open_now++;
    stats.open_max = Math.max(stats.open_max, stats.open_now);
    connectedAt = Date.now();
    if (mode === 'drip') {
      const frame = encodeRequest('PW_BY_NAME', { name: a.name! });
      let i = 0;
      const dripOne = (): void => {
        if (s.destroyed) return;
        s.write(frame.subarray(i, i + 1));
        i++;
        if (i === frame.length) { stats.drip_frames_completed++; i = 0; }
        dripTimer = setTimeout(dripOne, DRIP_MS);
      };
      dripOne();
      return;
    }
    if (mode === 'stuck') {
      s.pause();
      const list = encodeRequest('PW_LIST', { start_uid: 0 });
      stats.requests += 64;
      outstanding = true;
      s.write(Buffer.concat(Array.from({ length: 64 }, () => list)));
      return;
    }
    void send();
  });
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const len = buf.readUInt32BE(0);
      const status = len >= 6 ? buf.readUInt16BE(8) : -1;
      const name = StatusName[status] ?? String(status);
      stats.replies[name] = (stats.replies[name] ?? 0) + 1;
      buf = buf.subarray(4 + len);
      outstanding = false;
      if (mode !== 'idle') void send();
    }
  });
  s.on('error', () => { /* a reset: counted by 'close' */ });
  s.on('close', () => {
    if (dripTimer) clearTimeout(dripTimer);
    if (connectedAt === 0) {
      stats.connect_errors++;
    } else {
      sockets.delete(s);
      stats.open_now--;
      if (!ours) {
        stats.closed_by_daemon++;
        if (outstanding) stats.closed_with_request_outstanding++;
        if (mode === 'drip') stats.drip_lifetimes_ms.push(Date.now() - connectedAt);
      }
    }
    if (!stopping && !ours) setTimeout(open, REOPEN_MS);
  });
  (s as Socket & { markOurs?: () => void }).markOurs = () => { ours = true; };
}

/** What the uid holds once the daemon's closes have arrived (no more reopening meanwhile). */
const SETTLE_MS = 500;

async function finish(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  stats.held_after_settle = stats.open_now;
  for (const s of sockets) {
    (s as Socket & { markOurs?: () => void }).markOurs?.();
    s.destroy();
  }
  stats.wall_ms = Date.now() - t0;
  const l = [...stats.drip_lifetimes_ms].sort((x, y) => x - y);
  const summary = {
    ...stats,
    drip_lifetimes_ms: undefined,
    drip_closed: l.length,
    drip_life_min_ms: l[0] ?? null,
    drip_life_median_ms: l[Math.floor(l.length / 2)] ?? null,
    drip_life_max_ms: l[l.length - 1] ?? null,
  };
  process.stdout.write(JSON.stringify(summary) + '\n', () => process.exit(0));
}

process.stdin.on('data', () => { /* only EOF matters */ });
process.stdin.on('end', () => void finish());
process.on('SIGTERM', () => void finish());

for (let i = 0; i < CONNS; i++) open();
// "ready" once every connection is open (or after 3 s: some may have been refused on purpose)
const readyAt = Date.now() + 3000;
const ready = setInterval(() => {
  if (stats.opened + stats.connect_errors >= CONNS || Date.now() > readyAt) {
    clearInterval(ready);
    process.stdout.write(JSON.stringify({ ready: 1, open_now: stats.open_now, opened: stats.opened }) + '\n');
  }
}, 20);
