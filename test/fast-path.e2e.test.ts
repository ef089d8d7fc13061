// The few-step fast path through the real server: the final decoder chosen by --final-decoder and
// per request, listed in hello and /v1/models, reported in each frame with the decode it ran; and
// one decode per image (--last-preview restores the preview of the last step); and stream batching
// (--stream-batch) keeping latest-wins, input order and one final reply per request.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode, type ErrorMessage, type FrameMessage, type ServerMessage } from '../shared/protocol.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';
import { STREAM_BATCH_MAX_PAIR_COST } from '../server/realtime/model-host.js';

describe('--final-decoder preview', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess(['--final-decoder', 'preview']);
  });
  after(() => server?.stop());

  test('hello and /v1/models list both decoders and the server default', async () => {
    const body = (await (await fetch(`${server.httpUrl}/v1/models`)).json()) as { models: Record<string, unknown>[] };
    assert.deepEqual([body.models[0].finalDecoders, body.models[0].finalDecoder], [['vae', 'preview'], 'preview']);
    const { client, hello } = await TestClient.connect(server.wsUrl);
    assert.deepEqual([hello.model.finalDecoders, hello.model.finalDecoder], [['vae', 'preview'], 'preview']);
    await client.close();
  });

  test('frames come from the default decoder or the one asked for, and say which', async () => {
    const { client } = await TestClient.connect(server.wsUrl);
    const request = { type: 'generate', prompt: 'a red circle', steps: 2, seed: 4, format: 'png' } as const;
    client.send({ ...request, id: 'default' });
    client.send({ ...request, id: 'vae', finalDecoder: 'vae' });
    const fast = (await client.untilSettled('default')).at(-1) as FrameMessage;
    const full = (await client.untilSettled('vae')).at(-1) as FrameMessage;
    assert.deepEqual([fast.type, fast.decoder, full.type, full.decoder], ['frame', 'preview', 'frame', 'vae'], client.summary());
    assert.ok(fast.timings.decode > 0 && full.timings.decode > 0);
    // One preview (step 1) and the frame each.
    assert.deepEqual([fast.timings.decodes, full.timings.decodes], [2, 2]);
    assert.ok(!Buffer.from(fast.image).equals(Buffer.from(full.image)), 'different decoders, different pixels');

    client.send({ ...request, id: 'bad', finalDecoder: 'taesd' });
    const [error] = (await client.untilSettled('bad')) as ErrorMessage[];
    assert.deepEqual([error.type, error.code, error.id], ['error', ErrorCode.InvalidFinalDecoder, 'bad']);
    await client.close();
  });

  test('a 1-step request with previews on runs one decode: the frame, no preview', async () => {
    const { client } = await TestClient.connect(server.wsUrl);
    client.send({ type: 'generate', id: 'one', prompt: 'a blue square', steps: 1, previews: true });
    const replies = await client.untilSettled('one');
    assert.deepEqual(replies.map((m) => m.type), ['frame'], client.summary());
    const frame = replies[0] as FrameMessage;
    assert.deepEqual([frame.decoder, frame.timings.decodes, frame.timings.previews], ['preview', 1, 0]);
    await client.close();
  });
});

describe('--last-preview', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess(['--last-preview']);
  });
  after(() => server?.stop());

  test('previews every step again, the last one decoded besides the frame', async () => {
    const { client } = await TestClient.connect(server.wsUrl);
    client.send({ type: 'generate', id: 'one', prompt: 'a blue square', steps: 1 });
    const replies = await client.untilSettled('one');
    assert.deepEqual(replies.map((m) => m.type), ['preview', 'frame'], client.summary());
    const frame = replies[1] as FrameMessage;
    assert.deepEqual([frame.decoder, frame.timings.decodes], ['vae', 2]);
    assert.ok(frame.timings.previews > 0);
    await client.close();
  });
});

/** Thirty inputs 8 ms apart on one session, checked for latest-wins and order; the frames. */
async function fastStream(server: ServerProcess): Promise<FrameMessage[]> {
  const { client } = await TestClient.connect(server.wsUrl);
  const count = 30;
  for (let id = 0; id < count; id++) {
    client.send({ type: 'generate', id, prompt: 'a red circle', steps: 2, seed: id });
    await new Promise((resolve) => setTimeout(resolve, 8));
  }
  await client.untilSettled(count - 1, 60_000);
  const final = (m: ServerMessage) => 'id' in m && ['frame', 'superseded', 'skipped', 'cancelled', 'error'].includes(m.type);
  const finals = client.messages.filter(final) as (ServerMessage & { id: number })[];
  const ids = finals.map((m) => m.id);
  assert.deepEqual([...ids].sort((a, b) => a - b), Array.from({ length: count }, (_, i) => i), 'exactly one final reply per id');
  assert.ok(finals.every((m) => m.type === 'frame' || m.type === 'superseded'), client.summary());
  const frames = finals.filter((m) => m.type === 'frame') as unknown as FrameMessage[];
  const frameIds = frames.map((f) => f.id as number);
  assert.deepEqual(frameIds, [...frameIds].sort((a, b) => a - b), 'frames in input order');
  assert.equal(frameIds.at(-1), count - 1, 'the newest input is rendered');
  // Nothing about a request after its final reply (no preview of a superseded one, no second frame).
  for (const m of finals) {
    const after = client.messages.slice(client.messages.indexOf(m) + 1);
    assert.ok(!after.some((x) => 'id' in x && x.id === m.id), `a message about ${m.id} after its final reply`);
  }
  await client.close();
  return frames;
}

/** Whether a step advanced two of the session's frames: one session alone pairs only with itself. */
const paired = (frames: FrameMessage[]) => frames.some((f) => f.timings.batchSizes.some((b) => b === 2));
const batchSizes = (frames: FrameMessage[]) => frames.map((f) => f.timings.batchSizes.join('+')).join(' ');

describe('--stream-batch on', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess(['--stream-batch', 'on', '--skip-threshold', '0']);
  });
  after(() => server?.stop());

  test('a fast stream: a frame for every input not superseded, in order, one final reply each', async () => {
    const frames = await fastStream(server);
    assert.ok(paired(frames), `some step advanced two of this session's frames: ${batchSizes(frames)}`);
  });
});

describe('--stream-batch auto (the default)', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess(['--skip-threshold', '0'], { env: { STREAM_BATCH: 'auto' } });
  });
  after(() => server?.stop());

  test("warm-up measures what pairing costs here, and sessions stream-batch exactly when it is cheap", async () => {
    const ready = server.logs.find((entry) => entry.msg === 'model ready')!;
    const pairCost = ready.pairCost as number;
    assert.ok(pairCost > 0.5 && pairCost < 4, `a step of two over a step of one: ${pairCost}`);
    assert.equal(ready.streamBatch, pairCost <= STREAM_BATCH_MAX_PAIR_COST, JSON.stringify(ready));
    const frames = await fastStream(server);
    assert.equal(paired(frames), ready.streamBatch, `pair cost ${pairCost}: ${batchSizes(frames)}`);
  });

  test('without batching (--max-batch 1) nothing is measured and nothing is paired', async () => {
    const single = await startServerProcess(['--max-batch', '1'], { env: { STREAM_BATCH: 'auto' } });
    try {
      const ready = single.logs.find((entry) => entry.msg === 'model ready')!;
      assert.deepEqual([ready.streamBatch, 'pairCost' in ready], [false, false]);
    } finally {
      await single.stop();
    }
  });
});
