// The Node.js version check every program runs first (src/runtime/node-version.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nodeVersionProblem } from '../../src/runtime/node-version.js';

test('20.18.1 and newer run; older ones get one line naming what to install', () => {
  for (const ok of ['20.18.1', '20.19.0', '21.0.0', '22.11.0', '20.18.10', process.versions.node]) assert.equal(nodeVersionProblem(ok), null, ok);
  for (const old of ['20.18.0', '20.17.9', '18.19.0', '12.22.12']) {
    assert.match(nodeVersionProblem(old) ?? '', new RegExp(`Node\\.js ${old.replace(/\./g, '\\.')} is too old; latchkey needs Node\\.js 20\\.18\\.1 or newer`), old);
  }
});
