// Conversions between interleaved RGB bytes and planar (NCHW, batch 1) float tensors, plus the
// cheap latent-to-RGB projection used for previews when a model ships no preview decoder.
import { halfToFloatTable } from './fp16.js';

/** RGB bytes (HWC) -> planar floats in [-1, 1], the VAE encoder's input range. */
export function rgbToPlanar(rgb: Uint8Array, width: number, height: number): Float32Array {
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let i = 0, p = 0; p < plane; p++, i += 3) {
    out[p] = rgb[i] / 127.5 - 1;
    out[plane + p] = rgb[i + 1] / 127.5 - 1;
    out[2 * plane + p] = rgb[i + 2] / 127.5 - 1;
  }
  return out;
}

/**
 * Planar floats -> RGB bytes. `low`..`high` is the tensor's range: [-1, 1] for the VAE decoder,
 * [0, 1] for TAESD-style preview decoders. `data` may be a view into a batch output, and float16
 * bits (a Uint16Array) are read as they are, without a float32 copy of the whole image first.
 */
export function planarToRgb(data: Float32Array | Uint16Array, width: number, height: number, low: number, high: number): Uint8Array {
  const plane = width * height;
  const out = new Uint8Array(3 * plane);
  const scale = 255 / (high - low);
  // One pass writing each pixel's three bytes in a row: the output is the larger stream.
  // Uint8Array assignment truncates; +0.5 rounds, and NaN becomes 0.
  if (data instanceof Uint16Array) {
    const f = halfToFloatTable();
    for (let p = 0, o = 0; p < plane; p++, o += 3) {
      let v = (f[data[p]] - low) * scale + 0.5;
      out[o] = v < 0 ? 0 : v > 255 ? 255 : v;
      v = (f[data[plane + p]] - low) * scale + 0.5;
      out[o + 1] = v < 0 ? 0 : v > 255 ? 255 : v;
      v = (f[data[2 * plane + p]] - low) * scale + 0.5;
      out[o + 2] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    return out;
  }
  for (let p = 0, o = 0; p < plane; p++, o += 3) {
    let v = (data[p] - low) * scale + 0.5;
    out[o] = v < 0 ? 0 : v > 255 ? 255 : v;
    v = (data[plane + p] - low) * scale + 0.5;
    out[o + 1] = v < 0 ? 0 : v > 255 ? 255 : v;
    v = (data[2 * plane + p] - low) * scale + 0.5;
    out[o + 2] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return out;
}

/**
 * Latent -> RGB factors for SD 1.x/2.x latents (the widely used approximation from ComfyUI and
 * A1111's "approx NN" preview); rows are latent channels, columns R, G, B.
 */
const SD_LATENT_RGB: readonly (readonly number[])[] = [
  [0.3512, 0.2297, 0.3227],
  [0.325, 0.4974, 0.235],
  [-0.2829, 0.1762, 0.2721],
  [-0.212, -0.2616, -0.7177],
];

/** Projects diffusion latents (planar, `channels` x width x height) to RGB at latent resolution. */
export function projectLatentsToRgb(latents: Float32Array, channels: number, width: number, height: number): Uint8Array {
  const plane = width * height;
  const out = new Uint8Array(3 * plane);
  const rows = Math.min(channels, SD_LATENT_RGB.length);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      let v = 0;
      for (let k = 0; k < rows; k++) v += latents[k * plane + p] * SD_LATENT_RGB[k][c];
      // The projection lands roughly in [-1, 1].
      const byte = (v + 1) * 127.5 + 0.5;
      out[p * 3 + c] = byte < 0 ? 0 : byte > 255 ? 255 : byte;
    }
  }
  return out;
}
