// What the Redis queue store (redis-store.ts) does outside Redis: checking its arguments, probing the
// server before anything is built on it, and turning records to and from Redis's flat strings.
import { Redis } from 'ioredis';
import { JobStoreError, type JobError, type JobFile, type JobPriority, type JobRecord, type JobStatus, type StoreLimits } from './types.js';

export function checkLimits(limits: StoreLimits): void {
  for (const key of ['maxQueuedPerKey', 'maxQueued'] as const) {
    if (!Number.isInteger(limits[key]) || limits[key] < 0) throw new RangeError(`${key} must be a whole number >= 0, not ${limits[key]}`);
  }
  if (!Number.isFinite(limits.resultTtlMs) || limits.resultTtlMs < 0) throw new RangeError(`resultTtlMs must be a finite number >= 0, not ${limits.resultTtlMs}`);
}

export function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive whole number of ms, not ${value}`);
  return value;
}

export { redactRedisUrl } from './redis-url.js';

/** One connection, one PING, then gone: rejects saying why when Redis does not answer in time.
 * ioredis leaves a timer behind when it gives up a connection (for disconnectTimeout, or for
 * connectTimeout after a refusal) that would hold a process open after a failed open(): this
 * client keeps the first short and does without the second, its own race standing in for it. */
export async function probe(url: string, location: string, timeoutMs: number): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 0, disconnectTimeout: 100, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  let lastError: Error | undefined;
  client.on('error', (err: Error) => {
    lastError = err;
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect().then(() => client.ping()),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    throw new Error(`cannot reach Redis at ${location}: ${lastError?.message ?? (err as Error).message}`);
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

export function toJson(value: unknown): string {
  return JSON.stringify(value) ?? 'null';
}

export function pairs(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]] = flat[i + 1];
  return out;
}

export function toRecord(h: Record<string, string>): JobRecord {
  const record: JobRecord = {
    id: h.id,
    appId: h.appId,
    keyId: h.keyId,
    input: JSON.parse(h.input ?? 'null'),
    status: h.status as JobStatus,
    priority: h.priority as JobPriority,
    attempts: Number(h.attempts ?? 0),
    createdAt: Number(h.createdAt),
    cancelRequested: h.cancel === '1',
  };
  if (h.webhookUrl !== undefined) record.webhookUrl = h.webhookUrl;
  if (h.startedAt !== undefined) record.startedAt = Number(h.startedAt);
  if (h.finishedAt !== undefined) record.finishedAt = Number(h.finishedAt);
  if (h.result !== undefined) record.result = JSON.parse(h.result);
  if (h.error !== undefined) record.error = JSON.parse(h.error) as JobError;
  return record;
}

// Checked before any script runs: Redis does not roll back a script that fails half way.
export function fileArgs(id: string, files: JobFile[]): (string | Buffer)[] {
  const names = new Set<string>();
  const args: (string | Buffer)[] = [];
  for (const f of files) {
    if (typeof f?.name !== 'string' || f.name === '' || typeof f.contentType !== 'string' || !(f.bytes instanceof Uint8Array)) {
      throw new TypeError(`job ${id}: a result file needs a name, a content type and bytes`);
    }
    names.add(f.name);
    args.push(f.name, f.contentType, Buffer.from(f.bytes.buffer, f.bytes.byteOffset, f.bytes.byteLength));
  }
  if (names.size !== files.length) throw new TypeError(`job ${id}: two result files share a name`);
  return args;
}

export function refusal(id: string, action: string, reply: unknown[], expected: string): JobStoreError {
  if (reply[0] === 'not_found') return new JobStoreError('not_found', `cannot ${action} job ${id}: no such job`);
  return new JobStoreError('wrong_state', `cannot ${action} job ${id}: it is ${String(reply[1])}, not ${expected}`);
}
