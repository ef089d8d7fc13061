// The durable job queue (server/queue/) against real SQLite files: the queue's rules (those every
// queue store keeps are in helpers/queue-store-contract.ts), webhook rows
// written with the job's outcome, survival of close/reopen and of a SIGKILL, and the main thread
// left free while the worker writes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { DRIVERS, JobStore, JobStoreError, NoSqliteDriverError, type StoreLimits } from '../server/queue/job-store.js';
import { endedWithWebhooks, job, LIMITS, png, queueStoreContract, submitted, type After } from './helpers/queue-store-contract.js';

let root: string;
let dirs = 0;
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'job-store-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function freshDir(): string {
  return path.join(root, `store-${++dirs}`);
}

/** A store in a new directory, closed when the test ends. */
async function openStore(t: After, limits: Partial<StoreLimits> = {}): Promise<JobStore> {
  const store = await JobStore.open(freshDir(), { ...LIMITS, ...limits });
  t.after(() => store.close());
  return store;
}

queueStoreContract(openStore);


test('a thousand jobs keep their order and positions', async (t) => {
  const store = await openStore(t, { maxQueued: 5000, maxQueuedPerKey: 5000 });
  const ids: string[] = [];
  for (let i = 0; i < 1000; i++) ids.push(await submitted(store, { input: i, priority: i % 10 === 0 ? 'low' : 'normal' }));
  // 900 normal jobs, then 100 low ones: the last low job (i = 990) is last in line.
  assert.equal((await store.get(ids[990], 'key-a'))?.position, 999);
  assert.equal((await store.get(ids[999], 'key-a'))?.position, 899);
  const first = await store.claim(900);
  assert.ok(first.every((j) => j.priority === 'normal'));
  assert.deepEqual(first.map((j) => j.input), [...Array(1000).keys()].filter((i) => i % 10 !== 0));
  assert.equal((await store.get(ids[990], 'key-a'))?.position, 99);
});

test('bounds count queued jobs only, per key and in all', async (t) => {
  const store = await openStore(t, { maxQueuedPerKey: 2, maxQueued: 3 });
  await submitted(store, { keyId: 'a' });
  await submitted(store, { keyId: 'a' });
  assert.deepEqual(await store.submit(job({ keyId: 'a' })), { ok: false, reason: 'key_full' });
  await submitted(store, { keyId: 'b' });
  assert.deepEqual(await store.submit(job({ keyId: 'c' })), { ok: false, reason: 'full' });

  // Claimed, a's two jobs run and stop counting: a may queue two more, filling the queue again.
  assert.deepEqual((await store.claim(2)).map((j) => j.keyId), ['a', 'a']);
  const a3 = await submitted(store, { keyId: 'a' });
  await submitted(store, { keyId: 'a' });
  assert.deepEqual(await store.submit(job({ keyId: 'a' })), { ok: false, reason: 'key_full' });
  assert.deepEqual(await store.submit(job({ keyId: 'c' })), { ok: false, reason: 'full' });
  assert.deepEqual(await store.counts(), { queued: 3, running: 2 });

  // A cancelled job frees its place under both bounds.
  assert.equal(await store.cancel(a3, 'a'), 'cancelled');
  await submitted(store, { keyId: 'a' });
  assert.deepEqual(await store.submit(job({ keyId: 'c' })), { ok: false, reason: 'full' });
});

