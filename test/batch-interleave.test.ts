// What the scheduler's fairness relies on inside the worker: a light request admitted beside a heavy
// one of another latent size waits about one heavy step per step of its own, one UNet call per
// iteration, instead of waiting for the heavy request to finish. A fake pipeline records the calls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchRunner } from '../server/engine/batch-runner.js';
import type { JobSpec } from '../server/engine/messages.js';
import type { GenerationState } from '../server/pipeline/generation.js';
import type { DiffusionPipeline } from '../server/pipeline/pipeline.js';

const job = (jobId: number, size: number, steps: number): JobSpec => ({ jobId, prompt: `job ${jobId}`, steps, strength: 1, seed: 0, width: size, height: size, previews: false });

test('a light request beside a heavy one alternates with it step by step', async () => {
  const calls: string[] = [];
  let runner!: BatchRunner;
  const label = (s: GenerationState) => `${s.request.width}:${s.stepIndex}`;
  const pipeline = {
    createState: (request: JobSpec) => ({ request, latentW: request.width / 8, latentH: request.height / 8, steps: request.steps, stepIndex: 0, timings: { steps: [], batchSizes: [] } }),
    encodeText: async () => {},
    prepareLatents: async () => {},
    stepBatchKey: () => '',
    step: async (states: GenerationState[]) => {
      calls.push(`step ${states.map(label).join(',')}`);
      for (const s of states) s.stepIndex++;
      // The light request arrives while the heavy one's first step runs.
      if (calls.length === 1) runner.add(job(2, 256, 2));
      await new Promise((r) => setTimeout(r, 1));
      return states.map(() => new Float32Array(0));
    },
    previews: async () => [],
    decode: async (states: GenerationState[]) => {
      calls.push(`decode ${states.map((s) => s.request.width).join(',')}`);
      return states.map(() => ({ rgb: new Uint8Array(0), width: 0, height: 0 }));
    },
  } as unknown as DiffusionPipeline;
  const finished = new Map<number, () => void>();
  const done = (id: number) => new Promise<void>((resolve) => finished.set(id, resolve));
  const both = Promise.all([done(1), done(2)]);
  runner = new BatchRunner(pipeline, {
    started() {},
    preview() {},
    done: (id) => finished.get(id)!(),
    cancelled() {},
    failed: (id, message) => assert.fail(`job ${id} failed: ${message}`),
    unetCall() {},
  }, 4);
  runner.add(job(1, 1024, 8));
  await both;
  // Every iteration makes one UNet call for one size group; the light request's two steps each
  // wait for at most one heavy step, and it is decoded right after its last one.
  assert.deepEqual(calls.slice(0, 5), ['step 1024:0', 'step 256:0', 'step 1024:1', 'step 256:1', 'decode 256']);
  assert.deepEqual(calls.slice(5), ['step 1024:2', 'step 1024:3', 'step 1024:4', 'step 1024:5', 'step 1024:6', 'step 1024:7', 'decode 1024']);
});
