// The offline GPU bundle (scripts/pack-gpu-bundle.sh). Always: the staging step keeps exactly the
// linux-x64 runtime (no other platforms, no install-time helpers) and the staged server still
// starts and warms up from the pruned node_modules. When a packed bundle exists (packing takes
// minutes, so the suite does not pack one): scripts/check-gpu-bundle.sh on it, i.e. the bundled node
// running the bundled server on the CPU provider, /readyz 200 and real frames.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const BUNDLE = process.env.GPU_BUNDLE ?? path.join(REPO, '.scratch', 'gpu-bundle', 'realtime-diffusion-gpu-bundle.tar.xz');
const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

test('staging keeps the linux-x64 runtime only, and the staged server starts', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'gpu-stage-'));
  dirs.push(dir);
  const stage = path.join(dir, 'rtd-gpu-bundle');
  execFileSync(process.execPath, [path.join(REPO, 'dist', 'scripts', 'gpu-bundle-files.js'), stage], { stdio: 'pipe' });
  const modules = path.join(stage, 'node_modules');
  assert.deepEqual(readdirSync(path.join(modules, 'onnxruntime-node', 'bin', 'napi-v6')), ['linux']);
  assert.deepEqual(readdirSync(path.join(modules, 'onnxruntime-node', 'bin', 'napi-v6', 'linux')), ['x64']);
  assert.deepEqual(readdirSync(path.join(modules, 'uWebSockets.js', 'binaries')), ['uws_linux_x64_115.node']);
  for (const gone of ['adm-zip', 'global-agent', 'typescript', 'esbuild', 'playwright-core']) assert.ok(!existsSync(path.join(modules, gone)), gone);
  for (const kept of ['ws', 'sharp', '@img/sharp-linux-x64', 'msgpackr', 'pino', 'prom-client', 'jose', 'onnxruntime-common']) assert.ok(existsSync(path.join(modules, kept)), kept);
  for (const file of ['dist/server/main.js', 'dist/bench/gpu.js', 'dist/bench/gpu-sessions.js', 'gpu/measure.sh', 'gpu/standin/make_standin.py', 'models/default/unet/model.onnx']) {
    assert.ok(existsSync(path.join(stage, file)), file);
  }
  assert.equal((JSON.parse(readFileSync(path.join(stage, 'package.json'), 'utf8')) as { type: string }).type, 'module');

  const proc = spawn(process.execPath, [path.join(stage, 'dist', 'server', 'main.js'), '--port', '0', '--threads', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const lines = createInterface({ input: proc.stdout! });
    const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('staged server not ready in 60 s')), 60_000);
      lines.on('line', (line) => {
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (entry.msg === 'model ready' || entry.msg === 'model failed to load') {
          clearTimeout(timer);
          resolve(entry);
        }
      });
      proc.once('exit', (code) => reject(new Error(`staged server exited with ${code}`)));
    });
    assert.equal(ready.msg, 'model ready', JSON.stringify(ready));
  } finally {
    proc.kill('SIGTERM');
    if (proc.exitCode === null) await once(proc, 'exit');
  }
});

test('a packed bundle runs with its own node on the CPU provider', { skip: !existsSync(BUNDLE) && `no bundle at ${BUNDLE}: run scripts/pack-gpu-bundle.sh` }, () => {
  const size = readFileSync(BUNDLE).byteLength;
  assert.ok(size <= 60_000_000, `bundle is ${size} bytes, over 60 MB`);
  const result = spawnSync('bash', [path.join(REPO, 'scripts', 'check-gpu-bundle.sh'), BUNDLE], { encoding: 'utf8', timeout: 180_000 });
  assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
  assert.match(result.stdout, /\/readyz: 200/);
  assert.match(result.stdout, /bundle check passed: \/readyz 200, \d+ frames through the bundled server/);
});
