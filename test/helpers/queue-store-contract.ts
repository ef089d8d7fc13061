// The rules every QueueStore keeps, whichever storage is under it: the single-node SQLite store
// (test/job-store.test.ts) and the shared Redis store (test/redis-store.test.ts) both run these,
// then what only they have.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { JobFile, NewJob, QueueStore, StoreLimits, WebhookDelivery } from '../../server/queue/types.js';

export const LIMITS: StoreLimits = { maxQueuedPerKey: 100, maxQueued: 1000, resultTtlMs: 60_000 };
export type After = { after(fn: () => Promise<void>): void };
/** A fresh, empty store closed when the test ends. */
export type OpenStore = (t: After, limits?: Partial<StoreLimits>) => Promise<QueueStore>;

export function job(overrides: Partial<NewJob> = {}): NewJob {
  return { appId: 'fal-ai/fast-sdxl', keyId: 'key-a', input: { prompt: 'a red circle' }, priority: 'normal', ...overrides };
}

export async function submitted(store: QueueStore, overrides: Partial<NewJob> = {}): Promise<string> {
  const result = await store.submit(job(overrides));
  assert.ok(result.ok, 'submit refused');
  return result.id;
}

export const png = (fill: number, size = 64): JobFile => ({ name: 'image-0.png', contentType: 'image/png', bytes: new Uint8Array(size).fill(fill) });

/** The named fields of a record, to compare several at once. */
export function pick<T extends object>(value: T | undefined, ...keys: (keyof T)[]): Partial<T> | undefined {
  return value && (Object.fromEntries(keys.map((k) => [k, value[k]])) as Partial<T>);
}

/**
 * Five running jobs ended every way that does or does not write a webhook row: completed with a
 * hook and a body, with a hook and no body, without a hook, failed with a hook, and a complete that
 * the store refuses part way (`refusal` matches its error), which must leave no trace. Returns the
 * two rows due, checked to be exactly those and due from the moment of the outcome.
 */
export async function endedWithWebhooks(store: QueueStore, refusal?: Parameters<typeof assert.rejects>[1]): Promise<{ hook: string; due: WebhookDelivery[] }> {
  const hook = 'https://example.test/hook';
  const withHook = await submitted(store, { webhookUrl: hook });
  const noBody = await submitted(store, { webhookUrl: hook });
  const noHook = await submitted(store);
  const failing = await submitted(store, { webhookUrl: hook });
  const broken = await submitted(store, { webhookUrl: hook });
  await store.claim(5);
  const before = Date.now();
  await store.complete(withHook, { a: 1 }, [png(1)], '{"request_id":"1"}');
  await store.complete(noBody, { a: 2 }, []);
  await store.complete(noHook, { a: 3 }, [], '{"ignored":true}');
  await store.fail(failing, { status: 500, code: 'internal', message: 'x' }, '{"request_id":"4"}');

  // A file the store refuses (no content type) fails the whole write: no status change, no file,
  // no webhook row.
  const bad = { name: 'bad.png', contentType: null as unknown as string, bytes: new Uint8Array(1) };
  const write = store.complete(broken, {}, [png(2), bad], '{"request_id":"5"}');
  await (refusal === undefined ? assert.rejects(write) : assert.rejects(write, refusal));
  assert.equal((await store.get(broken, 'key-a'))?.status, 'running');
  assert.equal(await store.file(broken, 'image-0.png'), undefined);

  assert.deepEqual(await store.dueWebhooks(before - 1, 10), [], 'due from the moment of the outcome');
  const due = await store.dueWebhooks(Date.now(), 10);
  assert.deepEqual(due.map((d) => [d.requestId, d.keyId, d.url, d.body, d.attempts]), [
    [withHook, 'key-a', hook, '{"request_id":"1"}', 0],
    [failing, 'key-a', hook, '{"request_id":"4"}', 0],
  ]);
  return { hook, due };
}

