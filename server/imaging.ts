// Image decode and encode on the uWS thread through sharp's async API: libvips does the work on its
// own threads, so the event loop never waits on pixels.
import sharp, { type Metadata } from 'sharp';
import type { ImageFormat } from '../shared/protocol.js';
import type { RgbImage } from './engine/messages.js';

// libvips' own thread pool: the inference worker needs the cores more.
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

/**
 * Decodes an uploaded JPEG/PNG/WebP to RGB bytes of exactly width x height (cover crop, centred).
 * The header is read first so a decompression bomb is refused before any pixel is decoded.
 */
export async function decodeInputImage(bytes: Uint8Array, width: number, height: number, maxPixels: number): Promise<Uint8Array> {
  let meta: Metadata;
  try {
    // metadata() reads only the header, so sharp's own pixel limit is lifted here and ours applied
    // below with its own error code; the decode further down keeps sharp's limit as a second guard.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new ImageInputError('undecodable', `image header unreadable: ${(err as Error).message}`);
  }
  if (!meta.format || !INPUT_FORMATS.has(meta.format)) {
    throw new ImageInputError('undecodable', `image format ${meta.format ?? 'unknown'} is not JPEG, PNG or WebP`);
  }
  const pixels = (meta.width ?? 0) * (meta.height ?? 0);
  if (pixels <= 0) throw new ImageInputError('undecodable', 'image has no pixels');
  if (pixels > maxPixels) {
    throw new ImageInputError('too_large', `image is ${meta.width}x${meta.height}; at most ${maxPixels} pixels are accepted`);
  }
  try {
    const out = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error', pages: 1 })
      .rotate()
      .resize(width, height, { fit: 'cover' })
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer();
    // A fresh, exactly sized copy: its buffer is transferred to the inference worker.
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
