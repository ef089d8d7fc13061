// The queue shared by several server processes (nodes) on one Redis (--queue redis://HOST:PORT[/DB]).
// Any node takes a job, whichever node's GPU is idle claims it, any node answers its status, result
// and files, and any node delivers its webhook.
//
// BullMQ runs the job lifecycle: its wait list and prioritized set are the line, claim() takes jobs
// with Worker.getNextJob (manual fetching, no processor), and every claimed job carries BullMQ's lock,
// which this node extends every lockMs/3 while it holds the job. A node that dies stops extending;
// after lockMs the lock is gone and BullMQ's stalled check, run by every node's Worker, moves the job
// back to waiting, where the next claim (on any node) gets it with one more attempt.
//
// Each job also has a record of ours (redis-scripts.ts lists the keys), readable by id from every
// node until it expires. Ordering of finishing a job, and why a crash anywhere is safe: the record's
// terminal status, result, files and webhook row are written first, in one script; only then is
// BullMQ told (moveToCompleted/moveToFailed, which deletes its copy). A crash in between leaves the
// finished record (and the webhook, due at once, for any node to post) and a BullMQ job that stalls
// back to waiting: the next claim sees the record is final and just removes it from BullMQ.
import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { HeldJobs, StoreEvents, type RedisStoreEvents } from './redis-held.js';
import { checkLimits, fileArgs, pairs, positive, probe, redactRedisUrl, refusal, toJson, toRecord } from './redis-records.js';
import { SCRIPTS, keyNames, type Script } from './redis-scripts.js';
import type {
  CancelResult,
  JobError,
  JobFile,
  JobPriority,
  JobRecord,
  JobStatus,
  NewJob,
  QueueStore,
  StoreLimits,
  SubmitResult,
  WebhookDelivery,
  WebhookOutcome,
} from './types.js';

export * from './types.js';
export { redactRedisUrl } from './redis-records.js';
export type { RedisStoreEvents } from './redis-held.js';

export interface RedisStoreOptions {
  /** Prefix of every key, BullMQ's included; stores with different prefixes share nothing. */
  prefix?: string;
  /** How long a claimed job's lock lasts without renewal: a dead node's jobs run again after this
   * (plus up to one stalled-check interval). */
  lockMs?: number;
  /** How often BullMQ's stalled check runs (it runs once per interval across all nodes). */
  stalledIntervalMs?: number;
  /** How long a webhook delivery handed out by dueWebhooks() is hidden from other nodes: longer than
   * one post and the recording of its outcome. */
  webhookLeaseMs?: number;
  /** open() gives up on an unreachable Redis after this long. */
  connectTimeoutMs?: number;
}

const QUEUE_NAME = 'jobs';
// BullMQ's priority 0 means its plain wait list, which it serves before any priority; both of ours
// go in the prioritized set so that normal goes before low, each in insertion order.
const PRIORITY: Record<JobPriority, number> = { normal: 1, low: 2 };
// Effectively never: a job keeps going back in line however often its node dies, as it does on
// the SQLite store's restarts. The runner's maxAttempts bounds retryable failures.
const MAX_STALLS = 1_000_000;
// A submit's record is written a moment before BullMQ's job; one still without it after this long
// belongs to a node that died in between.
const ORPHAN_AGE_MS = 60_000;
const EXPIRE_BATCH = 500;

export class RedisQueueStore implements QueueStore {
  /** Always 0: a dead node's jobs go back in line continuously, not when a store opens. */
  readonly recovered = 0;
  readonly location: string;
  private readonly events = new StoreEvents();
  private readonly held: HeldJobs;
  private readonly keys: ReturnType<typeof keyNames>;
  private readonly prefixes: [string, string];
  /** Whole ms: Redis's PEXPIREAT takes no fractions. */
  private readonly ttlMs: number;
  private closing: Promise<void> | undefined;

  private constructor(
    url: string,
    prefix: string,
    private readonly redis: Redis,
    private readonly queue: Queue,
    private readonly worker: Worker,
    private readonly limits: StoreLimits,
    lockMs: number,
    private readonly webhookLeaseMs: number,
  ) {
    this.location = redactRedisUrl(url);
    this.keys = keyNames(prefix);
    this.ttlMs = Math.ceil(limits.resultTtlMs);
    this.prefixes = [`${prefix}:`, queue.keys['']];
    const report = (err: Error): void => this.events.error(err);
    redis.on('error', report);
    queue.on('error', report);
    worker.on('error', report);
    this.held = new HeldJobs(worker, redis, this.keys.record, lockMs, this.events);
  }

