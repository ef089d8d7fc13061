// Stream batching: a session's next request starts beside its running one and shares its UNet
// calls, and still every request ends with exactly one final reply, frames leave in input order,
// and a newer input replaces the pending one. The runner is driven with a fake pipeline; the
// session with a fake inference engine the test steps by hand.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeMessage, encodeMessage } from '../shared/codec.js';
import type { ModelInfo, ServerMessage } from '../shared/protocol.js';
import { loadConfig } from '../server/config.js';
import { STREAM_BATCH_MAX_PAIR_COST, streamBatchFor } from '../server/realtime/model-host.js';
import { BatchRunner } from '../server/engine/batch-runner.js';
import type { JobListener } from '../server/engine/engine.js';
import type { JobSpec } from '../server/engine/messages.js';
import { createLogger } from '../server/logger.js';
import { ServerMetrics } from '../server/metrics.js';
import type { GenerationState } from '../server/pipeline/generation.js';
import type { DiffusionPipeline } from '../server/pipeline/pipeline.js';
import { ImageBudget } from '../server/realtime/image-budget.js';
import { Scheduler } from '../server/realtime/scheduler.js';
import { RealtimeSession } from '../server/realtime/session.js';

const image = { rgb: new Uint8Array(8 * 8 * 3).fill(100), width: 8, height: 8 };
const timings = { textEncoder: 0, vaeEncoder: 0, steps: [], previews: 0, decode: 0, batchSizes: [], decoder: 'vae' as const, decodes: 1 };

test('--stream-batch: auto unless set, by flag or STREAM_BATCH; auto turns it on only where pairing is cheap', () => {
  assert.equal(loadConfig([], {}).streamBatch, 'auto');
  assert.equal(loadConfig(['--stream-batch', 'on'], {}).streamBatch, 'on');
  assert.equal(loadConfig(['--stream-batch', 'off'], { STREAM_BATCH: 'on' }).streamBatch, 'off', 'the flag wins');
  assert.equal(loadConfig([], { STREAM_BATCH: '1' }).streamBatch, 'on');
  assert.equal(loadConfig([], { STREAM_BATCH: '0' }).streamBatch, 'off');
  assert.throws(() => loadConfig(['--stream-batch', 'sometimes'], {}), /--stream-batch must be one of auto, on, off/);
  assert.deepEqual(['on', 'off'].map((mode) => streamBatchFor(mode as 'on' | 'off', 1.0)), [true, false]);
  assert.equal(streamBatchFor('auto', STREAM_BATCH_MAX_PAIR_COST), true);
  assert.equal(streamBatchFor('auto', 1.9), false, 'a CPU: two cost nearly twice one');
  assert.equal(streamBatchFor('auto', undefined), false, 'no batching at all (--max-batch 1)');
});

