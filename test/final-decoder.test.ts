// The final frame's decoder: the full VAE decoder or the model's preview decoder, chosen per request
// (`finalDecoder`) with the server's --final-decoder as the default; validated with stable codes;
// and in the pipeline, the chosen decoder is the one that runs and is reported.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode, type ModelInfo } from '../shared/protocol.js';
import { ConfigError, DEFAULT_MODEL_DIR, loadConfig } from '../server/config.js';
import { DiffusionPipeline, type GenerateRequest } from '../server/pipeline/pipeline.js';
import { validateMessage, type ValidGenerate } from '../server/realtime/validate.js';

const limits = loadConfig([], {}).limits;
const model: ModelInfo = {
  name: 'm', width: 256, height: 256, sizeMultiple: 64, minSteps: 1, maxSteps: 8, defaultSteps: 2, scheduler: 'euler_ancestral',
  img2img: true, previews: 'decoder', dtype: 'float32', device: 'cpu', finalDecoders: ['vae', 'preview'], finalDecoder: 'vae',
};

function generate(fields: Record<string, unknown>, info: ModelInfo = model) {
  return validateMessage({ type: 'generate', id: 1, prompt: 'a red circle', ...fields }, limits, info);
}

describe('finalDecoder in generate', () => {
  test('defaults to the model default, which the server sets', () => {
    const a = generate({});
    assert.ok(a.ok);
    assert.equal((a.message as ValidGenerate).finalDecoder, 'vae');
    const b = generate({}, { ...model, finalDecoder: 'preview' });
    assert.ok(b.ok);
    assert.equal((b.message as ValidGenerate).finalDecoder, 'preview');
  });

  test('either value may be asked for explicitly, whatever the default', () => {
    for (const decoder of ['vae', 'preview'] as const) {
      for (const fallback of ['vae', 'preview'] as const) {
        const r = generate({ finalDecoder: decoder }, { ...model, finalDecoder: fallback });
        assert.ok(r.ok);
        assert.equal((r.message as ValidGenerate).finalDecoder, decoder);
      }
    }
  });

  test('anything else is invalid_final_decoder, with the request id', () => {
    for (const bad of ['taesd', 'VAE', '', 1, true, ['vae'], null]) {
      const r = generate({ finalDecoder: bad });
      if (bad === null) {
        // msgpack nil reads as absent, as for every other optional field.
        assert.ok(r.ok);
        continue;
      }
      assert.ok(!r.ok, JSON.stringify(bad));
      assert.equal(r.code, ErrorCode.InvalidFinalDecoder);
      assert.equal(r.id, 1);
    }
  });

  test('preview on a model without a preview decoder is final_decoder_unavailable', () => {
    const projection: ModelInfo = { ...model, previews: 'projection', finalDecoders: ['vae'] };
    const r = generate({ finalDecoder: 'preview' }, projection);
    assert.ok(!r.ok);
    assert.equal(r.code, ErrorCode.FinalDecoderUnavailable);
    assert.match(r.message, /offers vae/);
    assert.ok(generate({}, projection).ok, 'requests that name no decoder still run');
  });
});

describe('--final-decoder', () => {
  test('vae by default; preview by flag or FINAL_DECODER; anything else refused', () => {
    assert.equal(loadConfig([], {}).finalDecoder, 'vae');
    assert.equal(loadConfig(['--final-decoder', 'preview'], {}).finalDecoder, 'preview');
    assert.equal(loadConfig([], { FINAL_DECODER: 'preview' }).finalDecoder, 'preview');
    assert.equal(loadConfig(['--final-decoder=vae'], { FINAL_DECODER: 'preview' }).finalDecoder, 'vae');
    assert.throws(() => loadConfig(['--final-decoder', 'taesd'], {}), (err: Error) => err instanceof ConfigError && /vae, preview/.test(err.message));
  });
});

describe('the pipeline decodes with the chosen decoder', () => {
  let pipeline: DiffusionPipeline;
  before(async () => {
    pipeline = await DiffusionPipeline.load(DEFAULT_MODEL_DIR, 'cpu', { executionProviders: ['cpu'], threads: 2 });
  });

  test('the model lists both decoders', () => {
    assert.deepEqual(pipeline.info.finalDecoders, ['vae', 'preview']);
  });

  test('vae and preview give the same picture by different decoders, each reported as run', async () => {
    const request: GenerateRequest = { prompt: 'a big red circle in the center on a white background', steps: 2, strength: 1, seed: 3, width: 256, height: 256, previews: false };
    const vae = await pipeline.generate({ ...request, finalDecoder: 'vae' }, {});
    const preview = await pipeline.generate({ ...request, finalDecoder: 'preview' }, {});
    const implicit = await pipeline.generate(request, {});
    assert.equal(vae.timings.decoder, 'vae');
    assert.equal(preview.timings.decoder, 'preview');
    assert.equal(implicit.timings.decoder, 'vae');
    assert.deepEqual(implicit.image.rgb, vae.image.rgb);
    assert.notDeepEqual(preview.image.rgb, vae.image.rgb, 'another decoder ran');
    assert.deepEqual([preview.image.width, preview.image.height], [256, 256]);
    // The same latent through two decoders trained to agree: close, not equal.
    let se = 0;
    for (let i = 0; i < vae.image.rgb.length; i++) se += (vae.image.rgb[i] - preview.image.rgb[i]) ** 2;
    const psnr = 10 * Math.log10((255 * 255) / (se / vae.image.rgb.length));
    assert.ok(psnr > 18, `PSNR of the preview-decoded frame against the VAE frame: ${psnr.toFixed(1)} dB`);
  });

  test('one decode call serves a batch that mixes both choices, each image by its own decoder', async () => {
    const base: GenerateRequest = { prompt: 'a blue square', steps: 1, strength: 1, seed: 9, width: 256, height: 256, previews: false };
    const states = [pipeline.createState({ ...base, finalDecoder: 'preview' }), pipeline.createState({ ...base, finalDecoder: 'vae' })];
    await pipeline.encodeText(states);
    await pipeline.prepareLatents(states);
    await pipeline.step(states);
    const [fromPreview, fromVae] = await pipeline.decode(states);
    assert.deepEqual(states.map((s) => s.timings.decoder), ['preview', 'vae']);
    assert.deepEqual(states.map((s) => s.timings.decodes), [1, 1]);
    const [alonePreview] = await pipeline.decode([states[0]]);
    const [aloneVae] = await pipeline.decode([states[1]]);
    assert.deepEqual(fromPreview.rgb, alonePreview.rgb);
    assert.deepEqual(fromVae.rgb, aloneVae.rgb);
    assert.notDeepEqual(fromPreview.rgb, fromVae.rgb);
  });
});
