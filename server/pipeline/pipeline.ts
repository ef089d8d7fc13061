// The diffusion pipeline as batched primitives over generation states: encode text, prepare
// latents (encoding the image for image-to-image), one denoising step, previews, final decode.
// Each primitive runs one model call per group of compatible states, so the worker can batch the
// next step of several requests. `generate()` runs one request start to finish on the same code.
import { performance } from 'node:perf_hooks';
import { FINAL_DECODERS, type FinalDecoder, type ModelInfo } from '../../shared/protocol.js';
import type * as ort from 'onnxruntime-node';
import {
  batchItem,
  concatBatch,
  createGenerationState,
  groupForBatch,
  isFinished,
  sliceBatch,
  type GenerateRequest,
  type GenerationState,
  type RgbImage,
  type WorkerTimings,
} from './generation.js';
import { planarToRgb, projectLatentsToRgb, rgbToPlanar } from './image-tensors.js';
import { loadModel, type LoadedModel } from './model-loader.js';
import { OnnxComponent, type SessionSettings } from './onnx-component.js';
import { createSampler, guidanceScaleEmbedding, type Sampler } from './schedulers.js';
import { TextEmbeddingCache, type TextEmbedding } from './text-embedding-cache.js';

export type { GenerateRequest, GenerationState };

export interface GenerateHooks {
  /** Called after every step but the last with the preview image (only when the request asks for
   * previews): the last step's image is the result. */
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
/** UNet text inputs kept ready, by batch of prompts: a stream's batches repeat. */
const HIDDEN_FEEDS = 8;
/** Samplers kept, by steps and strength (a few combinations cover a stream's requests). */
const SAMPLERS = 64;

/** Lets queued worker messages (a cancel) run between steps. */
export const yieldToEvents = () => new Promise<void>((resolve) => setImmediate(resolve));

export class DiffusionPipeline {
  private readonly embeddings = new TextEmbeddingCache(256);
  private readonly timestepCond: Float32Array | undefined;
  private readonly hiddenFeeds = new Map<string, ort.Tensor>();
  private readonly samplers = new Map<string, Sampler>();
  private readonly embeddingIds = new WeakMap<TextEmbedding, number>();
  private nextEmbeddingId = 0;

  private constructor(
    readonly model: LoadedModel,
    readonly device: string,
  ) {
    this.timestepCond = model.timestepCondDim > 0 ? guidanceScaleEmbedding(LCM_GUIDANCE_SCALE - 1, model.timestepCondDim) : undefined;
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
      finalDecoders: m.previewDecoder ? ['vae', 'preview'] : ['vae'],
      finalDecoder: 'vae',
    };
  }

  /** The decoder that makes a state's final image: the preview decoder only where there is one. */
  finalDecoderOf(state: GenerationState): FinalDecoder {
    return state.request.finalDecoder === 'preview' && this.model.previewDecoder ? 'preview' : 'vae';
  }

  /** Runs every model once at the default size so the first real request pays no first-run costs. */
  async warmup(width = this.info.width, height = this.info.height): Promise<number> {
    const started = performance.now();
    const request: GenerateRequest = { prompt: 'warm up', steps: 2, strength: 1, seed: 0, width, height, previews: true };
    await this.generate(request, {});
    if (this.model.vaeEncoder) await this.generate({ ...request, image: new Uint8Array(width * height * 3).fill(128) }, {});
    this.embeddings.clear();
    this.hiddenFeeds.clear();
    return performance.now() - started;
  }

  /** Throws RangeError when steps and strength leave the sampler nothing to run. */
  createState(request: GenerateRequest): GenerationState {
    // A sampler is its schedule (a thousand-entry table to build) and holds no per-request state.
    const strength = request.image ? request.strength : 1;
    const key = `${request.steps}/${strength}`;
    let sampler = this.samplers.get(key);
    if (!sampler) {
      sampler = createSampler(this.model.scheduler, request.steps, strength);
      if (this.samplers.size >= SAMPLERS) this.samplers.delete(this.samplers.keys().next().value as string);
      this.samplers.set(key, sampler);
    }
    return createGenerationState(request, sampler, this.model.vaeFactor, this.model.latentChannels);
  }