test('cancel: queued, running, finished, another key, unknown', async (t) => {
  const store = await openStore(t);
  const running = await submitted(store);
  const queued = await submitted(store);
  await store.claim(1);

  assert.equal(await store.cancel(queued, 'key-b'), 'not_found');
  assert.equal(await store.cancel(running, 'key-b'), 'not_found');
  assert.equal(await store.cancel('00000000-0000-4000-8000-000000000000', 'key-a'), 'not_found');
  assert.equal((await store.get(queued, 'key-a'))?.status, 'queued', "another key's cancel changed nothing");

  assert.equal(await store.cancel(queued, 'key-a'), 'cancelled');
  const cancelled = await store.get(queued, 'key-a');
  assert.equal(cancelled?.status, 'cancelled');
  assert.equal(typeof cancelled?.finishedAt, 'number');
  assert.equal(await store.cancel(queued, 'key-a'), 'finished');

  assert.equal(await store.cancel(running, 'key-a'), 'running');
  const flagged = await store.get(running, 'key-a');
  assert.equal(flagged?.status, 'running');
  assert.equal(flagged?.cancelRequested, true);
  await store.finishCancelled(running);
  assert.equal((await store.get(running, 'key-a'))?.status, 'cancelled');
  assert.equal(await store.cancel(running, 'key-a'), 'finished');

  const failed = await submitted(store);
  await store.fail(failed, { status: 422, code: 'invalid_input', message: 'prompt too long' });
  assert.equal(await store.cancel(failed, 'key-a'), 'finished');
  assert.deepEqual((await store.get(failed, 'key-a'))?.error, { status: 422, code: 'invalid_input', message: 'prompt too long' });
});

test('requeue puts a running job back at the front; wrong states reject', async (t) => {
  const store = await openStore(t);
  const first = await submitted(store);
  const second = await submitted(store);
  assert.equal((await store.claim(1))[0].id, first);
  await submitted(store);
  assert.equal(await store.requeue(first), 'queued');
  const back = await store.get(first, 'key-a');
  assert.equal(back?.position, 0);
  assert.equal(back?.startedAt, undefined);
  assert.equal(back?.attempts, 1);
  assert.equal((await store.get(second, 'key-a'))?.position, 1);
  const again = (await store.claim(1))[0];
  assert.equal(again.id, first);
  assert.equal(again.attempts, 2);

  // A requeued job whose cancel was asked for is not put back in line.
  assert.equal(await store.cancel(first, 'key-a'), 'running');
  assert.equal(await store.requeue(first), 'cancelled');
  assert.equal((await store.get(first, 'key-a'))?.status, 'cancelled');

  await assert.rejects(store.requeue(second), (err: unknown) => err instanceof JobStoreError && err.code === 'wrong_state');
  await assert.rejects(store.complete(second, {}, []), (err: unknown) => err instanceof JobStoreError && err.code === 'wrong_state');
  await assert.rejects(store.complete('missing', {}, []), (err: unknown) => err instanceof JobStoreError && err.code === 'not_found');
  await assert.rejects(store.submit(job({ priority: 'urgent' as never })), TypeError);
  // The store still answers after rejected calls.
  assert.equal((await store.get(second, 'key-a'))?.status, 'queued');
});

test('webhook rows come with complete/fail, atomically, and go due -> retried -> delivered or given up', async (t) => {
  const store = await openStore(t);
  const { due } = await endedWithWebhooks(store);
  const [first, second] = due;
  const later = Date.now() + 60_000;
  await store.webhookAttempted(first.id, { delivered: false, nextAttemptAt: later });
  assert.deepEqual((await store.dueWebhooks(Date.now(), 10)).map((d) => d.id), [second.id]);
  const retried = await store.dueWebhooks(later, 10);
  assert.deepEqual(retried.map((d) => [d.id, d.attempts, d.nextAttemptAt]), [[second.id, 0, second.nextAttemptAt], [first.id, 1, later]]);
  assert.deepEqual((await store.dueWebhooks(later, 1)).map((d) => d.id), [second.id], 'limit');

  await store.webhookAttempted(first.id, { delivered: true });
  await store.webhookAttempted(second.id, { delivered: false, gaveUp: true, error: 'HTTP 500 five times' });
  assert.deepEqual(await store.dueWebhooks(Number.MAX_SAFE_INTEGER, 10), []);
  // Settled deliveries stay settled.
  await store.webhookAttempted(first.id, { delivered: false, nextAttemptAt: 0 });
  await store.webhookAttempted(12345, { delivered: true });
  assert.deepEqual(await store.dueWebhooks(Number.MAX_SAFE_INTEGER, 10), []);
});

