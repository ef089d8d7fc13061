// The queue's records as callers see them, shared by the main-thread handle (job-store.ts) and the
// storage code in the worker (queue-db.ts).

export type JobStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
export type JobPriority = 'normal' | 'low';

export interface JobFile {
  name: string;
  contentType: string;
  bytes: Uint8Array;
}

export interface JobError {
  status: number;
  code: string;
  message: string;
}

export interface NewJob {
  appId: string;
  keyId: string;
  /** Any JSON-serialisable value; stored as JSON text. */
  input: unknown;
  webhookUrl?: string;
  priority: JobPriority;
}

export interface JobRecord {
  /** crypto.randomUUID(): unguessable, so result file URLs can carry it without a key. */
  id: string;
  appId: string;
  keyId: string;
  input: unknown;
  status: JobStatus;
  priority: JobPriority;
  webhookUrl?: string;
  /** Times claimed (a job requeued or recovered after a crash is claimed again). */
  attempts: number;
  /** Unix ms. */
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  result?: unknown;
  error?: JobError;
  cancelRequested: boolean;
  /** 0-based place in line among queued jobs; only when status is 'queued'. */
  position?: number;
}

export interface StoreLimits {
  /** Queued (not running) jobs one key may have waiting. */
  maxQueuedPerKey: number;
  /** Queued (not running) jobs in all. */
  maxQueued: number;
  /** How long a finished job and its files are kept after finishedAt. */
  resultTtlMs: number;
}

export interface WebhookDelivery {
  id: number;
  requestId: string;
  /** The key that submitted the job: fal's webhook "user id" ('' for a job no longer stored). */
  keyId: string;
  url: string;
  body: string;
  /** Attempts made so far. */
  attempts: number;
  nextAttemptAt: number;
}

export type WebhookOutcome =
  | { delivered: true }
  | { delivered: false; nextAttemptAt: number }
  | { delivered: false; gaveUp: true; error: string };

export type SubmitResult = { ok: true; id: string; position: number } | { ok: false; reason: 'key_full' | 'full' };

export type CancelResult = 'cancelled' | 'running' | 'finished' | 'not_found';

/** A request the store refused: the job does not exist, or is not in a state the call applies to
 * (completing a job that is not running, say). Thrown in the worker, rebuilt on the main thread. */
export class JobStoreError extends Error {
  override name = 'JobStoreError';
  constructor(
    readonly code: 'not_found' | 'wrong_state' | 'locked',
    message: string,
  ) {
    super(message);
  }
}

/** What fal's queue routes, runner and webhooks need from a queue: the single-node SQLite store
 * (job-store.ts) and the shared one on Redis (--queue redis://...) both provide it. */
export interface QueueStore {
  /** Jobs put back in line when the store opened (they were running when a server stopped). */
  readonly recovered: number;
  /** Where the queue lives, for logs: a file, or a Redis URL without its password. */
  readonly location: string;
  submit(job: NewJob): Promise<SubmitResult>;
  claim(limit: number): Promise<JobRecord[]>;
  complete(id: string, result: unknown, files: JobFile[], webhookBody?: string): Promise<void>;
  recordCompleted(job: { id: string; appId: string; keyId: string; files: JobFile[] }): Promise<void>;
  fail(id: string, error: JobError, webhookBody?: string): Promise<void>;
  finishCancelled(id: string, webhookBody?: string): Promise<void>;
  requeue(id: string): Promise<'queued' | 'cancelled'>;
  cancel(id: string, keyId: string): Promise<CancelResult>;
  get(id: string, keyId: string): Promise<JobRecord | undefined>;
  file(id: string, name: string): Promise<JobFile | undefined>;
  counts(): Promise<{ queued: number; running: number }>;
  expire(now?: number): Promise<number>;
  dueWebhooks(now: number, limit: number): Promise<WebhookDelivery[]>;
  webhookAttempted(id: number, outcome: WebhookOutcome): Promise<void>;
  close(): Promise<void>;
}
