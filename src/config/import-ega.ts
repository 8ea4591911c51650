// `latchkeyctl import-ega`: turns a LocalEGA /etc/ega/auth.conf into a sectioned latchkey.conf
// and a secrets file (the credentials), and says what it could not carry over and what latchkeyd
// does differently from LocalEGA. Pure: the command (src/cli/cmd-import-ega.ts) reads and writes.
// The file is read as EGA-auth's readconfig() reads it (scan.ts legacyValue); the key table
// (keys.ts) names every LocalEGA key; the result is checked with the daemon's own parser.
import { ConfigError, configErrorList } from '../errors.js';
import { KEYS, RETIRED_LEGACY, findLegacy, type KeySpec } from './keys.js';
import { defaultConfig, parseConfig } from './load.js';
import { iniValue } from './format.js';
import { legacyValue } from './scan.js';
import { ValueProblem } from './values.js';

export interface Dropped { line: number; key: string; reason: string }

export interface Conversion {
  /** the latchkey.conf text (no secret in it) */
  config: string;
  /** the secrets file text (username, password), or null when the file had no cega_creds */
  secrets: string | null;
  /** every line that was not carried over, and why */
  dropped: Dropped[];
  /** what latchkeyd does differently from LocalEGA with this configuration */
  changes: string[];
  /** what latchkeyd would refuse in the result (FILE:LINE: key: problem), to fix before it starts */
  problems: string[];
}

interface Carried { spec: KeySpec; name: string; line: number; value: string }

/**
 * `secretsPath`: where the secrets file will be (written into the config as secrets_file).
 * Throws a ConfigError when the file is not a LocalEGA file (it has [sections]).
 */
