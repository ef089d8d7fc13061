// The `preview` and `frame` messages of one request, encoded from the inference process's RGB on
// libvips threads (sharp's async API), with the frame's stage timings; and the error that ends a
// request whose job failed.
import { performance } from 'node:perf_hooks';
import { ErrorCode, type ErrorMessage, type FrameMessage, type PreviewMessage, type RequestId } from '../../shared/protocol.js';
import type { JobFailure } from '../engine/engine.js';
import type { RgbImage, WorkerTimings } from '../engine/messages.js';
import { encodeImage } from '../imaging.js';
import type { ValidGenerate } from './validate.js';

/** When a request passed each point before the inference process took it (performance.now()). */
export interface RequestClock {
  arrivedAt: number;
  admittedAt: number;
  startedAt: number;
  imageDecodeMs: number;
}

const round = (ms: number) => Math.round(ms * 100) / 100;

/** The error that ends a request whose job failed in the inference process. */
export function failureReply(id: RequestId, failure: JobFailure, retryAfterRestartMs: number): ErrorMessage {
  const { message } = failure;
  switch (failure.reason) {
    case 'invalid_input':
      return { type: 'error', id, code: ErrorCode.InvalidStrength, message };
    case 'engine_restarted':
      return { type: 'error', id, code: ErrorCode.EngineRestarted, message, retryAfterMs: retryAfterRestartMs };
    case 'internal':
      return { type: 'error', id, code: ErrorCode.Internal, message: `generation failed: ${message}` };
  }
}

export async function previewMessage(request: ValidGenerate, step: number, steps: number, image: RgbImage, quality: number): Promise<PreviewMessage> {
  const { width, height } = request;
  const bytes = await encodeImage(image, 'jpeg', quality, width, height);
  return { type: 'preview', id: request.id, step, steps, image: bytes, width, height };
}

export async function frameMessage(request: ValidGenerate, clock: RequestClock, image: RgbImage, timings: WorkerTimings, quality: number): Promise<FrameMessage> {
  const t0 = performance.now();
  const bytes = await encodeImage(image, request.format, quality, request.width, request.height);
  const now = performance.now();
  return {
    type: 'frame',
    id: request.id,
    image: bytes,
    format: request.format,
    width: request.width,
    height: request.height,
    seed: request.seed,
    decoder: timings.decoder,
    timings: {
      queue: round(clock.startedAt - clock.admittedAt),
      imageDecode: round(clock.imageDecodeMs),
      textEncoder: round(timings.textEncoder),
      vaeEncoder: round(timings.vaeEncoder),
      steps: timings.steps.map(round),
      batchSizes: timings.batchSizes,
      previews: round(timings.previews),
      decode: round(timings.decode),
      decodes: timings.decodes,
      encode: round(now - t0),
      total: round(now - clock.arrivedAt),
    },
  };
}
