// Durable queue of fal-style jobs, as the main thread sees it: every method posts one request to the
// store's worker thread (store-worker.ts, which owns the SQLite connection) and resolves with its
// reply, so the uWS thread never waits on storage. Requests are answered in the order they were
// made; an error thrown by the store rejects that call's promise and nothing else.
//
// The worker is found next to this file at run time (dist/server/queue/store-worker.js once built),
// as the inference process is by engine.ts.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { NoSqliteDriverError, type DriverName } from './sqlite-driver.js';
import type { FromStore, OpArgs, OpResult, SerializedError, StoreOp, WorkerInit } from './store-messages.js';
import {
  JobStoreError,
  type CancelResult,
  type JobError,
  type JobFile,
  type JobRecord,
  type NewJob,
  type QueueStore,
  type StoreLimits,
  type SubmitResult,
  type WebhookDelivery,
  type WebhookOutcome,
} from './types.js';

export * from './types.js';
export { DRIVERS, NoSqliteDriverError, type DriverName } from './sqlite-driver.js';

const WORKER = new URL('./store-worker.js', import.meta.url);
export const DATABASE_FILE = 'queue.sqlite';

export interface OpenOptions {
  /** Use this driver or fail; by default better-sqlite3, else node:sqlite. */
  driver?: DriverName;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

function rebuild(e: SerializedError): Error {
  if (e.name === 'JobStoreError') return new JobStoreError(e.code as JobStoreError['code'], e.message);
  if (e.name === 'NoSqliteDriverError') return new NoSqliteDriverError(e.message);
  const err = e.name === 'TypeError' ? new TypeError(e.message) : e.name === 'RangeError' ? new RangeError(e.message) : new Error(e.message);
  if (err.name !== e.name) err.name = e.name;
  if (e.code !== undefined) Object.assign(err, { code: e.code });
  return err;
}

function checkLimits(limits: StoreLimits): void {
  for (const key of ['maxQueuedPerKey', 'maxQueued'] as const) {
    if (!Number.isInteger(limits[key]) || limits[key] < 0) throw new RangeError(`${key} must be a whole number >= 0, not ${limits[key]}`);
  }
  if (!Number.isFinite(limits.resultTtlMs) || limits.resultTtlMs < 0) throw new RangeError(`resultTtlMs must be a finite number >= 0, not ${limits.resultTtlMs}`);
}

export class JobStore implements QueueStore {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closing: Promise<void> | undefined;
  readonly location: string;
  /** Set when the worker died on its own: every later call rejects with it. */
  private failure: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    /** <dir>/queue.sqlite. */
    readonly databaseFile: string,
    /** Jobs that were running when the store was last left (a crash, or a close mid-run) and are
     * back in line, to run again. */
    readonly recovered: number,
    readonly driver: DriverName,
  ) {
    this.location = databaseFile;
    worker.on('message', (message: FromStore) => this.onMessage(message));
    worker.on('error', (err) => this.die(new Error(`the job store's worker failed: ${err.message}`)));
    worker.on('exit', (code) => {
      if (!this.closing) this.die(new Error(`the job store's worker exited (code ${code})`));
    });
    // Idle, the store does not keep the process alive; a request in flight does (see call()).
    worker.unref();
  }

