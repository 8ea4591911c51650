// Hash upgrades on login (issue 16). After a successful login of a stored user whose hash was made
// under another context than [local] default_context, the password just typed is re-hashed under
// the default: here (upgrade = local) or by the primary (upgrade = remote, a POST to its update
// endpoint, endpoint.ts). Either way it is opportunistic: the login never waits for it, a failure
// is counted and logged (rate-limited, never the password) and otherwise ignored, and the next
// login tries again. Nothing here is on a login's path but a few synchronous checks.
import { Agent } from 'undici';
import type { Config, LocalConfig } from '../config/types.js';
import { log, logLimited } from '../log.js';
import { credentialHeader, readCapped, readPem } from '../upstream/client.js';
import { contextProblem, findContext, newHash } from './contexts.js';
import type { LocalStore } from './store.js';

/** What an upgrade needs of the store (store.ts). */
export type UpgradeStore = Pick<LocalStore, 'get' | 'setHashIf'>;

/** The user a login just accepted, as verify/login.ts has it. */
export interface LoggedInUser {
  name: string;
  passwordHash: string;
  /** the context the hash was made under; null when unknown (imported): upgraded too */
  context: string | null;
}

/** The counters `latchkeyctl stats` and `status` show. */
export interface UpgradeCounts {
  local_ok: number;
  local_failed: number;
  remote_ok: number;
  remote_failed: number;
  /** remote upgrades not sent: upgrade_max_concurrent were in flight, or this user's already was */
  remote_skipped: number;
}

export class UpgradeStats {
  readonly counts: UpgradeCounts = { local_ok: 0, local_failed: 0, remote_ok: 0, remote_failed: 0, remote_skipped: 0 };
  snapshot(): UpgradeCounts { return { ...this.counts }; }
}

/**
 * Local upgrades waiting for the one background hash (contexts.ts). A few: a burst of logins of
 * old-context users must not hold their passwords in memory, and a name dropped here is upgraded
 * at its next login.
 */
export const LOCAL_QUEUE_MAX = 4;

/** Bytes of the primary's reply read at most (it is `{"upgraded": bool, "context": id}`). */
export const MAX_REPLY_BYTES = 4096;

const USER_AGENT = 'latchkey/0.1';

type BodyStream = AsyncIterable<Buffer> & { destroy(err?: Error): unknown };

/** The settings the agent was built from: a reload that changes one of them builds a new agent. */
type AgentKey = Pick<LocalConfig, 'upgradeUrl' | 'upgradeCaFile' | 'upgradeCertFile' | 'upgradeKeyFile' | 'upgradeTimeoutMs' | 'upgradeMaxConcurrent'>;

export class Upgrader {
  private readonly queue: Array<{ user: LoggedInUser; password: string }> = [];
  private running = false;
  private readonly inFlight = new Set<string>();
  private agent: { key: string; agent: Agent } | null = null;
  private closed = false;

  constructor(
    private readonly cfg: () => Config,
    private readonly store: UpgradeStore,
    readonly stats: UpgradeStats = new UpgradeStats(),
  ) {}

  counts(): UpgradeCounts { return this.stats.snapshot(); }

  /**
   * Called after an accepted password. Returns at once, before any hash or request: the work runs
   * in the background and nothing the login waits for depends on it.
   */
  afterLogin(user: LoggedInUser, password: string): void {
    if (this.closed) return;
    const c = this.cfg();
    const l = c.local;
    if (l.upgrade === 'off' || user.context === l.defaultContext || !user.passwordHash) return;
    const ctx = findContext(l, l.defaultContext);
    // The loader refuses both (config/load.ts finishContexts); a hand-built config is told once.
    if (ctx === null || contextProblem(ctx, c.pam) !== null) {
      logLimited('upgrade.default_unusable', 'error', 'upgrade.default_unusable', {
        context: l.defaultContext, reason: ctx === null ? 'not defined in [local] contexts' : 'its hashes are above the [pam] ceilings',
        hint: 'fix [local] default_context / contexts; no upgrade is made meanwhile',
      });
      return;
    }
    if (l.upgrade === 'local') this.enqueueLocal(user, password);
    else this.sendRemote(user, password, l);
  }