describe('the batch runner with a follower', () => {
  /** Runs jobs through a runner whose pipeline records calls; `later` jobs are added once the first step ran. */
  async function run(first: JobSpec[], later: JobSpec[], cancelAfterFirstStep: number[] = []) {
    const calls: string[] = [];
    const ended: string[] = [];
    let runner!: BatchRunner;
    const label = (s: GenerationState) => `${(s.request as JobSpec).jobId}.${s.stepIndex + 1}`;
    const pipeline = {
      createState: (request: JobSpec) => ({ request, latentW: request.width / 8, latentH: request.height / 8, steps: request.steps, stepIndex: 0, timings }),
      encodeText: async () => {},
      prepareLatents: async () => {},
      stepBatchKey: () => '',
      step: async (states: GenerationState[]) => {
        calls.push(`step ${states.map(label).join(' ')}`);
        for (const s of states) s.stepIndex++;
        if (calls.length === 1) {
          for (const j of later) runner.add(j);
          for (const id of cancelAfterFirstStep) runner.cancel(id);
        }
        return states.map(() => new Float32Array(0));
      },
      previews: async (states: GenerationState[]) => states.map(() => image),
      decode: async (states: GenerationState[]) => {
        calls.push(`decode ${states.map((s) => (s.request as JobSpec).jobId).join(' ')}`);
        return states.map(() => image);
      },
    } as unknown as DiffusionPipeline;
    const all = [...first, ...later];
    const settled = new Map<number, () => void>();
    const done = Promise.all(all.map((j) => new Promise<void>((resolve) => settled.set(j.jobId, resolve))));
    const end = (kind: string) => (id: number) => {
      ended.push(`${kind} ${id}`);
      settled.get(id)!();
    };
    runner = new BatchRunner(pipeline, {
      started() {},
      preview() {},
      done: end('done'),
      cancelled: end('cancelled'),
      failed: (id, message) => assert.fail(`job ${id} failed: ${message}`),
      unetCall() {},
    }, 4);
    for (const j of first) runner.add(j);
    await done;
    return { calls, ended };
  }
  const job = (jobId: number, steps: number, after?: number, size = 256): JobSpec => ({
    jobId, prompt: 'p', steps, strength: 1, seed: 0, width: size, height: size, previews: true, ...(after !== undefined ? { after } : {}),
  });

  test('one UNet call advances both requests of a 2-step stream, at different timesteps', async () => {
    const { calls, ended } = await run([job(1, 2)], [job(2, 2, 1)]);
    assert.deepEqual(calls, ['step 1.1', 'step 1.2 2.1', 'decode 1', 'step 2.2', 'decode 2']);
    assert.deepEqual(ended, ['done 1', 'done 2']);
  });

  test('a follower with fewer steps left keeps its frame back until its leader is done', async () => {
    const { calls, ended } = await run([job(1, 4)], [job(2, 1, 1)]);
    assert.deepEqual(calls, ['step 1.1', 'step 1.2 2.1', 'step 1.3', 'step 1.4', 'decode 1 2']);
    assert.deepEqual(ended, ['done 1', 'done 2']);
  });

  test('a leader of another size is decoded first, its follower on the next iteration', async () => {
    const { calls, ended } = await run([job(1, 2, undefined, 512)], [job(2, 1, 1, 256), job(3, 1, undefined, 256)]);
    // The 256 group steps first (newcomers), then the 512 leader; its follower waits for it.
    assert.deepEqual(calls, ['step 1.1', 'step 2.1 3.1', 'decode 3', 'step 1.2', 'decode 1', 'decode 2']);
    assert.deepEqual(ended, ['done 3', 'done 1', 'done 2']);
  });

  test('a cancelled leader releases its follower', async () => {
    const { ended } = await run([job(1, 4)], [job(2, 1, 1)], [1]);
    assert.deepEqual(ended, ['cancelled 1', 'done 2']);
  });
});

