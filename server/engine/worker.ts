// The inference worker thread. onnxruntime-node's run() is synchronous, so the whole pipeline lives
// here and the uWS thread only exchanges messages with it. Jobs run one after another; cancels are
// seen between steps because the pipeline yields to the event loop there.
import { parentPort } from 'node:worker_threads';
import { CancelledError, DiffusionPipeline } from '../pipeline/pipeline.js';
import type { FromWorker, JobSpec, LoadOptions, ToWorker } from './messages.js';

if (!parentPort) throw new Error('engine/worker.js must run as a worker thread');
const port = parentPort;

let pipeline: DiffusionPipeline | undefined;
const cancelled = new Set<number>();
let queue: Promise<void> = Promise.resolve();

function post(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

async function load(options: LoadOptions): Promise<void> {
  try {
    pipeline = await DiffusionPipeline.load(options.modelDir, options.device, {
      executionProviders: [options.device],
      threads: options.threads,
      spinning: options.spinning,
    });
    const warmupMs = await pipeline.warmup();
    post({ kind: 'ready', info: pipeline.info, warmupMs });
  } catch (err) {
    post({ kind: 'load-failed', message: (err as Error).message });
  }
}

async function run(job: JobSpec): Promise<void> {
  const { jobId } = job;
  if (cancelled.delete(jobId)) {
    post({ kind: 'cancelled', jobId });
    return;
  }
  if (!pipeline) {
    post({ kind: 'failed', jobId, message: 'model not loaded', invalidInput: false });
    return;
  }
  post({ kind: 'started', jobId });
  try {
    const result = await pipeline.generate(job, {
      onPreview: (step, steps, image) =>
        post({ kind: 'preview', jobId, step, steps, image }, [image.rgb.buffer as ArrayBuffer]),
      isCancelled: () => cancelled.has(jobId),
    });
    post({ kind: 'done', jobId, image: result.image, timings: result.timings }, [result.image.rgb.buffer as ArrayBuffer]);
  } catch (err) {
    if (err instanceof CancelledError) post({ kind: 'cancelled', jobId });
    // The sampler refuses step/strength combinations it cannot run (RangeError): the client's doing.
    else post({ kind: 'failed', jobId, message: (err as Error).message, invalidInput: err instanceof RangeError });
  } finally {
    // Jobs run in id order, so a cancel for this id or an older one can no longer match anything
    // (it arrived after that job ended): forget it so the set stays small.
    for (const id of cancelled) if (id <= jobId) cancelled.delete(id);
  }
}

port.on('message', (message: ToWorker) => {
  switch (message.kind) {
    case 'load':
      queue = queue.then(() => load(message.options));
      break;
    case 'run':
      queue = queue.then(() => run(message.job));
      break;
    case 'cancel':
      cancelled.add(message.jobId);
      break;
  }
});
