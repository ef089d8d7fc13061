// End to end against the real server process on port 0 with the embedded default model.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { ErrorCode, PROTOCOL_VERSION, type FrameMessage, type PreviewMessage } from '../shared/protocol.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';

let server: ServerProcess;
before(async () => {
  server = await startServerProcess();
});
after(async () => {
  await server?.stop();
});

async function connect() {
  return TestClient.connect(server.wsUrl);
}

async function sizeOf(bytes: Uint8Array) {
  const meta = await sharp(bytes).metadata();
  return { width: meta.width, height: meta.height, format: meta.format };
}

/** A rough drawing: a red disc on a light background, as a user might sketch. */
async function drawing(width: number, height: number): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
    <rect width="100%" height="100%" fill="#eeeeee"/><circle cx="${width / 3}" cy="${height / 2}" r="${width / 5}" fill="#d02020"/></svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

describe('HTTP endpoints', () => {
  test('healthz, readyz and v1/models describe the loaded model', async () => {
    assert.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200);
    assert.equal((await fetch(`${server.httpUrl}/readyz`)).status, 200);
    const body = (await (await fetch(`${server.httpUrl}/v1/models`)).json()) as Record<string, any>;
    assert.equal(body.protocol, PROTOCOL_VERSION);
    assert.equal(body.models.length, 1);
    const model = body.models[0];
    assert.equal(model.width, 256);
    assert.equal(model.img2img, true);
    assert.equal(model.previews, 'decoder');
    assert.deepEqual([model.finalDecoders, model.finalDecoder], [['vae', 'preview'], 'vae']);
    assert.ok(model.minSteps >= 1 && model.maxSteps >= 4);
    assert.equal((await fetch(`${server.httpUrl}/nope`)).status, 404);
  });
});

