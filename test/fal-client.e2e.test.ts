// The official fal client (@fal-ai/client, pinned) against the real server, configured only by
// falSelfHost(): realtime with both image conventions, request_id echo, throttling and
// max_buffering, an unauthorised token; subscribe (polling and streaming), the queue, run and
// stream; Blob inputs uploaded through fal's storage API; a webhook retried after a 500; bad input
// through fal's routes.
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { ApiError, ValidationError } from '@fal-ai/client';
import { verifyWebhookSignature } from '../shared/webhook-signature.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { cameraFrame, FAL_ENV, FAL_KEY, falClientFor, falReceiverVerifies, fetchWebhookKeys, OTHER_KEY, startHookReceiver, waitFor, type FalClient } from './helpers/fal-server.js';

const I2I = 'fal-ai/fast-turbo-diffusion/image-to-image';
const T2I = 'fal-ai/fast-lcm-diffusion';

let server: ServerProcess;
let fal: FalClient;
let viaProxy: FalClient;
const uninstalls: (() => void)[] = [];

before(async () => {
  server = await startServerProcess([], { env: FAL_ENV });
  const direct = falClientFor(server.httpUrl);
  const proxied = falClientFor(server.httpUrl, { via: 'proxy' });
  fal = direct.fal;
  viaProxy = proxied.fal;
  uninstalls.push(direct.uninstall, proxied.uninstall);
});
after(async () => {
  for (const uninstall of uninstalls) uninstall();
  await server?.stop();
});

type Result = Record<string, any>;

const blobOf = (bytes: Buffer, type: string) => new Blob([new Uint8Array(bytes)], { type });

/** A queued request's status once it is COMPLETED (finished, failed or cancelled). */
function completed(app: string, requestId: string, timeoutMs = 30_000): Promise<Result> {
  return waitFor(async () => {
    const status = await fal.queue.status(app, { requestId });
    return status.status === 'COMPLETED' ? (status as Result) : undefined;
  }, timeoutMs, `request ${requestId} to complete`);
}

function meanAbsDiff(a: Buffer, b: Buffer): number {
  assert.equal(a.length, b.length);
  let total = 0;
  for (let i = 0; i < a.length; i++) total += Math.abs(a[i]! - b[i]!);
  return total / a.length;
}

/** Before the socket opens, fal's client keeps only the newest input: a burst must follow an
 * answered first input to reach the server whole. */
async function opened(connection: { send(input: Record<string, unknown>): void }, results: Result[]): Promise<void> {
  connection.send({ prompt: 'warm up', num_inference_steps: 1, request_id: 'open' });
  await waitFor(() => results.find((r) => r.request_id === 'open'), 30_000, 'the first result');
  results.length = 0;
}

/** A realtime connection collecting results and errors. */
function realtime(client: FalClient, app: string, options: { maxBuffering?: number; throttleInterval?: number; tokenProvider?: (app: string) => Promise<string> } = {}) {
  const results: Result[] = [];
  const errors: Error[] = [];
  const connection = client.realtime.connect(app, {
    throttleInterval: options.throttleInterval ?? 0,
    ...(options.maxBuffering ? { maxBuffering: options.maxBuffering } : {}),
    ...(options.tokenProvider ? { tokenProvider: options.tokenProvider } : {}),
    onResult: (result: Result) => results.push(result),
    onError: (error: Error) => errors.push(error),
  });
  return { connection, results, errors };
}