  /** Connects (PING within connectTimeoutMs, else rejects saying so), then starts this node's lock
   * renewal and BullMQ's stalled check. */
  static async open(url: string, limits: StoreLimits, options: RedisStoreOptions = {}): Promise<RedisQueueStore> {
    checkLimits(limits);
    const location = redactRedisUrl(url);
    const prefix = options.prefix ?? 'rd';
    if (!/^[A-Za-z0-9_.{}-]+$/.test(prefix)) throw new RangeError(`prefix must be letters, digits, _ . - { }, not ${JSON.stringify(prefix)}`);
    const lockMs = positive('lockMs', options.lockMs ?? 30_000);
    const stalledIntervalMs = positive('stalledIntervalMs', options.stalledIntervalMs ?? Math.max(1, Math.floor(lockMs / 2)));
    const webhookLeaseMs = positive('webhookLeaseMs', options.webhookLeaseMs ?? 60_000);
    const connectTimeoutMs = positive('connectTimeoutMs', options.connectTimeoutMs ?? 5_000);

    await probe(url, location, connectTimeoutMs);
    const redis = new Redis(url, { connectTimeout: connectTimeoutMs, maxRetriesPerRequest: 3 });

    const connection = { url };
    const queue = new Queue(QUEUE_NAME, { connection, prefix, defaultJobOptions: { removeOnComplete: true, removeOnFail: true } });
    const worker = new Worker(QUEUE_NAME, null, {
      connection,
      prefix,
      autorun: false,
      lockDuration: lockMs,
      stalledInterval: stalledIntervalMs,
      maxStalledCount: MAX_STALLS,
      // Renewal is ours (redis-held.ts): BullMQ's lock manager only runs with its own processing loop.
      skipLockRenewal: true,
    });
    const store = new RedisQueueStore(url, prefix, redis, queue, worker, limits, lockMs, webhookLeaseMs);
    try {
      await Promise.all([queue.waitUntilReady(), worker.waitUntilReady()]);
      // Without worker.run() BullMQ does not check for stalled jobs by itself.
      await worker.startStalledCheckTimer();
    } catch (err) {
      await store.close().catch(() => {});
      throw err;
    }
    return store;
  }

  on<E extends keyof RedisStoreEvents>(event: E, listener: RedisStoreEvents[E]): this {
    this.events.on(event, listener);
    return this;
  }

  off<E extends keyof RedisStoreEvents>(event: E, listener: RedisStoreEvents[E]): this {
    this.events.off(event, listener);
    return this;
  }

  /** Queues a job unless its key already has maxQueuedPerKey queued ('key_full') or all keys
   * maxQueued ('full'); running jobs count toward neither. The check and the reservation are one
   * script, so nodes submitting at once cannot overshoot together. */
  async submit(job: NewJob): Promise<SubmitResult> {
    const priority = PRIORITY[job.priority];
    if (priority === undefined) throw new TypeError(`unknown priority ${String(job.priority)}`);
    this.assertOpen();
    const id = randomUUID();
    const fields = ['id', id, 'appId', job.appId, 'keyId', job.keyId, 'input', toJson(job.input), 'priority', job.priority];
    fields.push('createdAt', String(Date.now()), 'status', 'queued');
    if (job.webhookUrl !== undefined) fields.push('webhookUrl', job.webhookUrl);
    const verdict = await this.run(SCRIPTS.submit, [id, job.keyId, this.limits.maxQueuedPerKey, this.limits.maxQueued, ...fields]);
    if (verdict !== 'ok') return { ok: false, reason: verdict as 'key_full' | 'full' };
    try {
      await this.queue.add('job', { appId: job.appId }, { jobId: id, priority });
    } catch (err) {
      // Unacknowledged, so nobody knows the id: take the reservation back (expire() would, later).
      await this.redis.multi().del(this.keys.record(id)).srem(this.keys.live, id).srem(this.keys.liveOf(job.keyId), id).exec().catch(() => {});
      throw err;
    }
    return { ok: true, id, position: Number(await this.run(SCRIPTS.position, [id])) };
  }

