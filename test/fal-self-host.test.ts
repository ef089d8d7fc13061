// The official fal client (`@fal-ai/client`, the real package) configured by falSelfHost() against a
// local recorder that answers like fal: which paths, methods and headers reach the server for run,
// queue, subscribe, stream and realtime, through the rewriting middleware and through the
// x-fal-target-url proxy route. Set FAL_SELF_HOST_LOG=1 to print every recorded request.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import ts from 'typescript';
import { WebSocket as NodeWebSocket } from 'ws';
import { createFalClient } from '@fal-ai/client';
import { FAL_PROXY_PATH, falSelfHost, rewriteFalUrl, type FalSelfHostOptions } from '../client/fal.js';
import { lines, startRecorder, type Recorder } from './helpers/fal-recorder.js';

type FalConfig = NonNullable<Parameters<typeof createFalClient>[0]>;
type FalClient = ReturnType<typeof createFalClient>;

const KEY = 'sk-local';
// fal sets `Accept: application/json` on every request and its SSE calls add a lower-case `accept`;
// fetch joins the two, so a server must look for text/event-stream inside the list.
const SSE_ACCEPT = 'application/json, text/event-stream';

let recorder: Recorder;
const uninstalls: (() => void)[] = [];
const hadWebSocket = 'WebSocket' in globalThis;

/** A real fal client configured by falSelfHost(), as an app would write `fal.config(...)`. */
function falClient(options: FalSelfHostOptions = {}): FalClient {
  const setup = falSelfHost(recorder.base, { credentials: KEY, ...options });
  uninstalls.push(setup.uninstall);
  // Compile-time check that the declared config shapes match fal's own Config.
  const config: FalConfig = setup.config;
  return createFalClient(config);
}

before(async () => {
  // Node 20 has no global WebSocket; fal's realtime needs one, as the helper's error says.
  if (!hadWebSocket) (globalThis as { WebSocket?: unknown }).WebSocket = NodeWebSocket;
  recorder = await startRecorder();
});
afterEach(() => {
  for (const uninstall of uninstalls.splice(0)) uninstall();
  recorder.reset();
});
after(async () => {
  await recorder.close();
  if (!hadWebSocket) delete (globalThis as { WebSocket?: unknown }).WebSocket;
});

const APP = 'fal-ai/fast-lcm-diffusion';
const SUB_APP = 'fal-ai/fast-turbo-diffusion/image-to-image';
const INPUT = { prompt: 'a red circle', num_inference_steps: 2, seed: 7 };

/** Every HTTP call an app makes over HTTP, in the order the tests below assert them. */
async function httpCalls(fal: FalClient) {
  const run = await fal.run(APP, { input: INPUT });
  const submitted = await fal.queue.submit(SUB_APP, { input: INPUT, priority: 'low', webhookUrl: 'https://app.example/hook' });
  const status = await fal.queue.status(SUB_APP, { requestId: submitted.request_id, logs: true });
  const result = await fal.queue.result(SUB_APP, { requestId: submitted.request_id });
  await fal.queue.cancel(SUB_APP, { requestId: submitted.request_id });
  return { run, submitted, status, result };
}

