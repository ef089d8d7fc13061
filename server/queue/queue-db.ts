// The queue's tables and every operation on them, synchronous. It runs inside the store's worker
// thread (store-worker.ts) so that no query ever blocks the uWS thread; job-store.ts is the async
// face of the same methods.
import { randomUUID } from 'node:crypto';
import { openDatabase, type Database, type DriverName, type Row, type Statement } from './sqlite-driver.js';
import {
  JobStoreError,
  type CancelResult,
  type JobError,
  type JobFile,
  type JobPriority,
  type JobRecord,
  type JobStatus,
  type NewJob,
  type StoreLimits,
  type SubmitResult,
  type WebhookDelivery,
  type WebhookOutcome,
} from './types.js';

const SCHEMA_VERSION = 1;

// Queue order is (priority, seq): seq is the insertion order, so a wall-clock step cannot reorder the
// line, and a requeued job keeps its seq and with it its place at the front. The partial indexes
// hold only queued (or running, or finished) rows, so claiming, counting a key's queued jobs and a
// job's position read a small index range however many finished jobs the table holds.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  app_id TEXT NOT NULL,
  key_id TEXT NOT NULL,
  input TEXT NOT NULL,
  status TEXT NOT NULL,
  priority INTEGER NOT NULL,
  webhook_url TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  result TEXT,
  error TEXT,
  cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (priority, seq) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_queued_key ON jobs (key_id) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_running ON jobs (seq) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS files (
  job_id TEXT NOT NULL,
  name TEXT NOT NULL,
  content_type TEXT NOT NULL,
  bytes BLOB NOT NULL,
  UNIQUE (job_id, name)
);
CREATE TABLE IF NOT EXISTS webhooks (
  id INTEGER PRIMARY KEY,
  request_id TEXT NOT NULL,
  url TEXT NOT NULL,
  body TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  state TEXT NOT NULL,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS webhooks_due ON webhooks (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS webhooks_request ON webhooks (request_id);
`;

const PRIORITY: Record<JobPriority, number> = { normal: 0, low: 1 };
const PRIORITY_NAME: JobPriority[] = ['normal', 'low'];

function toJson(value: unknown): string {
  // JSON.stringify(undefined) is undefined, not a string; store it as null.
  return JSON.stringify(value) ?? 'null';
}

function toRecord(row: Row, position?: number): JobRecord {
  const record: JobRecord = {
    id: row.id as string,
    appId: row.app_id as string,
    keyId: row.key_id as string,
    input: JSON.parse(row.input as string),
    status: row.status as JobStatus,
    priority: PRIORITY_NAME[row.priority as number],
    attempts: row.attempts as number,
    createdAt: row.created_at as number,
    cancelRequested: row.cancel_requested === 1,
  };
  if (row.webhook_url !== null) record.webhookUrl = row.webhook_url as string;
  if (row.started_at !== null) record.startedAt = row.started_at as number;
  if (row.finished_at !== null) record.finishedAt = row.finished_at as number;
  if (row.result !== null) record.result = JSON.parse(row.result as string);
  if (row.error !== null) record.error = JSON.parse(row.error as string) as JobError;
  if (position !== undefined) record.position = position;
  return record;
}

function isLocked(err: unknown): boolean {
  const e = err as { code?: string; errcode?: number; message?: string };
  return e.code === 'SQLITE_BUSY' || e.errcode === 5 || /database is locked/.test(e.message ?? '');
}

function prepareAll(db: Database) {
  const s = (sql: string): Statement => db.prepare(sql);
  return {
    insertJob: s(`INSERT INTO jobs (id, app_id, key_id, input, status, priority, webhook_url, created_at)
                  VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)`),
    insertCompleted: s(`INSERT INTO jobs (id, app_id, key_id, input, status, priority, created_at, started_at, finished_at)
                  VALUES (?, ?, ?, 'null', 'completed', 0, ?, ?, ?)`),
    queuedTotal: s(`SELECT count(*) AS n FROM jobs WHERE status = 'queued'`),
    queuedForKey: s(`SELECT count(*) AS n FROM jobs WHERE status = 'queued' AND key_id = ?`),
    running: s(`SELECT count(*) AS n FROM jobs WHERE status = 'running'`),
    ahead: s(`SELECT (SELECT count(*) FROM jobs WHERE status = 'queued' AND priority < ?)
                   + (SELECT count(*) FROM jobs WHERE status = 'queued' AND priority = ? AND seq < ?) AS n`),
    byId: s(`SELECT * FROM jobs WHERE id = ?`),
    nextQueued: s(`SELECT * FROM jobs WHERE status = 'queued' ORDER BY priority, seq LIMIT ?`),
    start: s(`UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ? WHERE seq = ?`),
    finish: s(`UPDATE jobs SET status = ?, finished_at = ?, result = ?, error = ? WHERE seq = ?`),
    toQueue: s(`UPDATE jobs SET status = 'queued', started_at = NULL WHERE seq = ?`),
    requestCancel: s(`UPDATE jobs SET cancel_requested = 1 WHERE seq = ?`),
    insertFile: s(`INSERT INTO files (job_id, name, content_type, bytes) VALUES (?, ?, ?, ?)`),
    file: s(`SELECT content_type, bytes FROM files WHERE job_id = ? AND name = ?`),
    insertWebhook: s(`INSERT INTO webhooks (request_id, url, body, next_attempt_at, state) VALUES (?, ?, ?, ?, 'pending')`),
    dueWebhooks: s(`SELECT w.*, j.key_id FROM webhooks w LEFT JOIN jobs j ON j.id = w.request_id
      WHERE w.state = 'pending' AND w.next_attempt_at <= ? ORDER BY w.next_attempt_at, w.id LIMIT ?`),
    webhookDone: s(`UPDATE webhooks SET attempts = attempts + 1, state = ?, last_error = ? WHERE id = ? AND state = 'pending'`),
    webhookRetry: s(`UPDATE webhooks SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ? AND state = 'pending'`),
    expireFiles: s(`DELETE FROM files WHERE job_id IN (SELECT id FROM jobs WHERE finished_at < ?)`),
    expireWebhooks: s(`DELETE FROM webhooks WHERE request_id IN (SELECT id FROM jobs WHERE finished_at < ?)`),
    expireJobs: s(`DELETE FROM jobs WHERE finished_at < ?`),
  };
}

export class QueueDb {
  readonly recovered: number;
  private readonly s: ReturnType<typeof prepareAll>;

  private constructor(
    private readonly db: Database,
    private readonly limits: StoreLimits,
  ) {
    this.s = prepareAll(db);
    this.recovered = db.transaction(() => {
      const now = Date.now();
      // A job whose cancel was asked for when the process died is not run again.
      db.prepare(`UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE status = 'running' AND cancel_requested = 1`).run(now);
      return db.prepare(`UPDATE jobs SET status = 'queued', started_at = NULL WHERE status = 'running'`).run().changes;
    });
  }

  static open(file: string, limits: StoreLimits, driver?: DriverName): QueueDb {
    const db = openDatabase(file, driver);
    try {
      // One process owns the queue: a second server on the same directory would put the first one's
      // running jobs back in line and run them twice. EXCLUSIVE keeps the file locked for as long as
      // this connection is open (the OS drops the lock when the process dies, SIGKILL included), and
      // busy_timeout 0 makes a second opener fail at once instead of waiting.
      db.exec('PRAGMA locking_mode = EXCLUSIVE');
      db.exec('PRAGMA busy_timeout = 0');
      // Only takes effect on a new, empty file: lets expire() hand deleted images' pages back.
      db.exec('PRAGMA auto_vacuum = INCREMENTAL');
      // With WAL, a commit has been written to the -wal file (the OS's page cache) before it returns;
      // synchronous=NORMAL only leaves out the fsync of that write. A killed process (SIGKILL, OOM,
      // crash) cannot lose a committed transaction, since the kernel still writes what the process
      // wrote; only a power loss or kernel crash can roll back the last few commits, never corrupt
      // the file. That is the durability the queue needs, without an fsync per submit.
      db.exec('PRAGMA journal_mode = WAL');
      db.exec('PRAGMA synchronous = NORMAL');
      const version = db.prepare('PRAGMA user_version').get()?.user_version as number;
      if (version > SCHEMA_VERSION) {
        throw new Error(`${file} has queue schema ${version}; this server knows ${SCHEMA_VERSION} (written by a newer version)`);
      }
      db.transaction(() => {
        db.exec(SCHEMA);
        db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
      });
      return new QueueDb(db, limits);
    } catch (err) {
      db.close();
      if (isLocked(err)) throw new JobStoreError('locked', `${file} is open elsewhere (another server on the same queue directory, or another JobStore in this process): one owner per queue`);
      throw err;
    }
  }

  get driver(): DriverName {
    return this.db.driver;
  }

  close(): void {
    this.db.close();
  }

  submit(job: NewJob): SubmitResult {
    const priority = PRIORITY[job.priority];
    if (priority === undefined) throw new TypeError(`unknown priority ${String(job.priority)}`);
    const input = toJson(job.input);
    return this.db.transaction(() => {
      if ((this.s.queuedForKey.get(job.keyId)!.n as number) >= this.limits.maxQueuedPerKey) return { ok: false, reason: 'key_full' };
      if ((this.s.queuedTotal.get()!.n as number) >= this.limits.maxQueued) return { ok: false, reason: 'full' };
      const id = randomUUID();
      this.s.insertJob.run(id, job.appId, job.keyId, input, priority, job.webhookUrl, Date.now());
      return { ok: true, id, position: this.position(this.row(id)) };
    });
  }

  claim(limit: number): JobRecord[] {
    if (!(limit > 0)) return [];
    return this.db.transaction(() => {
      const now = Date.now();
      return this.s.nextQueued.all(Math.floor(limit)).map((row) => {
        this.s.start.run(now, row.seq);
        return toRecord({ ...row, status: 'running', attempts: (row.attempts as number) + 1, started_at: now });
      });
    });
  }

  complete(id: string, result: unknown, files: JobFile[], webhookBody?: string): void {
    const names = new Set(files.map((f) => f.name));
    if (names.size !== files.length) throw new TypeError(`job ${id}: two result files share a name`);
    const json = toJson(result);
    this.db.transaction(() => {
      const row = this.expect(id, ['running'], 'complete');
      this.s.finish.run('completed', Date.now(), json, null, row.seq);
      for (const f of files) this.s.insertFile.run(id, f.name, f.contentType, f.bytes);
      this.queueWebhook(row, webhookBody);
    });
  }

  /** A request answered outside the queue (fal.run, fal.stream) whose images are served as files:
   * stored as a finished job so they expire with the queue's results. */
  recordCompleted(job: { id: string; appId: string; keyId: string; files: JobFile[] }): void {
    this.db.transaction(() => {
      const now = Date.now();
      this.s.insertCompleted.run(job.id, job.appId, job.keyId, now, now, now);
      for (const f of job.files) this.s.insertFile.run(job.id, f.name, f.contentType, f.bytes);
    });
  }

  fail(id: string, error: JobError, webhookBody?: string): void {
    this.db.transaction(() => {
      const row = this.expect(id, ['queued', 'running'], 'fail');
      this.s.finish.run('failed', Date.now(), null, toJson(error), row.seq);
      this.queueWebhook(row, webhookBody);
    });
  }

  /** The runner stopped a running job because its cancel was asked for: running -> cancelled. */
  finishCancelled(id: string, webhookBody?: string): void {
    this.db.transaction(() => {
      const row = this.expect(id, ['running'], 'finish as cancelled');
      this.s.finish.run('cancelled', Date.now(), null, null, row.seq);
      this.queueWebhook(row, webhookBody);
    });
  }

  /** running -> queued at its old place; a job whose cancel was asked for is cancelled instead. */
  requeue(id: string): 'queued' | 'cancelled' {
    return this.db.transaction(() => {
      const row = this.expect(id, ['running'], 'requeue');
      if (row.cancel_requested === 1) {
        this.s.finish.run('cancelled', Date.now(), null, null, row.seq);
        return 'cancelled';
      }
      this.s.toQueue.run(row.seq);
      return 'queued';
    });
  }

  cancel(id: string, keyId: string): CancelResult {
    return this.db.transaction(() => {
      const row = this.s.byId.get(id);
      if (!row || row.key_id !== keyId) return 'not_found';
      if (row.status === 'queued') {
        this.s.finish.run('cancelled', Date.now(), null, null, row.seq);
        return 'cancelled';
      }
      if (row.status === 'running') {
        this.s.requestCancel.run(row.seq);
        return 'running';
      }
      return 'finished';
    });
  }

  get(id: string, keyId: string): JobRecord | undefined {
    const row = this.s.byId.get(id);
    if (!row || row.key_id !== keyId) return undefined;
    return toRecord(row, row.status === 'queued' ? this.position(row) : undefined);
  }

  file(id: string, name: string): JobFile | undefined {
    const row = this.s.file.get(id, name);
    if (!row) return undefined;
    return { name, contentType: row.content_type as string, bytes: row.bytes as Uint8Array };
  }

  counts(): { queued: number; running: number } {
    return { queued: this.s.queuedTotal.get()!.n as number, running: this.s.running.get()!.n as number };
  }

  expire(now = Date.now()): number {
    const cutoff = now - this.limits.resultTtlMs;
    const removed = this.db.transaction(() => {
      this.s.expireFiles.run(cutoff);
      this.s.expireWebhooks.run(cutoff);
      return this.s.expireJobs.run(cutoff).changes;
    });
    // Return the freed pages (mostly image blobs) to the file system; outside the transaction, as
    // SQLite requires. A no-op on files created before auto_vacuum was set.
    if (removed > 0) this.db.exec('PRAGMA incremental_vacuum');
    return removed;
  }

  dueWebhooks(now: number, limit: number): WebhookDelivery[] {
    if (!(limit > 0)) return [];
    return this.s.dueWebhooks.all(now, Math.floor(limit)).map((row) => ({
      id: row.id as number,
      requestId: row.request_id as string,
      keyId: (row.key_id as string | null) ?? '',
      url: row.url as string,
      body: row.body as string,
      attempts: row.attempts as number,
      nextAttemptAt: row.next_attempt_at as number,
    }));
  }

  /** Records one delivery attempt. A delivery no longer pending (expired with its job meanwhile, or
   * already settled) is left as it is: the deliverer has nothing to undo. */
  webhookAttempted(id: number, outcome: WebhookOutcome): void {
    if (outcome.delivered) this.s.webhookDone.run('delivered', null, id);
    else if ('gaveUp' in outcome) this.s.webhookDone.run('gave_up', outcome.error, id);
    else this.s.webhookRetry.run(outcome.nextAttemptAt, id);
  }

  private row(id: string): Row {
    return this.s.byId.get(id)!;
  }

  private position(row: Row): number {
    return this.s.ahead.get(row.priority, row.priority, row.seq)!.n as number;
  }

  private expect(id: string, states: JobStatus[], action: string): Row {
    const row = this.s.byId.get(id);
    if (!row) throw new JobStoreError('not_found', `cannot ${action} job ${id}: no such job`);
    if (!states.includes(row.status as JobStatus)) {
      throw new JobStoreError('wrong_state', `cannot ${action} job ${id}: it is ${row.status as string}, not ${states.join(' or ')}`);
    }
    return row;
  }

  private queueWebhook(row: Row, body: string | undefined): void {
    if (row.webhook_url !== null && body !== undefined) this.s.insertWebhook.run(row.id, row.webhook_url, body, Date.now());
  }
}