  /** Encodes the prompts of states that have none yet: cached ones skip the model, the rest share one call. */
  async encodeText(states: readonly GenerationState[]): Promise<void> {
    const missing = new Map<string, GenerationState[]>();
    for (const state of states) {
      if (state.hidden) continue;
      const cached = this.embeddings.get(state.request.prompt);
      if (cached) state.hidden = cached;
      else missing.set(state.request.prompt, [...(missing.get(state.request.prompt) ?? []), state]);
    }
    if (missing.size === 0) return;
    const m = this.model;
    const prompts = [...missing.keys()];
    const t0 = performance.now();
    const ids = prompts.map((p) => m.tokenizer.encode(p).ids);
    const seq = ids[0].length;
    const flat = new Int32Array(seq * ids.length);
    ids.forEach((row, i) => flat.set(row, i * seq));
    const outputs = await m.textEncoder.run({ input_ids: m.textEncoder.intTensor('input_ids', flat, [ids.length, seq]) });
    const hidden = OnnxComponent.toFloat32(outputs[m.hiddenStateOutput]);
    const elapsed = performance.now() - t0;
    prompts.forEach((prompt, i) => {
      const entry = { data: sliceBatch(hidden.data, prompts.length, i), dims: [1, ...hidden.dims.slice(1)] };
      this.embeddings.set(prompt, entry);
      for (const state of missing.get(prompt)!) {
        state.hidden = entry;
        state.timings.textEncoder = elapsed;
      }
    });
  }

  /** Starting latents: noise for text-to-image; the encoded image plus noise for image-to-image. */
  async prepareLatents(states: readonly GenerationState[]): Promise<void> {
    const m = this.model;
    const withImage = states.filter((s) => s.request.image && !s.latents);
    for (const group of groupForBatch(withImage)) {
      const { request } = group[0];
      const t0 = performance.now();
      const encoder = m.vaeEncoder!;
      const pixels = concatBatch(group.map((s) => rgbToPlanar(s.request.image!, request.width, request.height)));
      const input = encoder.floatTensor('sample', pixels, [group.length, 3, request.height, request.width]);
      const out = OnnxComponent.toFloat32((await encoder.run({ sample: input }))[m.vaeEncoderOutput]);
      const elapsed = performance.now() - t0;
      group.forEach((state, i) => {
        // latent_parameters holds mean | logvar per sample: the mean (first half) is the latent.
        const perSample = out.data.length / group.length;
        const latents = new Float32Array(state.latentSize);
        for (let k = 0; k < state.latentSize; k++) latents[k] = out.data[i * perSample + k] * m.vaeScale;
        state.latents = state.sampler.initLatents(state.rng.gaussian(state.latentSize), latents);
        state.timings.vaeEncoder = elapsed;
      });
    }
    for (const state of states) {
      if (!state.latents) state.latents = state.sampler.initLatents(state.rng.gaussian(state.latentSize));
    }
  }

  /**
   * One denoising step for every state (all the same latent size, see groupForBatch) in one UNet
   * call; each state may be at a different timestep. Returns each state's predicted clean latent.
   */
  async step(states: readonly GenerationState[]): Promise<Float32Array[]> {
    const m = this.model;
    const batch = states.length;
    const { latentW, latentH } = states[0];
    const t0 = performance.now();
    const scaled = concatBatch(states.map((s) => s.sampler.scaleModelInput(s.latents!, s.stepIndex)));
    const timesteps = states.map((s) => s.sampler.timesteps[s.stepIndex]);
    const feeds = {
      sample: m.unet.floatTensor('sample', scaled, [batch, m.latentChannels, latentH, latentW]),
      timestep: this.timestepTensor(timesteps),
      encoder_hidden_states: this.hiddenFeed(states),
      ...(this.timestepCond
        ? { timestep_cond: m.unet.floatTensor('timestep_cond', concatBatch(states.map(() => this.timestepCond!)), [batch, this.timestepCond.length]) }
        : {}),
    };
    const outputs = await m.unet.run(feeds);
    const noise = OnnxComponent.toFloat32(outputs[m.unet.outputName('out_sample')]).data;
    const predictions = states.map((state, i) => {
      const out = state.sampler.step(state.latents!, batchItem(noise, batch, i), state.stepIndex, () => state.rng.gaussian(state.latentSize));
      state.latents = out.prevSample;
      state.stepIndex++;
      return out.predOriginal;
    });
    const elapsed = performance.now() - t0;
    for (const state of states) {
      state.timings.steps.push(elapsed);
      state.timings.batchSizes.push(batch);
    }
    return predictions;
  }

  /** Preview images of predicted clean latents: the tiny decoder in one call, or the linear projection. */
  async previews(states: readonly GenerationState[], predictions: readonly Float32Array[]): Promise<RgbImage[]> {
    const m = this.model;
    const t0 = performance.now();
    let images: RgbImage[];
    if (!m.previewDecoder) {
      images = states.map((s, i) => ({ rgb: projectLatentsToRgb(predictions[i], m.latentChannels, s.latentW, s.latentH), width: s.latentW, height: s.latentH }));
    } else {
      // TAESD-style decoders take the diffusion latents as they are (no VAE scale) and output [0, 1].
      images = await this.decodeBatch(m.previewDecoder, concatBatch([...predictions]), states, 0, 1);
    }
    const elapsed = performance.now() - t0;
    for (const state of states) {
      state.timings.previews += elapsed;
      state.timings.decodes++;
    }
    return images;
  }

