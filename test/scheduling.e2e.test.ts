// One model, many users: step-level batching, fairness, slow readers, admission and rate limits,
// similar-frame skips and the metrics that show them, against the real server process.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import WebSocket from 'ws';
import { CloseCode, ErrorCode, type ErrorMessage, type FrameMessage, type SkippedMessage } from '../shared/protocol.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';
import { writeTinyModel } from '../scripts/tiny-model.js';

async function metric(server: ServerProcess, line: RegExp): Promise<number> {
  const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
  const match = text.split('\n').find((l) => line.test(l));
  return match ? Number(match.split(' ').at(-1)) : Number.NaN;
}

/** Keeps a running + pending request in flight (a streaming client) until `until`; counts outcomes. */
async function stream(client: TestClient, until: number, request: Record<string, unknown>) {
  let sent = 0;
  const counts = { frame: 0, superseded: 0, other: 0 };
  const send = () => client.send({ ...request, type: 'generate', id: sent++ });
  send();
  send();
  for (let settled = 0; settled < sent; settled++) {
    const [last] = (await client.untilSettled(settled)).slice(-1);
    if (last.type === 'frame') counts.frame++;
    else if (last.type === 'superseded') counts.superseded++;
    else counts.other++;
    if (performance.now() < until) send();
  }
  return { sent, ...counts };
}

describe('batching and fairness (max batch 4)', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess(['--max-batch', '4']);
  });
  after(() => server.stop());

  test('concurrent sessions share UNet calls, every request completes and completions are fair', async () => {
    const clients = await Promise.all(Array.from({ length: 4 }, () => TestClient.connect(server.wsUrl)));
    const until = performance.now() + 3000;
    const results = await Promise.all(clients.map(({ client }, i) => stream(client, until, { prompt: `a shape ${i}`, steps: 2 })));
    for (const r of results) {
      assert.equal(r.other, 0, 'no errors');
      assert.equal(r.frame + r.superseded, r.sent, 'every request settled');
      assert.equal(r.superseded, 0, 'a streaming client never overfills its slots');
    }
    const frames = results.map((r) => r.frame);
    assert.ok(Math.min(...frames) >= 0.75 * Math.max(...frames), `fair completions: ${frames.join(', ')}`);
    const count = await metric(server, /^realtime_unet_batch_size_count /);
    const single = await metric(server, /^realtime_unet_batch_size_bucket\{le="1"\} /);
    assert.ok(count > single, `some UNet calls batched several requests (${single} of ${count} were single)`);
    const batched = (clients[0].client.messages.filter((m) => m.type === 'frame') as FrameMessage[]).flatMap((f) => f.timings.batchSizes);
    assert.ok(batched.some((b) => b > 1), 'frames report the batch sizes of their steps');
    await Promise.all(clients.map(({ client }) => client.close()));
  });

  test('a 1-step request is not held behind an 8-step one', async () => {
    const { client: slow } = await TestClient.connect(server.wsUrl);
    const { client: quick } = await TestClient.connect(server.wsUrl);
    slow.send({ type: 'generate', id: 'long', prompt: 'a', steps: 8, width: 512, height: 512 });
    await slow.next((m) => m.type === 'preview' && m.step === 1);
    quick.send({ type: 'generate', id: 'short', prompt: 'b', steps: 1, width: 512, height: 512 });
    await quick.untilSettled('short');
    // The 8-step request previews steps 1 to 7 (its 8th step is its frame): held behind it, the
    // 1-step frame would come after all seven.
    const longPreviews = slow.messages.filter((m) => m.type === 'preview').length;
    assert.ok(longPreviews < 7, `the 1-step frame came after ${longPreviews} of the 8-step request's steps`);
    assert.equal((await slow.untilSettled('long')).at(-1)?.type, 'frame');
    await Promise.all([slow.close(), quick.close()]);
  });
});