describe("falSelfHost via the request middleware (the default)", () => {
  test('run and the queue calls reach the server routes with the key', async () => {
    const { run, submitted, status, result } = await httpCalls(falClient());
    assert.equal(run.data.seed, 42);
    assert.equal(run.requestId, 'run-1');
    assert.equal(submitted.request_id, 'req-1');
    assert.equal(status.status, 'IN_PROGRESS');
    assert.equal(result.data.seed, 7);
    assert.deepEqual(lines(recorder.http), [
      `POST /${APP}`,
      `POST /queue/${SUB_APP}?fal_webhook=${encodeURIComponent('https://app.example/hook')}`,
      // fal drops the sub-path for everything after submit
      'GET /queue/fal-ai/fast-turbo-diffusion/requests/req-1/status?logs=1',
      'GET /queue/fal-ai/fast-turbo-diffusion/requests/req-1',
      'PUT /queue/fal-ai/fast-turbo-diffusion/requests/req-1/cancel',
    ]);
    for (const r of recorder.http) {
      assert.equal(r.headers.authorization, `Key ${KEY}`, r.path);
      assert.equal(r.headers.accept, 'application/json', r.path);
      assert.equal(r.headers['content-type'], 'application/json', r.path);
    }
    assert.deepEqual(recorder.http[0].body, INPUT);
    assert.deepEqual(recorder.http[1].body, INPUT);
    assert.equal(recorder.http[1].headers['x-fal-queue-priority'], 'low');
    assert.equal(recorder.http[2].body, undefined);
  });

  test('subscribe polls status until COMPLETED, then fetches the result', async () => {
    const updates: string[] = [];
    const out = await falClient().subscribe(APP, { input: INPUT, onQueueUpdate: (u) => updates.push(u.status) });
    assert.equal(out.data.seed, 7);
    assert.deepEqual(updates, ['IN_PROGRESS', 'COMPLETED']);
    assert.deepEqual(lines(recorder.http), [
      `POST /queue/${APP}`,
      `GET /queue/${APP}/requests/req-1/status?logs=0`,
      `GET /queue/${APP}/requests/req-1/status?logs=0`,
      `GET /queue/${APP}/requests/req-1`,
    ]);
    assert.equal(recorder.http[0].headers['x-fal-queue-priority'], 'normal');
  });

  test("subscribe in streaming mode reads the status as server-sent events", async () => {
    const out = await falClient().subscribe(APP, { input: INPUT, mode: 'streaming' });
    assert.equal(out.data.seed, 7);
    assert.deepEqual(lines(recorder.http), [
      `POST /queue/${APP}`,
      `GET /queue/${APP}/requests/req-1/status/stream?logs=0`,
      `GET /queue/${APP}/requests/req-1`,
    ]);
    assert.equal(recorder.http[1].headers.accept, SSE_ACCEPT);
  });

  test('stream posts to /{app}/stream and yields each event', async () => {
    const stream = await falClient().stream(APP, { input: INPUT });
    const events: unknown[] = [];
    for await (const event of stream) events.push(event);
    assert.deepEqual(events, [{ step: 1 }, { step: 2 }, { images: [], seed: 9 }]);
    assert.deepEqual(await stream.done(), { images: [], seed: 9 });
    assert.deepEqual(lines(recorder.http), [`POST /${APP}/stream`]);
    assert.equal(recorder.http[0].headers.accept, SSE_ACCEPT);
    assert.equal(recorder.http[0].headers.authorization, `Key ${KEY}`);
    assert.deepEqual(recorder.http[0].body, INPUT);
  });

  for (const via of ['middleware', 'proxy'] as const) {
    test(`stream in 'client' connection mode, via ${via}: a token first, then fal.run's stream URL rewritten with the token and no key`, async () => {
      const stream = await falClient({ via }).stream(APP, { input: INPUT, connectionMode: 'client', tokenProvider: async () => 'jwt-app' });
      assert.deepEqual(await stream.done(), { images: [], seed: 9 });
      assert.deepEqual(lines(recorder.http), [`POST /${APP}/stream?fal_jwt_token=jwt-app`]);
      assert.equal(recorder.http[0].headers.authorization, undefined);
      assert.deepEqual(recorder.http[0].body, INPUT);
    });
  }

  test("stream in 'client' connection mode without a token provider gets its token from /tokens/", async (t) => {
    t.mock.method(console, 'warn', () => {}); // fal's notice that the default token provider is deprecated
    const stream = await falClient().stream(APP, { input: INPUT, connectionMode: 'client' });
    assert.deepEqual(await stream.done(), { images: [], seed: 9 });
    assert.deepEqual(lines(recorder.http), ['POST /tokens/', `POST /${APP}/stream?fal_jwt_token=jwt-1`]);
    assert.equal(recorder.http[0].headers.authorization, `Key ${KEY}`);
  });

  test("an app's own fetch carries every request, after the rewrite", async () => {
    const seen: string[] = [];
    const fal = falClient({ fetch: (input, init) => (seen.push(String(input)), fetch(input, init)) });
    await fal.run(APP, { input: INPUT });
    await (await fal.stream(APP, { input: INPUT, connectionMode: 'client', tokenProvider: async () => 't' })).done();
    assert.deepEqual(seen, [`${recorder.base}/${APP}`, `${recorder.base}/${APP}/stream?fal_jwt_token=t`]);
  });

  test("an app's own middleware runs first, sees fal's URLs, and its headers arrive", async () => {
    const seen: string[] = [];
    const fal = falClient({
      requestMiddleware: async (req) => {
        seen.push(req.url);
        return { ...req, headers: { ...req.headers, 'x-app': 'yes' } };
      },
    });
    await fal.run(APP, { input: INPUT });
    assert.deepEqual(seen, [`https://fal.run/${APP}`]);
    assert.deepEqual(lines(recorder.http), [`POST /${APP}`]);
    assert.equal(recorder.http[0].headers['x-app'], 'yes');
  });

  test('without credentials no key is sent, not even FAL_KEY from the environment', async () => {
    const saved = process.env.FAL_KEY;
    process.env.FAL_KEY = 'a-real-fal-key';
    try {
      const setup = falSelfHost(recorder.base, { installRealtime: false });
      await createFalClient(setup.config).run(APP, { input: INPUT });
    } finally {
      if (saved === undefined) delete process.env.FAL_KEY;
      else process.env.FAL_KEY = saved;
    }
    assert.equal(recorder.http[0].headers.authorization, undefined);
  });
});

