// The inference worker thread. onnxruntime-node's run() is synchronous, so the whole pipeline lives
// here and the uWS thread only exchanges messages with it. The batch runner interleaves the active
// requests step by step; cancels and new jobs arrive between steps.
import { parentPort } from 'node:worker_threads';
import { sessionSettingsFor } from '../pipeline/onnx-component.js';
import { DiffusionPipeline } from '../pipeline/pipeline.js';
import { BatchRunner } from './batch-runner.js';
import { warmBatchSizes } from './gpu-warmup.js';
import type { FromWorker, LoadOptions, ToWorker } from './messages.js';

if (!parentPort) throw new Error('engine/worker.js must run as a worker thread');
const port = parentPort;

function post(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

let runner: BatchRunner | undefined;

async function load(options: LoadOptions): Promise<void> {
  try {
    const pipeline = await DiffusionPipeline.load(
      options.modelDir,
      options.device,
      sessionSettingsFor(options.device, options.deviceId, options.threads, options.spinning),
    );
    let warmupMs = await pipeline.warmup();
    if (options.device !== 'cpu') warmupMs += await warmBatchSizes(pipeline, options.maxBatch);
    runner = new BatchRunner(pipeline, {
      started: (jobId) => post({ kind: 'started', jobId }),
      preview: (jobId, step, steps, image) => post({ kind: 'preview', jobId, step, steps, image }, [image.rgb.buffer as ArrayBuffer]),
      done: (jobId, image, timings) => post({ kind: 'done', jobId, image, timings }, [image.rgb.buffer as ArrayBuffer]),
      cancelled: (jobId) => post({ kind: 'cancelled', jobId }),
      failed: (jobId, message, invalidInput) => post({ kind: 'failed', jobId, message, invalidInput }),
      unetCall: (batchSize, ms) => post({ kind: 'unet-call', batchSize, ms }),
    }, options.maxBatch);
    post({ kind: 'ready', info: pipeline.info, warmupMs });
  } catch (err) {
    post({ kind: 'load-failed', message: (err as Error).message });
  }
}

port.on('message', (message: ToWorker) => {
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
