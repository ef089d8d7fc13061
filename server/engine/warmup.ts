// Warm-up that proves what is served, before /readyz turns 200.
//
// Two things go wrong when a server only warms batch 1 at its default size:
//  - a model exported with fixed shapes (a static UNet `sample` of [1,4,64,64], say) passes that
//    warm-up and then fails every request of another size or batch;
//  - on a GPU every new input shape pays a first run (cuDNN's algorithm search, a TensorRT engine
//    build, WebGPU pipeline compiles), so the first busy moment would pay it in front of users.
// So: fixed dimensions declared in the ONNX metadata limit the accepted sizes and the batch up
// front; then one step, the previews and the decode run at every batch size up to the batch limit
// (largest first, so TensorRT builds one profile covering them) and at the extreme accepted sizes.
// A size that still fails (a fixed shape the metadata did not declare) narrows what is served to
// the default size, with a warning; a failure at the default size fails the load.
import { performance } from 'node:perf_hooks';
import type { ModelInfo } from '../../shared/protocol.js';
import type { DiffusionPipeline, GenerationState } from '../pipeline/pipeline.js';
import type { LoadOptions } from './messages.js';

export interface WarmResult {
  /** The model as served: `fixedSize` set when only one size works. */
  info: ModelInfo;
  /** The batch the runner may form: the operator's --max-batch, or less when the model's batch is fixed. */
  maxBatch: number;
  ms: number;
  /** What was run, for the log. */
  shapes: string[];
  /** What warm-up had to narrow, for the log. */
  warnings: string[];
  /** A UNet step of two requests over one of one request, at the default size (absent when the batch
   * limit is 1): how cheaply this device pairs work, which decides --stream-batch auto. */
  pairCost?: number;
}

/** Batch sizes to warm: the largest first, so TensorRT builds one profile covering 1..maxBatch. */
export function warmOrder(maxBatch: number): number[] {
  if (maxBatch < 2) return [];
  const rest = Array.from({ length: maxBatch - 2 }, (_, i) => i + 2);
  return [maxBatch, ...rest];
}

/** Timed runs of each batch size in pairCost: the least of them is what the device can do. */
const PAIR_COST_RUNS = 3;

/**
 * The time of one denoising step at batch 2 over batch 1, each the least of PAIR_COST_RUNS runs,
 * the two sizes alternating so that a passing load on the machine falls on both. Warm-up has
 * already compiled both shapes.
 */
export async function measurePairCost(pipeline: DiffusionPipeline, width: number, height: number): Promise<number> {
  const best = [Infinity, Infinity];
  for (let run = 0; run < PAIR_COST_RUNS; run++) {
    for (const batch of [1, 2]) {
      const states = Array.from({ length: batch }, (_, seed) => pipeline.createState({ prompt: 'warm up', steps: 1, strength: 1, seed, width, height, previews: false }));
      await pipeline.encodeText(states);
      await pipeline.prepareLatents(states);
      const started = performance.now();
      await pipeline.step(states);
      best[batch - 1] = Math.min(best[batch - 1]!, performance.now() - started);
    }
  }
  return best[1]! / best[0]!;
}

/** A dimension the export fixed (a number), or undefined when it is symbolic. */
const fixed = (dim: number | string | undefined): number | undefined => (typeof dim === 'number' && dim > 0 ? dim : undefined);

/** Batch and spatial dimensions fixed by the exported graphs. */
export function declaredShapes(pipeline: DiffusionPipeline): { batch?: number; latentH?: number; latentW?: number } {
  const m = pipeline.model;
  const sample = m.unet.input('sample').shape;
  const decoder = m.vaeDecoder.input('latent_sample').shape;
  const batches = [fixed(sample[0]), fixed(m.textEncoder.input('input_ids').shape[0]), fixed(decoder[0])].filter((b) => b !== undefined);
  return {
    ...(batches.length > 0 ? { batch: Math.min(...batches) } : {}),
    ...(fixed(sample[2]) ?? fixed(decoder[2]) ? { latentH: fixed(sample[2]) ?? fixed(decoder[2]) } : {}),
    ...(fixed(sample[3]) ?? fixed(decoder[3]) ? { latentW: fixed(sample[3]) ?? fixed(decoder[3]) } : {}),
  };
}

async function runOnce(pipeline: DiffusionPipeline, batch: number, width: number, height: number): Promise<void> {
  const states: GenerationState[] = Array.from({ length: batch }, (_, seed) =>
    pipeline.createState({ prompt: 'warm up', steps: 1, strength: 1, seed, width, height, previews: true }),
  );
  await pipeline.encodeText(states);
  await pipeline.prepareLatents(states);
  const predictions = await pipeline.step(states);
  await pipeline.previews(states, predictions);
  await pipeline.decode(states);
}

export async function warmUp(pipeline: DiffusionPipeline, options: LoadOptions): Promise<WarmResult> {
  const started = performance.now();
  const base = pipeline.info;
  const factor = pipeline.model.vaeFactor;
  const declared = declaredShapes(pipeline);
  let info: ModelInfo = base;
  if (declared.latentH !== undefined || declared.latentW !== undefined) {
    const width = (declared.latentW ?? base.width / factor) * factor;
    const height = (declared.latentH ?? base.height / factor) * factor;
    info = { ...base, width, height, fixedSize: { width, height } };
  }
  let maxBatch = Math.min(options.maxBatch, declared.batch ?? options.maxBatch);
  const shapes: string[] = [];
  const warnings: string[] = [];

  // Batch 1 at the default size, text-to-image and image-to-image: a failure here fails the load.
  await pipeline.warmup(info.width, info.height);
  shapes.push(`1x${info.width}x${info.height}`);

  for (const batch of warmOrder(maxBatch)) {
    try {
      await runOnce(pipeline, batch, info.width, info.height);
      shapes.push(`${batch}x${info.width}x${info.height}`);
    } catch (err) {
      // A batch the export cannot take: serve one request per UNet call rather than fail them all.
      warnings.push(`batch ${batch} failed in warm-up (${(err as Error).message.slice(0, 200)}); serving batch 1 only`);
      maxBatch = 1;
      break;
    }
  }

  if (!info.fixedSize) {
    const multiple = Math.max(options.sizes.multiple, base.sizeMultiple);
    const smallest = Math.ceil(options.sizes.min / multiple) * multiple;
    const largest = Math.floor(options.sizes.max / multiple) * multiple;
    // The smallest size and a non-square one prove the graphs take other shapes; the largest ones
    // matter on GPUs (memory, kernel selection, engine profiles) and would cost a CPU seconds to
    // minutes with a full-size model, for nothing a first request would not pay anyway.
    const extremes: [number, number][] = options.device === 'cpu'
      ? [[smallest, smallest], [Math.min(largest, smallest * 2), smallest]]
      : [[smallest, smallest], [largest, largest], [largest, smallest]];
    for (const [width, height] of extremes) {
      if (width === info.width && height === info.height) continue;
      try {
        await runOnce(pipeline, 1, width, height);
        shapes.push(`1x${width}x${height}`);
      } catch (err) {
        warnings.push(`size ${width}x${height} failed in warm-up (${(err as Error).message.slice(0, 200)}); serving ${info.width}x${info.height} only`);
        info = { ...info, fixedSize: { width: info.width, height: info.height } };
        break;
      }
    }
  }
  const pairCost = maxBatch >= 2 ? await measurePairCost(pipeline, info.width, info.height) : undefined;
  return { info, maxBatch, ms: performance.now() - started, shapes, warnings, ...(pairCost !== undefined ? { pairCost } : {}) };
}