/** Connects, sends one input, and resolves with the first result; closes the connection after. */
async function realtimeRoundTrip(fal: FalClient, input: Record<string, unknown>): Promise<Record<string, unknown>> {
  let closing = false;
  return new Promise<Record<string, unknown>>((resolve, reject) => {
    const connection = fal.realtime.connect(SUB_APP, {
      maxBuffering: 2,
      throttleInterval: 0,
      onResult: (r: Record<string, unknown>) => {
        closing = true;
        connection.close();
        resolve(r);
      },
      // the app's own close() is reported as an error (code 1005) by fal: only earlier ones count
      onError: (err) => (closing ? undefined : reject(err)),
    });
    connection.send(input);
  });
}

describe('falSelfHost: realtime through the installed global WebSocket', () => {
  test('token from /tokens/, socket on /{app}/realtime, msgpack both ways', async (t) => {
    t.mock.method(console, 'warn', () => {}); // fal's notice that its default token provider is deprecated
    const input = { prompt: 'a red circle', image_bytes: new Uint8Array([9, 8, 7]), request_id: 'rt-1' };
    const result = await realtimeRoundTrip(falClient(), input);
    assert.equal(result.request_id, 'rt-1');
    assert.deepEqual([...(result.images as { content: Uint8Array }[])[0].content], [1, 2, 3]);

    assert.deepEqual(lines(recorder.http), ['POST /tokens/']);
    assert.deepEqual(recorder.http[0].body, { allowed_apps: ['fast-turbo-diffusion'], token_expiration: 120 });
    assert.equal(recorder.http[0].headers.authorization, `Key ${KEY}`);
    assert.deepEqual(recorder.upgrades.map((u) => u.path), [`/${SUB_APP}/realtime?fal_jwt_token=jwt-1&max_buffering=2`]);
    const frame = recorder.frames[0] as typeof input;
    assert.equal(frame.prompt, input.prompt);
    assert.equal(frame.request_id, 'rt-1');
    assert.deepEqual([...frame.image_bytes], [9, 8, 7]);
  });

  test('uninstall restores the global; installs do not stack; other URLs pass through', async () => {
    const original = globalThis.WebSocket;
    const first = falSelfHost(recorder.base);
    uninstalls.push(first.uninstall); // restores the global should an assertion below fail
    const installed = globalThis.WebSocket;
    assert.notEqual(installed, original);
    const second = falSelfHost('http://127.0.0.1:1', { via: 'proxy' });
    uninstalls.push(second.uninstall);
    assert.equal(globalThis.WebSocket, installed, 'a second call reuses the installed subclass');
    second.uninstall();
    second.uninstall();
    assert.equal(globalThis.WebSocket, installed, 'the first install is still active');

    // The newest active install is the target; a URL on another host is left alone.
    const opened = async (url: string) => {
      const ws = new globalThis.WebSocket(url);
      assert.ok(ws instanceof original);
      await new Promise((resolve, reject) => ((ws.onopen = resolve), (ws.onerror = reject)));
      ws.close();
    };
    await opened('wss://fal.run/fal-ai/x/realtime?fal_jwt_token=t');
    await opened(recorder.base.replace('http', 'ws') + '/elsewhere');
    assert.deepEqual(recorder.upgrades.map((u) => u.path), ['/fal-ai/x/realtime?fal_jwt_token=t', '/elsewhere']);

    first.uninstall();
    assert.equal(globalThis.WebSocket, original);
  });

  test('installRealtime: false leaves the global alone', () => {
    const original = globalThis.WebSocket;
    const setup = falSelfHost(recorder.base, { installRealtime: false });
    assert.equal(globalThis.WebSocket, original);
    setup.uninstall();
    assert.equal(globalThis.WebSocket, original);
  });

  test('without a global WebSocket it says how to provide one', () => {
    const scope = globalThis as { WebSocket?: unknown };
    const saved = scope.WebSocket;
    delete scope.WebSocket;
    try {
      assert.throws(() => falSelfHost(recorder.base), /Node 20[\s\S]*import\('ws'\)/);
      assert.doesNotThrow(() => falSelfHost(recorder.base, { installRealtime: false }));
    } finally {
      scope.WebSocket = saved;
    }
  });
});

