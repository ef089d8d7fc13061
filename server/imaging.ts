// Image decode and encode on the uWS thread through sharp's async API: libvips does the work on its
// own threads, so the event loop never waits on pixels.
import sharp, { type Metadata } from 'sharp';
import type { ImageFormat } from '../shared/protocol.js';
import type { RgbImage } from './engine/messages.js';

// libvips' own thread pool: the inference process needs the cores more.
sharp.concurrency(1);
sharp.cache(false);

export class ImageInputError extends Error {
  constructor(
    readonly reason: 'undecodable' | 'too_large',
    message: string,
  ) {
    super(message);
  }
}

const INPUT_FORMATS = new Set(['jpeg', 'png', 'webp']);

/** What an input image's header says, read before any pixel is decoded. */
export interface InputHeader {
  format: string;
  width: number;
  height: number;
  channels: number;
  /** 2 for 16-bit PNG. */
  bytesPerSample: number;
  /** Progressive JPEG or interlaced PNG: the decoder must hold the whole image, not a few rows. */
  progressive: boolean;
}

/**
 * Reads the header of an uploaded JPEG/PNG/WebP, so that a decompression bomb is refused, and the
 * decode's memory reserved, before any pixel is decoded.
 */
export async function readInputHeader(bytes: Uint8Array, maxPixels: number): Promise<InputHeader> {
  let meta: Metadata;
  try {
    // metadata() reads only the header, so sharp's own pixel limit is lifted here and ours applied
    // below with its own error code; the decode keeps sharp's limit as a second guard.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new ImageInputError('undecodable', `image header unreadable: ${(err as Error).message}`);
  }
  if (!meta.format || !INPUT_FORMATS.has(meta.format)) {
    throw new ImageInputError('undecodable', `image format ${meta.format ?? 'unknown'} is not JPEG, PNG or WebP`);
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  const pixels = width * height;
  if (pixels <= 0) throw new ImageInputError('undecodable', 'image has no pixels');
  if (pixels > maxPixels) {
    throw new ImageInputError('too_large', `image is ${width}x${height}; at most ${maxPixels} pixels are accepted`);
  }
  return {
    format: meta.format,
    width,
    height,
    channels: meta.channels ?? 4,
    bytesPerSample: meta.depth === 'ushort' ? 2 : 1,
    progressive: meta.isProgressive === true,
  };
}

// Peak RSS added by one decode to 1024x1024 in this pipeline (sharp 0.35.5, libvips 8.18.7,
// concurrency 1, cache off), against the image's raw pixels (width x height x channels x bytes):
//   4000x4000 baseline JPEG, 7.9 MB, raw 48 MB ........... 15 MB (23 MB with fastShrinkOnLoad off)
//   4000x4000 WebP, 8.4 MB, raw 48 MB ..................... 13 MB
//   4096x4096 RGBA PNG, 0.3 MB, raw 67 MB ................. 37 MB (16-bit, raw 134 MB: 67 MB)
//   4096x4096 interlaced RGBA PNG, raw 67 MB .............. 93 MB (16-bit, raw 134 MB: 178 MB)
//   4000x4000 progressive JPEG 4:4:4, 7.4 MB, raw 48 MB ... 103 MB (4:2:0: 57 MB)
//   4096x4096 progressive JPEG 4:4:4, flat, 0.2 MB ........ 108 MB
// Streamed decodes stay well under the raw size (shrink-on-load decodes a JPEG at 1/2 to 1/8
// scale), but libjpeg keeps every DCT coefficient of a progressive JPEG (2 bytes a sample) and an
// interlaced PNG is decoded whole, so those cost up to 2.15x and 1.4x the raw size. A 200 KB file
// can thus cost 108 MB: the reservation must come from the header, never from the byte count.
const WHOLE_IMAGE_FACTOR = { progressiveJpeg: 2.25, interlacedPng: 1.5, streamed: 1 };

/**
 * Bytes to reserve for decoding one image: its compressed bytes, the decoder's working memory
 * (an upper bound of the measurements above), and the output twice (libvips' buffer and the
 * exact-size copy handed to the worker coexist for a moment).
 */
export function decodeMemoryBytes(header: InputHeader, compressedBytes: number, width: number, height: number): number {
  const raw = header.width * header.height * header.channels * header.bytesPerSample;
  const factor = !header.progressive
    ? WHOLE_IMAGE_FACTOR.streamed
    : header.format === 'jpeg'
      ? WHOLE_IMAGE_FACTOR.progressiveJpeg
      : WHOLE_IMAGE_FACTOR.interlacedPng;
  return compressedBytes + Math.ceil(raw * factor) + 2 * rgbBytes(width, height);
}

export const rgbBytes = (width: number, height: number): number => width * height * 3;

/**
 * Decodes an uploaded JPEG/PNG/WebP to RGB bytes of exactly width x height (cover crop, centred).
 * Read the header with readInputHeader first: it applies the pixel limit with its own error code.
 */
export async function decodeInputImage(bytes: Uint8Array, width: number, height: number, maxPixels: number): Promise<Uint8Array> {
  try {
    const out = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error', pages: 1 })
      .rotate()
      // Shrink-on-load (sharp's default, stated here because the memory bound above relies on it)
      // decodes a 4000x4000 JPEG at 2000x2000: 35% less memory and 40% less time than a full decode.
      .resize(width, height, { fit: 'cover', fastShrinkOnLoad: true })
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer();
    // A fresh, exactly sized copy: its buffer is what goes to the inference process.
    return new Uint8Array(out);
  } catch (err) {
    throw new ImageInputError('undecodable', `image could not be decoded: ${(err as Error).message}`);
  }
}

/** Encodes RGB to the wire format, resizing first when the source is smaller (latent projections). */
export async function encodeImage(
  image: RgbImage,
  format: ImageFormat,
  quality: number,
  width = image.width,
  height = image.height,
): Promise<Uint8Array> {
  let pipeline = sharp(image.rgb, { raw: { width: image.width, height: image.height, channels: 3 } });
  if (width !== image.width || height !== image.height) pipeline = pipeline.resize(width, height, { kernel: 'linear' });
  switch (format) {
    case 'jpeg':
      pipeline = pipeline.jpeg({ quality, mozjpeg: false });
      break;
    case 'webp':
      pipeline = pipeline.webp({ quality, effort: 0 });
      break;
    case 'png':
      pipeline = pipeline.png({ compressionLevel: 3, adaptiveFiltering: false });
      break;
  }
  return pipeline.toBuffer();
}
