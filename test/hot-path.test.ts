// The per-step host work, made cheaper without changing a pixel: planar-to-RGB in one pass, from
// a view into the batch output and straight from float16 bits; the UNet's text input built once
// per batch of prompts. Each is checked against the straightforward computation it replaces.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { float16ToFloat32, float32ToFloat16, halfToFloatTable } from '../server/pipeline/fp16.js';
import { batchItem, isFinished } from '../server/pipeline/generation.js';
import { planarToRgb } from '../server/pipeline/image-tensors.js';
import { DiffusionPipeline, type GenerateRequest } from '../server/pipeline/pipeline.js';
import { writeTinyModel } from '../scripts/tiny-model.js';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

/** The conversion as it was written first: channel by channel, rounding half up, clamping, NaN -> 0. */
function reference(data: Float32Array, width: number, height: number, low: number, high: number): Uint8Array {
  const plane = width * height;
  const out = new Uint8Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < plane; p++) {
      const v = Math.floor((data[c * plane + p] - low) * (255 / (high - low)) + 0.5);
      out[p * 3 + c] = Number.isNaN(v) ? 0 : Math.min(255, Math.max(0, v));
    }
  }
  return out;
}

function samples(n: number): Float32Array {
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = 1.3 * Math.sin(i * 0.37) + (i % 97 === 0 ? 5 : 0);
  data[5] = Number.NaN;
  data[6] = -Infinity;
  data[7] = Infinity;
  return data;
}

test('planarToRgb: the reference bytes, from a float32 view into a batch and from float16 bits', () => {
  const [w, h] = [48, 32];
  const size = 3 * w * h;
  const batch = new Float32Array(size * 3);
  batch.set(samples(size), size);
  const item = batchItem(batch, 3, 1);
  assert.equal(item.buffer, batch.buffer, 'a view, not a copy');
  for (const [low, high] of [[-1, 1], [0, 1]]) {
    assert.deepEqual(planarToRgb(item, w, h, low, high), reference(item.slice(), w, h, low, high));
    const half = float32ToFloat16(item.slice());
    assert.deepEqual(planarToRgb(half, w, h, low, high), reference(float16ToFloat32(half), w, h, low, high));
  }
});

test('the float16 table reads every bit pattern as float16ToFloat32 does', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const expected = new Uint32Array(float16ToFloat32(all).buffer);
  const table = new Uint32Array(halfToFloatTable().buffer);
  assert.deepEqual(table, expected);
});

test('the cached UNet text input gives the pixels a fresh pipeline gives, batch by batch and in any order', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'hot-path-'));
  dirs.push(dir);
  await writeTinyModel(dir, { dtype: 'float16' });
  const settings = { executionProviders: ['cpu'], threads: 1 };
  const base: GenerateRequest = { prompt: '', steps: 3, strength: 1, seed: 1, width: 64, height: 64, previews: false };
  const runBatch = async (pipeline: DiffusionPipeline, prompts: string[]) => {
    const states = prompts.map((prompt, i) => pipeline.createState({ ...base, prompt, seed: i + 1 }));
    await pipeline.encodeText(states);
    await pipeline.prepareLatents(states);
    while (!isFinished(states[0])) await pipeline.step(states);
    return (await pipeline.decode(states)).map((image) => image.rgb);
  };
  const warm = await DiffusionPipeline.load(dir, 'cpu', settings);
  await runBatch(warm, ['a red circle', 'a blue square']);
  await runBatch(warm, ['a red circle']);
  const reused = await runBatch(warm, ['a blue square', 'a red circle']);
  const again = await runBatch(warm, ['a blue square', 'a red circle']);
  const fresh = await runBatch(await DiffusionPipeline.load(dir, 'cpu', settings), ['a blue square', 'a red circle']);
  assert.deepEqual(reused, fresh);
  assert.deepEqual(again, fresh);
  assert.notDeepEqual(fresh[0], fresh[1], 'each request keeps its own prompt');
});