describe("falSelfHost via: 'proxy' (the x-fal-target-url route)", () => {
  const PROXY = `POST ${FAL_PROXY_PATH}`;

  test('every HTTP call goes to the proxy route with the fal URL in x-fal-target-url', async () => {
    const fal = falClient({ via: 'proxy' });
    const { run, result } = await httpCalls(fal);
    assert.equal(run.data.seed, 42);
    assert.equal(result.data.seed, 7);
    const stream = await fal.stream(APP, { input: INPUT });
    assert.deepEqual(await stream.done(), { images: [], seed: 9 });
    const hook = encodeURIComponent('https://app.example/hook');
    assert.deepEqual(lines(recorder.http), [
      `${PROXY} -> https://fal.run/${APP}`,
      `${PROXY} -> https://queue.fal.run/${SUB_APP}?fal_webhook=${hook}`,
      `GET ${FAL_PROXY_PATH} -> https://queue.fal.run/fal-ai/fast-turbo-diffusion/requests/req-1/status?logs=1`,
      `GET ${FAL_PROXY_PATH} -> https://queue.fal.run/fal-ai/fast-turbo-diffusion/requests/req-1`,
      `PUT ${FAL_PROXY_PATH} -> https://queue.fal.run/fal-ai/fast-turbo-diffusion/requests/req-1/cancel`,
      `${PROXY} -> https://fal.run/${APP}/stream`,
    ]);
    for (const r of recorder.http) assert.equal(r.headers.authorization, `Key ${KEY}`, r.path);
    assert.equal(recorder.http[1].headers['x-fal-queue-priority'], 'low');
    assert.equal(recorder.http[5].headers.accept, SSE_ACCEPT);
  });

  test('subscribe polls through the proxy route', async () => {
    const out = await falClient({ via: 'proxy' }).subscribe(APP, { input: INPUT });
    assert.equal(out.data.seed, 7);
    assert.deepEqual(lines(recorder.http), [
      `${PROXY} -> https://queue.fal.run/${APP}`,
      `GET ${FAL_PROXY_PATH} -> https://queue.fal.run/${APP}/requests/req-1/status?logs=0`,
      `GET ${FAL_PROXY_PATH} -> https://queue.fal.run/${APP}/requests/req-1/status?logs=0`,
      `GET ${FAL_PROXY_PATH} -> https://queue.fal.run/${APP}/requests/req-1`,
    ]);
  });

  test("realtime: the token through the proxy route, the socket straight to the app's path", async (t) => {
    t.mock.method(console, 'warn', () => {});
    const seen: string[] = [];
    const fal = falClient({ via: 'proxy', requestMiddleware: async (req) => (seen.push(req.url), req) });
    const result = await realtimeRoundTrip(fal, { prompt: 'p', request_id: 'rt-2' });
    assert.equal(result.request_id, 'rt-2');
    assert.deepEqual(seen, ['https://rest.fal.ai/tokens/']);
    assert.deepEqual(lines(recorder.http), [`${PROXY} -> https://rest.fal.ai/tokens/`]);
    assert.deepEqual(recorder.upgrades.map((u) => u.path), [`/${SUB_APP}/realtime?fal_jwt_token=jwt-1&max_buffering=2`]);
  });
});