test('reopen keeps everything and puts running jobs back in line', async () => {
  const dir = freshDir();
  const store = await JobStore.open(dir, LIMITS);
  assert.equal(store.recovered, 0);
  const done = await submitted(store, { webhookUrl: 'https://example.test/hook' });
  const interrupted = await submitted(store);
  const cancelling = await submitted(store);
  const waiting = await submitted(store, { priority: 'low' });
  await store.claim(3);
  await store.complete(done, { images: 1 }, [png(7)], '{"done":true}');
  assert.equal(await store.cancel(cancelling, 'key-a'), 'running');
  await store.close();
  await assert.rejects(store.counts(), /closed/);
  await store.close(); // a second close is harmless

  const reopened = await JobStore.open(dir, LIMITS);
  try {
    assert.equal(reopened.recovered, 1);
    const back = await reopened.get(interrupted, 'key-a');
    assert.equal(back?.status, 'queued');
    assert.equal(back?.position, 0);
    assert.equal(back?.attempts, 1);
    assert.equal((await reopened.get(cancelling, 'key-a'))?.status, 'cancelled');
    assert.equal((await reopened.get(waiting, 'key-a'))?.position, 1);
    assert.deepEqual((await reopened.get(done, 'key-a'))?.result, { images: 1 });
    assert.deepEqual((await reopened.file(done, 'image-0.png'))?.bytes, png(7).bytes);
    assert.deepEqual((await reopened.dueWebhooks(Date.now(), 10)).map((d) => d.body), ['{"done":true}']);
    assert.deepEqual(await reopened.counts(), { queued: 2, running: 0 });
  } finally {
    await reopened.close();
  }
});

test('one owner per queue: a second open of the same directory is refused', async (t) => {
  const dir = freshDir();
  const store = await JobStore.open(dir, LIMITS);
  t.after(() => store.close());
  await assert.rejects(JobStore.open(dir, LIMITS), (err: unknown) => err instanceof JobStoreError && err.code === 'locked');
  assert.deepEqual(await store.counts(), { queued: 0, running: 0 });
});

test('bad limits are refused before anything is created', async () => {
  const dir = freshDir();
  await assert.rejects(JobStore.open(dir, { ...LIMITS, maxQueued: -1 }), RangeError);
  await assert.rejects(JobStore.open(dir, { ...LIMITS, resultTtlMs: Number.NaN }), RangeError);
  assert.equal(existsSync(dir), false);
});

test('every driver that loads here passes a round trip; one that does not says why', async (t) => {
  for (const driver of DRIVERS) {
    await t.test(driver, async (t) => {
      const dir = freshDir();
      let store: JobStore;
      try {
        store = await JobStore.open(dir, LIMITS, { driver });
      } catch (err) {
        assert.ok(err instanceof NoSqliteDriverError, String(err));
        assert.match(err.message, new RegExp(`${driver}: .+\\. Install better-sqlite3`));
        t.skip(`${driver} does not load on Node ${process.versions.node}`);
        return;
      }
      assert.equal(store.driver, driver);
      const id = await submitted(store, { webhookUrl: 'https://example.test/hook' });
      await store.claim(1);
      await store.complete(id, { ok: 1 }, [png(9, 100_000)], 'body');
      await store.close();
      const again = await JobStore.open(dir, LIMITS, { driver });
      try {
        assert.deepEqual((await again.get(id, 'key-a'))?.result, { ok: 1 });
        const file = await again.file(id, 'image-0.png');
        assert.ok(file?.bytes instanceof Uint8Array);
        assert.deepEqual(file.bytes, png(9, 100_000).bytes);
        assert.equal((await again.dueWebhooks(Date.now(), 1))[0]?.body, 'body');
      } finally {
        await again.close();
      }
    });
  }
});

