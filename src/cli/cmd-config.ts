// latchkeyctl check-config [FILE]: offline validation with the daemon's own loader, so the CLI
// and latchkeyd can never disagree about what a config file means; then the cross-checks
// against sshd_config and the installed systemd unit (src/sshdconf) that latchkeyd also runs at
// start, plus sshd's own verdict on its file (`sshd -T`).
import { configNotices, loadConfig } from '../config/load.js';
import { ConfigError, configErrorList } from '../errors.js';
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
      // code: unreadable (the file could not be read) or invalid (the loader refused it).
      // errors: every mistake in the file (the loader reports them all in one run), one object each.
      const errors = e instanceof ConfigError
        ? configErrorList(e).map((x) => ({ file: x.file, line: x.line, key: x.key, problem: x.problem, message: x.message }))
        : [{ file, line: 0, key: '', problem: text, message: text }];
      if (ctx.mode === 'json') ctx.out(renderJson({ ok: false, code: e instanceof ConfigError ? 'invalid' : 'unreadable', file, error: text, errors }));
      ctx.err(text.split('\n').map((l) => `latchkeyctl: ${l}\n`).join(''));
      if (errors.length > 1) ctx.err(`latchkeyctl: ${file}: ${errors.length} errors\n`);
      return EXIT_FAIL;
    }
    const findings: Finding[] = checkDeployment(readDeployment(cfg, { unit: true })).findings;
    const own = sshdOwnCheck(cfg.daemon.sshdConfig);
    if (own) findings.push(own);
    const errors = findings.filter((f) => f.severity === 'error').length;
    // What the loader changed on its own (a LocalEGA db_path moved into socket_dir).
    const notices = configNotices(cfg);
    if (ctx.mode !== 'json') for (const n of notices) ctx.err(`latchkeyctl: note: ${n}\n`);
    if (ctx.mode === 'json') {
      // A failed cross-check has the shape of every --json failure too (error, code).
      const failed = errors === 0 ? {} : { error: `${errors} error(s) between latchkey, sshd and systemd; see findings`, code: 'check_failed' };
      ctx.out(renderJson({ ok: errors === 0, ...failed, file, config: redactConfig(cfg), findings, notices }));
    } else {
      // formatConfigIni never shows a secret (keys.ts: `secret` keys have no `show`).
      for (const f of findings) ctx.err(`${formatFinding(f)}\n`);
      ctx.err(errors === 0 ? `${file}: ok\n` : `${file}: ${errors} error(s) between latchkey, sshd and systemd; see above\n`);
      ctx.out(formatConfigIni(cfg));
    }
    return errors === 0 ? EXIT_OK : EXIT_FAIL;
  },
};
