// Cheap "is this camera frame the same as the last one" test for image-to-image streams. A grid
// sample of pixels is enough to tell a still scene (sensor noise of a level or two) from motion,
// and keeps the cost far below a millisecond on the uWS thread even at 1024x1024. The session
// keeps only this sample: the full image is handed to the inference process.
import type { RequestId } from '../../shared/protocol.js';

/** Sample every STRIDE-th pixel of every STRIDE-th row. */
const STRIDE = 4;

export function frameSignature(rgb: Uint8Array, width: number, height: number): Uint8Array {
  const out = new Uint8Array(Math.ceil(width / STRIDE) * Math.ceil(height / STRIDE) * 3);
  let o = 0;
  for (let y = 0; y < height; y += STRIDE) {
    const row = y * width * 3;
    for (let x = 0; x < width; x += STRIDE) {
      const i = row + x * 3;
      out[o++] = rgb[i];
      out[o++] = rgb[i + 1];
      out[o++] = rgb[i + 2];
    }
  }
  return out;
}

/** Mean absolute difference per channel (0-255) between two signatures of the same image size. */
export function signatureDistance(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length || a.length === 0) return 255;
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

/** The identity of an input apart from its image: only inputs with the same one are compared. */
export interface SimilarityKey {
  prompt: string;
  steps: number;
  strength: number;
  width: number;
  height: number;
  format: string;
  seed: number;
  explicitSeed: boolean;
}

/** One connection's memory of its last image-to-image input admitted, to recognise an unchanged
 * camera frame. */
export class SimilarFrameFilter {
  private last: { id: RequestId; key: string; signature: Uint8Array } | undefined;

  /** `threshold`: mean absolute difference (0-255) below which an input counts as unchanged; 0 = off. */
  constructor(private readonly threshold: number) {}

  /** The id of the earlier input this one repeats, or undefined (and it becomes the new reference). */
  sameAs(id: RequestId, request: SimilarityKey, rgb: Uint8Array): RequestId | undefined {
    if (this.threshold <= 0) return undefined;
    const seed = request.explicitSeed ? request.seed : 'any';
    const key = [request.prompt, request.steps, request.strength, request.width, request.height, request.format, seed].join('\u0000');
    const signature = frameSignature(rgb, request.width, request.height);
    const last = this.last;
    if (last && last.key === key && signatureDistance(last.signature, signature) < this.threshold) return last.id;
    this.last = { id, key, signature };
    return undefined;
  }
}
