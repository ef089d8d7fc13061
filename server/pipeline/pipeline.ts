// One text-to-image or image-to-image generation: tokenize, encode text, (encode image), run the
// few-step sampler with a preview after each step, decode. Runs wherever it is called from; the
// server calls it inside the inference worker because onnxruntime-node's run() blocks its thread.
import { performance } from 'node:perf_hooks';
import type { ModelInfo } from '../../shared/protocol.js';
import type { RgbImage, WorkerTimings } from '../engine/messages.js';
import { planarToRgb, projectLatentsToRgb, rgbToPlanar } from './image-tensors.js';
import { loadModel, type LoadedModel } from './model-loader.js';
import { OnnxComponent, type SessionSettings } from './onnx-component.js';
import { GaussianRng } from './rng.js';
import { createSampler, guidanceScaleEmbedding } from './schedulers.js';
import { TextEmbeddingCache } from './text-embedding-cache.js';

export interface GenerateRequest {
  prompt: string;
  steps: number;
  /** Image-to-image strength in (0, 1]; ignored without `image`. */
  strength: number;
  seed: number;
  width: number;
  height: number;
  previews: boolean;
  /** Interleaved RGB of exactly width x height, for image-to-image. */
  image?: Uint8Array;
}

export interface GenerateHooks {
  /** Called after every step with the preview image (only when the request asks for previews). */
  onPreview?(step: number, steps: number, image: RgbImage): void;
  /** Polled between steps; true aborts the generation with CancelledError. */
  isCancelled?(): boolean;
}

export interface GenerateResult {
  image: RgbImage;
  timings: WorkerTimings;
}

export class CancelledError extends Error {
  constructor() {
    super('cancelled');
  }
}

/** LCM pipelines embed guidance into the UNet instead of running it twice; 8.5 is diffusers' default. */
const LCM_GUIDANCE_SCALE = 8.5;
const MAX_STEPS = 50;

/** Lets queued worker messages (a cancel) run between steps. */
const yieldToEvents = () => new Promise<void>((resolve) => setImmediate(resolve));

export class DiffusionPipeline {
  private readonly embeddings: TextEmbeddingCache;

  private constructor(
    readonly model: LoadedModel,
    readonly device: string,
  ) {
    this.embeddings = new TextEmbeddingCache(64);
  }

  static async load(dir: string, device: string, settings: SessionSettings): Promise<DiffusionPipeline> {
    return new DiffusionPipeline(await loadModel(dir, settings), device);
  }

  get info(): ModelInfo {
    const m = this.model;
    const size = m.sampleSize * m.vaeFactor;
    return {
      name: m.name,
      width: size,
      height: size,
      sizeMultiple: m.sizeMultiple,
      minSteps: 1,
      maxSteps: MAX_STEPS,
      defaultSteps: m.scheduler.kind === 'lcm' ? 4 : 2,
      scheduler: m.scheduler.kind,
      img2img: m.vaeEncoder !== undefined,
      previews: m.previewDecoder ? 'decoder' : 'projection',
      dtype: m.dtype,
      device: this.device,
    };
  }

  /** Runs every model once at the default size so the first real request pays no first-run costs. */
  async warmup(): Promise<number> {
    const started = performance.now();
    const size = this.info.width;
    const request: GenerateRequest = { prompt: 'warm up', steps: 2, strength: 1, seed: 0, width: size, height: size, previews: true };
    await this.generate(request, {});
    if (this.model.vaeEncoder) {
      await this.generate({ ...request, image: new Uint8Array(size * size * 3).fill(128), strength: 1 }, {});
    }
    this.embeddings.clear();
    return performance.now() - started;
  }

