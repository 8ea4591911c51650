// What a hostile upstream's strings can do once they reach a log line or a reply detail: nothing
// that forges or hides a line (red-team findings on issue 13), and an unprivileged nss.sock peer
// never learns the endpoint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { log, setLogSink } from '../../src/log.js';
import { publicReason, replyDetail } from '../../src/answers/replies.js';
import { integer, record } from '../../src/protocol/shape.js';

const NASTY = 'x\u2028Accepted password for root\u2029\u202egol.tpecca\u200b\u0085\u007f\u009b[2J\ufeffy';

test('a log line carries no line separator, bidi override, zero-width, DEL or C1 character, and parses back to the same value', () => {
  const lines: string[] = [];
  setLogSink((l) => lines.push(l));
  log('warn', 'test.nasty', { value: NASTY });
  assert.equal(lines.length, 1);
  assert.doesNotMatch(lines[0]!, /[\u007f-\u009f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/);
  assert.equal((JSON.parse(lines[0]!) as { value: string }).value, NASTY, 'escaped, not lost');
});

test('a reply detail has no control, format or separator character (pam_latchkey writes it to auth.log)', () => {
  const d = replyDetail(`HTTP 500: ${NASTY}\nforged line`);
  assert.doesNotMatch(d, /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u);
  assert.match(d, /Accepted password for root/, 'the text stays readable, on one line');
});

test('the public form of a cause hides every endpoint (host, port, path with a key)', () => {
  const r = 'lookup by name at https://cega.example.org:8443/v1/apikey-7f3c/username/alice: HTTP 401; also http://10.0.0.5/x, see ftp://a';
  const p = publicReason(r);
  for (const leak of ['cega.example.org', '8443', 'apikey-7f3c', '10.0.0.5', 'ftp://a']) assert.ok(!p.includes(leak), `${leak} in ${p}`);
  assert.match(p, /lookup by name at <user service>: HTTP 401/);
});

test('a "__proto__" key in a record stays a key and does not re-parent the result', () => {
  const out = record(integer('a count', 0, 10)).check(JSON.parse('{"__proto__": 3, "ok": 1}'), 'x');
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.deepEqual(Object.keys(out).sort(), ['__proto__', 'ok']);
  assert.equal(out['__proto__' as keyof typeof out], 3);
});
