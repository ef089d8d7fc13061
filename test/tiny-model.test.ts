import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, readdir, access } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { writeTinyModel, TINY_MODEL_WORDS, type TinyModelOptions } from '../scripts/tiny-model.js';
import { fromFloat16Array, toFloat16Array } from '../scripts/onnx/graph-builder.js';

type Session = Awaited<ReturnType<typeof ort.InferenceSession.create>>;
type Tensor = InstanceType<typeof ort.Tensor>;

const VARIANTS: Array<[string, TinyModelOptions]> = [
  ['default', {}],
  [
    'fp16 / int64 ids / scalar timestep / latent_parameters / lcm + timestep_cond',
    {
      seed: 7,
      dtype: 'float16',
      inputIdsType: 'int64',
      timestep: 'float-scalar',
      vaeEncoderOutput: 'latent_parameters',
      scheduler: 'lcm',
      timestepCond: true,
      hiddenSize: 32,
      sampleSize: 64,
      padToken: '<|endoftext|>',
    },
  ],
  ['fp32 scalar timestep, no encoder, no preview', { timestep: 'float-scalar', vaeEncoder: false, previewDecoder: false }],
  ['fp16 with int64 timestep', { dtype: 'float16' }],
];

// ---------------------------------------------------------------------------------------------
// helpers

let rngState = 42;
function rand(): number {
  rngState = (Math.imul(rngState, 1103515245) + 12345) >>> 0;
  return (rngState + 0.5) / 4294967296;
}
function randn(n: number, std = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sqrt(-2 * Math.log(rand())) * Math.cos(2 * Math.PI * rand()) * std;
  return a;
}

const exists = (p: string) => access(p).then(() => true, () => false);

function floatTensor(type: string, data: Float32Array, dims: number[]): Tensor {
  return type === 'float16' ? new ort.Tensor('float16', toFloat16Array(data), dims) : new ort.Tensor('float32', data, dims);
}
function floats(t: Tensor): Float32Array {
  if (t.type === 'float16') return fromFloat16Array(t.data as Uint16Array);
  assert.equal(t.type, 'float32');
  return t.data as Float32Array;
}
function meta(s: Session, which: 'inputMetadata' | 'outputMetadata') {
  return s[which].map((m) => {
    assert.ok(m.isTensor);
    return { name: m.name, type: m.type, shape: [...m.shape] };
  });
}
function assertFiniteAndVaried(x: Float32Array, what: string): void {
  let mn = Infinity;
  let mx = -Infinity;
  for (const v of x) {
    assert.ok(Number.isFinite(v), `${what}: non-finite value`);
    mn = Math.min(mn, v);
    mx = Math.max(mx, v);
  }
  assert.ok(mx - mn > 1e-3, `${what}: constant output (${mn}..${mx})`);
}
function corr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i] / n;
    mb += b[i] / n;
  }
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}
function std(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m += a[i] / a.length;
  let v = 0;
  for (let i = 0; i < a.length; i++) v += (a[i] - m) ** 2 / a.length;
  return Math.sqrt(v);
}

/** Reference CLIP BPE (written independently of the generator). */
function bpe(word: string, ranks: Map<string, number>): string[] {
  let parts = [...word];
  parts[parts.length - 1] += '</w>';
  for (;;) {
    let best: [number, number] | undefined;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = ranks.get(parts[i] + ' ' + parts[i + 1]);
      if (r !== undefined && (!best || r < best[0])) best = [r, i];
    }
    if (!best) return parts;
    const [a, b] = [parts[best[1]], parts[best[1] + 1]];
    const next: string[] = [];
    for (let i = 0; i < parts.length; i++) {
      if (parts[i] === a && parts[i + 1] === b) next.push(a + b), i++;
      else next.push(parts[i]);
    }
    parts = next;
  }
}

const alphasCumprod = (() => {
  const out: number[] = [];
  let a = 1;
  const b0 = Math.sqrt(0.00085);
  const b1 = Math.sqrt(0.012);
  for (let i = 0; i < 1000; i++) out.push((a *= 1 - (b0 + ((b1 - b0) * i) / 999) ** 2));
  return out;
})();

// ---------------------------------------------------------------------------------------------

