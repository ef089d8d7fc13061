// Main-thread handle on the inference worker: starts it, loads the model, routes each job's events
// to its listener, and restarts the worker if it dies (every job in flight then fails, the server
// keeps running and /readyz reports not ready until the model is back).
import { Worker } from 'node:worker_threads';
import type { ModelInfo } from '../../shared/protocol.js';
import type { Logger } from '../logger.js';
import type { FromWorker, JobSpec, LoadOptions, RgbImage, ToWorker, WorkerTimings } from './messages.js';

export interface JobListener {
  onStarted(): void;
  onPreview(step: number, steps: number, image: RgbImage): void;
  onDone(image: RgbImage, timings: WorkerTimings): void;
  onCancelled(): void;
  onFailed(message: string, invalidInput: boolean): void;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);
const RESTART_DELAY_MS = 1000;

export class InferenceEngine {
  private worker!: Worker;
  private readonly jobs = new Map<number, JobListener>();
  private closing = false;
  private readyWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  ready = false;
  info: ModelInfo | undefined;
  warmupMs = 0;

  constructor(
    private readonly options: LoadOptions,
    private readonly logger: Logger,
    /** Each UNet call's batch size and duration, for metrics. */
    private readonly onUnetCall: (batchSize: number, ms: number) => void = () => {},
  ) {
    this.spawn();
  }

  /** Resolves once the model is loaded and warmed up; rejects if loading fails. */
  whenReady(): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  get inFlight(): number {
    return this.jobs.size;
  }

  run(job: JobSpec, listener: JobListener): void {
    this.jobs.set(job.jobId, listener);
    const transfer = job.image ? [job.image.buffer as ArrayBuffer] : [];
    this.send({ kind: 'run', job }, transfer);
  }

  cancel(jobId: number): void {
    if (this.jobs.has(jobId)) this.send({ kind: 'cancel', jobId });
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.worker.terminate();
  }

  private send(message: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(message, transfer);
  }

  private spawn(): void {
    const worker = new Worker(WORKER_URL);
    this.worker = worker;
    worker.on('message', (message: FromWorker) => this.onMessage(message));
    worker.on('error', (err) => this.logger.error({ err }, 'inference worker error'));
    worker.on('exit', (code) => this.onExit(worker, code));
    this.send({ kind: 'load', options: this.options });
  }

  private onMessage(message: FromWorker): void {
    switch (message.kind) {
      case 'ready':
        this.ready = true;
        this.info = message.info;
        this.warmupMs = message.warmupMs;
        for (const waiter of this.readyWaiters.splice(0)) waiter.resolve();
        return;
      case 'load-failed':
        for (const waiter of this.readyWaiters.splice(0)) waiter.reject(new Error(message.message));
        return;
      case 'unet-call':
        this.onUnetCall(message.batchSize, message.ms);
        return;
    }
    const listener = this.jobs.get(message.jobId);
    if (!listener) return;
    switch (message.kind) {
      case 'started':
        listener.onStarted();
        break;
      case 'preview':
        listener.onPreview(message.step, message.steps, message.image);
        break;
      case 'done':
        this.jobs.delete(message.jobId);
        listener.onDone(message.image, message.timings);
        break;
      case 'cancelled':
        this.jobs.delete(message.jobId);
        listener.onCancelled();
        break;
      case 'failed':
        this.jobs.delete(message.jobId);
        listener.onFailed(message.message, message.invalidInput);
        break;
    }
  }

  private onExit(worker: Worker, code: number): void {
    if (worker !== this.worker || this.closing) return;
    this.ready = false;
    this.logger.error({ code }, 'inference worker exited; restarting');
    const orphans = [...this.jobs.values()];
    this.jobs.clear();
    for (const listener of orphans) listener.onFailed('inference worker restarted', false);
    setTimeout(() => {
      if (!this.closing) this.spawn();
    }, RESTART_DELAY_MS).unref();
  }
}
