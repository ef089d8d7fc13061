// What README.md tells a new user that the code also says: the options block is the server's own
// usage text, so neither drifts from the other unnoticed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { USAGE } from '../server/config.js';

const README = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');

test("README's options block is the server's usage text", () => {
  const start = README.indexOf('npm start -- [options]\n');
  assert.ok(start >= 0, 'README has an options block');
  const block = README.slice(start, README.indexOf('```', start)).trimEnd();
  assert.equal(block, USAGE.replace(/^Usage: /, '').trimEnd());
});
