// A throw-away CA and a server certificate for 127.0.0.1 signed by it, made by openssl in a
// scratch directory the test file removes when it ends: the https endpoints of the tests (the
// primary's update endpoint, a test primary) and the clients that must trust them.
import { execFileSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratchDir } from './tmp.js';

export interface TestPki { dir: string; ca: string; cert: string; key: string }

export function testPki(): TestPki {
  const dir = scratchDir('lk-test-pki-');
  // A daemon that dropped to its own uid reads the CA file: a directory it can traverse.
  chmodSync(dir, 0o755);
  const p = (f: string): string => join(dir, f);
  const ssl = (...args: string[]): void => { execFileSync('openssl', args, { stdio: 'pipe' }); };
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2', '-subj', '/CN=latchkey test CA');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('srv.key'), '-out', p('srv.csr'), '-subj', '/CN=127.0.0.1');
  writeFileSync(p('ext.cnf'), 'subjectAltName = IP:127.0.0.1\n');
  ssl('x509', '-req', '-in', p('srv.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('srv.pem'), '-days', '2', '-extfile', p('ext.cnf'));
  chmodSync(p('ca.pem'), 0o644);
  return { dir, ca: p('ca.pem'), cert: p('srv.pem'), key: p('srv.key') };
}
