// The inference process (forked by engine.ts). onnxruntime-node's run() is synchronous, so the
// whole pipeline lives here and the server only exchanges messages with it. The batch runner
// interleaves the active requests step by step; cancels and new jobs arrive between steps.
import { sessionSettingsFor } from '../pipeline/onnx-component.js';
import { DiffusionPipeline } from '../pipeline/pipeline.js';
import { BatchRunner } from './batch-runner.js';
import { warmUp } from './warmup.js';
import type { FromWorker, LoadOptions, ToWorker } from './messages.js';

if (!process.send) throw new Error('engine/inference-process.js must be started by the server (it needs an IPC channel)');
const send = process.send.bind(process);

let unsent = 0;
let onFlushed: (() => void) | undefined;

function post(message: FromWorker): void {
  // The server may be gone (it exits without waiting for us); nothing is left to tell.
  if (!process.connected) return;
  unsent++;
  send(message, undefined, {}, () => {
    if (--unsent === 0) onFlushed?.();
  });
}

/** Every posted message written to the channel (or failed with it). */
function flushed(): Promise<void> {
  if (unsent === 0) return Promise.resolve();
  return new Promise((resolve) => {
    onFlushed = () => {
      onFlushed = undefined;
      resolve();
    };
  });
}

// The server decides when this process stops: a terminal's Ctrl-C reaches the whole process group,
// and the server drains before it lets us go.
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
// Server gone (exited or killed): nobody can use our results. SIGKILL rather than exit(): exiting
// with onnxruntime sessions alive can abort in their destructors, which only adds noise.
process.on('disconnect', () => process.kill(process.pid, 'SIGKILL'));

let runner: BatchRunner | undefined;

async function load(options: LoadOptions): Promise<void> {
  try {
    const pipeline = await DiffusionPipeline.load(
      options.modelDir,
      options.device,
      sessionSettingsFor(options.device, options.deviceId, options.threads, options.spinning),
    );
    const warm = await warmUp(pipeline, options);
    runner = new BatchRunner(pipeline, {
      started: (jobId) => post({ kind: 'started', jobId }),
      preview: (jobId, step, steps, image) => post({ kind: 'preview', jobId, step, steps, image }),
      done: (jobId, image, timings) => post({ kind: 'done', jobId, image, timings }),
      cancelled: (jobId) => post({ kind: 'cancelled', jobId }),
      failed: (jobId, message, invalidInput) => post({ kind: 'failed', jobId, message, invalidInput }),
      unetCall: (batchSize, ms) => post({ kind: 'unet-call', batchSize, ms }),
      flushed,
    }, warm.maxBatch, { lastPreview: options.lastPreview });
    post({ kind: 'ready', info: warm.info, warmupMs: warm.ms, maxBatch: warm.maxBatch, warmed: warm.shapes, warnings: warm.warnings, ...(warm.pairCost !== undefined ? { pairCost: warm.pairCost } : {}) });
  } catch (err) {
    post({ kind: 'load-failed', message: (err as Error).message });
  }
}

process.on('message', (message: ToWorker) => {
  switch (message.kind) {
    case 'load':
      void load(message.options);
      break;
    case 'run':
      if (runner) runner.add(message.job);
      else post({ kind: 'failed', jobId: message.job.jobId, message: 'model not loaded', invalidInput: false });
      break;
    case 'cancel':
      runner?.cancel(message.jobId);
      break;
  }
});