describe('slow readers, admission, rate limit and similar frames', () => {
  let server: ServerProcess;
  let modelDir: string;
  before(async () => {
    // The generated (untrained) model: its frames are noise, so the slow-reader flood below fills
    // the socket buffers within seconds, and a 1024x1024 frame costs tens of milliseconds. The
    // default model draws flat scenes whose PNGs compress to a few kilobytes.
    modelDir = await mkdtemp(path.join(os.tmpdir(), 'rt-noise-model-'));
    await writeTinyModel(modelDir);
    server = await startServerProcess(['--model', modelDir, '--max-sessions', '3', '--rate-limit', '5', '--slow-reader-timeout', '2', '--max-batch', '4']);
  });
  after(async () => {
    await server.stop();
    await rm(modelDir, { recursive: true, force: true });
  });

  test('a reader that never reads is closed with 4001 and does not slow another session', async () => {
    // A client that stops reading right after hello.
    const stalled = new WebSocket(server.wsUrl);
    const closed = new Promise<number>((resolve) => stalled.on('close', (code) => resolve(code)));
    await new Promise((resolve) => stalled.once('message', resolve));
    const socket = (stalled as unknown as { _socket: import('node:net').Socket })._socket;
    socket.pause();
    const { encodeMessage } = await import('../shared/codec.js');
    let id = 0;
    // Large, barely compressible frames fill the kernel and uWS buffers within a second or two.
    const flood = setInterval(() => {
      stalled.send(encodeMessage({ type: 'generate', id: id++, prompt: 'noise', steps: 1, width: 1024, height: 1024, format: 'png', previews: false }));
    }, 200);

    const { client } = await TestClient.connect(server.wsUrl);
    const totals: number[] = [];
    const deadline = performance.now() + 5000;
    for (let n = 0; performance.now() < deadline; n++) {
      client.send({ type: 'generate', id: n, prompt: 'a red circle', steps: 2 });
      const [frame] = (await client.untilSettled(n)).slice(-1) as FrameMessage[];
      assert.equal(frame.type, 'frame');
      totals.push(frame.timings.total);
      await new Promise((r) => setTimeout(r, 250));
    }
    clearInterval(flood);
    assert.ok(Math.max(...totals) < 2000, `other session's frames took at most ${Math.max(...totals).toFixed(0)} ms`);
    assert.equal(await metric(server, /^realtime_slow_reader_closes_total /), 1);
    socket.resume();
    assert.equal(await closed, CloseCode.SlowReader);
    await client.close();
  });

  test('beyond --max-sessions the upgrade is refused with 503 and Retry-After', async () => {
    const open = await Promise.all([1, 2, 3].map(() => TestClient.connect(server.wsUrl)));
    const refused = new WebSocket(server.wsUrl);
    const response = await new Promise<{ status: number; retryAfter: string | undefined }>((resolve, reject) => {
      refused.on('unexpected-response', (_req, res) => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'] }));
      refused.on('open', () => reject(new Error('a fourth session was admitted')));
    });
    assert.deepEqual(response, { status: 503, retryAfter: '5' });
    await open[0].client.close();
    // A session that leaves makes room again.
    const again = await TestClient.connect(server.wsUrl);
    await Promise.all([again.client.close(), open[1].client.close(), open[2].client.close()]);
  });

  test('more generate messages than the rate limit get rate_limited; the session continues', async () => {
    const { client, hello } = await TestClient.connect(server.wsUrl);
    assert.equal(hello.limits.maxRequestsPerSecond, 5);
    for (let i = 0; i < 8; i++) client.send({ type: 'generate', id: i, prompt: 'x', steps: 1, previews: false });
    const outcomes = await Promise.all(Array.from({ length: 8 }, (_, i) => client.untilSettled(i).then((m) => m.at(-1)!)));
    const limited = outcomes.filter((m) => m.type === 'error' && (m as ErrorMessage).code === ErrorCode.RateLimited);
    assert.equal(limited.length, 3, 'a burst of 5 passes, the rest are refused');
    await new Promise((r) => setTimeout(r, 1100));
    client.send({ type: 'generate', id: 'later', prompt: 'x', steps: 1 });
    assert.equal((await client.untilSettled('later')).at(-1)?.type, 'frame');
    await client.close();
  });

  test('an image-to-image frame nearly identical to the previous one is skipped', async () => {
    const { client } = await TestClient.connect(server.wsUrl);
    const still = await sharp({ create: { width: 256, height: 256, channels: 3, background: '#3060c0' } }).jpeg({ quality: 95 }).toBuffer();
    const moved = await sharp({ create: { width: 256, height: 256, channels: 3, background: '#c06030' } }).jpeg({ quality: 95 }).toBuffer();
    const request = { type: 'generate', prompt: 'a camera', steps: 2, strength: 0.5 } as const;
    client.send({ ...request, id: 'a', image: still });
    assert.equal((await client.untilSettled('a')).at(-1)?.type, 'frame');
    client.send({ ...request, id: 'b', image: still });
    const [skipped] = (await client.untilSettled('b')) as SkippedMessage[];
    assert.deepEqual([skipped.type, skipped.reason, skipped.sameAs], ['skipped', 'similar_frame', 'a']);
    client.send({ ...request, id: 'c', image: moved });
    assert.equal((await client.untilSettled('c')).at(-1)?.type, 'frame');
    client.send({ ...request, id: 'd', image: still, prompt: 'another prompt' });
    assert.equal((await client.untilSettled('d')).at(-1)?.type, 'frame', 'new settings are never skipped');
    assert.equal(await metric(server, /^realtime_skipped_frames_total /), 1);
    await client.close();
  });

  test('/metrics exposes the documented series', async () => {
    const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
    for (const name of [
      'realtime_sessions', 'realtime_pending_requests', 'realtime_unet_batch_size_bucket', 'realtime_unet_call_seconds_bucket',
      'realtime_time_to_first_preview_seconds_bucket', 'realtime_frame_latency_seconds_bucket', 'realtime_dropped_previews_total',
      'realtime_superseded_total', 'realtime_skipped_frames_total', 'realtime_errors_total{code="rate_limited"}',
      'realtime_refused_connections_total{reason="full"}', 'nodejs_eventloop_lag_seconds',
    ]) {
      assert.ok(text.includes(name), `missing ${name}`);
    }
  });
});
