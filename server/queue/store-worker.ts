// The store's worker thread: owns the SQLite connection and answers JobStore's requests one at a
// time, in the order they were posted. SQLite calls are synchronous, so here, off the uWS thread,
// a 5 MB image write or a large expire blocks only this thread.
import { parentPort, workerData } from 'node:worker_threads';
import { QueueDb } from './queue-db.js';
import { serializeError, type FromStore, type ToStore, type WorkerInit } from './store-messages.js';
import type { JobFile } from './types.js';

const port = parentPort!;
const init = workerData as WorkerInit;

function post(message: FromStore, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

/** A result file's buffer, to move rather than copy to the main thread: only when the bytes own
 * their whole ArrayBuffer (a view into a shared slab must not detach the rest of it). */
function transferables(value: unknown): ArrayBuffer[] {
  const bytes = (value as JobFile | undefined)?.bytes;
  if (!(bytes instanceof Uint8Array)) return [];
  const buffer = bytes.buffer;
  if (!(buffer instanceof ArrayBuffer) || bytes.byteOffset !== 0 || bytes.byteLength !== buffer.byteLength) return [];
  return [buffer];
}

function open(): QueueDb | undefined {
  try {
    return QueueDb.open(init.file, init.limits, init.driver);
  } catch (err) {
    post({ kind: 'open-failed', error: serializeError(err) });
    return undefined;
  }
}

// On a failed open no listener is registered, so the thread ends once its message is out.
const db = open();
if (db) {
  post({ kind: 'ready', recovered: db.recovered, driver: db.driver });
  port.on('message', (message: ToStore) => serve(db, message));
}

function serve(db: QueueDb, message: ToStore): void {
  if (message.kind === 'close') {
    db.close(); // checkpoints the WAL into the database file
    post({ kind: 'closed' });
    port.close();
    return;
  }
  const { id, op, args } = message;
  let value: unknown;
  try {
    value = (db[op] as (...a: unknown[]) => unknown).apply(db, args);
  } catch (err) {
    post({ kind: 'reply', id, ok: false, error: serializeError(err) });
    return;
  }
  post({ kind: 'reply', id, ok: true, value }, op === 'file' ? transferables(value) : []);
}
