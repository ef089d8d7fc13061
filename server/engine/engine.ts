// Main-process handle on the inference process: starts it, loads the model, routes each job's
// events to its listener, and restarts it when it dies.
//
// Inference runs in a child process, not a worker thread: onnxruntime-node's run() is native and
// synchronous, and tearing down a worker thread while it runs aborts the whole server
// (`terminate called after throwing an instance of 'Napi::Error'`). A process can be killed at any
// moment, crashes in native code (a CUDA fault, the OOM killer) stay in it, and the server
// survives both: crash-only recovery. The price is one copy of each image over the IPC pipe
// (measured: ~0.45 ms one way for a 256x256 RGB buffer).
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ModelInfo } from '../../shared/protocol.js';
import type { Logger } from '../logger.js';
import type { FromWorker, JobSpec, LoadOptions, RgbImage, ToWorker, WorkerTimings } from './messages.js';

/** Why a job ended without an image. `engine_restarted`: the inference process died under it. */
export type JobFailureReason = 'invalid_input' | 'internal' | 'engine_restarted';

export interface JobFailure {
  message: string;
  reason: JobFailureReason;
}

export interface JobListener {
  onStarted(): void;
  onPreview(step: number, steps: number, image: RgbImage): void;
  onDone(image: RgbImage, timings: WorkerTimings): void;
  onCancelled(): void;
  onFailed(failure: JobFailure): void;
}

export interface EngineEvents {
  /** Each UNet call's batch size and duration, for metrics. */
  unetCall?(batchSize: number, ms: number): void;
  /** The model is loaded (again, after a restart): queued work may go in. */
  ready?(): void;
  /** The inference process died or a reload failed; another attempt follows after `retryInMs`. */
  restarting?(attempt: number, retryInMs: number): void;
  /** Restarts were exhausted: the engine will not come back in this process. */
  fatal?(reason: string): void;
}

export interface RestartPolicy {
  /** Failed starts in a row (crash or failed reload, no successful load between) before giving up. */
  maxRestarts: number;
  /** First retry's delay; doubles per failure in a row, up to 10 s. */
  baseDelayMs?: number;
}

const ENTRY = fileURLToPath(new URL('./inference-process.js', import.meta.url));
const MAX_RESTART_DELAY_MS = 10_000;

export class InferenceEngine {
  private child!: ChildProcess;
  private readonly jobs = new Map<number, JobListener>();
  private closing = false;
  private dead = false;
  /** Starts that ended without a loaded model since the last successful load. */
  private failuresInARow = 0;
  private everReady = false;
  private readyWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  private exited: Promise<void> = Promise.resolve();
  ready = false;
  info: ModelInfo | undefined;
  warmupMs = 0;
  /** From the last warm-up: a step of two requests over a step of one (warmup.ts). */
  pairCost: number | undefined;
  /** The largest UNet batch the loaded model takes (the operator's limit, or less for fixed shapes). */
  maxBatch: number;

  constructor(
    private readonly options: LoadOptions,
    private readonly logger: Logger,
    private readonly events: EngineEvents = {},
    private readonly restart: RestartPolicy = { maxRestarts: 3 },
  ) {
    this.maxBatch = options.maxBatch;
    this.spawn();
  }

  /** Resolves once the model is loaded and warmed up; rejects if the first load fails. */
  whenReady(): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Jobs handed to the inference process and not finished. */
  get inFlight(): number {
    return this.jobs.size;
  }

  /** The inference process's pid (operators and tests use it to see restarts). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** False once restarts are exhausted: the server cannot serve and should exit. */
  get alive(): boolean {
    return !this.dead;
  }

  run(job: JobSpec, listener: JobListener): void {
    if (!this.ready) {
      listener.onFailed({ message: 'the model is not loaded', reason: 'engine_restarted' });
      return;
    }
    this.jobs.set(job.jobId, listener);
    this.send({ kind: 'run', job });
  }