  async generate(request: GenerateRequest, hooks: GenerateHooks): Promise<GenerateResult> {
    const m = this.model;
    const latentW = request.width / m.vaeFactor;
    const latentH = request.height / m.vaeFactor;
    const latentDims = [1, m.latentChannels, latentH, latentW];
    const latentSize = m.latentChannels * latentW * latentH;
    const timings: WorkerTimings = { textEncoder: 0, vaeEncoder: 0, steps: [], previews: 0, decode: 0 };
    const rng = new GaussianRng(request.seed);

    let t0 = performance.now();
    const hidden = await this.encodePrompt(request.prompt);
    timings.textEncoder = performance.now() - t0;

    const strength = request.image ? request.strength : 1;
    // Throws RangeError when steps and strength leave nothing to run.
    const sampler = createSampler(m.scheduler, request.steps, strength);
    let imageLatents: Float32Array | undefined;
    if (request.image) {
      t0 = performance.now();
      imageLatents = await this.encodeImage(request.image, request.width, request.height, latentSize);
      timings.vaeEncoder = performance.now() - t0;
    }

    let latents = sampler.initLatents(rng.gaussian(latentSize), imageLatents);
    const hiddenTensor = m.unet.floatTensor('encoder_hidden_states', hidden.data, hidden.dims);
    const timestepCond =
      m.timestepCondDim > 0
        ? m.unet.floatTensor('timestep_cond', guidanceScaleEmbedding(LCM_GUIDANCE_SCALE - 1, m.timestepCondDim), [1, m.timestepCondDim])
        : undefined;
    const steps = sampler.timesteps.length;

    for (let i = 0; i < steps; i++) {
      await yieldToEvents();
      if (hooks.isCancelled?.()) throw new CancelledError();
      t0 = performance.now();
      const feeds = {
        sample: m.unet.floatTensor('sample', sampler.scaleModelInput(latents, i), latentDims),
        timestep: this.timestepTensor(sampler.timesteps[i]),
        encoder_hidden_states: hiddenTensor,
        ...(timestepCond ? { timestep_cond: timestepCond } : {}),
      };
      const outputs = await m.unet.run(feeds);
      const noisePred = OnnxComponent.toFloat32(outputs[m.unet.outputName('out_sample')]).data;
      const { prevSample, predOriginal } = sampler.step(latents, noisePred, i, () => rng.gaussian(latentSize));
      latents = prevSample;
      timings.steps.push(performance.now() - t0);

      if (request.previews && hooks.onPreview) {
        t0 = performance.now();
        const preview = await this.preview(predOriginal, latentW, latentH);
        timings.previews += performance.now() - t0;
        hooks.onPreview(i + 1, steps, preview);
      }
    }

    await yieldToEvents();
    if (hooks.isCancelled?.()) throw new CancelledError();
    t0 = performance.now();
    const image = await this.decode(latents, latentW, latentH);
    timings.decode = performance.now() - t0;
    return { image, timings };
  }

  private async encodePrompt(prompt: string) {
    const cached = this.embeddings.get(prompt);
    if (cached) return cached;
    const m = this.model;
    const { ids } = m.tokenizer.encode(prompt);
    const outputs = await m.textEncoder.run({ input_ids: m.textEncoder.intTensor('input_ids', ids, [1, ids.length]) });
    const hidden = OnnxComponent.toFloat32(outputs[m.hiddenStateOutput]);
    // Copy: the output buffer belongs to onnxruntime and the cache outlives this run.
    const entry = { data: Float32Array.from(hidden.data), dims: [...hidden.dims] };
    this.embeddings.set(prompt, entry);
    return entry;
  }

  private timestepTensor(t: number) {
    const { unet, timestep } = this.model;
    const dims = timestep.kind === 'scalar' ? [] : [1];
    return timestep.integer ? unet.intTensor('timestep', [t], dims) : unet.floatTensor('timestep', Float32Array.of(t), dims);
  }

  private async encodeImage(rgb: Uint8Array, width: number, height: number, latentSize: number): Promise<Float32Array> {
    const m = this.model;
    const encoder = m.vaeEncoder!;
    const pixels = encoder.floatTensor('sample', rgbToPlanar(rgb, width, height), [1, 3, height, width]);
    const out = OnnxComponent.toFloat32((await encoder.run({ sample: pixels }))[m.vaeEncoderOutput]).data;
    // latent_parameters holds mean | logvar: the mean is the deterministic latent.
    const latents = new Float32Array(latentSize);
    for (let i = 0; i < latentSize; i++) latents[i] = out[i] * m.vaeScale;
    return latents;
  }

  private async preview(predOriginal: Float32Array, latentW: number, latentH: number): Promise<RgbImage> {
    const m = this.model;
    if (!m.previewDecoder) {
      return { rgb: projectLatentsToRgb(predOriginal, m.latentChannels, latentW, latentH), width: latentW, height: latentH };
    }
    // TAESD-style decoders take the diffusion latents as they are (no VAE scale) and output [0, 1].
    const feeds = { latent_sample: m.previewDecoder.floatTensor('latent_sample', predOriginal, [1, m.latentChannels, latentH, latentW]) };
    const out = OnnxComponent.toFloat32((await m.previewDecoder.run(feeds))[m.previewDecoder.outputName('sample')]);
    const [, , h, w] = out.dims;
    return { rgb: planarToRgb(out.data, w, h, 0, 1), width: w, height: h };
  }

  private async decode(latents: Float32Array, latentW: number, latentH: number): Promise<RgbImage> {
    const m = this.model;
    const scaled = new Float32Array(latents.length);
    for (let i = 0; i < latents.length; i++) scaled[i] = latents[i] / m.vaeScale;
    const feeds = { latent_sample: m.vaeDecoder.floatTensor('latent_sample', scaled, [1, m.latentChannels, latentH, latentW]) };
    const out = OnnxComponent.toFloat32((await m.vaeDecoder.run(feeds))[m.vaeDecoder.outputName('sample')]);
    const [, , h, w] = out.dims;
    return { rgb: planarToRgb(out.data, w, h, -1, 1), width: w, height: h };
  }
}