/** Registers the shared tests; call it where the store's own tests are registered. */
export function queueStoreContract(openStore: OpenStore): void {
  test('submit, claim, complete, get and file round trip', async (t) => {
    const store = await openStore(t);
    const input = { prompt: 'a blue star', seed: 42, nested: { list: [1, 'two', null] } };
    const submit = await store.submit(job({ input }));
    assert.ok(submit.ok);
    assert.equal(submit.position, 0);
    assert.match(submit.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);

    const queued = await store.get(submit.id, 'key-a');
    assert.deepEqual(pick(queued, 'status', 'position', 'input', 'attempts', 'cancelRequested', 'startedAt'), {
      status: 'queued',
      position: 0,
      input,
      attempts: 0,
      cancelRequested: false,
      startedAt: undefined,
    });
    assert.deepEqual(await store.counts(), { queued: 1, running: 0 });

    const [claimed, ...rest] = await store.claim(4);
    assert.equal(rest.length, 0);
    assert.deepEqual(pick(claimed, 'id', 'status', 'attempts', 'position'), { id: submit.id, status: 'running', attempts: 1, position: undefined });
    assert.equal(typeof claimed.startedAt, 'number');
    assert.deepEqual(await store.counts(), { queued: 0, running: 1 });
    assert.deepEqual(await store.claim(4), []);
    assert.equal((await store.get(submit.id, 'key-a'))?.startedAt, claimed.startedAt);

    const result = { images: [{ url: `/files/${submit.id}/image-0.png`, width: 8, height: 8 }], seed: 42 };
    const second: JobFile = { name: 'image-1.webp', contentType: 'image/webp', bytes: Uint8Array.from([9, 8, 7]) };
    await store.complete(submit.id, result, [png(5), second]);
    const done = await store.get(submit.id, 'key-a');
    assert.deepEqual(pick(done, 'status', 'result', 'position', 'attempts'), { status: 'completed', result, position: undefined, attempts: 1 });
    assert.ok(done!.finishedAt! >= done!.startedAt!);
    assert.deepEqual(await store.counts(), { queued: 0, running: 0 });

    const file = await store.file(submit.id, 'image-0.png');
    assert.equal(file?.contentType, 'image/png');
    assert.deepEqual(file?.bytes, png(5).bytes);
    assert.deepEqual((await store.file(submit.id, 'image-1.webp'))?.bytes, second.bytes);
    assert.equal(await store.file(submit.id, 'nope.png'), undefined);
    assert.equal(await store.file('no-such-id', 'image-0.png'), undefined);

    // A fal.run result's files, stored as a finished job of its key.
    const big = new Uint8Array(5 * 1024 * 1024).map((_, i) => i % 251);
    await store.recordCompleted({ id: 'run-1', appId: 'app', keyId: 'key-a', files: [{ name: 'big.png', contentType: 'image/png', bytes: big }] });
    assert.ok(Buffer.from((await store.file('run-1', 'big.png'))!.bytes).equals(Buffer.from(big)));
    assert.equal((await store.get('run-1', 'key-a'))?.status, 'completed');
    assert.equal(await store.get('run-1', 'key-b'), undefined);
    assert.deepEqual(await store.counts(), { queued: 0, running: 0 });
  });

  test('normal priority goes before low, each oldest first', async (t) => {
    const store = await openStore(t);
    const positions: Record<string, number> = {};
    const ids: Record<string, string> = {};
    for (const [name, priority] of [['low1', 'low'], ['normal1', 'normal'], ['low2', 'low'], ['normal2', 'normal']] as const) {
      const r = await store.submit(job({ priority, input: { name } }));
      assert.ok(r.ok);
      positions[name] = r.position;
      ids[name] = r.id;
    }
    // Each newcomer's place when it arrived: a normal job goes ahead of every low one.
    assert.deepEqual(positions, { low1: 0, normal1: 0, low2: 2, normal2: 1 });
    const now = await Promise.all(['normal1', 'normal2', 'low1', 'low2'].map(async (n) => (await store.get(ids[n], 'key-a'))?.position));
    assert.deepEqual(now, [0, 1, 2, 3]);
    assert.deepEqual((await store.claim(3)).map((j) => (j.input as { name: string }).name), ['normal1', 'normal2', 'low1']);
    assert.deepEqual((await store.claim(3)).map((j) => j.priority), ['low']);
  });

  test("get sees only the key's own jobs; files are served by id alone", async (t) => {
    const store = await openStore(t);
    const id = await submitted(store, { keyId: 'owner' });
    assert.equal(await store.get(id, 'other'), undefined);
    assert.equal((await store.get(id, 'owner'))?.keyId, 'owner');
    await store.claim(1);
    await store.complete(id, {}, [png(1)]);
    assert.equal(await store.get(id, 'other'), undefined);
    assert.ok(await store.file(id, 'image-0.png'));
  });

  test('expire(now) removes finished jobs, their files and webhooks after the TTL, and nothing else', async (t) => {
    const store = await openStore(t, { resultTtlMs: 1000 });
    const done = await submitted(store, { webhookUrl: 'https://example.test/hook' });
    const failed = await submitted(store);
    const running = await submitted(store);
    const queued = await submitted(store);
    await store.claim(3);
    await store.complete(done, { ok: true }, [png(3)], '{"status":"OK"}');
    await store.fail(failed, { status: 500, code: 'internal', message: 'boom' });
    const finished = [(await store.get(done, 'key-a'))!.finishedAt!, (await store.get(failed, 'key-a'))!.finishedAt!];

    assert.equal(await store.expire(Math.min(...finished) + 1000), 0, 'kept until finishedAt + TTL has passed');
    assert.ok(await store.file(done, 'image-0.png'));
    assert.equal(await store.expire(Math.max(...finished) + 1001), 2);
    assert.equal(await store.get(done, 'key-a'), undefined);
    assert.equal(await store.get(failed, 'key-a'), undefined);
    assert.equal(await store.file(done, 'image-0.png'), undefined);
    assert.deepEqual(await store.dueWebhooks(Number.MAX_SAFE_INTEGER, 10), []);
    // Unfinished jobs never expire, however old.
    assert.equal(await store.expire(Number.MAX_SAFE_INTEGER), 0);
    assert.equal((await store.get(running, 'key-a'))?.status, 'running');
    assert.equal((await store.get(queued, 'key-a'))?.status, 'queued');
    assert.equal(await store.expire(), 0);
  });
}