describe('fal realtime through the official client', () => {
  test('image_bytes in, images[0].content out, request_id and seed echoed', async () => {
    const { connection, results, errors } = realtime(fal, I2I);
    connection.send({ prompt: 'a red apple', image_bytes: await cameraFrame(), strength: 0.6, num_inference_steps: 2, seed: 42, request_id: 'bytes-1' });
    const result = await waitFor(() => results[0], 30_000, 'a realtime result');
    connection.close();
    assert.deepEqual(errors, []);
    assert.equal(result.request_id, 'bytes-1');
    assert.equal(result.seed, 42);
    assert.equal(result.num_inference_steps, 1, 'floor(2 x 0.6) steps ran');
    const [image] = result.images;
    assert.ok(image.content instanceof Uint8Array && image.content.byteLength > 500);
    assert.equal(image.content_type, 'image/jpeg');
    const meta = await sharp(image.content).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height, image.width, image.height], ['jpeg', 256, 256, 256, 256]);
    assert.deepEqual(result.has_nsfw_concepts, [false]);
    assert.equal(typeof result.timings.inference, 'number');
  });

  test('image_url as a data URI with sync_mode: images[0].url is a data URI', async () => {
    const { connection, results } = realtime(fal, I2I);
    const uri = `data:image/png;base64,${(await cameraFrame(10, 'png')).toString('base64')}`;
    connection.send({ prompt: 'a red apple', image_url: uri, sync_mode: true, strength: 0.5, num_inference_steps: 2, request_id: 'uri-1' });
    const result = await waitFor(() => results[0], 30_000, 'a realtime result');
    connection.close();
    assert.equal(result.request_id, 'uri-1');
    assert.match(result.images[0].url, /^data:image\/jpeg;base64,/);
    const bytes = Buffer.from(result.images[0].url.split(',')[1], 'base64');
    assert.equal((await sharp(bytes).metadata()).width, 256);
  });

  test('stream_previews: each step a partial result before the final one', async () => {
    const { connection, results } = realtime(fal, T2I);
    connection.send({ prompt: 'a blue square', num_inference_steps: 3, stream_previews: true, request_id: 'p-1' });
    await waitFor(() => results.find((r) => !r.partial), 30_000, 'the final result');
    connection.close();
    const partials = results.filter((r) => r.partial);
    assert.deepEqual(partials.map((r) => r.step), [1, 2], 'a preview for each step but the last');
    assert.ok(partials.every((r) => r.request_id === 'p-1' && r.images[0].content instanceof Uint8Array));
  });

  test('a burst without max_buffering: the newest input wins and gets its result', async () => {
    const { connection, results } = realtime(fal, I2I);
    const frame = await cameraFrame();
    await opened(connection, results);
    for (let i = 0; i < 12; i++) connection.send({ prompt: `frame ${i}`, image_bytes: frame, strength: 0.5, num_inference_steps: 2, seed: i, request_id: `b-${i}` });
    await waitFor(() => results.find((r) => r.request_id === 'b-11'), 30_000, 'the last input\'s result');
    connection.close();
    assert.ok(results.length < 12, `stale inputs were dropped (${results.length} results)`);
  });

  test('max_buffering 3: results in input order, the oldest waiting inputs dropped', async () => {
    const { connection, results } = realtime(fal, I2I, { maxBuffering: 3 });
    const frame = await cameraFrame();
    await opened(connection, results);
    for (let i = 0; i < 12; i++) connection.send({ prompt: `frame ${i}`, image_bytes: frame, strength: 0.5, num_inference_steps: 2, seed: i, request_id: i });
    await waitFor(() => results.find((r) => r.request_id === 11), 60_000, 'the last input\'s result');
    await new Promise((resolve) => setTimeout(resolve, 300));
    connection.close();
    const ids = results.map((r) => r.request_id as number);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'in input order');
    // The burst outran the model: one input ran, one waited in the session, and the buffer kept the
    // newest of the rest, 3 waiting in all; the older ones were dropped.
    // (Exactly [0, 1, 10, 11] when the burst lands before input 0 finishes, as it does here.)
    assert.deepEqual(ids.slice(-2), [10, 11]);
    assert.ok(ids.length <= 5, `the oldest waiting inputs were dropped (${ids.join(',')})`);
  });

  test('throttleInterval (the client\'s default 128 ms) still ends with the newest input', async () => {
    const { connection, results } = realtime(fal, I2I, { throttleInterval: 128 });
    const frame = await cameraFrame();
    for (let i = 0; i < 8; i++) {
      connection.send({ prompt: 'frame', image_bytes: frame, strength: 0.5, num_inference_steps: 2, seed: i, request_id: `t-${i}` });
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await waitFor(() => results.find((r) => r.request_id === 't-7'), 30_000, 'the newest input\'s result');
    connection.close();
  });

  test('an unauthorised token: onError, no result, the socket closed by the server', async () => {
    const { connection, results, errors } = realtime(fal, I2I, { tokenProvider: async () => 'not-a-token' });
    connection.send({ prompt: 'x', num_inference_steps: 1 });
    const error = await waitFor(() => errors[0], 10_000, 'an error');
    connection.close();
    assert.match(error.message, /Unauthorized/);
    assert.equal(results.length, 0);
  });

  test('bad input over realtime: x-fal-error reaches onError, the next good input still runs', async () => {
    const { connection, results, errors } = realtime(fal, I2I);
    connection.send({ prompt: 'x', num_inference_steps: 99, request_id: 'bad' });
    const error = await waitFor(() => errors[0], 10_000, 'an error');
    assert.ok(error instanceof ApiError);
    assert.match(error.message, /num_inference_steps/);
    connection.send({ prompt: 'x', image_bytes: Buffer.from('not an image'), request_id: 'bad-image' });
    await waitFor(() => errors[1], 10_000, 'a second error');
    assert.match(errors[1].message, /image/);
    connection.send({ prompt: 'fine', num_inference_steps: 2, request_id: 'good' });
    const result = await waitFor(() => results.find((r) => r.request_id === 'good'), 30_000, 'a result after the errors');
    connection.close();
    assert.ok(result.images[0].content.byteLength > 0);
  });
});