describe('generation over the realtime socket', () => {
  test('hello carries the protocol version, the model and the limits', async () => {
    const { client, hello } = await connect();
    assert.equal(hello.protocol, PROTOCOL_VERSION);
    assert.equal(hello.model.scheduler, 'euler_ancestral');
    assert.ok(hello.limits.maxImageBytes > 0 && hello.limits.maxPromptChars > 0);
    await client.close();
  });

  test('text-to-image: a preview per step but the last, then a frame of the requested size', async () => {
    const { client } = await connect();
    client.send({ type: 'generate', id: 't2i', prompt: 'a red circle on a blue background', steps: 3, width: 320, height: 192, seed: 7 });
    const replies = await client.untilSettled('t2i');
    const previews = replies.filter((m) => m.type === 'preview') as PreviewMessage[];
    const frame = replies.at(-1) as FrameMessage;
    // The last step's image is the frame itself.
    assert.deepEqual(previews.map((p) => p.step), [1, 2]);
    assert.ok(previews.every((p) => p.steps === 3));
    assert.equal(frame.type, 'frame', client.summary());
    assert.equal(frame.seed, 7);
    assert.deepEqual(await sizeOf(frame.image), { width: 320, height: 192, format: 'jpeg' });
    assert.deepEqual(await sizeOf(previews[0].image), { width: 320, height: 192, format: 'jpeg' });
    assert.equal(frame.timings.steps.length, 3);
    assert.equal(frame.decoder, 'vae');
    assert.equal(frame.timings.decodes, 3, 'two previews and the frame');
    assert.ok(frame.timings.total >= frame.timings.steps[0]);
    await client.close();
  });

  test('final frame formats: png and webp; previews can be turned off', async () => {
    const { client } = await connect();
    client.send({ type: 'generate', id: 'png', prompt: 'green square', steps: 2, format: 'png', previews: false });
    client.send({ type: 'generate', id: 'webp', prompt: 'green square', steps: 1, format: 'webp' });
    const png = await client.untilSettled('png');
    assert.deepEqual(png.map((m) => m.type), ['frame']);
    assert.equal((await sizeOf((png[0] as FrameMessage).image)).format, 'png');
    const webp = await client.untilSettled('webp');
    // One step: its image is the frame, decoded once.
    assert.deepEqual(webp.map((m) => m.type), ['frame']);
    assert.equal((webp[0] as FrameMessage).timings.decodes, 1);
    assert.equal((await sizeOf((webp[0] as FrameMessage).image)).format, 'webp');
    await client.close();
  });

  test('image-to-image: steps x strength previews, a frame that keeps the drawing', async () => {
    const { client } = await connect();
    const image = await drawing(256, 256);
    client.send({ type: 'generate', id: 'i2i', prompt: 'a red circle', image, steps: 4, strength: 0.5, seed: 3, format: 'png' });
    const replies = await client.untilSettled('i2i');
    assert.deepEqual(replies.map((m) => m.type), ['preview', 'frame'], client.summary());
    const frame = replies[1] as FrameMessage;
    assert.deepEqual(await sizeOf(frame.image), { width: 256, height: 256, format: 'png' });
    assert.ok(frame.timings.vaeEncoder > 0);
    await client.close();
  });

  test('an input image of another size is resized to the requested size', async () => {
    const { client } = await connect();
    const image = await sharp(await drawing(300, 200)).jpeg().toBuffer();
    client.send({ type: 'generate', id: 'resize', prompt: '', image, steps: 2, strength: 1, width: 128, height: 128 });
    const replies = await client.untilSettled('resize');
    const frame = replies.at(-1) as FrameMessage;
    assert.equal(frame.type, 'frame', client.summary());
    assert.deepEqual(await sizeOf(frame.image), { width: 128, height: 128, format: 'jpeg' });
    await client.close();
  });

  test('same seed and input give the same frame; another seed gives another', async () => {
    const { client } = await connect();
    const request = { type: 'generate', prompt: 'a yellow star', steps: 2, format: 'png', previews: false } as const;
    client.send({ ...request, id: 'a', seed: 42 });
    const a = (await client.untilSettled('a'))[0] as FrameMessage;
    client.send({ ...request, id: 'b', seed: 42 });
    const b = (await client.untilSettled('b'))[0] as FrameMessage;
    client.send({ ...request, id: 'c', seed: 43 });
    const c = (await client.untilSettled('c'))[0] as FrameMessage;
    const pixels = async (f: FrameMessage) => sharp(f.image).raw().toBuffer();
    assert.ok((await pixels(a)).equals(await pixels(b)), 'same seed, same pixels');
    assert.ok(!(await pixels(a)).equals(await pixels(c)), 'another seed, other pixels');
    await client.close();
  });

  test('latest wins: a newer generate supersedes the pending one; the running and newest complete', async () => {
    const { client } = await connect();
    const request = { type: 'generate', prompt: 'a blue heart', steps: 4, width: 512, height: 512 } as const;
    client.send({ ...request, id: 1 });
    client.send({ ...request, id: 2 });
    client.send({ ...request, id: 3 });
    assert.deepEqual((await client.untilSettled(2)).map((m) => m.type), ['superseded']);
    assert.equal((await client.untilSettled(1)).at(-1)?.type, 'frame');
    assert.equal((await client.untilSettled(3)).at(-1)?.type, 'frame');
    await client.close();
  });

  test('cancel stops a running request and removes a pending one', async () => {
    const { client } = await connect();
    const request = { type: 'generate', prompt: 'a tree', steps: 8, width: 1024, height: 1024 } as const;
    client.send({ ...request, id: 'run' });
    // Cancel once it is surely running: on a fast model it could otherwise finish first.
    await client.next((m) => m.type === 'preview' && m.id === 'run');
    client.send({ ...request, id: 'wait' });
    client.send({ type: 'cancel', id: 'wait' });
    client.send({ type: 'cancel', id: 'run' });
    assert.deepEqual((await client.untilSettled('wait')).map((m) => m.type), ['cancelled']);
    const run = await client.untilSettled('run');
    assert.equal(run.at(-1)?.type, 'cancelled', client.summary());
    assert.ok(run.filter((m) => m.type === 'preview').length < 8);
    client.send({ type: 'cancel', id: 'gone' });
    const unknown = await client.untilSettled('gone');
    assert.equal(unknown[0].type === 'error' && unknown[0].code, ErrorCode.UnknownRequest);
    await client.close();
  });

  test('the event loop keeps serving HTTP while a long generation runs', async () => {
    const { client } = await connect();
    client.send({ type: 'generate', id: 'long', prompt: 'a house', steps: 8, width: 1024, height: 1024 });
    await client.next((m) => m.type === 'preview' && m.id === 'long');
    let answered = 0;
    let slowest = 0;
    let settled = false;
    const done = client.untilSettled('long').then(() => (settled = true));
    while (!settled) {
      const t0 = performance.now();
      const res = await fetch(`${server.httpUrl}/healthz`);
      assert.equal(res.status, 200);
      slowest = Math.max(slowest, performance.now() - t0);
      answered++;
    }
    await done;
    // A blocked event loop would answer nothing until the frame was done.
    assert.ok(answered >= 5, `healthz answered ${answered} times during the generation`);
    assert.ok(slowest < 1000, `slowest healthz took ${slowest.toFixed(0)} ms`);
    await client.close();
  });
});
