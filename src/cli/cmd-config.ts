// latchkeyctl check-config [FILE]: offline validation with the daemon's own loader, so the CLI
// and latchkeyd can never disagree about what a config file means; then the cross-checks
// against sshd_config and the installed systemd unit (src/sshdconf) that latchkeyd also runs at
// start, plus sshd's own verdict on its file (`sshd -T`).
import { loadConfig } from '../config/load.js';
import { checkDeployment, formatFinding, type Finding } from '../sshdconf/checks.js';
import { readDeployment, sshdOwnCheck } from '../sshdconf/deploy.js';
import { redactConfig, formatConfigIni } from '../config/format.js';
import type { Config } from '../config/types.js';
import { type CommandDef, EXIT_FAIL, EXIT_OK } from './command.js';
import { renderJson } from './format.js';
import { expectPositionals } from './args.js';

export const DEFAULT_CONFIG_FILE = '/etc/latchkey/latchkey.conf';

export const checkConfig: CommandDef = {
  async run(ctx, pos) {
    expectPositionals('check-config', pos, 0, 1, 'at most one FILE');
    const file = pos[0] ?? DEFAULT_CONFIG_FILE;
    let cfg: Config;
    try {
      cfg = loadConfig(file);
    } catch (e) {
      // ConfigError messages already read "FILE:LINE: key: problem"; a missing or unreadable
      // file arrives as a plain fs error, which gets the file name added.
      const code = (e as NodeJS.ErrnoException).code;
      const msg = e instanceof Error ? e.message : String(e);
      const text = code && !msg.includes(file) ? `${file}: ${msg}` : msg;
      if (ctx.mode === 'json') ctx.out(renderJson({ ok: false, file, error: text }));
      ctx.err(`latchkeyctl: ${text}\n`);
      return EXIT_FAIL;
    }
    const findings: Finding[] = checkDeployment(readDeployment(cfg, { unit: true })).findings;
    const own = sshdOwnCheck(cfg.daemon.sshdConfig);
    if (own) findings.push(own);
    const errors = findings.filter((f) => f.severity === 'error').length;
    if (ctx.mode === 'json') {
      ctx.out(renderJson({ ok: errors === 0, file, config: redactConfig(cfg), findings }));
    } else {
      // formatConfigIni never shows a secret (keys.ts: `secret` keys have no `show`).
      for (const f of findings) ctx.err(`${formatFinding(f)}\n`);
      ctx.err(errors === 0 ? `${file}: ok\n` : `${file}: ${errors} error(s) between latchkey, sshd and systemd; see above\n`);
      ctx.out(formatConfigIni(cfg));
    }
    return errors === 0 ? EXIT_OK : EXIT_FAIL;
  },
};