  /** Up to `limit` jobs for this node (normal before low, oldest first; a job recovered from a dead
   * node first of all), now running here with their locks renewed until this node finishes or
   * requeues them. Only call it with room to run them: a claimed job is this node's to finish. */
  async claim(limit: number): Promise<JobRecord[]> {
    this.assertOpen();
    if (!(limit > 0)) return [];
    const want = Math.floor(limit);
    const claimed: JobRecord[] = [];
    // Each pass either claims a job or removes a finished one from BullMQ, so this ends; the cap
    // only bounds one call's work after a burst of crashes.
    for (let pass = 0; claimed.length < want && pass < want + 100; pass++) {
      try {
        const token = randomUUID();
        const job = await this.worker.getNextJob(token, { block: false });
        if (!job?.id) break;
        const reply = (await this.run(SCRIPTS.claimed, [job.id, Date.now(), this.ttlMs])) as [string, string[]?];
        if (reply[0] !== 'ok') {
          await this.tellBullmq(job.moveToCompleted(null, token, false));
          continue;
        }
        this.held.add(job.id, token, job);
        const record = toRecord(pairs(reply[1]!));
        Object.assign(record, { status: 'running', attempts: job.attemptsStarted, startedAt: job.processedOn ?? Date.now() });
        claimed.push(record);
      } catch (err) {
        // Jobs already claimed are held (and renewed) here: hand them over rather than lose them.
        if (claimed.length === 0) throw err;
        this.events.error(err);
        break;
      }
    }
    return claimed;
  }

  /** running (on this node) -> completed, with its files and, when the job has a webhook URL and a
   * body is given, its webhook delivery, all in one script. */
  async complete(id: string, result: unknown, files: JobFile[], webhookBody?: string): Promise<void> {
    return this.finish(id, 'completed', 'complete', 'running', { result: toJson(result), files: fileArgs(id, files), webhookBody });
  }

  /** A request answered outside the queue (fal.run, fal.stream) whose images are served as files:
   * stored as a finished job so they expire with the queue's results. */
  async recordCompleted(job: { id: string; appId: string; keyId: string; files: JobFile[] }): Promise<void> {
    this.assertOpen();
    const files = fileArgs(job.id, job.files);
    const now = Date.now();
    const fields = ['id', job.id, 'appId', job.appId, 'input', 'null', 'priority', 'normal', 'createdAt', String(now), 'startedAt', String(now)];
    await this.run(SCRIPTS.record, [job.id, job.keyId, now, this.ttlMs, fields.length, ...fields, ...files]);
  }

  /** queued (any node) or running (on this node) -> failed; the same webhook rule as complete(). */
  async fail(id: string, error: JobError, webhookBody?: string): Promise<void> {
    return this.finish(id, 'failed', 'fail', 'queued or running', { error: JSON.stringify(error), files: [], webhookBody });
  }

  /** running (on this node) -> cancelled, after its cancel was asked for. */
  async finishCancelled(id: string, webhookBody?: string): Promise<void> {
    return this.finish(id, 'cancelled', 'finish as cancelled', 'running', { files: [], webhookBody });
  }

  /** running (on this node) -> queued, first in line for its priority; a job whose cancel was
   * asked for is cancelled instead. */
  async requeue(id: string): Promise<'queued' | 'cancelled'> {
    this.assertOpen();
    return this.putBack(id);
  }

  /** queued -> cancelled (out of line at once); a running job, on any node, gets cancelRequested and
   * 'running' (its node hears of it through 'cancelRequested'); another key's job is 'not_found'. */
  async cancel(id: string, keyId: string): Promise<CancelResult> {
    this.assertOpen();
    const outcome = (await this.run(SCRIPTS.cancel, [id, keyId, Date.now(), this.ttlMs])) as CancelResult;
    if (outcome === 'running') this.held.cancelRequested(id);
    return outcome;
  }

  /** The job as any node sees it, with its exact place in line while queued; undefined for another
   * key's job or once it expired. */
  async get(id: string, keyId: string): Promise<JobRecord | undefined> {
    this.assertOpen();
    const reply = (await this.run(SCRIPTS.get, [id, keyId])) as null | [string[], string?, number?, string?, string?];
    if (!reply) return undefined;
    const record = toRecord(pairs(reply[0]));
    if (reply[1] === undefined) return record;
    record.status = reply[1] as JobStatus;
    record.attempts = Number(reply[3]);
    delete record.startedAt;
    if (record.status === 'queued') record.position = Number(reply[2]);
    else if (reply[4]) record.startedAt = Number(reply[4]);
    return record;
  }