  cancel(jobId: number): void {
    if (this.jobs.has(jobId)) this.send({ kind: 'cancel', jobId });
  }

  /** Stops the inference process. Killing a process cannot take this one down with it, so this is
   * safe at any moment; the drain calls it once no job is left. */
  async close(): Promise<void> {
    this.closing = true;
    this.ready = false;
    const exited = this.exited;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await exited;
  }

  private send(message: ToWorker): void {
    // A message to a process that just died is lost; its jobs fail through the exit handler.
    if (this.child.connected) this.child.send(message);
  }

  private spawn(): void {
    // execArgv: [] keeps the server's own flags (an inspector port, say) out of the child.
    const child = fork(ENTRY, [], { serialization: 'advanced', execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      this.onExit(child, code, signal);
      resolve();
    }));
    child.on('message', (message: FromWorker) => this.onMessage(child, message));
    // Errors of the IPC channel itself (a send racing the child's death) end in 'exit' too.
    child.on('error', (err) => this.logger.warn({ err: err.message }, 'inference process channel error'));
    this.logger.info({ enginePid: child.pid, model: this.options.modelDir, device: this.options.device }, 'inference process started');
    this.send({ kind: 'load', options: this.options });
  }

  private onMessage(child: ChildProcess, message: FromWorker): void {
    if (child !== this.child) return;
    switch (message.kind) {
      case 'ready':
        this.ready = true;
        this.everReady = true;
        this.failuresInARow = 0;
        this.info = message.info;
        this.warmupMs = message.warmupMs;
        this.pairCost = message.pairCost;
        this.maxBatch = message.maxBatch;
        for (const warning of message.warnings) this.logger.warn({ model: this.options.modelDir }, warning);
        this.logger.debug({ enginePid: child.pid, warmed: message.warmed, ms: Math.round(message.warmupMs) }, 'warm-up done');
        for (const waiter of this.readyWaiters.splice(0)) waiter.resolve();
        this.events.ready?.();
        return;
      case 'load-failed':
        if (!this.everReady) {
          // At start the operator is watching: fail fast with the reason instead of retrying.
          for (const waiter of this.readyWaiters.splice(0)) waiter.reject(new Error(message.message));
          this.closing = true;
          child.kill('SIGKILL');
          return;
        }
        this.logger.error({ enginePid: child.pid, err: message.message }, 'model reload failed');
        child.kill('SIGKILL'); // the exit handler schedules the next attempt
        return;
      case 'unet-call':
        this.events.unetCall?.(message.batchSize, message.ms);
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
        listener.onFailed({ message: message.message, reason: message.invalidInput ? 'invalid_input' : 'internal' });
        break;
    }
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child || this.closing) return;
    const wasReady = this.ready;
    this.ready = false;
    const orphans = [...this.jobs.values()];
    this.jobs.clear();
    for (const listener of orphans) listener.onFailed({ message: 'the inference process restarted while this request ran', reason: 'engine_restarted' });
    this.failuresInARow++;
    if (this.failuresInARow > this.restart.maxRestarts) {
      this.dead = true;
      const reason = `the inference process could not be brought back after ${this.restart.maxRestarts} restarts`;
      this.logger.fatal({ enginePid: child.pid, code, signal }, reason);
      this.events.fatal?.(reason);
      return;
    }
    const delay = Math.min(MAX_RESTART_DELAY_MS, (this.restart.baseDelayMs ?? 500) * 2 ** (this.failuresInARow - 1));
    this.logger.error(
      { enginePid: child.pid, code, signal, jobsFailed: orphans.length, wasReady, attempt: this.failuresInARow, retryInMs: delay },
      'inference process exited; restarting',
    );
    this.events.restarting?.(this.failuresInARow, delay);
    setTimeout(() => {
      if (!this.closing) this.spawn();
    }, delay).unref();
  }
}
