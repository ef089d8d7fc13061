// The state of one generation between steps, and helpers for running several of them in one
// batched model call. Keeping all per-request state here is what lets the worker interleave
// requests step by step instead of running each to completion.
import type { FinalDecoder } from '../../shared/protocol.js';
import type { RgbImage, WorkerTimings } from '../engine/messages.js';
import { GaussianRng } from './rng.js';
import type { Sampler } from './schedulers.js';
import type { TextEmbedding } from './text-embedding-cache.js';

export interface GenerateRequest {
  prompt: string;
  steps: number;
  /** Image-to-image strength in (0, 1]; ignored without `image`. */
  strength: number;
  seed: number;
  width: number;
  height: number;
  /** A preview after every step but the last (whose image is the frame). */
  previews: boolean;
  /** Decoder of the final image (default 'vae'); 'preview' falls back to 'vae' on a model without one. */
  finalDecoder?: FinalDecoder;
  /** Interleaved RGB of exactly width x height, for image-to-image. */
  image?: Uint8Array;
}

export interface GenerationState {
  readonly request: GenerateRequest;
  readonly latentW: number;
  readonly latentH: number;
  readonly latentSize: number;
  readonly rng: GaussianRng;
  readonly sampler: Sampler;
  /** Steps this request runs (fewer than requested for Euler image-to-image). */
  readonly steps: number;
  hidden?: TextEmbedding;
  latents?: Float32Array;
  /** Index of the next step to run. */
  stepIndex: number;
  readonly timings: WorkerTimings;
}

export function isFinished(state: GenerationState): boolean {
  return state.stepIndex >= state.steps;
}

export function newTimings(): WorkerTimings {
  return { textEncoder: 0, vaeEncoder: 0, steps: [], previews: 0, decode: 0, batchSizes: [], decoder: 'vae', decodes: 0 };
}

export function createGenerationState(request: GenerateRequest, sampler: Sampler, vaeFactor: number, channels: number): GenerationState {
  const latentW = request.width / vaeFactor;
  const latentH = request.height / vaeFactor;
  return {
    request,
    latentW,
    latentH,
    latentSize: channels * latentW * latentH,
    rng: new GaussianRng(request.seed),
    sampler,
    steps: sampler.timesteps.length,
    stepIndex: 0,
    timings: newTimings(),
  };
}

/** Splits states into groups that can share one batched call (same latent size, plus `extraKey`). */
export function groupForBatch<T extends GenerationState>(states: readonly T[], extraKey?: (s: T) => string): T[][] {
  const groups = new Map<string, T[]>();
  for (const state of states) {
    const key = `${state.latentW}x${state.latentH}${extraKey ? `/${extraKey(state)}` : ''}`;
    const group = groups.get(key);
    if (group) group.push(state);
    else groups.set(key, [state]);
  }
  return [...groups.values()];
}

/** Stacks equally sized arrays into one batch tensor's data, multiplied by `scale` when given. */
export function concatBatch(parts: readonly Float32Array[], scale = 1): Float32Array {
  if (parts.length === 1 && scale === 1) return parts[0];
  const size = parts[0].length;
  const out = new Float32Array(size * parts.length);
  if (scale === 1) {
    parts.forEach((part, i) => out.set(part, i * size));
    return out;
  }
  for (let i = 0, o = 0; i < parts.length; i++) {
    const part = parts[i];
    for (let k = 0; k < size; k++, o++) out[o] = part[k] * scale;
  }
  return out;
}

/** The i-th of `count` equal slices of a batch output, as a copy: for data that is kept. */
export function sliceBatch(data: Float32Array, count: number, i: number): Float32Array {
  const size = data.length / count;
  return data.slice(i * size, (i + 1) * size);
}

/** The i-th of `count` equal slices of a batch output, as a view: for data read once, at once
 * (a copy of a 512x512 decoder output is 3 MB). */
export function batchItem<T extends Float32Array | Uint16Array>(data: T, count: number, i: number): T {
  const size = data.length / count;
  return data.subarray(i * size, (i + 1) * size) as T;
}

export type { RgbImage, WorkerTimings };
