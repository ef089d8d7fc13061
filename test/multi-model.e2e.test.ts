// Several model folders in one server: the embedded model (--model) and a tiny second one that a
// fal app id names (--app ID=DIR), each in its own inference process. /v1/models lists both, the
// native protocol picks one with ?model=, fal's routes run each app on its own model.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { writeTinyModel } from '../scripts/tiny-model.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';
import { waitFor } from './helpers/fal-server.js';

let server: ServerProcess;
let tinyDir: string;
const TINY_APP = 'acme/tiny-shapes';

before(async () => {
  tinyDir = path.join(await mkdtemp(path.join(os.tmpdir(), 'multi-model-')), 'tiny-second');
  await writeTinyModel(tinyDir, { seed: 5, sampleSize: 16 });
  server = await startServerProcess(['--app', 'fal-ai/fast-turbo-diffusion=' + path.resolve('models/default'), '--app', `${TINY_APP}=${tinyDir}`]);
  // The first `model ready` is one model's: the server is ready once both are.
  await waitFor(async () => ((await fetch(`${server.httpUrl}/readyz`)).status === 200 ? true : undefined), 60_000, 'readyz');
});
after(async () => {
  await server?.stop();
  await rm(path.dirname(tinyDir), { recursive: true, force: true });
});

describe('two models, two inference processes', () => {
  test('/v1/models lists both, the default first; each has its own inference process', async () => {
    const body = (await (await fetch(`${server.httpUrl}/v1/models`)).json()) as { models: { name: string; width: number }[] };
    assert.deepEqual(body.models.map((m) => m.name), ['shapes-sd', 'tiny-sd']);
    const started = server.logs.filter((l) => l.msg === 'inference process started');
    assert.equal(new Set(started.map((l) => l.enginePid)).size, 2);
  });

  test('native protocol: ?model= picks the model, an unknown one is refused with the served list', async () => {
    const { client, hello } = await TestClient.connect(`${server.wsUrl}?model=tiny-sd`);
    assert.equal(hello.model.name, 'tiny-sd');
    client.send({ type: 'generate', id: 1, prompt: 'a red circle', steps: 2 });
    const frame = await client.next((m) => m.type === 'frame');
    assert.equal((await sharp((frame as { image: Uint8Array }).image).metadata()).width, hello.model.width);
    await client.close();
    const { hello: byDefault, client: other } = await TestClient.connect(server.wsUrl);
    assert.equal(byDefault.model.name, 'shapes-sd');
    await other.close();
    await assert.rejects(TestClient.connect(`${server.wsUrl}?model=nope`), /404/);
  });

  test('fal routes run each app on its model', async () => {
    const run = async (app: string) => {
      const response = await fetch(`${server.httpUrl}/${app}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'a blue square', num_inference_steps: 2, sync_mode: true }) });
      assert.equal(response.status, 200);
      const output = (await response.json()) as { images: { url: string; width: number }[] };
      return output.images[0];
    };
    const tiny = await run(TINY_APP);
    const main = await run('fal-ai/fast-turbo-diffusion');
    const models = ((await (await fetch(`${server.httpUrl}/v1/models`)).json()) as { models: { name: string; width: number }[] }).models;
    assert.equal(tiny.width, models.find((m) => m.name === 'tiny-sd')!.width);
    assert.equal(main.width, 256);
    assert.notEqual(tiny.width, main.width, 'the tiny model draws at its own size');
  });
});
