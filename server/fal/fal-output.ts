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
  /** Which image of a num_images request the preview shows (from 0); absent for one image. */
  image_index?: number;
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

/** One frame's fal output. */
export function falImageResult(frame: FrameMessage, ctx: { plan: FalPlan; prompt: string; image: FalImageCarrier }): FalImageOutput {
  return falImagesResult([frame], { plan: ctx.plan, prompt: ctx.prompt, images: [ctx.image] });
}

/** The output of a request for several images (num_images), made one after another: `seed` is the
 * first image's (image i had seed + i) and the timings add up. */
export function falImagesResult(frames: readonly FrameMessage[], ctx: { plan: FalPlan; prompt: string; images: readonly FalImageCarrier[] }): FalImageOutput {
  const sum = (pick: (frame: FrameMessage) => number) => frames.reduce((total, frame) => total + pick(frame), 0);
  const inference = sum((f) => f.timings.steps.reduce((a, b) => a + b, 0) + f.timings.decode);
  const first = frames[0]!;
  return {
    images: frames.map((frame, i) => falImage(ctx.images[i]!, contentTypeOf(frame.format), frame.width, frame.height)),
    seed: first.seed,
    // The steps that ran: with an input image, SD-Turbo runs floor(steps x strength) of those asked.
    num_inference_steps: first.timings.steps.length,
    prompt: ctx.prompt,
    timings: { inference: seconds(inference), queue: seconds(sum((f) => f.timings.queue)), total: seconds(sum((f) => f.timings.total)) },
    // No safety checker runs on this server, so nothing is ever flagged. The fields are present
    // because fal clients read them (and some index into them).
    has_nsfw_concepts: frames.map(() => false),
    nsfw_content_detected: frames.map(() => false),
    ...(ctx.plan.requestId !== undefined ? { request_id: ctx.plan.requestId } : {}),
  };
}

export function falPreviewResult(preview: PreviewMessage, ctx: { plan: FalPlan; image: FalImageCarrier; imageIndex?: number }): FalPreviewOutput {
  return {
    // Previews are always JPEG.
    images: [falImage(ctx.image, 'image/jpeg', preview.width, preview.height)],
    partial: true,
    step: preview.step,
    num_inference_steps: preview.steps,
    ...(ctx.plan.numImages > 1 ? { image_index: ctx.imageIndex ?? 0 } : {}),
    ...(ctx.plan.requestId !== undefined ? { request_id: ctx.plan.requestId } : {}),
  };
}