for (const [label, options] of VARIANTS) {
  describe(`tiny model: ${label}`, () => {
    let dir = '';
    const sessions: Record<string, Session> = {};
    const fp = options.dtype === 'float16' ? 'float16' : 'float32';
    const H = options.hiddenSize ?? 64;
    const B = 2;
    const h = 16; // latent size used for the runs (smaller than sampleSize: dims are dynamic)
    const w = 24;
    let vocab: Record<string, number> = {};

    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'tiny-model-'));
      const t0 = performance.now();
      await writeTinyModel(dir, options);
      const ms = performance.now() - t0;
      assert.ok(ms < 1000, `writeTinyModel took ${ms.toFixed(0)} ms`);
      vocab = JSON.parse(await readFile(path.join(dir, 'tokenizer/vocab.json'), 'utf8')) as Record<string, number>;
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    test('folder layout and JSON configs', async () => {
      const want = [
        'model_index.json',
        'scheduler/scheduler_config.json',
        'tokenizer/vocab.json',
        'tokenizer/merges.txt',
        'tokenizer/tokenizer_config.json',
        'tokenizer/special_tokens_map.json',
        'text_encoder/model.onnx',
        'unet/model.onnx',
        'unet/config.json',
        'vae_decoder/model.onnx',
        'vae_decoder/config.json',
      ];
      for (const f of want) assert.ok(await exists(path.join(dir, f)), f);
      assert.equal(await exists(path.join(dir, 'vae_encoder/model.onnx')), options.vaeEncoder !== false);
      assert.equal(await exists(path.join(dir, 'preview_decoder/model.onnx')), options.previewDecoder !== false);
      const read = async (f: string) => JSON.parse(await readFile(path.join(dir, f), 'utf8')) as Record<string, unknown>;
      const index = await read('model_index.json');
      assert.equal(index._class_name, 'StableDiffusionPipeline');
      assert.deepEqual(index.unet, ['diffusers', 'UNet2DConditionModel']);
      assert.deepEqual(index.vae, ['diffusers', 'AutoencoderKL']);
      const lcm = options.scheduler === 'lcm';
      assert.deepEqual(index.scheduler, ['diffusers', lcm ? 'LCMScheduler' : 'EulerAncestralDiscreteScheduler']);
      const sched = await read('scheduler/scheduler_config.json');
      assert.equal(sched.beta_schedule, 'scaled_linear');
      assert.equal(sched.timestep_spacing, lcm ? 'leading' : 'trailing');
      const unetCfg = await read('unet/config.json');
      assert.equal(unetCfg.sample_size, options.sampleSize ?? 32);
      assert.equal(unetCfg.cross_attention_dim, H);
      assert.equal(unetCfg.time_cond_proj_dim, options.timestepCond ? 256 : null);
      const vaeCfg = await read('vae_decoder/config.json');
      assert.equal(vaeCfg.scaling_factor, 0.18215);
      assert.equal(vaeCfg.sample_size, 8 * (options.sampleSize ?? 32));
      const tokCfg = await read('tokenizer/tokenizer_config.json');
      assert.equal(tokCfg.model_max_length, 77);
      assert.equal(tokCfg.pad_token, options.padToken ?? '!');
    });

    test('tokenizer files are CLIP BPE and every listed word is one token', async () => {
      const merges = (await readFile(path.join(dir, 'tokenizer/merges.txt'), 'utf8')).split('\n');
      assert.equal(merges[0], '#version: 0.2');
      const list = merges.slice(1).filter((l) => l.length > 0);
      const ranks = new Map(list.map((m, i) => [m, i] as [string, number]));
      const ids = Object.values(vocab).sort((a, b) => a - b);
      assert.deepEqual(ids, Array.from({ length: ids.length }, (_, i) => i), 'ids are 0..n-1');
      assert.equal(ids.length, 512 + list.length + 2);
      assert.equal(vocab['!'], 0);
      assert.equal(vocab['!</w>'], 256);
      assert.equal(vocab['Ā'], 188); // first non-printable byte (0x00) in bytes_to_unicode order
      assert.equal(vocab['<|startoftext|>'], ids.length - 2);
      assert.equal(vocab['<|endoftext|>'], ids.length - 1);
      list.forEach((m, i) => assert.equal(vocab[m.replace(' ', '')], 512 + i, `merge ${m}`));
      assert.ok(TINY_MODEL_WORDS.length >= 150);
      for (const word of TINY_MODEL_WORDS) assert.deepEqual(bpe(word, ranks), [word + '</w>'], word);
      assert.ok(bpe('zebra', ranks).length > 1); // unknown words still tokenize into pieces
    });

    test('loads with onnxruntime-node and has the exact signatures', async () => {
      const files: string[] = [];
      for (const sub of await readdir(dir)) if (await exists(path.join(dir, sub, 'model.onnx'))) files.push(sub);
      for (const sub of files) sessions[sub] = await ort.InferenceSession.create(path.join(dir, sub, 'model.onnx'));

      assert.deepEqual(meta(sessions.text_encoder, 'inputMetadata'), [
        { name: 'input_ids', type: options.inputIdsType ?? 'int32', shape: ['batch', 77] },
      ]);
      assert.deepEqual(meta(sessions.text_encoder, 'outputMetadata'), [
        { name: 'last_hidden_state', type: fp, shape: ['batch', 77, H] },
        { name: 'pooler_output', type: fp, shape: ['batch', H] },
      ]);
      const unetIn = [
        { name: 'sample', type: fp, shape: ['batch', 4, 'height', 'width'] },
        options.timestep === 'float-scalar'
          ? { name: 'timestep', type: fp, shape: [] }
          : { name: 'timestep', type: 'int64', shape: ['batch'] },
        { name: 'encoder_hidden_states', type: fp, shape: ['batch', 77, H] },
      ];
      if (options.timestepCond) unetIn.push({ name: 'timestep_cond', type: fp, shape: ['batch', 256] });
      assert.deepEqual(meta(sessions.unet, 'inputMetadata'), unetIn);
      assert.deepEqual(meta(sessions.unet, 'outputMetadata'), [{ name: 'out_sample', type: fp, shape: ['batch', 4, 'height', 'width'] }]);
      for (const dec of ['vae_decoder', 'preview_decoder']) {
        if (!sessions[dec]) continue;
        assert.deepEqual(meta(sessions[dec], 'inputMetadata'), [{ name: 'latent_sample', type: fp, shape: ['batch', 4, 'height', 'width'] }]);
        assert.deepEqual(meta(sessions[dec], 'outputMetadata'), [{ name: 'sample', type: fp, shape: ['batch', 3, 'image_height', 'image_width'] }]);
      }
      if (sessions.vae_encoder) {
        const params = options.vaeEncoderOutput === 'latent_parameters';
        assert.deepEqual(meta(sessions.vae_encoder, 'inputMetadata'), [{ name: 'sample', type: fp, shape: ['batch', 3, 'image_height', 'image_width'] }]);
        assert.deepEqual(meta(sessions.vae_encoder, 'outputMetadata'), [
          { name: params ? 'latent_parameters' : 'latent_sample', type: fp, shape: ['batch', params ? 8 : 4, 'height', 'width'] },
        ]);
      }
    });

    test('text encoder runs at batch 2 and depends on the token ids', async () => {
      const te = sessions.text_encoder;
      const bos = vocab['<|startoftext|>'];
      const eos = vocab['<|endoftext|>'];
      const pad = options.padToken === '<|endoftext|>' ? eos : 0;
      const prompt = (words: string[]) => {
        const ids = [bos, ...words.map((x) => vocab[x + '</w>']), eos];
        while (ids.length < 77) ids.push(pad);
        return ids;
      };
      const ids = [...prompt(['a', 'red', 'circle']), ...prompt(['a', 'blue', 'square'])];
      const t = options.inputIdsType === 'int64'
        ? new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [B, 77])
        : new ort.Tensor('int32', Int32Array.from(ids), [B, 77]);
      const out = await te.run({ input_ids: t });
      assert.deepEqual(out.last_hidden_state.dims, [B, 77, H]);
      assert.deepEqual(out.pooler_output.dims, [B, H]);
      const lhs = floats(out.last_hidden_state);
      const pooled = floats(out.pooler_output);
      assertFiniteAndVaried(lhs, 'last_hidden_state');
      assertFiniteAndVaried(pooled, 'pooler_output');
      const n = 77 * H;
      const diff = lhs.slice(0, n).reduce((s, v, i) => s + Math.abs(v - lhs[n + i]), 0) / n;
      assert.ok(diff > 0.01, `prompts give different hidden states (mean abs diff ${diff})`);
      assert.ok(pooled.slice(0, H).some((v, i) => Math.abs(v - pooled[H + i]) > 1e-3), 'pooler_output differs');
      // Out-of-vocabulary ids (e.g. CLIP's 49407) must not crash.
      const big = new Array<number>(77).fill(49407);
      const t2 = options.inputIdsType === 'int64'
        ? new ort.Tensor('int64', BigInt64Array.from(big.map(BigInt)), [1, 77])
        : new ort.Tensor('int32', Int32Array.from(big), [1, 77]);
      assertFiniteAndVaried(floats((await te.run({ input_ids: t2 })).last_hidden_state), 'oov');
    });

    test('unet runs at batch 2 with dynamic latent size', async () => {
      const feeds: Record<string, Tensor> = {
        sample: floatTensor(fp, randn(B * 4 * h * w), [B, 4, h, w]),
        encoder_hidden_states: floatTensor(fp, randn(B * 77 * H), [B, 77, H]),
        timestep: options.timestep === 'float-scalar'
          ? floatTensor(fp, Float32Array.of(999), [])
          : new ort.Tensor('int64', BigInt64Array.of(999n, 499n), [B]),
      };
      if (options.timestepCond) feeds.timestep_cond = floatTensor(fp, randn(B * 256), [B, 256]);
      const out = (await sessions.unet.run(feeds)).out_sample;
      assert.deepEqual(out.dims, [B, 4, h, w]);
      const eps = floats(out);
      assertFiniteAndVaried(eps, 'out_sample');
      const s = std(eps);
      assert.ok(s > 0.3 && s < 3, `epsilon has O(1) magnitude (std ${s})`);
    });

    test('vae decoder / preview decoder / encoder run at batch 2', async () => {
      const z = randn(B * 4 * h * w); // diffusion-scale latents
      const dec = await sessions.vae_decoder.run({ latent_sample: floatTensor(fp, z.map((v) => v / 0.18215), [B, 4, h, w]) });
      assert.deepEqual(dec.sample.dims, [B, 3, 8 * h, 8 * w]);
      const img = floats(dec.sample);
      assertFiniteAndVaried(img, 'vae_decoder');
      assert.ok(img.every((v) => v >= -1 && v <= 1), 'decoder output in [-1, 1]');

      if (sessions.preview_decoder) {
        const p = await sessions.preview_decoder.run({ latent_sample: floatTensor(fp, z, [B, 4, h, w]) });
        assert.deepEqual(p.sample.dims, [B, 3, 8 * h, 8 * w]);
        const prev = floats(p.sample);
        assertFiniteAndVaried(prev, 'preview_decoder');
        assert.ok(prev.every((v) => v >= -0.01 && v <= 1.01), 'preview output in [0, 1]');
        const c = corr(prev, img);
        assert.ok(c > 0.9, `preview correlates with the VAE decoder (r=${c.toFixed(3)})`);
      }

      if (sessions.vae_encoder) {
        const params = options.vaeEncoderOutput === 'latent_parameters';
        const e = await sessions.vae_encoder.run({ sample: floatTensor(fp, img, [B, 3, 8 * h, 8 * w]) });
        const out = e[params ? 'latent_parameters' : 'latent_sample'];
        assert.deepEqual(out.dims, [B, params ? 8 : 4, h, w]);
        const lat = floats(out);
        assertFiniteAndVaried(lat, 'vae_encoder');
        // Round trip: decode(mean * 0.18215 / 0.18215) keeps the image.
        const mean = new Float32Array(B * 4 * h * w);
        const per = (params ? 8 : 4) * h * w;
        for (let b = 0; b < B; b++) mean.set(lat.subarray(b * per, b * per + 4 * h * w), b * 4 * h * w);
        const back = floats((await sessions.vae_decoder.run({ latent_sample: floatTensor(fp, mean, [B, 4, h, w]) })).sample);
        const c = corr(back, img);
        assert.ok(c > 0.9, `encode/decode round trip correlates with the input (r=${c.toFixed(3)})`);
        if (params) {
          const logvar = lat.subarray(4 * h * w, 8 * h * w);
          assert.ok(logvar.every((v) => v < -5), 'logvar is small');
        }
      }
    });

    test('1- and 4-step Euler ancestral generation gives a varied, unsaturated image', async () => {
      const [hs, ws] = [32, 32];
      const bos = vocab['<|startoftext|>'];
      const eos = vocab['<|endoftext|>'];
      const ids = [bos, vocab['a</w>'], vocab['blue</w>'], vocab['sky</w>'], eos];
      while (ids.length < 77) ids.push(0);
      const t = options.inputIdsType === 'int64'
        ? new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, 77])
        : new ort.Tensor('int32', Int32Array.from(ids), [1, 77]);
      const ehs = (await sessions.text_encoder.run({ input_ids: t })).last_hidden_state;
      for (const steps of [1, 4]) {
        const ts = Array.from({ length: steps }, (_, i) => Math.round(1000 - (i * 1000) / steps) - 1);
        const sig = (k: number) => Math.sqrt((1 - alphasCumprod[k]) / alphasCumprod[k]);
        const sigmas = [...ts.map(sig), 0];
        let x = randn(4 * hs * ws, sigmas[0]);
        for (let i = 0; i < steps; i++) {
          const [s, sn] = [sigmas[i], sigmas[i + 1]];
          const feeds: Record<string, Tensor> = {
            sample: floatTensor(fp, x.map((v) => v / Math.sqrt(s * s + 1)), [1, 4, hs, ws]),
            encoder_hidden_states: ehs,
            timestep: options.timestep === 'float-scalar'
              ? floatTensor(fp, Float32Array.of(ts[i]), [])
              : new ort.Tensor('int64', BigInt64Array.of(BigInt(ts[i])), [1]),
          };
          if (options.timestepCond) feeds.timestep_cond = floatTensor(fp, new Float32Array(256), [1, 256]);
          const eps = floats((await sessions.unet.run(feeds)).out_sample);
          const up = Math.sqrt((sn * sn * (s * s - sn * sn)) / (s * s));
          const down = Math.sqrt(sn * sn - up * up);
          const noise = randn(x.length, up);
          x = x.map((v, j) => v + eps[j] * (down - s) + noise[j]);
        }
        const img = floats((await sessions.vae_decoder.run({ latent_sample: floatTensor(fp, x.map((v) => v / 0.18215), [1, 4, hs, ws]) })).sample);
        assertFiniteAndVaried(img, `${steps}-step image`);
        const s = std(img);
        const saturated = img.filter((v) => Math.abs(v) > 0.98).length / img.length;
        assert.ok(s > 0.15, `${steps}-step image has contrast (std ${s.toFixed(3)})`);
        assert.ok(saturated < 0.1, `${steps}-step image is not saturated (${(saturated * 100).toFixed(1)}%)`);
      }
    });
  });
}