  /** A result file by request id, for any key: ids are unguessable and served as image URLs. */
  async file(id: string, name: string): Promise<JobFile | undefined> {
    this.assertOpen();
    const [type, bytes] = await this.redis.hmgetBuffer(this.keys.file(id, name), 'type', 'bytes');
    if (!type || !bytes) return undefined;
    return { name, contentType: type.toString(), bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
  }

  /** Queued and running jobs across all nodes. */
  async counts(): Promise<{ queued: number; running: number }> {
    this.assertOpen();
    const [queued, running] = (await this.run(SCRIPTS.counts, [])) as [number, number];
    return { queued: Math.max(0, queued), running };
  }

  /** Deletes what finished before now - resultTtlMs (Redis's TTLs do the same on their own, on
   * Redis's clock) and drops submits whose node died half way; returns the records deleted. */
  async expire(now = Date.now()): Promise<number> {
    this.assertOpen();
    let removed = 0;
    for (;;) {
      const [deleted, seen] = (await this.run(SCRIPTS.expire, [now - this.ttlMs, EXPIRE_BATCH])) as [number, number];
      removed += deleted;
      if (seen < EXPIRE_BATCH) break;
    }
    return removed + Number(await this.run(SCRIPTS.sweep, [Date.now() - ORPHAN_AGE_MS]));
  }

  /** Pending deliveries due by `now`, earliest first, each leased to the caller for webhookLeaseMs:
   * another node's call does not return it meanwhile, so one post per attempt across the nodes. A
   * lease that runs out before webhookAttempted() (the node died) makes the row due again. */
  async dueWebhooks(now: number, limit: number): Promise<WebhookDelivery[]> {
    this.assertOpen();
    if (!(limit > 0)) return [];
    const leaseEnd = Math.max(now, Date.now()) + this.webhookLeaseMs;
    const rows = (await this.run(SCRIPTS.dueHooks, [now, Math.floor(limit), leaseEnd])) as string[][];
    return rows.map(([id, requestId, url, body, attempts, nextAttemptAt, keyId]) => ({
      id: Number(id),
      requestId,
      keyId: keyId ?? '',
      url,
      body,
      attempts: Number(attempts),
      nextAttemptAt: Number(nextAttemptAt),
    }));
  }

  /** Counts an attempt: delivered, to retry at nextAttemptAt, or given up; a delivery no longer
   * pending is left as it is. Any node may record it. */
  async webhookAttempted(id: number, outcome: WebhookOutcome): Promise<void> {
    this.assertOpen();
    const args = outcome.delivered
      ? [id, 'delivered', 0, '']
      : 'gaveUp' in outcome
        ? [id, 'gave_up', 0, outcome.error]
        : [id, 'retry', outcome.nextAttemptAt, ''];
    await this.run(SCRIPTS.hookAttempted, args);
  }

  /** Stops renewing locks, puts the jobs this node still holds back in line for other nodes (or
   * cancels them, if asked), and disconnects. Later calls reject. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.held.stop();
    for (const id of this.held.ids()) await this.putBack(id).catch((err: unknown) => this.events.error(err));
    await this.worker.close().catch(() => {});
    await this.queue.close().catch(() => {});
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private async putBack(id: string): Promise<'queued' | 'cancelled'> {
    const held = this.held.get(id);
    const reply = (await this.run(SCRIPTS.requeue, [id, held?.token ?? '', Date.now(), this.ttlMs])) as string[];
    if (reply[0] !== 'queued' && reply[0] !== 'cancelled') {
      if (held) this.held.delete(id);
      throw refusal(id, 'requeue', reply, 'running');
    }
    this.held.delete(id);
    // A failed move leaves the lock to run out, and BullMQ's stalled check puts it back all the same.
    if (reply[0] === 'queued') await this.tellBullmq(held!.job.moveToWait(held!.token));
    else await this.tellBullmq(held!.job.moveToCompleted(null, held!.token, false));
    return reply[0];
  }

  private async finish(
    id: string,
    status: 'completed' | 'failed' | 'cancelled',
    action: string,
    expected: string,
    what: { result?: string; error?: string; files: (string | Buffer)[]; webhookBody?: string },
  ): Promise<void> {
    this.assertOpen();
    const held = this.held.get(id);
    const hook = what.webhookBody !== undefined;
    const args = [id, held?.token ?? '', status, Date.now(), this.ttlMs, what.result ?? '', what.error ?? '', hook ? '1' : '0', what.webhookBody ?? '', ...what.files];
    const reply = (await this.run(SCRIPTS.finish, args)) as string[];
    if (reply[0] !== 'ok') {
      // Whatever the reason, this node no longer holds the job.
      if (held) this.held.delete(id);
      throw refusal(id, action, reply, expected);
    }
    if (reply[1] !== '1' || !held) return;
    this.held.delete(id);
    // The record is final already; this only frees BullMQ's copy (see the top of this file).
    const move = status === 'failed' ? held.job.moveToFailed(new Error(JSON.parse(what.error!).message ?? 'failed'), held.token, false) : held.job.moveToCompleted(null, held.token, false);
    await this.tellBullmq(move);
  }

  private async tellBullmq(move: Promise<unknown>): Promise<void> {
    await move.catch((err: unknown) => this.events.error(err));
  }

  private run(script: Script, args: (string | number | Buffer)[]): Promise<unknown> {
    return script.run(this.redis, this.prefixes, args);
  }

  private assertOpen(): void {
    if (this.closing) throw new Error('the Redis queue store is closed');
  }
}
