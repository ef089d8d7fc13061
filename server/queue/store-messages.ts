// Messages between the main thread's JobStore and the store's worker thread (structured clone, so
// result files travel as binary).
import type { QueueDb } from './queue-db.js';
import type { DriverName } from './sqlite-driver.js';
import type { StoreLimits } from './types.js';

/** QueueDb's methods the main thread may call, each one request and one reply. */
export type StoreOp =
  | 'submit'
  | 'claim'
  | 'complete'
  | 'recordCompleted'
  | 'fail'
  | 'finishCancelled'
  | 'requeue'
  | 'cancel'
  | 'get'
  | 'file'
  | 'counts'
  | 'expire'
  | 'dueWebhooks'
  | 'webhookAttempted';

export type OpArgs<K extends StoreOp> = Parameters<QueueDb[K]>;
export type OpResult<K extends StoreOp> = ReturnType<QueueDb[K]>;

export interface WorkerInit {
  file: string;
  limits: StoreLimits;
  driver?: DriverName;
}

/** An Error reduced to what survives the trip; the main thread rebuilds its class from `name`. */
export interface SerializedError {
  name: string;
  message: string;
  code?: string;
}

export type ToStore = { kind: 'call'; id: number; op: StoreOp; args: unknown[] } | { kind: 'close' };

export type FromStore =
  | { kind: 'ready'; recovered: number; driver: DriverName }
  | { kind: 'open-failed'; error: SerializedError }
  | { kind: 'reply'; id: number; ok: true; value: unknown }
  | { kind: 'reply'; id: number; ok: false; error: SerializedError }
  | { kind: 'closed' };

export function serializeError(err: unknown): SerializedError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const code = (err as { code?: unknown }).code;
  return { name: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}) };
}
