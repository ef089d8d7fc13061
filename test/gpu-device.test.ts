// --device selects onnxruntime-node's execution provider. On these CPU machines the GPU providers
// cannot start, and the server must say why and how to fix it, then exit: the CUDA provider is not
// installed (opt-in download), WebGPU finds no adapter. Where a GPU provider does work (a GPU host
// with it installed), the tests accept that and check the server really serves on it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { ConfigError, DEFAULT_MODEL_DIR, loadConfig } from '../server/config.js';
import { warmOrder, warmUp } from '../server/engine/warmup.js';
import { DiffusionPipeline } from '../server/pipeline/pipeline.js';
import { checkDevice, executionProvidersFor, ModelLoadError, sessionSettingsFor } from '../server/pipeline/onnx-component.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';

const MAIN = fileURLToPath(new URL('../server/main.js', import.meta.url));

describe('device flags', () => {
  test('--device and --device-id (flags and environment)', () => {
    assert.equal(loadConfig([], {}).device, 'cpu');
    assert.deepEqual(
      (({ device, deviceId }) => ({ device, deviceId }))(loadConfig(['--device', 'tensorrt', '--device-id', '1'], {})),
      { device: 'tensorrt', deviceId: 1 },
    );
    assert.equal(loadConfig([], { DEVICE: 'cuda', DEVICE_ID: '2' }).deviceId, 2);
    assert.equal(loadConfig(['--device=WebGPU'], {}).device, 'webgpu');
    assert.throws(() => loadConfig(['--device', 'rocm'], {}), (err: Error) => err instanceof ConfigError && /cpu, cuda, tensorrt, webgpu/.test(err.message));
    assert.throws(() => loadConfig(['--device', 'cuda', '--device-id', '-1'], {}), ConfigError);
    assert.throws(() => loadConfig(['--device', 'webgpu', '--device-id', '1'], {}), /default adapter/);
  });

  test('execution providers per device: TensorRT falls back to CUDA on the same GPU', () => {
    assert.deepEqual(executionProvidersFor('cpu'), ['cpu']);
    assert.deepEqual(executionProvidersFor('cuda', 3), [{ name: 'cuda', deviceId: 3 }]);
    assert.deepEqual(executionProvidersFor('tensorrt', 1), [{ name: 'tensorrt', deviceId: 1 }, { name: 'cuda', deviceId: 1 }]);
    assert.deepEqual(executionProvidersFor('webgpu'), ['webgpu']);
    assert.equal(sessionSettingsFor('cuda', 0, 4).device, 'cuda');
  });

  test('warm-up covers every batch size, the largest first', () => {
    assert.deepEqual(warmOrder(1), []);
    assert.deepEqual(warmOrder(2), [2]);
    assert.deepEqual(warmOrder(4), [4, 2, 3]);
  });

  test('warm-up runs every batch size and the extreme accepted sizes through the pipeline', async () => {
    const pipeline = await DiffusionPipeline.load(DEFAULT_MODEL_DIR, 'cpu', sessionSettingsFor('cpu', 0, 2));
    const warm = await warmUp(pipeline, { modelDir: DEFAULT_MODEL_DIR, device: 'cpu', deviceId: 0, threads: 2, spinning: false, maxBatch: 3, sizes: { min: 64, max: 512, multiple: 8 } });
    assert.deepEqual(warm.shapes, ['1x256x256', '3x256x256', '2x256x256', '1x64x64', '1x128x64']);
    assert.equal(warm.maxBatch, 3);
    assert.equal(warm.info.fixedSize, undefined);
    assert.deepEqual(warm.warnings, []);
  });
});

/** Whether the CUDA provider libraries are present (an install with ONNXRUNTIME_NODE_INSTALL=cuda12). */
function cudaInstalled(): boolean {
  try {
    checkDevice('cuda');
    return true;
  } catch (err) {
    assert.ok(err instanceof ModelLoadError);
    return false;
  }
}

async function expectServing(server: ServerProcess, device: string): Promise<void> {
  try {
    const models = (await (await fetch(`${server.httpUrl}/v1/models`)).json()) as { models: { device: string }[] };
    assert.equal(models.models[0].device, device);
    assert.equal((await fetch(`${server.httpUrl}/readyz`)).status, 200);
  } finally {
    await server.stop();
  }
}

describe('GPU providers on this machine', () => {
  test('checkDevice names the fix when the CUDA provider is not installed', { skip: cudaInstalled() && 'the CUDA provider is installed here' }, () => {
    for (const device of ['cuda', 'tensorrt'] as const) {
      assert.throws(
        () => checkDevice(device),
        (err: Error) => err instanceof ModelLoadError && /not installed/.test(err.message) && err.message.includes('ONNXRUNTIME_NODE_INSTALL=cuda12'),
      );
    }
  });

  test('--device cuda: the server fails fast with the install fix, or serves on CUDA', async () => {
    const started = Date.now();
    let server: ServerProcess;
    try {
      server = await startServerProcess(['--device', 'cuda']);
    } catch (err) {
      const message = (err as Error).message;
      assert.match(message, /model failed to load/);
      assert.match(message, /CUDA/);
      assert.ok(message.includes('ONNXRUNTIME_NODE_INSTALL=cuda12'), message);
      assert.match(message, /docs\/gpu\.md/);
      assert.ok(Date.now() - started < 30_000, 'the failure should come before any model work');
      return;
    }
    await expectServing(server, 'cuda');
  });

  test('--device cuda: the process exits with status 1 and logs the reason', { skip: cudaInstalled() && 'the CUDA provider is installed here' }, async () => {
    const proc = spawn(process.execPath, [MAIN, '--port', '0', '--device', 'cuda'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    proc.stdout.on('data', (chunk) => (stdout += chunk));
    const [code] = (await once(proc, 'exit')) as [number];
    assert.equal(code, 1);
    const fatal = stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { msg: string; err?: string }).find((e) => e.msg === 'model failed to load');
    assert.ok(fatal?.err?.includes('the CUDA execution provider is not installed'), stdout);
  });

  test('--device webgpu: a clear failure without a usable GPU adapter, or a server on WebGPU', async () => {
    let server: ServerProcess;
    try {
      server = await startServerProcess(['--device', 'webgpu']);
    } catch (err) {
      const message = (err as Error).message;
      assert.match(message, /model failed to load/);
      assert.match(message, /on webgpu/);
      assert.match(message, /adapter|Vulkan/i);
      assert.match(message, /docs\/gpu\.md/);
      return;
    }
    await expectServing(server, 'webgpu');
  });
});
