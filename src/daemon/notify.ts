// Tells systemd what the daemon is doing (sd_notify(3), Type=notify): READY=1 once the sockets
// serve, RELOADING=1 … READY=1 around a reload, STOPPING=1, and a one-line STATUS= that
// `systemctl status latchkeyd` shows. Outside systemd (no NOTIFY_SOCKET) it does nothing.
import { loadAddon } from '../native/addon.js';
import { log } from '../log.js';

export class SystemdNotifier {
  private failed = false;
  constructor(private readonly socket: string | undefined = process.env.NOTIFY_SOCKET) {}

  get enabled(): boolean { return this.socket !== undefined && this.socket !== ''; }

  ready(status: string): void { this.send({ READY: '1', STATUS: status }); }
  /** MONOTONIC_USEC: when the reload began, CLOCK_MONOTONIC (what process.hrtime reads on Linux) */
  reloading(): void { this.send({ RELOADING: '1', MONOTONIC_USEC: String(process.hrtime.bigint() / 1000n), STATUS: 'reloading the configuration' }); }
  stopping(): void { this.send({ STOPPING: '1', STATUS: 'stopping' }); }
  status(status: string): void { this.send({ STATUS: status }); }

  private send(fields: Record<string, string>): void {
    if (!this.enabled) return;
    // One line per field; a newline inside a value would start a field of its own.
    const msg = Object.entries(fields).map(([k, v]) => `${k}=${v.replace(/[\r\n]+/g, ' ')}`).join('\n');
    try {
      loadAddon().sdNotify(this.socket!, msg);
      this.failed = false;
    } catch (e) {
      // Once per failure spell: a gone socket must not fill the log every 30 s.
      if (!this.failed) log('warn', 'daemon.notify_failed', { socket: this.socket, error: e instanceof Error ? e.message : String(e) });
      this.failed = true;
    }
  }
}
