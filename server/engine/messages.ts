// Messages between the server and the inference process (over its IPC channel, with the structured
// clone serialization, so typed arrays travel as binary).
import type { FinalDecoder, ModelInfo } from '../../shared/protocol.js';
import type { Device } from '../config.js';
import type { GenerateRequest } from '../pipeline/generation.js';

export interface LoadOptions {
  modelDir: string;
  device: Device;
  /** GPU ordinal for cuda and tensorrt. */
  deviceId: number;
  threads: number;
  spinning: boolean;
  /** Requests active in the worker at once, and so the largest UNet batch. */
  maxBatch: number;
  /** Preview a request's last step too (the frame follows at once with the same latent). */
  lastPreview?: boolean;
  /** Accepted output sizes (the operator's limits): warm-up runs their extremes. */
  sizes: { min: number; max: number; multiple: number };
}

/** One generation as the worker sees it: validated, defaulted, its image decoded to RGB. */
export interface JobSpec extends GenerateRequest {
  jobId: number;
  /** Stream batching: the job of the same session this one starts beside (admitted before it).
   * This job's frame is never done before that one's, so a session's frames keep their order. */
  after?: number;
}

export type ToWorker =
  | { kind: 'load'; options: LoadOptions }
  | { kind: 'run'; job: JobSpec }
  | { kind: 'cancel'; jobId: number };

/** Stage times measured inside the worker, in ms. */
export interface WorkerTimings {
  textEncoder: number;
  vaeEncoder: number;
  steps: number[];
  previews: number;
  /** The final decode, by `decoder`. */
  decode: number;
  /** Batch size of the UNet call of each step. */
  batchSizes: number[];
  /** The decoder that made the final image. */
  decoder: FinalDecoder;
  /** Images decoded from latents for this request (previews and the final one). */
  decodes: number;
}

export interface RgbImage {
  /** Interleaved RGB bytes. */
  rgb: Uint8Array;
  width: number;
  height: number;
}

export type FromWorker =
  | { kind: 'ready'; info: ModelInfo; warmupMs: number; maxBatch: number; warmed: string[]; warnings: string[]; pairCost?: number }
  | { kind: 'load-failed'; message: string }
  | { kind: 'started'; jobId: number }
  | { kind: 'preview'; jobId: number; step: number; steps: number; image: RgbImage }
  | { kind: 'done'; jobId: number; image: RgbImage; timings: WorkerTimings }
  | { kind: 'cancelled'; jobId: number }
  | { kind: 'failed'; jobId: number; message: string; invalidInput: boolean }
  | { kind: 'unet-call'; batchSize: number; ms: number };