describe('fal HTTP through the official client', () => {
  const input = { prompt: 'a small house', num_inference_steps: 2, seed: 3 };

  for (const [name, client] of [['direct routes', () => fal], ['the x-fal-target-url proxy route', () => viaProxy]] as const) {
    test(`run, subscribe (polling and streaming), queue and stream via ${name}`, async () => {
      const c = client();
      const run = await c.run(T2I, { input });
      assert.ok(run.requestId, 'x-fal-request-id is exposed');
      const url: string = (run.data as Result).images[0].url;
      assert.match(url, new RegExp(`^${server.httpUrl}/files/`));
      const fetched = await fetch(url);
      assert.equal(fetched.headers.get('content-type'), 'image/jpeg');
      assert.equal((await sharp(Buffer.from(await fetched.arrayBuffer())).metadata()).width, 256);

      const polled = await c.subscribe(I2I, { input: { ...input, image_url: `data:image/jpeg;base64,${(await cameraFrame()).toString('base64')}`, strength: 0.6 }, pollInterval: 100 });
      assert.equal((polled.data as Result).seed, 3);
      const streamed = await c.subscribe(T2I, { input: { ...input, sync_mode: true }, mode: 'streaming' });
      assert.match((streamed.data as Result).images[0].url, /^data:image\/jpeg;base64,/);

      const submitted = await c.queue.submit(T2I, { input });
      const done = await waitFor(async () => {
        const status = await c.queue.status(T2I, { requestId: submitted.request_id, logs: true });
        return status.status === 'COMPLETED' ? status : undefined;
      }, 30_000, 'COMPLETED');
      assert.equal(done.request_id, submitted.request_id);
      const result = await c.queue.result(T2I, { requestId: submitted.request_id });
      assert.equal(result.requestId, submitted.request_id);
      assert.equal((result.data as Result).seed, 3);

      const stream = await c.stream(T2I, { input: { ...input, num_inference_steps: 3 } });
      const events: Result[] = [];
      for await (const event of stream) events.push(event as Result);
      const output = (await stream.done()) as Result;
      assert.deepEqual(events.filter((e) => e.partial).map((e) => e.step), [1, 2]);
      assert.equal(output.images.length, 1);
    });
  }

  for (const [name, client] of [['direct routes', () => fal], ['the x-fal-target-url proxy route', () => viaProxy]] as const) {
    test(`stream in 'client' connection mode: a short-lived token from /tokens/ instead of the key, via ${name}`, async (t) => {
      t.mock.method(console, 'warn', () => {}); // fal's notice that its default token provider is deprecated
      const stream = await client().stream(T2I, { input: { ...input, num_inference_steps: 3 }, connectionMode: 'client' });
      const events: Result[] = [];
      for await (const event of stream) events.push(event as Result);
      const output = (await stream.done()) as Result;
      assert.deepEqual(events.filter((e) => e.partial).map((e) => e.step), [1, 2]);
      assert.equal(output.seed, 3);
      assert.equal(output.images.length, 1);
    });
  }

  test('num_images: one request, several images one after another, seeds counting up from the first', async () => {
    const asked = { ...input, seed: 5, num_images: 3 };
    const run = await fal.run(T2I, { input: asked });
    const out = run.data as Result;
    assert.equal(out.images.length, 3);
    assert.equal(out.seed, 5);
    assert.deepEqual(out.has_nsfw_concepts, [false, false, false]);
    const urls: string[] = out.images.map((image: Result) => image.url);
    const id = new RegExp(`^${server.httpUrl}/files/([0-9a-f-]{36})/[0-2]\\.jpg$`).exec(urls[0])?.[1];
    assert.ok(id, urls[0]);
    assert.deepEqual(urls, [0, 1, 2].map((i) => `${server.httpUrl}/files/${id}/${i}.jpg`));
    const pixels = await Promise.all(urls.map(async (url) => sharp(Buffer.from(await (await fetch(url)).arrayBuffer())).raw().toBuffer()));
    assert.notDeepEqual(pixels[0], pixels[1], 'each image has its own seed');
    // Image 2 is what a request for one image with seed 7 makes.
    const alone = (await fal.run(T2I, { input: { ...input, seed: 7, sync_mode: true } })).data as Result;
    const third = await sharp(Buffer.from(alone.images[0].url.split(',')[1], 'base64')).raw().toBuffer();
    assert.ok(meanAbsDiff(third, pixels[2]!) < 1, `image 2 is seed 7's image (mean difference ${meanAbsDiff(third, pixels[2]!)})`);

    const stream = await fal.stream(T2I, { input: { ...input, num_images: 2, num_inference_steps: 3 } });
    const partials: [number, number][] = [];
    for await (const event of stream) if ((event as Result).partial) partials.push([(event as Result).image_index, (event as Result).step]);
    assert.deepEqual(partials, [[0, 1], [0, 2], [1, 1], [1, 2]]);
    assert.equal(((await stream.done()) as Result).images.length, 2);

    const queued = await fal.subscribe(T2I, { input: { ...input, num_images: 2 }, pollInterval: 100 });
    const files: string[] = (queued.data as Result).images.map((image: Result) => image.url);
    assert.deepEqual(files.map((url) => url.slice(url.lastIndexOf('/') + 1)), ['0.jpg', '1.jpg']);
    for (const url of files) assert.equal((await fetch(url)).headers.get('content-type'), 'image/jpeg');

    await assert.rejects(fal.run(T2I, { input: { ...input, num_images: 9 } }), (err: ValidationError) => err.status === 422 && /num_images/.test(JSON.stringify(err.body)));
    const { connection, errors } = realtime(fal, I2I);
    connection.send({ prompt: 'x', num_images: 2, request_id: 'two' });
    const error = await waitFor(() => errors[0], 10_000, 'a realtime error');
    connection.close();
    assert.match(error.message, /num_images/);
  });

  test("fal.run's routes take a token from /tokens/ in fal_jwt_token; the queue's do not; a bad one is refused", async () => {
    const token = (await (await fetch(`${server.httpUrl}/tokens/`, { method: 'POST', headers: { authorization: `Key ${FAL_KEY}` } })).json()) as string;
    const post = (path: string) => fetch(`${server.httpUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...input, sync_mode: true }) });
    const run = await post(`/${T2I}?fal_jwt_token=${token}`);
    assert.equal(run.status, 200);
    assert.match(((await run.json()) as Result).images[0].url, /^data:image\/jpeg;base64,/);
    const forged = await post(`/${T2I}/stream?fal_jwt_token=${token.slice(0, -2)}xx`);
    assert.equal(forged.status, 401);
    assert.match(((await forged.json()) as Result).detail, /invalid token/);
    assert.equal((await post(`/queue/${T2I}?fal_jwt_token=${token}`)).status, 401);
    assert.equal((await post(`/${T2I}`)).status, 401);
  });

  for (const [name, client] of [['direct routes', () => fal], ['the x-fal-target-url proxy route', () => viaProxy]] as const) {
    test(`a Blob input goes up through fal's storage API and comes back as an image_url, via ${name}`, async () => {
      const c = client();
      const frame = await cameraFrame();
      // The client uploads Blob inputs on its own before it submits.
      const polled = await c.subscribe(I2I, { input: { ...input, image_url: blobOf(frame, 'image/jpeg'), strength: 0.6 }, pollInterval: 100 });
      assert.equal((polled.data as Result).images.length, 1);
      const url = await c.storage.upload(blobOf(frame, 'image/jpeg'));
      assert.match(url, new RegExp(`^${server.httpUrl}/files/[0-9a-f-]{36}/upload\\.jpg$`));
      assert.deepEqual(Buffer.from(await (await fetch(url)).arrayBuffer()), frame, 'the file reads back as uploaded');
      const run = await c.run(I2I, { input: { ...input, image_url: url, strength: 0.6 } });
      assert.equal((run.data as Result).images.length, 1);
    });
  }

  test('uploads: only images, each upload URL once, only with its token; an unknown file URL is not fetched', async () => {
    const initiate = (body: unknown, key = FAL_KEY) => fetch(`${server.httpUrl}/storage/upload/initiate?storage_type=fal-cdn-v3`, {
      method: 'POST', headers: { authorization: `Key ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    assert.equal((await initiate({ content_type: 'image/jpeg', file_name: 'a.jpg' }, 'not-a-key-but-long-enough')).status, 401);
    const refused = await initiate({ content_type: 'text/html', file_name: 'a.html' });
    assert.equal(refused.status, 422);
    assert.deepEqual(((await refused.json()) as Result).detail[0].loc, ['body', 'content_type']);
    for (const body of [{ content_type: 'constructor' }, {}, 'image/png']) assert.equal((await initiate(body)).status, 422, JSON.stringify(body));
    const { upload_url: uploadUrl, file_url: fileUrl } = (await (await initiate({ content_type: 'image/png', file_name: 'a.png' })).json()) as Result;
    const png = await cameraFrame(0, 'png');
    const put = (target: string) => fetch(target, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: blobOf(png, 'image/png') });
    const tampered = new URL(uploadUrl);
    tampered.pathname = tampered.pathname.replace(/[0-9a-f]{8}-/, '00000000-');
    assert.equal((await put(tampered.href)).status, 403, 'the token names one file');
    assert.equal((await put(uploadUrl.replace(/token=.*/, 'token=forged'))).status, 403);
    assert.equal((await fetch(fileUrl)).status, 404, 'nothing stored yet');
    assert.equal((await put(uploadUrl)).status, 200);
    assert.equal((await put(uploadUrl)).status, 409, 'an upload URL creates its file once');
    const stored = await fetch(fileUrl);
    assert.equal(stored.headers.get('content-type'), 'image/png');
    assert.deepEqual(Buffer.from(await stored.arrayBuffer()), png);
    // Realtime reads it from the store as the HTTP routes do.
    const { connection, results } = realtime(fal, I2I);
    connection.send({ prompt: 'a house', image_url: fileUrl, strength: 0.6, num_inference_steps: 2, request_id: 'uploaded' });
    const frame = await waitFor(() => results.find((r) => r.request_id === 'uploaded'), 30_000, 'a realtime result from an uploaded image');
    connection.close();
    assert.ok(frame.images[0].content.byteLength > 0);
    // The same path shape with an id this server never gave out is an ordinary URL: --image-hosts
    // (none here) decides, so it is refused, not fetched.
    const unknown = fileUrl.replace(/[0-9a-f]{8}-/, '00000000-');
    await assert.rejects(fal.run(I2I, { input: { ...input, image_url: unknown } }), (err: ValidationError) => err.status === 422 && /image-hosts/.test(JSON.stringify(err.body)));
    await assert.rejects(fal.queue.submit(I2I, { input: { ...input, image_url: unknown } }), (err: ValidationError) => err.status === 422);
    const malformed = fileUrl.replace(/upload\.png$/, '%E0%A4%A.png');
    await assert.rejects(fal.run(I2I, { input: { ...input, image_url: malformed } }), (err: ValidationError) => err.status === 422);

    // Uploads cost no GPU time, so each key has a rate: a burst of 10, then one a second.
    const statuses: number[] = [];
    for (let i = 0; i < 20 && !statuses.includes(429); i++) {
      const response = await initiate({ content_type: 'image/jpeg', file_name: `${i}.jpg` }, OTHER_KEY);
      statuses.push(response.status);
      if (response.status === 429) assert.equal(response.headers.get('retry-after'), '1');
    }
    assert.ok(statuses.filter((s) => s === 200).length >= 10 && statuses.at(-1) === 429, statuses.join(' '));
    assert.equal((await initiate({ content_type: 'image/jpeg', file_name: 'mine.jpg' })).status, 200, 'other keys are unaffected');
  });

  test('queue.cancel of a queued request; another key cannot see, cancel or fetch it', async () => {
    // Queued jobs run in maxBatch - 1 slots (3 by default): 24 jobs of 8 steps ahead keep the last one
    // queued for about a second here, against four short round trips before the cancel.
    const long = { ...input, num_inference_steps: 8 };
    const ahead = await Promise.all(Array.from({ length: 24 }, () => fal.queue.submit(T2I, { input: long })));
    const submitted = await fal.queue.submit(T2I, { input: { ...input, num_inference_steps: 8 } });
    const other = falClientFor(server.httpUrl, { credentials: OTHER_KEY });
    uninstalls.push(other.uninstall);
    await assert.rejects(other.fal.queue.status(T2I, { requestId: submitted.request_id }), (err: ApiError<unknown>) => err.status === 404);
    await assert.rejects(other.fal.queue.result(T2I, { requestId: submitted.request_id }), (err: ApiError<unknown>) => err.status === 404);
    await assert.rejects(other.fal.queue.cancel(T2I, { requestId: submitted.request_id }), (err: ApiError<unknown>) => err.status === 404);
    assert.equal((await fal.queue.status(T2I, { requestId: submitted.request_id })).status, 'IN_QUEUE');
    await fal.queue.cancel(T2I, { requestId: submitted.request_id });
    const status = await completed(T2I, submitted.request_id);
    assert.equal(status.error, 'cancelled');
    await assert.rejects(fal.queue.result(T2I, { requestId: submitted.request_id }), (err: ApiError<unknown>) => err.status === 400);
    // The jobs ahead are untouched by it.
    for (const job of ahead) {
      const done = await completed(T2I, job.request_id, 60_000);
      assert.equal(done.error, undefined);
      assert.equal(((await fal.queue.result(T2I, { requestId: job.request_id })).data as Result).images.length, 1);
    }
  });

  test('queue.cancel of a running request for several images ends it cancelled', async () => {
    // Eight 512x512 images of 8 steps: seconds of work, cancelled as soon as it runs.
    const submitted = await fal.queue.submit(T2I, { input: { ...input, num_images: 8, num_inference_steps: 8, image_size: 'square_hd' } });
    await waitFor(async () => ((await fal.queue.status(T2I, { requestId: submitted.request_id })).status === 'IN_PROGRESS' ? true : undefined), 30_000, 'the job to run');
    await fal.queue.cancel(T2I, { requestId: submitted.request_id });
    const status = await completed(T2I, submitted.request_id);
    assert.equal(status.error, 'cancelled');
    await assert.rejects(fal.queue.result(T2I, { requestId: submitted.request_id }), (err: ApiError<unknown>) => err.status === 400);
  });

  test("startTimeout (x-fal-request-timeout): a request not started in time fails with 504; one started in time runs", async () => {
    // Three jobs of eight 768x768 images fill the queue's three slots for seconds (eight 512x512
    // ones took 2 s here).
    const heavy = { ...input, num_images: 8, num_inference_steps: 8, image_size: { width: 768, height: 768 } };
    const ahead = await Promise.all([0, 1, 2].map(() => fal.queue.submit(T2I, { input: heavy })));
    const statusOf = async (id: string) => (await fal.queue.status(T2I, { requestId: id })) as Result;
    await waitFor(async () => ((await Promise.all(ahead.map((job) => statusOf(job.request_id)))).every((s) => s.status === 'IN_PROGRESS') ? true : undefined), 30_000, 'the slots to fill');
    const late = await fal.queue.submit(T2I, { input, startTimeout: 1.2 }); // fal's client wants more than 1
    const patient = await fal.queue.submit(T2I, { input, startTimeout: 600 });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.equal((await statusOf(late.request_id)).status, 'IN_QUEUE', 'still waiting behind the full slots');
    for (const job of ahead) await fal.queue.cancel(T2I, { requestId: job.request_id });
    const ended = await completed(T2I, late.request_id);
    assert.equal(ended.error_type, 'request_timeout');
    // fal's client knows a user timeout by its header, and does not retry it.
    await assert.rejects(fal.queue.result(T2I, { requestId: late.request_id }), (err: ApiError<unknown>) => err.status === 504 && err.isUserTimeout);
    const done = await completed(T2I, patient.request_id);
    assert.equal(done.error, undefined);
    assert.equal(((await fal.queue.result(T2I, { requestId: patient.request_id })).data as Result).images.length, 1);
    for (const bad of ['0', 'soon', '-5']) {
      const refused = await fetch(`${server.httpUrl}/queue/${T2I}`, { method: 'POST', headers: { authorization: `Key ${FAL_KEY}`, 'content-type': 'application/json', 'x-fal-request-timeout': bad }, body: JSON.stringify(input) });
      assert.equal(refused.status, 422, bad);
      assert.deepEqual(((await refused.json()) as Result).detail[0].loc, ['header', 'x-fal-request-timeout']);
    }
  });

  test('a webhook is signed, and retried after the receiver first answers 500', async () => {
    const receiver = await startHookReceiver(1);
    try {
      const submitted = await fal.queue.submit(T2I, { input, webhookUrl: receiver.url });
      const hook = await waitFor(() => receiver.hooks.find((h) => h.headers['x-fal-webhook-request-id'] === submitted.request_id), 30_000, 'the webhook');
      assert.equal(receiver.attempts.get(submitted.request_id), 2, 'one 500, then delivered');
      // Checked as an existing fal receiver does, against the keys the server publishes where fal does.
      const keys = await fetchWebhookKeys(server.httpUrl);
      assert.ok(falReceiverVerifies(keys, hook.headers, hook.body));
      assert.ok(await verifyWebhookSignature(keys, hook.headers as Record<string, string>, hook.body));
      assert.equal(hook.headers['x-fal-webhook-user-id'], createHash('sha256').update(FAL_KEY).digest('hex').slice(0, 12), "the submitting key's id");
      assert.ok(!falReceiverVerifies(keys, { ...hook.headers, 'x-fal-webhook-user-id': 'someone-else' }, hook.body));
      // The same keys through fal's own URL for them, as the client's middleware maps it.
      const viaProxyRoute = await fetch(`${server.httpUrl}/api/fal/proxy`, { headers: { 'x-fal-target-url': 'https://rest.fal.ai/.well-known/jwks.json' } });
      assert.deepEqual(await viaProxyRoute.json(), keys);
      const body = JSON.parse(hook.body);
      assert.deepEqual([body.request_id, body.status, body.error], [submitted.request_id, 'OK', null]);
      assert.equal(body.payload.images.length, 1);
      // The counter moves once the dispatcher has read the receiver's answer, just after it arrived.
      const metrics = await waitFor(async () => {
        const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
        return /fal_webhook_deliveries_total\{outcome="delivered"\} [1-9]/.test(text) ? text : undefined;
      }, 10_000, 'the delivery counted');
      assert.match(metrics, /fal_webhook_deliveries_total\{outcome="retried"\} [1-9]/);
    } finally {
      await receiver.close();
    }
  });
});

describe("fal's routes in /metrics", () => {
  /** The value of one series, 0 when it has not appeared yet. */
  async function series(name: string, labels: string): Promise<number> {
    const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}} ` : `${name} `));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
  }

  test('each exchange counted once by API and status, and timed', async () => {
    const counted = [
      ['api="run",status="200"'], ['api="run",status="401"'], ['api="stream",status="200"'],
      ['api="queue",status="200"'], ['api="rest",status="200"'], ['api="files",status="404"'],
    ].map(([labels]) => labels!);
    const before = await Promise.all(counted.map((labels) => series('fal_http_requests_total', labels)));
    const timedBefore = await series('fal_http_request_duration_seconds_count', 'api="run"');
    const waitsBefore = await series('fal_queue_wait_seconds_count', '');

    await viaProxy.run(T2I, { input: { prompt: 'a cat', num_inference_steps: 1, sync_mode: true } }); // through the proxy: still "run"
    assert.equal((await fetch(`${server.httpUrl}/${T2I}`, { method: 'POST', body: '{}' })).status, 401);
    await (await fal.stream(T2I, { input: { prompt: 'a cat', num_inference_steps: 2 } })).done();
    const queued = await fal.queue.submit(T2I, { input: { prompt: 'a cat', num_inference_steps: 1 } });
    await fetch(`${server.httpUrl}/.well-known/jwks.json`);
    await fetch(`${server.httpUrl}/files/00000000-0000-0000-0000-000000000000/0.jpg`);

    const after = await Promise.all(counted.map((labels) => series('fal_http_requests_total', labels)));
    assert.deepEqual(after.map((n, i) => n - before[i]!), [1, 1, 1, 1, 1, 1], counted.join(' '));
    assert.equal((await series('fal_http_request_duration_seconds_count', 'api="run"')) - timedBefore, 2);
    // The queued job's wait from submit to start, once it has started.
    await completed(T2I, queued.request_id);
    assert.equal((await series('fal_queue_wait_seconds_count', '')) - waitsBefore, 1);
  });
});

describe('bad input through fal\'s routes', () => {
  test('wrong types and out-of-range steps: 422 ValidationError naming the field', async () => {
    for (const bad of [{ prompt: 'x', num_inference_steps: 'two' }, { prompt: 'x', num_inference_steps: 99 }, { prompt: 42 }, { prompt: 'x', image_size: 'huge' }]) {
      await assert.rejects(fal.run(T2I, { input: bad as never }), (err: unknown) => {
        assert.ok(err instanceof ValidationError, `ValidationError for ${JSON.stringify(bad)}`);
        assert.equal(err.status, 422);
        assert.ok(err.fieldErrors.length > 0 && err.fieldErrors[0].loc.includes(Object.keys(bad).at(-1)!), JSON.stringify(err.body));
        return true;
      });
    }
    await assert.rejects(fal.queue.submit(T2I, { input: { prompt: 'x', num_inference_steps: 99 } }), (err: unknown) => err instanceof ValidationError);
  });

  test('an undecodable image, an unknown app, an unknown request, an oversized body', async () => {
    await assert.rejects(fal.run(I2I, { input: { prompt: 'x', image_url: 'data:image/png;base64,AAAAAAAA' } }), (err: ApiError<unknown>) => err.status === 422 && /image/.test(err.message));
    await assert.rejects(fal.run('fal-ai/flux/dev', { input: { prompt: 'x' } }), (err: ApiError<unknown>) => err.status === 404 && /fast-turbo-diffusion/.test(err.message));
    await assert.rejects(fal.queue.status(T2I, { requestId: '00000000-0000-4000-8000-000000000000' }), (err: ApiError<unknown>) => err.status === 404);
    const big = await fetch(`${server.httpUrl}/${T2I}`, {
      method: 'POST', headers: { authorization: `Key ${FAL_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'x'.repeat(13 * 1024 * 1024) }),
    });
    assert.equal(big.status, 413);
    const noKey = await fetch(`${server.httpUrl}/${T2I}`, { method: 'POST', body: '{}' });
    assert.equal(noKey.status, 401);
    // The server and its sessions are unaffected.
    const ok = await fal.run(T2I, { input: { prompt: 'still fine', num_inference_steps: 1 } });
    assert.equal((ok.data as Result).images.length, 1);
    assert.equal((await fetch(`${server.httpUrl}/readyz`)).status, 200);
  });
});
