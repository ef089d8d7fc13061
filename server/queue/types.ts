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
