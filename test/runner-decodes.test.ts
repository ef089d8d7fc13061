// The batch runner decodes each latent once: a request's last step gets no preview, since the frame
// that follows at once decodes that very latent (a 1-step request costs one decode, not two), unless
// the server keeps the old behaviour with --last-preview. A fake pipeline counts the decoder calls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../server/config.js';
import { BatchRunner, type RunnerOptions } from '../server/engine/batch-runner.js';
import type { JobSpec } from '../server/engine/messages.js';
import type { GenerationState } from '../server/pipeline/generation.js';
import type { DiffusionPipeline } from '../server/pipeline/pipeline.js';

const job = (jobId: number, steps: number, previews = true): JobSpec => ({ jobId, prompt: 'p', steps, strength: 1, seed: 0, width: 256, height: 256, previews });

async function run(jobs: JobSpec[], options: RunnerOptions = {}) {
  const calls: string[] = [];
  const previews: string[] = [];
  const pipeline = {
    createState: (request: JobSpec) => ({ request, latentW: 32, latentH: 32, steps: request.steps, stepIndex: 0, timings: { steps: [], batchSizes: [] } }),
    encodeText: async () => {},
    prepareLatents: async () => {},
    stepBatchKey: () => '',
    step: async (states: GenerationState[]) => {
      for (const s of states) s.stepIndex++;
      return states.map(() => new Float32Array(0));
    },
    previews: async (states: GenerationState[]) => {
      calls.push(`previews ${states.map((s) => `${(s.request as JobSpec).jobId}@${s.stepIndex}`).join(',')}`);
      return states.map(() => ({ rgb: new Uint8Array(0), width: 0, height: 0 }));
    },
    decode: async (states: GenerationState[]) => {
      calls.push(`decode ${states.map((s) => (s.request as JobSpec).jobId).join(',')}`);
      return states.map(() => ({ rgb: new Uint8Array(0), width: 0, height: 0 }));
    },
  } as unknown as DiffusionPipeline;
  const pending = new Map<number, () => void>();
  const all = Promise.all(jobs.map((j) => new Promise<void>((resolve) => pending.set(j.jobId, resolve))));
  const runner = new BatchRunner(pipeline, {
    started() {},
    preview: (id, step, steps) => previews.push(`${id}:${step}/${steps}`),
    done: (id) => pending.get(id)!(),
    cancelled() {},
    failed: (id, message) => assert.fail(`job ${id} failed: ${message}`),
    unetCall() {},
  }, 4, options);
  for (const j of jobs) runner.add(j);
  await all;
  return { calls, previews };
}

test('a 1-step request with previews on is decoded once: no preview, the frame', async () => {
  const { calls, previews } = await run([job(1, 1)]);
  assert.deepEqual(calls, ['decode 1']);
  assert.deepEqual(previews, []);
});

test('a 3-step request previews steps 1 and 2; its last step is the frame', async () => {
  const { calls, previews } = await run([job(1, 3)]);
  assert.deepEqual(calls, ['previews 1@1', 'previews 1@2', 'decode 1']);
  assert.deepEqual(previews, ['1:1/3', '1:2/3']);
});

test('in a batch, only requests with steps left are previewed, and only those that want previews', async () => {
  const { calls } = await run([job(1, 1), job(2, 2), job(3, 2, false)]);
  assert.deepEqual(calls, ['previews 2@1', 'decode 1', 'decode 2,3']);
});

test('--last-preview is off unless asked for', () => {
  assert.equal(loadConfig([], {}).lastPreview, false);
  assert.equal(loadConfig(['--last-preview'], {}).lastPreview, true);
});

test('--last-preview brings back the preview of the last step (two decodes for a 1-step request)', async () => {
  const { calls, previews } = await run([job(1, 1)], { lastPreview: true });
  assert.deepEqual(calls, ['previews 1@1', 'decode 1']);
  assert.deepEqual(previews, ['1:1/1']);
});
