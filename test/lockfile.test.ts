// package-lock.json must let `npm ci` install on every platform, not only the one it was written
// on: every optional dependency (the per-platform binaries of sharp, esbuild, msgpackr-extract) has
// its own entry, and the lock agrees with package.json. A lock missing them installs here and breaks
// `npm ci` elsewhere (the fresh-clone failure this project once had). .ci/run also checks that an
// install leaves the lock unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface LockEntry {
  version?: string;
  integrity?: string;
  resolved?: string;
  link?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

const lock = JSON.parse(readFileSync(path.join(REPO, 'package-lock.json'), 'utf8')) as { lockfileVersion: number; packages: Record<string, LockEntry> };
const manifest = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as LockEntry;
const packages = lock.packages;

/** Where Node (and npm) find `name` from the package at `from`: its own node_modules, then each parent's. */
function locate(name: string, from: string): string | undefined {
  let dir = from;
  for (;;) {
    const candidate = dir ? `${dir}/node_modules/${name}` : `node_modules/${name}`;
    if (packages[candidate]) return candidate;
    if (!dir) return undefined;
    const at = dir.lastIndexOf('/node_modules/');
    dir = at < 0 ? '' : dir.slice(0, at);
  }
}

test('lockfile v3 that agrees with package.json', () => {
  assert.equal(lock.lockfileVersion, 3);
  const root = packages[''];
  assert.deepEqual(root.dependencies, manifest.dependencies);
  assert.deepEqual(root.devDependencies, manifest.devDependencies);
});

test('every dependency, optional ones for other platforms included, has an entry', () => {
  const missing: string[] = [];
  let optional = 0;
  for (const [where, entry] of Object.entries(packages)) {
    for (const [kind, deps] of [['dependency', entry.dependencies], ['optional', entry.optionalDependencies]] as const) {
      for (const name of Object.keys(deps ?? {})) {
        if (kind === 'optional') optional++;
        if (!locate(name, where)) missing.push(`${where || '(root)'} -> ${name} (${kind})`);
      }
    }
  }
  assert.deepEqual(missing, []);
  assert.ok(optional > 50, `only ${optional} optional dependencies: the per-platform packages are gone`);
  // The ones that went missing before, by name: a platform each user of the lock may be on.
  for (const name of ['@msgpackr-extract/msgpackr-extract-darwin-arm64', '@msgpackr-extract/msgpackr-extract-linux-arm64', '@msgpackr-extract/msgpackr-extract-win32-x64', '@img/sharp-linux-arm64', '@img/sharp-darwin-arm64', '@img/sharp-win32-x64', '@esbuild/linux-arm64', '@esbuild/darwin-arm64']) {
    assert.ok(packages[`node_modules/${name}`], name);
  }
});

test('every entry is pinned by integrity, with no download address to rewrite', () => {
  for (const [where, entry] of Object.entries(packages)) {
    if (!where || entry.link) continue;
    assert.match(entry.integrity ?? '', /^sha512-/, `${where} has no sha512 integrity`);
    assert.equal(entry.resolved, undefined, `${where} records a download address (.npmrc omit-lockfile-registry-resolved)`);
  }
});
