// Native frames and previews -> fal's output objects. Whether an image travels as `content`
// (realtime msgpack bin), as `url` (HTTP: a stored file, or a data: URI under sync_mode) or both
// (realtime with sync_mode) is the caller's choice; these only shape the object.
import type { FrameMessage, ImageFormat, PreviewMessage } from '../../shared/protocol.js';
import type { FalPlan } from './fal-input.js';

export type FalContentType = 'image/jpeg' | 'image/png' | 'image/webp';

export interface FalImage {
  content?: Uint8Array;
  url?: string;
  content_type: FalContentType;
  width: number;
  height: number;
}

export interface FalImageOutput {
  images: FalImage[];
  seed: number;
  num_inference_steps: number;
  prompt: string;
  /** Seconds, as fal reports them. */
  timings: { inference: number; queue: number; total: number };
  has_nsfw_concepts: boolean[];
  nsfw_content_detected: boolean[];
  request_id?: FalPlan['requestId'];
}

export interface FalPreviewOutput {
  images: FalImage[];
  /** Marks an intermediate result (an extension: fal's apps send none). */
  partial: true;
  step: number;
  num_inference_steps: number;
  request_id?: FalPlan['requestId'];
}

/** How the image is carried: bytes, a URL, or both. */
export interface FalImageCarrier {
  content?: Uint8Array;
  url?: string;
}

export function contentTypeOf(format: ImageFormat): FalContentType {
  switch (format) {
    case 'png': return 'image/png';
    case 'webp': return 'image/webp';
    default: return 'image/jpeg';
  }
}

export function dataUri(bytes: Uint8Array, contentType: string): string {
  // A view, not a copy: frames can be a few MB.
  const base64 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  return `data:${contentType};base64,${base64}`;
}

function falImage(image: FalImageCarrier, contentType: FalContentType, width: number, height: number): FalImage {
  return {
    ...(image.content !== undefined ? { content: image.content } : {}),
    ...(image.url !== undefined ? { url: image.url } : {}),
    content_type: contentType,
    width,
    height,
  };
}

const seconds = (ms: number) => ms / 1000;

export function falImageResult(
  frame: FrameMessage,
  ctx: { plan: FalPlan; prompt: string; image: FalImageCarrier },
): FalImageOutput {
  const t = frame.timings;
  const stepMs = t.steps.reduce((a, b) => a + b, 0);
  return {
    images: [falImage(ctx.image, contentTypeOf(frame.format), frame.width, frame.height)],
    seed: frame.seed,
    // The steps that ran: with an input image, SD-Turbo runs floor(steps x strength) of those asked.
    num_inference_steps: t.steps.length,
    prompt: ctx.prompt,
    timings: { inference: seconds(stepMs + t.decode), queue: seconds(t.queue), total: seconds(t.total) },
    // No safety checker runs on this server, so nothing is ever flagged. The fields are present
    // because fal clients read them (and some index into them).
    has_nsfw_concepts: [false],
    nsfw_content_detected: [false],
    ...(ctx.plan.requestId !== undefined ? { request_id: ctx.plan.requestId } : {}),
  };
}

export function falPreviewResult(preview: PreviewMessage, ctx: { plan: FalPlan; image: FalImageCarrier }): FalPreviewOutput {
  return {
    // Previews are always JPEG.
    images: [falImage(ctx.image, 'image/jpeg', preview.width, preview.height)],
    partial: true,
    step: preview.step,
    num_inference_steps: preview.steps,
    ...(ctx.plan.requestId !== undefined ? { request_id: ctx.plan.requestId } : {}),
  };
}
