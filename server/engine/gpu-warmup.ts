// On a GPU every new input shape pays a first run: cuDNN's convolution algorithm search (CUDA),
// an engine build (TensorRT), shader pipeline compiles (WebGPU). The pipeline's warm-up covers
// batch 1 only, so before /readyz turns 200 this runs one step, the previews and the decode at
// every batch size the batch runner can form, so the first busy moment pays none of it.
// CPU skips it: no per-shape compile worth the start-up time.
import { performance } from 'node:perf_hooks';
import type { DiffusionPipeline } from '../pipeline/pipeline.js';

/** Batch sizes to warm: the largest first, so TensorRT builds one profile covering 1..maxBatch. */
export function warmOrder(maxBatch: number): number[] {
  if (maxBatch < 2) return [];
  const rest = Array.from({ length: maxBatch - 2 }, (_, i) => i + 2);
  return [maxBatch, ...rest];
}

/** Returns the time spent, in ms. */
export async function warmBatchSizes(pipeline: DiffusionPipeline, maxBatch: number): Promise<number> {
  const started = performance.now();
  const size = pipeline.info.width;
  for (const batch of warmOrder(maxBatch)) {
    const states = Array.from({ length: batch }, (_, seed) =>
      pipeline.createState({ prompt: 'warm up', steps: 1, strength: 1, seed, width: size, height: size, previews: true }),
    );
    await pipeline.encodeText(states);
    await pipeline.prepareLatents(states);
    const predictions = await pipeline.step(states);
    await pipeline.previews(states, predictions);
    await pipeline.decode(states);
  }
  return performance.now() - started;
}