export function convertEgaAuth(text: string, file: string, secretsPath: string): Conversion {
  const dropped: Dropped[] = [];
  const carried: Carried[] = [];
  const lines = text.split(/\r\n|\n|\r/);
  lines.forEach((raw, i) => {
    const line = i + 1;
    const s = raw.trim();
    if (s === '' || s.startsWith('#') || s.startsWith(';')) return;
    if (/^\[.*\]$/.test(s)) throw new ConfigError(file, line, '', 'has a [section]: this is already a latchkey.conf, not a LocalEGA auth.conf; check it with latchkeyctl check-config');
    const eq = raw.indexOf('=');
    // Not quoted: a line without "=" may be a password typed on its own.
    if (eq < 0) { dropped.push({ line, key: '(line not shown)', reason: 'is not key = value (LocalEGA ignored it too)' }); return; }
    const key = raw.slice(0, eq).trim();
    if (Object.hasOwn(RETIRED_LEGACY, key)) { dropped.push({ line, key, reason: `older LocalEGA key: ${RETIRED_LEGACY[key]}` }); return; }
    const spec = findLegacy(key);
    if (!spec) {
      const native = KEYS.find((k) => k.key === key);
      dropped.push({ line, key, reason: native ? `not a LocalEGA key (LocalEGA ignored it); latchkey has [${native.section}] ${key}: add it there if you meant it` : 'unknown to LocalEGA (which ignored it) and to latchkey' });
      return;
    }
    const v = legacyValue(raw.slice(eq + 1), spec.wholeLine);
    if (!v.ok) { dropped.push({ line, key, reason: v.problem }); return; }
    const twice = carried.find((c) => c.spec === spec);
    if (twice) {
      // LocalEGA's parser let the last line win.
      dropped.push({ line: twice.line, key: twice.name, reason: `given again on line ${line}, which wins (as in LocalEGA)` });
      carried.splice(carried.indexOf(twice), 1);
    }
    carried.push({ spec, name: key, line, value: v.value });
  });

  const given = (k: string): Carried | undefined => carried.find((c) => c.spec.legacy === k);
  const changes: string[] = [];
  const out: Record<string, string[]> = {};
  const put = (section: string, textLines: string[]): void => { (out[section] ??= []).push(...textLines); };
  let secrets: string | null = null;
  let credentialsLost: string | null = null;
  for (const c of carried) {
    const from = `# ${file}:${c.line}: ${c.name}`;
    if (c.spec.legacy === 'cega_creds') {
      const i = c.value.indexOf(':');
      if (i <= 0 || i === c.value.length - 1) {
        dropped.push({ line: c.line, key: c.name, reason: 'is not of the form user:password (value not shown)' });
        // The user service expected credentials: without them every lookup would be refused.
        credentialsLost = `cega_creds (${file}:${c.line}) is not of the form user:password, so no credentials were carried over; put username = and password = in the secrets file`;
        continue;
      }
      secrets = `# HTTP basic credentials for the user service, from ${file}:${c.line} (cega_creds)\n`
        + `username = ${iniValue(c.value.slice(0, i))}\npassword = ${iniValue(c.value.slice(i + 1))}\n`;
      put('upstream', [`${from} (user and password moved to the secrets file)`, `secrets_file = ${secretsPath}`]);
      continue;
    }
    if (c.spec.legacy === 'db_path') {
      dropped.push({ line: c.line, key: c.name, reason: `${c.value} is in a directory latchkeyd (an unprivileged account) cannot write; the cache is /run/latchkey/cache.db, the daemon's own (a RAM SQLite cache rebuilt from the user service)` });
      continue;
    }
    if ((c.spec.legacy === 'verify_peer' || c.spec.legacy === 'verify_hostname') && !isYes(c.value)) {
      dropped.push({ line: c.line, key: c.name, reason: `is "${c.value}": latchkey verifies the user service's certificate (see the changes); to keep LocalEGA's behaviour add ${c.spec.key} = no and insecure_tls = yes under [upstream], and anyone on the network path can answer with any password hash` });
      continue;
    }
    // Checked with the key's own parser, so a value latchkey would refuse is named here.
    try { c.spec.apply({ cfg: defaultConfig(), username: null, password: null, secretsFile: null, upgradeUsername: null, upgradePassword: null, setAt: new Map() }, c.value); } catch (e) {
      if (!(e instanceof ValueProblem)) throw e;
      dropped.push({ line: c.line, key: c.name, reason: `${JSON.stringify(c.value)} ${e.message}` });
      continue;
    }
    put(c.spec.section, [from, `${c.spec.key} = ${iniValue(c.value)}`]);
  }

  // What differs from LocalEGA, for this file.
  const verifying = (k: string): boolean => { const g = given(k); return g !== undefined && isYes(g.value); };
  if (!verifying('verify_peer') || !verifying('verify_hostname')) {
    changes.push('TLS: latchkeyd verifies the user service\'s certificate and host name (LocalEGA did not unless verify_peer/verify_hostname = yes), against the system CA store unless cacertfile is set');
  }
  const http = carried.filter((c) => (c.spec.legacy === 'cega_endpoint_username' || c.spec.legacy === 'cega_endpoint_uid') && /^http:/i.test(c.value));
  if (http.length > 0 && !given('insecure_http')) {
    changes.push(`http://: latchkeyd refuses a plain http:// user service (${http.map((c) => c.name).join(', ')}): anyone on the path could read the credentials or answer with any password hash; use https://, or add insecure_http = yes under [upstream] for a private link`);
    put('upstream', ['# LocalEGA sent the credentials over plain http://; latchkeyd needs this line to do the same (see import-ega\'s list of changes)', '#insecure_http = yes']);
  }
  changes.push(`homes: latchkeyd's default layout (chroot) keeps ${given('ega_dir')?.value ?? '/ega/inbox'}/NAME root-owned for sshd's ChrootDirectory and gives the user NAME/inbox with ega_dir_attrs; LocalEGA made NAME itself the user's. For LocalEGA's layout set layout = plain under [homes]`);
  put('homes', ['# LocalEGA made the home itself the user\'s; latchkey\'s default (chroot) adds an inbox/ inside a root-owned home', '#layout = plain']);
  changes.push(`group: latchkeyd's NSS module also answers for the users' group (gid ${given('ega_gid')?.value ?? '10000'}) by the name "lega" ([users] group_name) when /etc/group does not have that gid; LocalEGA served no group. Set group_name if the group has another name`);
  changes.push('cache: a user the user service does not know is remembered as unknown for 60 s ([cache] negative_ttl), and when the user service is down, cached users are still served up to 1 h past their ttl ([cache] stale_grace)');
  changes.push('passwords: after 5 wrong passwords in 5 min a user is locked out for 5 min ([pam] max_failures, throttle_window, throttle_lockout); LocalEGA did not throttle');
  changes.push('names: only names matching ^[a-z_][a-z0-9_.-]{0,31}$ are asked of the user service ([users] name_regex), and root never ([users] deny_names)');

  const header = [`# latchkey.conf written by latchkeyctl import-ega from ${file}.`,
    '# Each setting names the LocalEGA line it came from; see latchkey.conf(5) for the rest.', ''];
  const body: string[] = [];
  for (const section of ['upstream', 'cache', 'users', 'homes', 'pam']) {
    if (!out[section]) continue;
    body.push(`[${section}]`, ...out[section]!, '');
  }
  const config = [...header, ...body].join('\n');

  // The daemon's own parser judges the result, with the secrets inlined as loadConfig would add them.
  const problems: string[] = [];
  const inline = secrets === null ? config : config.replace(`secrets_file = ${secretsPath}`, secrets.split('\n').filter((l) => /^(username|password) =/.test(l)).join('\n'));
  try { parseConfig(inline, 'latchkey.conf'); } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // Never the inlined password: keys are named, values of secrets never shown by the parser.
    problems.push(...configErrorList(e).map((x) => `${x.key || 'line'}: ${x.problem}`));
  }
  if (credentialsLost !== null) problems.push(credentialsLost);
  dropped.sort((a, b) => a.line - b.line);
  return { config, secrets, dropped, changes, problems };
}

function isYes(v: string): boolean {
  return ['yes', 'true', 'on', '1'].includes(v.trim().toLowerCase());
}