describe('a session with stream batching', () => {
  const limits = { ...loadConfig([], {}).limits, maxRequestsPerSecond: 1000, requestBurst: 1000 };
  const model = {
    name: 'm', width: 64, height: 64, sizeMultiple: 64, minSteps: 1, maxSteps: 8, defaultSteps: 2, scheduler: 'euler_ancestral',
    img2img: true, previews: 'decoder', dtype: 'float32', device: 'cpu', finalDecoders: ['vae', 'preview'], finalDecoder: 'vae',
  } satisfies ModelInfo;

  function setup(streamBatch: boolean) {
    const runs: { job: JobSpec; listener: JobListener }[] = [];
    const cancels: number[] = [];
    const engine = { ready: true, info: model, run: (job: JobSpec, listener: JobListener) => runs.push({ job, listener }), cancel: (id: number) => cancels.push(id) };
    const scheduler = new Scheduler(engine as never, 4);
    const replies: ServerMessage[] = [];
    const sink = { deliver: (message: ServerMessage) => (replies.push(message), true), bufferedAmount: () => 0, close() {} };
    const session = new RealtimeSession(sink, scheduler, {
      limits, model, outbox: { previewBytes: 1 << 20, frameBytes: 1 << 20, slowReaderMs: 10_000 }, previewJpegQuality: 70, frameJpegQuality: 90,
      hubState: () => 'ready', principal: { keyId: 'k' }, verifyToken: async () => ({ ok: false, reason: 'invalid' }) as never,
      imageBudget: new ImageBudget(1 << 20), streamBatch,
    }, new ServerMetrics({ sessions: () => 1, pendingRequests: () => 0, imageMemoryReserved: () => 0 }), createLogger('silent', false));
    const send = (id: number) => session.handleBytes(encodeMessage({ type: 'generate', id, prompt: 'a red circle', steps: 2 }));
    // The engine's runs by request id: `sync` names the runs handed over so far, in order.
    const byId = new Map<number, (typeof runs)[number]>();
    const sync = (order: number[]) => runs.forEach((run, i) => byId.set(order[i], run));
    const job = (id: number) => byId.get(id)!;
    const finals = () => replies.filter((m) => m.type !== 'hello' && m.type !== 'preview').map((m) => `${m.type} ${'id' in m ? m.id : ''}`);
    /** Frames are encoded on libvips threads: wait until `count` final replies are out (or 10 s). */
    const settle = async (count: number) => {
      for (const deadline = Date.now() + 10_000; finals().length < count && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 20));
    };
    return { runs, cancels, send, job, sync, settle, finals, session };
  }

  test('the next input starts once the running one runs; frames in order; a newer input replaces the pending one', async () => {
    const s = setup(true);
    s.send(1);
    s.send(2);
    assert.equal(s.runs.length, 1, 'the second waits until the first is stepping');
    s.sync([1]);
    s.job(1).listener.onStarted();
    assert.equal(s.runs.length, 2, 'then it starts beside the first');
    s.sync([1, 2]);
    assert.equal(s.job(2).job.after, s.job(1).job.jobId);
    s.send(3);
    s.send(4);
    assert.equal(s.runs.length, 2, 'at most one extra in flight');
    s.job(2).listener.onStarted();
    s.job(1).listener.onDone(image, timings);
    assert.equal(s.runs.length, 3, 'the promoted follower is stepping: the newest input follows it');
    s.sync([1, 2, 4]);
    assert.equal(s.job(4).job.after, s.job(2).job.jobId);
    s.job(2).listener.onDone(image, timings);
    s.job(4).listener.onStarted();
    s.job(4).listener.onDone(image, timings);
    await s.settle(4);
    assert.deepEqual(s.finals(), ['superseded 3', 'frame 1', 'frame 2', 'frame 4']);
    assert.equal(s.session.openRequests, 0);
  });

  test('off: the next input waits for the running one to finish', async () => {
    const s = setup(false);
    s.send(1);
    s.send(2);
    s.sync([1]);
    s.job(1).listener.onStarted();
    assert.equal(s.runs.length, 1);
    s.job(1).listener.onDone(image, timings);
    assert.equal(s.runs.length, 2);
    s.sync([1, 2]);
    assert.equal(s.job(2).job.after, undefined);
    s.job(2).listener.onDone(image, timings);
    await s.settle(2);
    assert.deepEqual(s.finals(), ['frame 1', 'frame 2']);
  });

  test('cancel and shutdown reach the follower too, one final reply per id', async () => {
    const s = setup(true);
    s.send(1);
    s.send(2);
    s.sync([1]);
    s.job(1).listener.onStarted();
    s.sync([1, 2]);
    s.session.handleBytes(encodeMessage({ type: 'cancel', id: 2 }));
    assert.deepEqual(s.cancels, [s.job(2).job.jobId]);
    s.job(2).listener.onCancelled();
    s.send(3);
    s.sync([1, 2, 3]);
    assert.equal(s.runs.length, 3, 'the freed follower place goes to the next input');
    s.session.abandonRequests();
    // What the jobs still report after the drain answered them is dropped.
    s.job(1).listener.onDone(image, timings);
    s.job(3).listener.onCancelled();
    await s.settle(3);
    assert.deepEqual(s.finals(), ['cancelled 2', 'error 1', 'error 3']);
    assert.equal(s.session.openRequests, 0);
  });
});