  /**
   * Opens (creating it and `dir` if needed) the queue in <dir>/queue.sqlite. Every job left
   * 'running' goes back to 'queued' (`recovered`); one left running with a cancel requested is
   * cancelled instead. Rejects if no SQLite driver loads (NoSqliteDriverError), or if another
   * process has the queue open (JobStoreError 'locked').
   */
  static async open(dir: string, limits: StoreLimits, options: OpenOptions = {}): Promise<JobStore> {
    checkLimits(limits);
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, DATABASE_FILE);
    const init: WorkerInit = { file, limits: { ...limits }, driver: options.driver };
    // execArgv: [] keeps the process's own entry flags out of the thread: inherited, an
    // `--input-type=module -e ...` launch makes the worker refuse its file.
    const worker = new Worker(WORKER, { workerData: init, execArgv: [] });
    let ready: Extract<FromStore, { kind: 'ready' }>;
    try {
      ready = await new Promise((resolve, reject) => {
        const done = (): void => {
          worker.off('message', onMessage).off('error', onError).off('exit', onExit);
        };
        const onMessage = (m: FromStore): void => {
          done();
          if (m.kind === 'ready') resolve(m);
          else reject(m.kind === 'open-failed' ? rebuild(m.error) : new Error(`the job store's worker sent ${m.kind} before opening`));
        };
        const onError = (err: Error): void => {
          done();
          reject(err);
        };
        const onExit = (code: number): void => {
          done();
          reject(new Error(`the job store's worker exited (code ${code}) before opening ${file}`));
        };
        worker.on('message', onMessage).on('error', onError).on('exit', onExit);
      });
    } catch (err) {
      await worker.terminate();
      throw err;
    }
    return new JobStore(worker, file, ready.recovered, ready.driver);
  }

  /** Queues a job, unless its key already has maxQueuedPerKey queued ('key_full') or the queue
   * holds maxQueued ('full'). Running jobs count toward neither. */
  submit(job: NewJob): Promise<SubmitResult> {
    return this.call('submit', job);
  }

  /** Up to `limit` queued jobs, now running: normal priority before low, oldest first. */
  claim(limit: number): Promise<JobRecord[]> {
    return this.call('claim', limit);
  }

  /** running -> completed, with its files and (when the job has a webhook URL and a body is given)
   * its webhook delivery, in one transaction. Rejects (JobStoreError) if the job is not running. */
  complete(id: string, result: unknown, files: JobFile[], webhookBody?: string): Promise<void> {
    return this.call('complete', id, result, files, webhookBody);
  }

  /** Stores the files of a request answered outside the queue, as a finished job of its key. */
  recordCompleted(job: { id: string; appId: string; keyId: string; files: JobFile[] }): Promise<void> {
    return this.call('recordCompleted', job);
  }

  /** queued or running -> failed; the same webhook rule as complete(). */
  fail(id: string, error: JobError, webhookBody?: string): Promise<void> {
    return this.call('fail', id, error, webhookBody);
  }

  /** running -> cancelled, for a job the runner stopped because its cancel was requested; the same
   * webhook rule as complete(). */
  finishCancelled(id: string, webhookBody?: string): Promise<void> {
    return this.call('finishCancelled', id, webhookBody);
  }

  /** running -> queued at its old place in line (the front, for its priority). A job whose cancel
   * was requested is cancelled instead; the promise says which. */
  requeue(id: string): Promise<'queued' | 'cancelled'> {
    return this.call('requeue', id);
  }

  /** queued -> cancelled; a running job gets cancelRequested and 'running'; another key's job or
   * an unknown id is 'not_found'. */
  cancel(id: string, keyId: string): Promise<CancelResult> {
    return this.call('cancel', id, keyId);
  }

  /** The job, with its place in line while queued; undefined for another key's job. */
  get(id: string, keyId: string): Promise<JobRecord | undefined> {
    return this.call('get', id, keyId);
  }

  /** A result file by request id, for any key: ids are unguessable and served as image URLs. */
  file(id: string, name: string): Promise<JobFile | undefined> {
    return this.call('file', id, name);
  }

  counts(): Promise<{ queued: number; running: number }> {
    return this.call('counts');
  }

  /** Deletes finished jobs, their files and webhook rows, once finishedAt + resultTtlMs < now. */
  expire(now?: number): Promise<number> {
    return this.call('expire', now);
  }

  /** Pending deliveries due by `now`, earliest first. Not leased: run one deliverer per store. */
  dueWebhooks(now: number, limit: number): Promise<WebhookDelivery[]> {
    return this.call('dueWebhooks', now, limit);
  }

  /** Counts an attempt: delivered, to retry at nextAttemptAt, or given up with the last error. */
  webhookAttempted(id: number, outcome: WebhookOutcome): Promise<void> {
    return this.call('webhookAttempted', id, outcome);
  }

  /** Answers the calls already made, closes the database (folding the WAL into it) and ends the
   * worker. Later calls reject. */
  close(): Promise<void> {
    // A worker that already died has nothing left to close.
    this.closing ??= this.failure ? Promise.resolve() : this.shutdown();
    return this.closing;
  }

  private call<K extends StoreOp>(op: K, ...args: OpArgs<K>): Promise<OpResult<K>> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new Error('the job store is closed'));
    const id = this.nextId++;
    return new Promise<OpResult<K>>((resolve, reject) => {
      try {
        // Throws at once for arguments structured clone cannot copy (a function, say).
        this.worker.postMessage({ kind: 'call', id, op, args });
      } catch (err) {
        reject(err as Error);
        return;
      }
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
    });
  }

  private shutdown(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.ref();
    this.worker.postMessage({ kind: 'close' });
    return exited.then(() => {
      if (this.failure) throw this.failure;
    });
  }

  private onMessage(message: FromStore): void {
    if (message.kind !== 'reply') return;
    const waiter = this.pending.get(message.id);
    if (!waiter) return;
    this.pending.delete(message.id);
    if (this.pending.size === 0 && !this.closing) this.worker.unref();
    if (message.ok) waiter.resolve(message.value);
    else waiter.reject(rebuild(message.error));
  }

  private die(err: Error): void {
    this.failure ??= err;
    for (const waiter of this.pending.values()) waiter.reject(this.failure);
    this.pending.clear();
  }
}