describe('rewriteFalUrl', () => {
  test("maps fal's hosts under the server's base, prefix and scheme kept, and nothing else", () => {
    const base = 'https://gpu.example.com/prefix/';
    assert.equal(rewriteFalUrl('https://fal.run/fal-ai/x?a=1', base), 'https://gpu.example.com/prefix/fal-ai/x?a=1');
    assert.equal(rewriteFalUrl('https://queue.fal.run/fal-ai/x/requests/1', base), 'https://gpu.example.com/prefix/queue/fal-ai/x/requests/1');
    assert.equal(rewriteFalUrl('https://rest.fal.ai/tokens/', base), 'https://gpu.example.com/prefix/tokens/');
    assert.equal(rewriteFalUrl('wss://fal.run/fal-ai/x/realtime?fal_jwt_token=t', base), 'wss://gpu.example.com/prefix/fal-ai/x/realtime?fal_jwt_token=t');
    assert.equal(rewriteFalUrl('wss://fal.run/a/b', 'http://localhost:8080'), 'ws://localhost:8080/a/b');
    for (const other of ['https://fal.run.evil.example/x', 'https://v3.fal.media/files/x', 'http://fal.run/x', 'https://example.com/']) {
      assert.equal(rewriteFalUrl(other, base), other);
    }
  });

  test('rejects a server URL it cannot append paths to', () => {
    assert.throws(() => falSelfHost('/relative'), /absolute/);
    assert.throws(() => falSelfHost('ftp://host'), /http\(s\)/);
    assert.throws(() => falSelfHost('http://host/?q=1'), /query/);
  });
});

describe("the package's ./fal entry", () => {
  const client = new URL('../../client/', import.meta.url);

  test('points at what `tsc -p client/tsconfig.json` emits, and that imports nothing', () => {
    const manifest = JSON.parse(readFileSync(new URL('package.json', client), 'utf8'));
    const entry = manifest.exports['./fal'] as { types: string; import: string };
    for (const file of [entry.types, entry.import]) assert.ok(existsSync(new URL(file, client)), `${file} is missing`);
    // Browser-safe by construction: no Node module, and no dependency on @fal-ai/client either.
    for (const file of [entry.types, entry.import]) {
      const imports = ts.preProcessFile(readFileSync(new URL(file, client), 'utf8'), true, true).importedFiles;
      assert.deepEqual(imports.map((i) => i.fileName), [], file);
    }
  });
});
