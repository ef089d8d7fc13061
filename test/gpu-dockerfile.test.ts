// Dockerfile.gpu cannot be built here (no Docker engine), so it is checked statically: the base
// image (CUDA 12 + cuDNN 9 runtime on a distribution whose glibc our uWebSockets.js build loads
// on), Node 20, the CUDA provider opt-in, a non-root user, the model volume, the health check on
// /readyz, the bind and port, and that everything it copies from the context exists and is not
// excluded by .dockerignore.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface Instruction {
  op: string;
  args: string;
}

/** Instructions with continuation lines joined and comments dropped; ARG defaults substituted. */
function parse(text: string): { instructions: Instruction[]; args: Map<string, string> } {
  const joined = text.replace(/\\\n/g, ' ');
  const instructions: Instruction[] = [];
  const args = new Map<string, string>();
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [op, ...rest] = line.split(/\s+/);
    const instruction = { op: op.toUpperCase(), args: rest.join(' ') };
    if (instruction.op === 'ARG') {
      const [name, value] = instruction.args.split('=');
      if (value !== undefined) args.set(name, value);
    }
    instructions.push(instruction);
  }
  const expand = (s: string) => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a, b) => args.get(a ?? b) ?? m);
  return { instructions: instructions.map((i) => ({ ...i, args: expand(i.args) })), args };
}

const { instructions, args } = parse(readFileSync(path.join(REPO, 'Dockerfile.gpu'), 'utf8'));
const all = (op: string) => instructions.filter((i) => i.op === op);
const stages = all('FROM');
const runtime = instructions.slice(instructions.lastIndexOf(stages[stages.length - 1]));

test('every stage is a CUDA 12 + cuDNN runtime image on Ubuntu 22.04 or newer (glibc >= 2.34)', () => {
  assert.ok(stages.length >= 1);
  for (const from of stages) {
    const image = from.args.split(/\s+/)[0];
    assert.match(image, /^nvidia\/cuda:12\.\d+(\.\d+)?-cudnn(9)?-runtime-ubuntu(22|24)\.04$/, image);
  }
});

test('Node 20 from the official tarball, checksum verified', () => {
  assert.match(args.get('NODE_VERSION') ?? '', /^20\.\d+\.\d+$/);
  const install = all('RUN').map((r) => r.args).join('\n');
  assert.match(install, /https:\/\/nodejs\.org\/dist\/v20\.\d+\.\d+\//);
  assert.match(install, /node-v20\.\d+\.\d+-linux-x64\.tar\.(gz|xz)/);
  assert.match(install, /SHASUMS256\.txt.*sha256sum -c/);
});

test('the CUDA execution provider is installed (the env var overrides .npmrc) and checked', () => {
  const install = all('RUN').find((r) => /npm ci/.test(r.args));
  assert.ok(install, 'an npm ci step');
  assert.match(install.args, /ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci/);
  assert.match(install.args, /libonnxruntime_providers_cuda\.so/);
  assert.match(readFileSync(path.join(REPO, '.npmrc'), 'utf8'), /^onnxruntime-node-install=skip$/m, 'plain installs stay offline');
});

test('runtime: non-root user, model volume, port, health check on /readyz, public bind', () => {
  const user = runtime.filter((i) => i.op === 'USER').pop();
  assert.ok(user && !/^(root|0)(:|$)/.test(user.args), `USER ${user?.args}`);
  assert.ok(runtime.some((i) => i.op === 'VOLUME' && /\/models\b/.test(i.args)));
  assert.ok(runtime.some((i) => i.op === 'ENV' && /\bMODEL=\/models\b/.test(i.args)));
  assert.ok(runtime.some((i) => i.op === 'ENV' && /\bDEVICE=cuda\b/.test(i.args)));
  assert.ok(runtime.some((i) => i.op === 'EXPOSE' && /\b8080\b/.test(i.args)));
  const health = runtime.find((i) => i.op === 'HEALTHCHECK');
  assert.ok(health && /\/readyz/.test(health.args) && /CMD/.test(health.args));
  const cmd = runtime.filter((i) => i.op === 'CMD').pop();
  assert.ok(cmd && /dist\/server\/main\.js/.test(cmd.args) && /0\.0\.0\.0/.test(cmd.args));
});

test('everything copied from the build context exists and is not excluded by .dockerignore', () => {
  const ignored = readFileSync(path.join(REPO, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const copies = all('COPY').filter((c) => !/--from=/.test(c.args));
  assert.ok(copies.length > 0);
  for (const copy of copies) {
    const parts = copy.args.split(/\s+/).filter((p) => !p.startsWith('--'));
    for (const source of parts.slice(0, -1)) {
      assert.ok(existsSync(path.join(REPO, source)), `COPY ${source}: missing in the repository`);
      assert.ok(!ignored.includes(source), `COPY ${source}: excluded by .dockerignore`);
    }
  }
  for (const needed of ['node_modules', 'dist', '.scratch']) assert.ok(ignored.includes(needed), `.dockerignore should exclude ${needed}`);
});
