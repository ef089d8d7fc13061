// The shared queue (server/queue/redis-store.ts) against a real redis-server: the rules the SQLite
// store's tests pin (test/job-store.test.ts), then what only several nodes have: a job taken on one
// node and run on another, webhook rows handed to one node at a time, a SIGKILLed node's job run
// again elsewhere, and results expiring on Redis's own clock.
// Without redis-server: fails when CI=true, otherwise skips loudly (see scripts/ensure-redis.sh).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { RedisQueueStore, type RedisStoreOptions } from '../server/queue/redis-store.js';
import { JobStoreError, type StoreLimits } from '../server/queue/types.js';
import { endedWithWebhooks, job, LIMITS, pick, png, queueStoreContract, submitted, type After } from './helpers/queue-store-contract.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis-server.js';

const CI = process.env.CI === 'true';
const missing = redisMissing();
if (missing && !CI) console.warn(`\n!!! SKIPPING the Redis queue tests: ${missing}\n`);
if (missing && CI) {
  test('redis-server is installed (required when CI=true)', () => assert.fail(missing));
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const wrongState = (err: unknown): boolean => err instanceof JobStoreError && err.code === 'wrong_state';

describe('RedisQueueStore on a real redis-server', { skip: missing ?? false }, () => {
  let server: RedisServer;
  let prefixes = 0;
  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    await server?.stop();
  });

  /** `count` stores (nodes) sharing one fresh key prefix, closed when the test ends. */
  async function nodes(t: After, count: number, limits: Partial<StoreLimits> = {}, options: RedisStoreOptions = {}): Promise<RedisQueueStore[]> {
    const prefix = `t${++prefixes}`;
    const stores: RedisQueueStore[] = [];
    for (let i = 0; i < count; i++) {
      const store = await RedisQueueStore.open(server.url, { ...LIMITS, ...limits }, { prefix, ...options });
      t.after(() => store.close());
      stores.push(store);
    }
    return stores;
  }

  const openStore = async (t: After, limits: Partial<StoreLimits> = {}, options: RedisStoreOptions = {}): Promise<RedisQueueStore> =>
    (await nodes(t, 1, limits, options))[0];

  queueStoreContract(openStore);

  test('a fresh store reports where it lives and recovers nothing', async (t) => {
    const store = await openStore(t);
    assert.equal(store.recovered, 0);
    assert.equal(store.location, server.url);
  });

  test('per-key and total bounds count queued jobs only, across nodes', async (t) => {
    const [a, b] = await nodes(t, 2, { maxQueuedPerKey: 2, maxQueued: 3 });
    await submitted(a, { keyId: 'k1' });
    await submitted(b, { keyId: 'k1' });
    assert.deepEqual(await a.submit(job({ keyId: 'k1' })), { ok: false, reason: 'key_full' });
    await submitted(b, { keyId: 'k2' });
    assert.deepEqual(await b.submit(job({ keyId: 'k2' })), { ok: false, reason: 'full' });
    assert.deepEqual(await a.submit(job({ keyId: 'k1' })), { ok: false, reason: 'key_full' }, 'the key limit is checked first');
    // A running job no longer holds a place.
    assert.equal((await b.claim(1)).length, 1);
    assert.deepEqual(await a.counts(), { queued: 2, running: 1 });
    await submitted(a, { keyId: 'k1' });
    assert.deepEqual(await a.submit(job({ keyId: 'k3' })), { ok: false, reason: 'full' });

    // Two nodes racing for the last places do not overshoot together.
    const [c, d] = await nodes(t, 2, { maxQueuedPerKey: 5, maxQueued: 5 });
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? c : d).submit(job())));
    assert.equal(results.filter((r) => r.ok).length, 5);
    assert.deepEqual(await c.counts(), { queued: 5, running: 0 });
  });

  test('cancel: queued, running (on another node), finished, and another key’s', async (t) => {
    const [a, b] = await nodes(t, 2, {}, { lockMs: 600 });
    const queued = await submitted(a);
    const running = await submitted(a);
    const later = await submitted(a);
    assert.equal(await a.cancel(queued, 'key-a'), 'cancelled');
    assert.equal((await a.get(queued, 'key-a'))?.status, 'cancelled');
    assert.equal((await a.get(later, 'key-a'))?.position, 1, 'out of line at once');
    assert.equal(await a.cancel(queued, 'key-a'), 'finished');
    assert.equal(await a.cancel(running, 'key-b'), 'not_found');
    assert.equal(await a.cancel('no-such-id', 'key-a'), 'not_found');

    const heard: string[] = [];
    b.on('cancelRequested', (id) => heard.push(id));
    assert.equal((await b.claim(1))[0].id, running);
    assert.equal(await a.cancel(running, 'key-a'), 'running');
    assert.deepEqual(pick(await a.get(running, 'key-a'), 'status', 'cancelRequested'), { status: 'running', cancelRequested: true });
    // B hears of it with its next lock renewal (every lockMs / 3).
    for (let i = 0; i < 40 && heard.length === 0; i++) await sleep(50);
    assert.deepEqual(heard, [running]);
    await b.finishCancelled(running);
    assert.equal((await a.get(running, 'key-a'))?.status, 'cancelled');
    assert.equal(await a.cancel(running, 'key-a'), 'finished');

    const failed = await submitted(a);
    await a.fail(failed, { status: 422, code: 'invalid_input', message: 'prompt too long' });
    assert.equal(await a.cancel(failed, 'key-a'), 'finished');
    assert.deepEqual((await a.get(failed, 'key-a'))?.error, { status: 422, code: 'invalid_input', message: 'prompt too long' });
    assert.deepEqual(await a.counts(), { queued: 1, running: 0 });
    assert.deepEqual((await b.claim(5)).map((j) => j.id), [later], 'cancelled and failed jobs never run');
  });

  test('requeue puts a running job back at the front; wrong states and other nodes are refused', async (t) => {
    const [store, other] = await nodes(t, 2);
    const first = await submitted(store);
    const second = await submitted(store);
    assert.equal((await store.claim(1))[0].id, first);
    await submitted(store);
    // Only the node holding a job may finish it.
    await assert.rejects(other.complete(first, {}, []), wrongState);
    await assert.rejects(other.fail(first, { status: 500, code: 'internal', message: 'x' }), wrongState);
    await assert.rejects(other.requeue(first), wrongState);
    assert.equal(await store.requeue(first), 'queued');
    assert.deepEqual(pick(await store.get(first, 'key-a'), 'status', 'position', 'startedAt', 'attempts'), { status: 'queued', position: 0, startedAt: undefined, attempts: 1 });
    assert.equal((await store.get(second, 'key-a'))?.position, 1);
    const again = (await other.claim(1))[0];
    assert.equal(again.id, first);
    assert.equal(again.attempts, 2);

    // A requeued job whose cancel was asked for is not put back in line.
    assert.equal(await store.cancel(first, 'key-a'), 'running');
    assert.equal(await other.requeue(first), 'cancelled');
    assert.equal((await store.get(first, 'key-a'))?.status, 'cancelled');

    await assert.rejects(store.requeue(second), wrongState);
    await assert.rejects(store.complete(second, {}, []), wrongState);
    await assert.rejects(store.complete('missing', {}, []), (err: unknown) => err instanceof JobStoreError && err.code === 'not_found');
    await assert.rejects(store.submit(job({ priority: 'urgent' as never })), TypeError);
    // Failing a queued job takes it out of line, from any node.
    await other.fail(second, { status: 422, code: 'invalid_input', message: 'bad' });
    assert.equal((await store.get(second, 'key-a'))?.status, 'failed');
    assert.deepEqual(await store.counts(), { queued: 1, running: 0 });
  });

  test('a job submitted on one node runs on another; every node reads its result and files', async (t) => {
    const [a, b] = await nodes(t, 2);
    const id = await submitted(a, { webhookUrl: 'https://example.test/hook' });
    assert.deepEqual(await a.claim(0), []);
    const [claimed] = await b.claim(2);
    assert.equal(claimed.id, id);
    assert.deepEqual(await a.counts(), { queued: 0, running: 1 });
    assert.equal((await a.get(id, 'key-a'))?.status, 'running');
    await b.complete(id, { images: 1 }, [png(7)], '{"status":"OK"}');
    assert.deepEqual(pick(await a.get(id, 'key-a'), 'status', 'result'), { status: 'completed', result: { images: 1 } });
    assert.deepEqual((await a.file(id, 'image-0.png'))?.bytes, png(7).bytes);
    assert.deepEqual((await a.dueWebhooks(Date.now(), 10)).map((d) => [d.requestId, d.body]), [[id, '{"status":"OK"}']]);
  });

  test('webhook rows come with complete/fail, atomically, and are handed to one node at a time', async (t) => {
    const [a, b] = await nodes(t, 2, {}, { webhookLeaseMs: 400 });
    const { hook, due } = await endedWithWebhooks(a, TypeError);
    assert.deepEqual(await b.dueWebhooks(Date.now(), 10), [], 'leased to A');
    assert.deepEqual(await a.dueWebhooks(Date.now(), 10), [], 'leased, even to A');
    const [first, second] = due;
    const later = Date.now() + 60_000;
    await a.webhookAttempted(first.id, { delivered: false, nextAttemptAt: later });

    // A never recorded the second (as if it died mid-post): due again once the lease runs out.
    await sleep(450);
    const retaken = await b.dueWebhooks(Date.now(), 10);
    assert.deepEqual(retaken.map((d) => [d.id, d.attempts, d.nextAttemptAt]), [[second.id, 0, second.nextAttemptAt]]);
    await b.webhookAttempted(second.id, { delivered: false, gaveUp: true, error: 'HTTP 500 five times' });
    const retried = await b.dueWebhooks(later, 10);
    assert.deepEqual(retried.map((d) => [d.id, d.attempts, d.nextAttemptAt]), [[first.id, 1, later]]);
    await a.webhookAttempted(first.id, { delivered: true });
    assert.deepEqual(await a.dueWebhooks(Number.MAX_SAFE_INTEGER, 10), []);
    // Settled deliveries stay settled.
    await a.webhookAttempted(first.id, { delivered: false, nextAttemptAt: 0 });
    await a.webhookAttempted(12345, { delivered: true });
    assert.deepEqual(await b.dueWebhooks(Number.MAX_SAFE_INTEGER, 10), []);

    // Two nodes asking at the same moment split the due rows between them, none twice.
    const many = await Promise.all(Array.from({ length: 8 }, () => submitted(a, { webhookUrl: hook })));
    await b.claim(8);
    for (const id of many) await b.complete(id, {}, [], `{"id":"${id}"}`);
    const [fromA, fromB] = await Promise.all([a.dueWebhooks(Date.now(), 5), b.dueWebhooks(Date.now(), 5)]);
    const handed = [...fromA, ...fromB].map((d) => d.requestId);
    assert.equal(handed.length, 8);
    assert.equal(new Set(handed).size, 8);
  });

  test('a node that loses a lock hears of it and cannot finish the job', async (t) => {
    const store = await openStore(t, {}, { lockMs: 600, prefix: 'lost' });
    const lost: string[] = [];
    store.on('lockLost', (id) => lost.push(id));
    const id = await submitted(store);
    await store.claim(1);
    const raw = new Redis(server.url);
    t.after(async () => void raw.disconnect());
    await raw.del(`lost:jobs:${id}:lock`);
    for (let i = 0; i < 40 && lost.length === 0; i++) await sleep(50);
    assert.deepEqual(lost, [id]);
    await assert.rejects(store.complete(id, {}, []), wrongState);
    // BullMQ's stalled check puts it back in line, for any node to run again.
    let again: string[] = [];
    for (let i = 0; i < 60 && again.length === 0; i++) {
      again = (await store.claim(1)).map((j) => j.id);
      if (again.length === 0) await sleep(50);
    }
    assert.deepEqual(again, [id]);
  });

  // The child claims two jobs and then only keeps their locks alive until it is SIGKILLed.
  const CHILD = `
const { RedisQueueStore } = await import(process.argv[1]);
const store = await RedisQueueStore.open(process.argv[2], { maxQueuedPerKey: 100, maxQueued: 100, resultTtlMs: 60000 }, { prefix: process.argv[3], lockMs: 1500 });
const jobs = await store.claim(2);
process.stdout.write(JSON.stringify(jobs.map((j) => [j.id, j.attempts])) + '\\n');
setInterval(() => {}, 1000);
`;

  test('a SIGKILLed node’s job runs again on another node; one cancelled meanwhile does not', { timeout: 20_000 }, async (t) => {
    const prefix = `t${++prefixes}`;
    const options = { prefix, lockMs: 1500 };
    const a = await RedisQueueStore.open(server.url, LIMITS, options);
    t.after(() => a.close());
    const keep = await submitted(a);
    const drop = await submitted(a);

    const storeUrl = new URL('../server/queue/redis-store.js', import.meta.url).href;
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, storeUrl, server.url, prefix], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = once(child, 'exit');
    t.after(() => void child.kill('SIGKILL'));
    const [line] = await once(createInterface({ input: child.stdout! }), 'line');
    assert.deepEqual(JSON.parse(line as string), [[keep, 1], [drop, 1]]);

    // Alive, the child renews its locks: well past lockMs its jobs are still running there.
    await sleep(2_500);
    assert.deepEqual(await a.counts(), { queued: 0, running: 2 });
    assert.deepEqual(await a.claim(2), []);
    assert.equal(await a.cancel(drop, 'key-a'), 'running');

    child.kill('SIGKILL');
    const [, signal] = await exited;
    assert.equal(signal, 'SIGKILL');
    const killedAt = Date.now();
    const b = await RedisQueueStore.open(server.url, LIMITS, options);
    t.after(() => b.close());
    let reclaimed: Awaited<ReturnType<RedisQueueStore['claim']>> = [];
    while (reclaimed.length === 0 && Date.now() - killedAt < 10_000) {
      reclaimed = await b.claim(2);
      if (reclaimed.length === 0) await sleep(100);
    }
    const waited = Date.now() - killedAt;
    assert.deepEqual(reclaimed.map((j) => [j.id, j.attempts]), [[keep, 2]]);
    // lockMs, then at most two stalled-check intervals (lockMs / 2), plus slack.
    assert.ok(waited < 1_500 + 1_500 + 1_000, `reclaimed after ${waited} ms`);
    assert.equal((await a.get(drop, 'key-a'))?.status, 'cancelled');
    assert.deepEqual(await a.counts(), { queued: 0, running: 1 });
    await b.complete(keep, { again: true }, [png(4)]);
    assert.deepEqual((await a.get(keep, 'key-a'))?.result, { again: true });
  });

  test('results, files and webhook rows expire on Redis’s clock, with no expire() call', async (t) => {
    const short = await openStore(t, { resultTtlMs: 300 });
    const soon = await submitted(short, { webhookUrl: 'https://example.test/hook' });
    await short.claim(1);
    await short.complete(soon, { ok: true }, [png(3)], '{"done":true}');
    assert.ok(await short.file(soon, 'image-0.png'));
    await sleep(450);
    assert.equal(await short.get(soon, 'key-a'), undefined);
    assert.equal(await short.file(soon, 'image-0.png'), undefined);
    assert.deepEqual(await short.dueWebhooks(Date.now(), 10), []);
  });

  test('expire drops a submit whose node died before BullMQ had the job', async (t) => {
    const store = await openStore(t, {}, { prefix: 'orphan' });
    const id = await submitted(store);
    const raw = new Redis(server.url);
    t.after(async () => void raw.disconnect());
    // What a crash between the two writes of submit() leaves: our record, no BullMQ job.
    await raw.multi().zrem('orphan:jobs:prioritized', id).del(`orphan:jobs:${id}`).hset(`orphan:job:${id}`, 'createdAt', 0).exec();
    assert.deepEqual(await store.counts(), { queued: 1, running: 0 });
    assert.equal(await store.expire(), 1);
    assert.deepEqual(await store.counts(), { queued: 0, running: 0 });
    assert.equal(await store.get(id, 'key-a'), undefined);
  });

  test('an unreachable Redis, a bad URL and bad limits are refused clearly', async () => {
    const closed = await startRedis();
    await closed.stop();
    const started = Date.now();
    await assert.rejects(
      RedisQueueStore.open(closed.url.replace('redis://', 'redis://:hunter2@'), LIMITS, { connectTimeoutMs: 2_000 }),
      (err: unknown) => err instanceof Error && err.message.startsWith(`cannot reach Redis at ${closed.url}`) && !err.message.includes('hunter2'),
    );
    assert.ok(Date.now() - started < 3_000);
    await assert.rejects(RedisQueueStore.open('http://127.0.0.1:1', LIMITS), TypeError);
    await assert.rejects(RedisQueueStore.open(server.url, { ...LIMITS, maxQueued: -1 }), RangeError);
    await assert.rejects(RedisQueueStore.open(server.url, { ...LIMITS, resultTtlMs: Number.NaN }), RangeError);
  });

  test('close puts the jobs a node still holds back in line; later calls reject', async (t) => {
    const [a, b] = await nodes(t, 2);
    const id = await submitted(a);
    await a.claim(1);
    await a.close();
    await a.close();
    await assert.rejects(a.counts(), /closed/);
    const again = await b.claim(1);
    assert.deepEqual(again.map((j) => [j.id, j.attempts]), [[id, 2]]);
  });
});