test('the main thread keeps running while the store writes and reads a 5 MB file', async (t) => {
  const store = await openStore(t);
  const id = await submitted(store);
  await store.claim(1);
  const bytes = new Uint8Array(5 * 1024 * 1024);
  for (let i = 0; i < bytes.length; i += 4096) bytes[i] = i % 251;
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  try {
    await store.complete(id, { big: true }, [{ name: 'big.png', contentType: 'image/png', bytes }]);
    const back = await store.file(id, 'big.png');
    assert.equal(back?.bytes.length, bytes.length);
    assert.ok(Buffer.from(back!.bytes).equals(Buffer.from(bytes)));
  } finally {
    clearInterval(timer);
  }
  assert.ok(ticks > 0, 'the interval never fired while the store worked');
  assert.equal(bytes.length, 5 * 1024 * 1024, "the caller's bytes were copied, not taken");
});

// The child submits jobs without end, claims every second one and completes every fourth, printing
// a line after each write is acknowledged; it is killed with SIGKILL mid-stream. Pipes are written
// synchronously on Linux, so a line the parent read was printed after its write committed.
const CHILD = `
const { JobStore } = await import(process.argv[1]);
const store = await JobStore.open(process.argv[2], { maxQueuedPerKey: 1e9, maxQueued: 1e9, resultTtlMs: 3600000 });
const say = (line) => process.stdout.write(line + '\\n');
for (let i = 0; ; i++) {
  const r = await store.submit({ appId: 'app', keyId: 'k', input: { i }, priority: i % 3 === 0 ? 'low' : 'normal', webhookUrl: 'https://example.test/hook' });
  say('submit ' + r.id + ' ' + i);
  if (i % 2 === 0) continue;
  const [job] = await store.claim(1);
  say('claim ' + job.id);
  if (i % 4 !== 1) continue;
  const n = job.input.i;
  await store.complete(job.id, { n }, [{ name: 'out.bin', contentType: 'application/octet-stream', bytes: new Uint8Array(4096 + n).fill(n % 251) }], 'hook ' + n);
  say('complete ' + job.id + ' ' + n);
}
`;

test('a SIGKILL loses no acknowledged write', { timeout: 60_000 }, async () => {
  const dir = freshDir();
  const storeUrl = new URL('../server/queue/job-store.js', import.meta.url).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, storeUrl, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  const submitted = new Map<string, number>();
  const claimed = new Set<string>();
  const completed = new Map<string, number>();
  for await (const line of createInterface({ input: child.stdout! })) {
    const [what, id, n] = line.split(' ');
    if (what === 'submit') submitted.set(id, Number(n));
    else if (what === 'claim') claimed.add(id);
    else if (what === 'complete') completed.set(id, Number(n));
    if (completed.size === 40) child.kill('SIGKILL');
  }
  const [, signal] = await exited;
  assert.equal(signal, 'SIGKILL');
  // The commits are still in the write-ahead log (no checkpoint ran): reopening must replay it.
  assert.ok(existsSync(path.join(dir, 'queue.sqlite-wal')));

  const store = await JobStore.open(dir, LIMITS);
  try {
    let requeued = 0;
    for (const [id, i] of submitted) {
      const record = await store.get(id, 'k');
      assert.ok(record, `submitted job ${i} is gone`);
      assert.deepEqual(record.input, { i });
      if (completed.has(id)) {
        assert.equal(record.status, 'completed');
        assert.deepEqual(record.result, { n: i });
        const file = await store.file(id, 'out.bin');
        assert.equal(file?.bytes.length, 4096 + i);
        assert.ok(file!.bytes.every((b) => b === i % 251));
      } else if (claimed.has(id)) {
        // Its complete may have committed just before the kill, unacknowledged.
        assert.ok(record.status === 'queued' || record.status === 'completed', `claimed job ${i} is ${record.status}`);
        assert.equal(record.attempts, 1);
      } else {
        assert.equal(record.status, 'queued', `job ${i}`);
      }
      if (record.status === 'queued' && record.attempts > 0) requeued++;
    }
    assert.equal(store.recovered, requeued);
    assert.ok(store.recovered > 0);
    assert.equal((await store.counts()).running, 0);
    const hooks = await store.dueWebhooks(Number.MAX_SAFE_INTEGER, 10_000);
    for (const [id, n] of completed) assert.ok(hooks.some((h) => h.requestId === id && h.body === `hook ${n}`), `webhook of job ${n}`);
  } finally {
    await store.close();
  }
});