test('weights are deterministic per seed', async () => {
  const dirs = await Promise.all([0, 1, 2].map(() => mkdtemp(path.join(os.tmpdir(), 'tiny-model-'))));
  try {
    await writeTinyModel(dirs[0], { seed: 3, previewDecoder: false });
    await writeTinyModel(dirs[1], { seed: 3, previewDecoder: false });
    await writeTinyModel(dirs[2], { seed: 4, previewDecoder: false });
    const read = (d: string) => readFile(path.join(d, 'unet/model.onnx'));
    const [a, b, c] = await Promise.all(dirs.map(read));
    assert.ok(a.equals(b), 'same seed -> identical bytes');
    assert.ok(!a.equals(c), 'different seed -> different weights');
  } finally {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  }
});

test('float16 conversion helpers', () => {
  const cases: Array<[number, number]> = [
    [0, 0x0000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [0.1, 0x2e66], [2 ** -24, 0x0001],
    [6.1e-5, 0x03ff], [70000, 0x7c00], [-Infinity, 0xfc00], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02],
  ];
  for (const [v, bits] of cases) assert.equal(toFloat16Array([v])[0], bits, `fp16(${v})`);
  assert.ok(Number.isNaN(fromFloat16Array(toFloat16Array([NaN]))[0]));
  const back = fromFloat16Array(toFloat16Array([0.1, -3.5, 1000.25, 2 ** -20]));
  assert.deepEqual([...back], [0.0999755859375, -3.5, 1000, 2 ** -20]);
});
