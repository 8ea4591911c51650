// Config texts for the parser's tests: the two required endpoints, and a check that a body is
// refused with a ConfigError naming the key and saying the fix.
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

export const HEAD = '[upstream]\nby_name_url = https://u.example/users/\nby_uid_url = https://u.example/uids/\n';
export const conf = (body: string): string => HEAD + body;

export function refused(body: string, key: string, words: RegExp): void {
  assert.throws(() => parseConfig(conf(body), 'x.conf'), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.match(e.message, new RegExp(key.replace('.', '\\.')));
    assert.match(e.message, words);
    return true;
  });
}
