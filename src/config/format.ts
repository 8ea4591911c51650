// The effective config for humans (`latchkeyctl check-config`, `status`): as JSON or as INI.
// Secrets are replaced before anything is rendered, so no output path can leak one.
import type { Config } from './types.js';
import { KEYS, SECTIONS } from './keys.js';
import { formatOctal } from './values.js';

export const REDACTED = '<redacted>';

/** JSON-able copy of the config; secrets are `"<redacted>"`, the name rule is its source text. */
export function redactConfig(cfg: Config): Record<string, unknown> {
  const { basicAuth, bearerToken } = cfg.upstream;
  return {
    source: cfg.source,
    upstream: {
      ...cfg.upstream,
      basicAuth: basicAuth ? { user: basicAuth.user, password: REDACTED } : null,
      bearerToken: bearerToken === null ? null : REDACTED,
    },
    cache: { ...cfg.cache },
    users: { ...cfg.users, nameRegex: cfg.users.nameRegex.source },
    homes: { ...cfg.homes, mode: formatOctal(cfg.homes.mode, 4), umask: formatOctal(cfg.homes.umask, 3) },
    pam: { ...cfg.pam },
    daemon: { ...cfg.daemon },
    local: {
      ...cfg.local,
      contexts: cfg.local.contexts.map((c) => ({ ...c })),
      upgradeBasicAuth: cfg.local.upgradeBasicAuth ? { user: cfg.local.upgradeBasicAuth.user, password: REDACTED } : null,
      upgradeBearerToken: cfg.local.upgradeBearerToken === null ? null : REDACTED,
      upgradeListenToken: cfg.local.upgradeListenToken === null ? null : REDACTED,
    },
  };
}

/** The effective config as a sectioned latchkey.conf that parses back to the same values. */
export function formatConfigIni(cfg: Config): string {
  const out = [`# effective configuration${cfg.source ? ' from ' + cfg.source : ' (built-in defaults)'}`];
  for (const sec of SECTIONS) {
    out.push('', `[${sec}]`);
    for (const spec of KEYS) {
      if (spec.section !== sec || spec.key === null || spec.key === 'secrets_file') continue;
      const v = spec.show(cfg);
      out.push(v === null ? `# ${spec.key} =` : `${spec.key} = ${iniValue(v)}`);
    }
  }
  return out.join('\n') + '\n';
}

/**
 * Writes a value so `ini` reads it back unchanged: JSON quotes when it reads values trimmed or
 * unquoted, otherwise backslash before the characters that would start a comment.
 * (ini.safe would also quote every URL with `=` in its query, which reads worse and is not needed.)
 */
export function iniValue(v: string): string {
  if (v !== v.trim() || /^["']/.test(v) || /[\r\n]/.test(v)) return JSON.stringify(v);
  return v.replace(/[;#]/g, (c) => '\\' + c);
}
