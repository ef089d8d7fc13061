// In-process model timings for the GPU benchmark (bench/gpu.ts): the pipeline's own batched
// primitives (the calls the inference worker makes), on the chosen execution provider, per batch
// size: the UNet call alone, the whole step (UNet plus host-side dtype conversion and sampler
// update), the preview decoder and the VAE decoder. No server, no sockets: the model's ceiling
// through onnxruntime-node, to set beside the server's frames/s and PyTorch's times.
import { performance } from 'node:perf_hooks';
import type { Device } from '../server/config.js';
import { sessionSettingsFor } from '../server/pipeline/onnx-component.js';
import { DiffusionPipeline, type GenerationState } from '../server/pipeline/pipeline.js';

export interface Stat {
  medianMs: number;
  p90Ms: number;
  minMs: number;
  iters: number;
}

export interface BatchTimings {
  batch: number;
  /** onnxruntime session.run of the UNet alone. */
  unetRun: Stat;
  /** pipeline.step(): UNet plus float16/32 conversion, batching and the sampler update. */
  step: Stat;
  previewDecode: Stat;
  vaeDecode: Stat;
  /** batch / (step + preview + VAE decode): images per second of 1-step generation as served before
   * the fast path (a preview of the last step, then the VAE), text encoding excluded (cached). */
  imagesPerSecond: number;
  /** batch / (step + preview decode): the fast path (no preview of the last step; the final frame
   * by the preview decoder). */
  imagesPerSecondFast: number;
}

export interface PipelineTimings {
  model: string;
  dtype: string;
  device: Device;
  size: number;
  loadMs: number;
  warmupMs: number;
  batches: BatchTimings[];
}

export interface PipelineBenchOptions {
  modelDir: string;
  device: Device;
  deviceId: number;
  threads: number;
  /** Image size in pixels (default: the model's). */
  size?: number;
  batches: number[];
  iters: number;
  warmup: number;
  log?: (line: string) => void;
}

export function stat(times: number[]): Stat {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return { medianMs: round(median), p90Ms: round(at(0.9)), minMs: round(sorted[0]), iters: sorted.length };
}

const PROMPTS = ['a photo of a cat', 'a watercolor landscape', 'a red sports car', 'a bowl of fruit'];

export async function benchPipeline(options: PipelineBenchOptions): Promise<PipelineTimings> {
  const log = options.log ?? (() => {});
  const t0 = performance.now();
  const settings = sessionSettingsFor(options.device, options.deviceId, options.threads);
  const pipeline = await DiffusionPipeline.load(options.modelDir, options.device, settings);
  const loadMs = performance.now() - t0;
  const warmupMs = await pipeline.warmup();
  const size = options.size ?? pipeline.info.width;
  log(`loaded ${pipeline.info.name} (${pipeline.info.dtype}) on ${options.device} in ${loadMs.toFixed(0)} ms, warm-up ${warmupMs.toFixed(0)} ms`);

  // Time the UNet's session.run alone by wrapping the component's run for the duration.
  const unet = pipeline.model.unet;
  const run = unet.run.bind(unet);
  let lastUnetMs = 0;
  unet.run = async (feeds) => {
    const start = performance.now();
    const out = await run(feeds);
    lastUnetMs = performance.now() - start;
    return out;
  };

  const newStates = async (batch: number, round: number): Promise<GenerationState[]> => {
    const states = Array.from({ length: batch }, (_, i) =>
      pipeline.createState({ prompt: PROMPTS[i % PROMPTS.length], steps: 1, strength: 1, seed: round * 64 + i, width: size, height: size, previews: true }),
    );
    await pipeline.encodeText(states); // cached after the first round, as in the server
    await pipeline.prepareLatents(states);
    return states;
  };

  const batches: BatchTimings[] = [];
  try {
    for (const batch of options.batches) {
      const times = { unetRun: [] as number[], step: [] as number[], previewDecode: [] as number[], vaeDecode: [] as number[] };
      for (let round = 0; round < options.warmup + options.iters; round++) {
        const states = await newStates(batch, round);
        let t = performance.now();
        const predictions = await pipeline.step(states);
        const stepMs = performance.now() - t;
        t = performance.now();
        await pipeline.previews(states, predictions);
        const previewMs = performance.now() - t;
        t = performance.now();
        await pipeline.decode(states);
        const decodeMs = performance.now() - t;
        if (round < options.warmup) continue; // first runs of a new shape pay kernel selection / shader compiles
        times.unetRun.push(lastUnetMs);
        times.step.push(stepMs);
        times.previewDecode.push(previewMs);
        times.vaeDecode.push(decodeMs);
      }
      const result: BatchTimings = {
        batch,
        unetRun: stat(times.unetRun),
        step: stat(times.step),
        previewDecode: stat(times.previewDecode),
        vaeDecode: stat(times.vaeDecode),
        imagesPerSecond: 0,
        imagesPerSecondFast: 0,
      };
      result.imagesPerSecond = round2((1000 * batch) / (result.step.medianMs + result.previewDecode.medianMs + result.vaeDecode.medianMs));
      result.imagesPerSecondFast = round2((1000 * batch) / (result.step.medianMs + result.previewDecode.medianMs));
      batches.push(result);
      log(
        `batch ${batch}: unet ${result.unetRun.medianMs} ms, step ${result.step.medianMs} ms, preview ${result.previewDecode.medianMs} ms, ` +
          `VAE decode ${result.vaeDecode.medianMs} ms, ${result.imagesPerSecond} images/s (fast path ${result.imagesPerSecondFast})`,
      );
    }
  } finally {
    unet.run = run;
    await Promise.all([pipeline.model.textEncoder, pipeline.model.unet, pipeline.model.vaeDecoder, pipeline.model.vaeEncoder, pipeline.model.previewDecoder].map((c) => c?.release()));
  }
  return { model: pipeline.info.name, dtype: pipeline.info.dtype, device: options.device, size, loadMs: round2(loadMs), warmupMs: round2(warmupMs), batches };
}

const round2 = (x: number) => Math.round(x * 100) / 100;
