// The pipeline runs every signature variant real exports come in: int32/int64 token ids, int64 or
// float-scalar timesteps, float16 I/O, latent_sample or latent_parameters, with or without a
// preview decoder or VAE encoder, Euler ancestral or LCM (with timestep_cond). Each variant is a
// small model generated into a temp folder and loaded through the server's own loader.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ErrorCode, type ErrorMessage, type FrameMessage, type PreviewMessage } from '../shared/protocol.js';
import { DiffusionPipeline, type GenerateRequest } from '../server/pipeline/pipeline.js';
import { writeTinyModel, type TinyModelOptions } from '../scripts/tiny-model.js';
import { startServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';

const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function makeModel(options: TinyModelOptions): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tiny-sd-'));
  dirs.push(dir);
  await writeTinyModel(dir, options);
  return dir;
}

const settings = { executionProviders: ['cpu'], threads: 2 };

/** A gray-with-a-square image as RGB bytes. */
function squareImage(size: number): Uint8Array {
  const rgb = new Uint8Array(size * size * 3).fill(200);
  for (let y = size / 4; y < (3 * size) / 4; y++) {
    for (let x = size / 4; x < (3 * size) / 4; x++) rgb.set([30, 60, 220], (y * size + x) * 3);
  }
  return rgb;
}

const variants: [string, TinyModelOptions][] = [
  ['int64 input_ids, int64 timesteps', { inputIdsType: 'int64' }],
  ['float scalar timestep', { timestep: 'float-scalar' }],
  ['float16 I/O with a float16 scalar timestep', { dtype: 'float16', timestep: 'float-scalar' }],
  ['latent_parameters VAE encoder', { vaeEncoderOutput: 'latent_parameters' }],
  ['no preview decoder: linear projection previews', { previewDecoder: false }],
  ['no VAE encoder: text-to-image only', { vaeEncoder: false }],
  ['LCM scheduler with timestep_cond', { scheduler: 'lcm', timestepCond: true }],
  ['SD 1.5 style padding with <|endoftext|>', { padToken: '<|endoftext|>' }],
];

describe('signature variants run through the pipeline', () => {
  for (const [name, options] of variants) {
    test(name, async () => {
      const pipeline = await DiffusionPipeline.load(await makeModel(options), 'cpu', settings);
      const info = pipeline.info;
      assert.equal(info.dtype, options.dtype ?? 'float32');
      assert.equal(info.previews, options.previewDecoder === false ? 'projection' : 'decoder');
      assert.equal(info.img2img, options.vaeEncoder !== false);
      assert.equal(info.scheduler, options.scheduler ?? 'euler_ancestral');

      const request: GenerateRequest = { prompt: 'a red circle at the top', steps: 2, strength: 1, seed: 5, width: 128, height: 64, previews: true };
      const previews: { step: number; width: number }[] = [];
      const a = await pipeline.generate(request, { onPreview: (step, _n, image) => previews.push({ step, width: image.width }) });
      // No preview of the last step: its image is the result.
      assert.deepEqual(previews.map((p) => p.step), [1]);
      // Projection previews come at latent resolution; the server scales them up when encoding.
      assert.equal(previews[0].width, options.previewDecoder === false ? 16 : 128);
      assert.deepEqual([a.image.width, a.image.height, a.image.rgb.length], [128, 64, 128 * 64 * 3]);
      const b = await pipeline.generate(request, {});
      assert.deepEqual(a.image.rgb, b.image.rgb, 'same seed, same pixels');
      const other = await pipeline.generate({ ...request, prompt: 'a green square on the left' }, {});
      assert.notDeepEqual(a.image.rgb, other.image.rgb, 'the prompt changes the image');
      const spread = Math.max(...a.image.rgb) - Math.min(...a.image.rgb);
      assert.ok(spread > 20, `the image is not flat (spread ${spread})`);

      if (info.img2img) {
        const steps = info.scheduler === 'lcm' ? 2 : 4;
        // At the model's own size: at 64x64 the latent is 8x8 and the square only 4x4 latent pixels.
        const size = 256;
        const img = await pipeline.generate({ ...request, width: size, height: size, steps, strength: 0.5, image: squareImage(size) }, {});
        assert.equal(img.image.rgb.length, size * size * 3);
        assert.ok(img.timings.vaeEncoder > 0);
        // The drawing's blue square should still be bluer than its gray surround.
        const blueness = (x: number, y: number) => img.image.rgb[(y * size + x) * 3 + 2] - img.image.rgb[(y * size + x) * 3];
        assert.ok(blueness(128, 128) > blueness(16, 16) + 50, 'image-to-image keeps the layout of the input');
      }
    });
  }
});

test('the server runs a float16 model without VAE encoder or preview decoder via --model', async () => {
  const dir = await makeModel({ dtype: 'float16', vaeEncoder: false, previewDecoder: false, inputIdsType: 'int64' });
  const server = await startServerProcess(['--model', dir]);
  try {
    const { client, hello } = await TestClient.connect(server.wsUrl);
    assert.equal(hello.model.dtype, 'float16');
    assert.equal(hello.model.img2img, false);
    assert.equal(hello.model.previews, 'projection');
    assert.deepEqual([hello.model.finalDecoders, hello.model.finalDecoder], [['vae'], 'vae']);
    client.send({ type: 'generate', id: 'p', prompt: 'blue sky', steps: 2, width: 192, height: 128 });
    const replies = await client.untilSettled('p');
    const preview = replies[0] as PreviewMessage;
    assert.deepEqual([preview.type, preview.width, preview.height], ['preview', 192, 128]);
    assert.equal((replies.at(-1) as FrameMessage).type, 'frame');
    client.send({ type: 'generate', id: 'i', prompt: 'x', image: new Uint8Array([1, 2, 3]) });
    const [error] = (await client.untilSettled('i')) as ErrorMessage[];
    assert.equal(error.code, ErrorCode.Img2ImgUnsupported);
    client.send({ type: 'generate', id: 'd', prompt: 'x', finalDecoder: 'preview' });
    const [refused] = (await client.untilSettled('d')) as ErrorMessage[];
    assert.equal(refused.code, ErrorCode.FinalDecoderUnavailable);
    await client.close();
  } finally {
    await server.stop();
  }
});

test('a folder that is not a model fails to start with a clear message', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'not-a-model-'));
  dirs.push(dir);
  await assert.rejects(startServerProcess(['--model', dir]), /not a diffusers\/optimum ONNX model folder/);
});