  /** Stops taking upgrades; waiting local ones are dropped, requests in flight aborted. */
  async close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    const a = this.agent;
    this.agent = null;
    if (a) await a.agent.destroy().catch(() => undefined);
  }

  // --- local -------------------------------------------------------------------------------

  private enqueueLocal(user: LoggedInUser, password: string): void {
    if (this.queue.some((q) => q.user.name === user.name)) return;
    if (this.queue.length >= LOCAL_QUEUE_MAX) {
      logLimited('upgrade.local_dropped', 'debug', 'upgrade.local_dropped', { user: user.name, queued: this.queue.length, detail: 'upgrade queue full; the next login retries' });
      return;
    }
    this.queue.push({ user: { name: user.name, passwordHash: user.passwordHash, context: user.context }, password });
    if (!this.running) {
      this.running = true;
      // setImmediate: the login's reply is written before the first hash starts.
      setImmediate(() => { void this.drainLocal(); });
    }
  }

  private async drainLocal(): Promise<void> {
    try {
      for (let next = this.queue.shift(); next && !this.closed; next = this.queue.shift()) {
        await this.upgradeLocal(next.user, next.password);
      }
    } finally {
      this.running = false;
    }
  }

  private async upgradeLocal(user: LoggedInUser, password: string): Promise<void> {
    // The default may have moved since the login was queued (a reload): use the current one.
    const l = this.cfg().local;
    const ctx = findContext(l, l.defaultContext);
    if (ctx === null || user.context === ctx.id) return;
    const started = Date.now();
    try {
      const hash = await newHash(password, ctx);
      if (this.closed) return;
      // Compare-and-swap: a password changed (or already upgraded) meanwhile wins.
      const stored = this.store.setHashIf(user.name, user.passwordHash, hash, ctx.id);
      if (!stored) {
        log('info', 'upgrade.local_superseded', { user: user.name, to: ctx.id, detail: 'the hash changed during the upgrade; the new one was kept' });
        return;
      }
      this.stats.counts.local_ok++;
      log('info', 'upgrade.local', { user: user.name, from: user.context, to: ctx.id, ms: Date.now() - started });
    } catch (e) {
      this.stats.counts.local_failed++;
      logLimited('upgrade.local_failed', 'warn', 'upgrade.local_failed', { user: user.name, to: ctx.id, error: errorText(e) });
    }
  }

  // --- remote ------------------------------------------------------------------------------

  private sendRemote(user: LoggedInUser, password: string, l: LocalConfig): void {
    if (l.upgradeUrl === null) {
      this.stats.counts.remote_failed++;
      logLimited('upgrade.remote_failed:config', 'error', 'upgrade.remote_failed', { user: user.name, error: 'upgrade = remote without upgrade_url' });
      return;
    }
    if (this.inFlight.size >= l.upgradeMaxConcurrent || this.inFlight.has(user.name)) {
      this.stats.counts.remote_skipped++;
      logLimited('upgrade.remote_skipped', 'info', 'upgrade.remote_skipped', {
        user: user.name, in_flight: this.inFlight.size, limit: l.upgradeMaxConcurrent,
        detail: 'upgrade_max_concurrent upgrades are in flight (or this user\'s is); the next login retries',
      });
      return;
    }
    this.inFlight.add(user.name);
    void this.postUpgrade(user.name, password, l).finally(() => this.inFlight.delete(user.name));
  }

  private async postUpgrade(name: string, password: string, l: LocalConfig): Promise<void> {
    const started = Date.now();
    const url = new URL(l.upgradeUrl!);
    const ac = new AbortController();
    // One deadline for everything: the connection, TLS, the reply's headers and its body.
    const timer = setTimeout(() => ac.abort(new Error(`no complete reply within ${l.upgradeTimeoutMs} ms (upgrade_timeout)`)), l.upgradeTimeoutMs);
    let status: number | undefined;
    try {
      const agent = this.agentFor(l);
      const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json', 'user-agent': USER_AGENT };
      const auth = authorization(l);
      if (auth) headers.authorization = auth;
      // undici's dispatcher API never follows a redirect: the password goes to upgrade_url only.
      const res = await agent.request({
        origin: url.origin, path: url.pathname + url.search, method: 'POST', headers,
        body: JSON.stringify({ user: name, password, context: l.defaultContext }), signal: ac.signal,
      });
      status = res.statusCode;
      const reply = await readCapped(res.body as unknown as BodyStream, MAX_REPLY_BYTES, () => new Error(`the primary's reply is over ${MAX_REPLY_BYTES} bytes`));
      if (status !== 200) throw new Error(`the primary answered HTTP ${status}${statusHint(status)}`);
      const parsed = parseReply(reply);
      this.stats.counts.remote_ok++;
      log('info', 'upgrade.remote', { user: name, upgraded: parsed.upgraded, context: parsed.context, ms: Date.now() - started });
    } catch (e) {
      this.stats.counts.remote_failed++;
      const error = ac.signal.aborted ? errorText(ac.signal.reason) : errorText(e);
      logLimited(`upgrade.remote_failed:${status ?? 'io'}`, 'warn', 'upgrade.remote_failed', {
        user: name, url: `${url.origin}${url.pathname}`, ...(status !== undefined ? { status } : {}), error: redact(error, l), ms: Date.now() - started,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  private agentFor(l: LocalConfig): Agent {
    const k: AgentKey = {
      upgradeUrl: l.upgradeUrl, upgradeCaFile: l.upgradeCaFile, upgradeCertFile: l.upgradeCertFile,
      upgradeKeyFile: l.upgradeKeyFile, upgradeTimeoutMs: l.upgradeTimeoutMs, upgradeMaxConcurrent: l.upgradeMaxConcurrent,
    };
    const key = JSON.stringify(k);
    if (this.agent?.key === key) return this.agent.agent;
    const agent = new Agent({
      connect: {
        timeout: l.upgradeTimeoutMs,
        ca: l.upgradeCaFile ? readPem(l.upgradeCaFile, 'upgrade_cacertfile', '[local]') : undefined,
        cert: l.upgradeCertFile ? readPem(l.upgradeCertFile, 'upgrade_certfile', '[local]') : undefined,
        key: l.upgradeKeyFile ? readPem(l.upgradeKeyFile, 'upgrade_keyfile', '[local]') : undefined,
        rejectUnauthorized: true,
      },
      headersTimeout: l.upgradeTimeoutMs,
      bodyTimeout: l.upgradeTimeoutMs,
      connections: l.upgradeMaxConcurrent,
      pipelining: 1,
    });
    const old = this.agent;
    this.agent = { key, agent };
    // Requests still running on the old agent finish (close waits for them, each bounded).
    if (old) void old.agent.close().catch(() => undefined);
    return agent;
  }
}

function authorization(l: LocalConfig): string | null {
  return credentialHeader(l.upgradeBasicAuth, l.upgradeBearerToken).header;
}

/** Error texts come from undici and the TLS stack; none carries a credential, but make sure. */
function redact(text: string, l: LocalConfig): string {
  let out = text;
  for (const s of credentialHeader(l.upgradeBasicAuth, l.upgradeBearerToken).secrets) out = out.split(s).join('<redacted>');
  return out;
}

function parseReply(bytes: Buffer): { upgraded: boolean; context: string } {
  let v: unknown;
  try { v = JSON.parse(bytes.toString('utf8')); } catch { throw new Error('the primary\'s reply is not JSON'); }
  const o = v as { upgraded?: unknown; context?: unknown } | null;
  if (o === null || typeof o !== 'object' || typeof o.upgraded !== 'boolean' || typeof o.context !== 'string' || o.context.length > 64) {
    throw new Error('the primary\'s reply is not {"upgraded": bool, "context": id}');
  }
  return { upgraded: o.upgraded, context: o.context };
}

function statusHint(status: number): string {
  switch (status) {
    case 401: return ' (check upgrade_bearer_token against the primary\'s upgrade_listen_token)';
    case 404: return ' (the user is not in the primary\'s store, or upgrade_url\'s path is wrong)';
    case 409: return ' (the primary does not accept this password: it was changed there)';
    case 429: return ' (the primary throttles this user or this host)';
    default: return '';
  }
}

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    const cause = (e as { cause?: unknown }).cause;
    const causeText = cause instanceof Error ? ` (${cause.message})` : '';
    return `${e.message}${typeof code === 'string' && !e.message.includes(code) ? ` [${code}]` : ''}${causeText}`;
  }
  return String(e);
}