  /** Final images: one call per decoder the states chose (finalDecoderOf), the VAE's or the preview decoder's. */
  async decode(states: readonly GenerationState[]): Promise<RgbImage[]> {
    const m = this.model;
    const images = new Array<RgbImage>(states.length);
    for (const decoder of FINAL_DECODERS) {
      const picked = states.flatMap((s, i) => (this.finalDecoderOf(s) === decoder ? [i] : []));
      if (picked.length === 0) continue;
      const group = picked.map((i) => states[i]);
      const t0 = performance.now();
      const latents = group.map((s) => s.latents!);
      const decoded =
        decoder === 'preview'
          ? await this.decodeBatch(m.previewDecoder!, concatBatch(latents), group, 0, 1)
          : await this.decodeBatch(m.vaeDecoder, concatBatch(latents, 1 / m.vaeScale), group, -1, 1);
      const elapsed = performance.now() - t0;
      group.forEach((state, k) => {
        images[picked[k]] = decoded[k];
        state.timings.decode = elapsed;
        state.timings.decoder = decoder;
        state.timings.decodes++;
      });
    }
    return images;
  }

  /** One request start to finish (a batch of one): used by warm-up, the bench and tests. */
  async generate(request: GenerateRequest, hooks: GenerateHooks): Promise<GenerateResult> {
    const state = this.createState(request);
    await this.encodeText([state]);
    await this.prepareLatents([state]);
    while (!isFinished(state)) {
      await yieldToEvents();
      if (hooks.isCancelled?.()) throw new CancelledError();
      const [prediction] = await this.step([state]);
      if (request.previews && hooks.onPreview && !isFinished(state)) {
        const [preview] = await this.previews([state], [prediction]);
        hooks.onPreview(state.stepIndex, state.steps, preview);
      }
    }
    await yieldToEvents();
    if (hooks.isCancelled?.()) throw new CancelledError();
    const [image] = await this.decode([state]);
    return { image, timings: state.timings };
  }

  private timestepTensor(timesteps: number[]) {
    const { unet, timestep } = this.model;
    if (timestep.kind === 'scalar') {
      // One timestep for the whole batch: callers group scalar-timestep models by timestep.
      const t = timesteps[0];
      return timestep.integer ? unet.intTensor('timestep', [t], []) : unet.floatTensor('timestep', Float32Array.of(t), []);
    }
    const dims = [timesteps.length];
    return timestep.integer ? unet.intTensor('timestep', timesteps, dims) : unet.floatTensor('timestep', Float32Array.from(timesteps), dims);
  }

  /**
   * The UNet's text input for these states. A prompt's embedding is the same at every step and a
   * stream sends the same prompt with every frame, so the stacked (and, for float16 models,
   * converted: 77x1024 values per request on SD-Turbo) tensor is built once per batch of prompts.
   */
  private hiddenFeed(states: readonly GenerationState[]): ort.Tensor {
    const embeddings = states.map((s) => s.hidden!);
    const key = embeddings.map((e) => {
      let id = this.embeddingIds.get(e);
      if (id === undefined) this.embeddingIds.set(e, (id = this.nextEmbeddingId++));
      return id;
    }).join(',');
    let tensor = this.hiddenFeeds.get(key);
    if (tensor) {
      this.hiddenFeeds.delete(key);
    } else {
      const dims = [embeddings.length, ...embeddings[0].dims.slice(1)];
      tensor = this.model.unet.floatTensor('encoder_hidden_states', concatBatch(embeddings.map((e) => e.data)), dims);
      if (this.hiddenFeeds.size >= HIDDEN_FEEDS) this.hiddenFeeds.delete(this.hiddenFeeds.keys().next().value as string);
    }
    this.hiddenFeeds.set(key, tensor);
    return tensor;
  }

  /** Whether two states may share a UNet call: scalar-timestep models need equal timesteps. */
  stepBatchKey(state: GenerationState): string {
    return this.model.timestep.kind === 'scalar' ? String(state.sampler.timesteps[state.stepIndex]) : '';
  }

  private async decodeBatch(decoder: OnnxComponent, latents: Float32Array, states: readonly GenerationState[], low: number, high: number): Promise<RgbImage[]> {
    const m = this.model;
    const { latentW, latentH } = states[0];
    const feeds = { latent_sample: decoder.floatTensor('latent_sample', latents, [states.length, m.latentChannels, latentH, latentW]) };
    const out = OnnxComponent.rawFloat((await decoder.run(feeds))[decoder.outputName('sample')]);
    const [, , h, w] = out.dims;
    return states.map((_, i) => ({ rgb: planarToRgb(batchItem(out.data, states.length, i), w, h, low, high), width: w, height: h }));
  }
}
