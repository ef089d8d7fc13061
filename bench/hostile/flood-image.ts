// The image flood's input: one large JPEG made once before the run. Seeded noise, because a flat or
// smooth picture compresses to a few hundred kilobytes however many pixels it has, and the point is
// a message near the server's size limit that also costs a full-size decode.
import sharp from 'sharp';

/** mulberry32: a fixed seed gives the same image, so runs are comparable. */
function noise(bytes: number, seed: number): Buffer {
  const out = Buffer.alloc(bytes);
  let s = seed >>> 0;
  for (let i = 0; i < bytes; i += 4) {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    const r = (t ^ (t >>> 14)) >>> 0;
    out[i] = r;
    if (i + 1 < bytes) out[i + 1] = r >>> 8;
    if (i + 2 < bytes) out[i + 2] = r >>> 16;
    if (i + 3 < bytes) out[i + 3] = r >>> 24;
  }
  return out;
}

export interface FloodImage {
  bytes: Uint8Array;
  width: number;
  height: number;
  quality: number;
}

/**
 * A side x side JPEG of at most `targetBytes`, as close below it as JPEG quality steps allow:
 * quality is searched, since encoded size grows with it monotonically for the same pixels.
 */
export async function floodImage(side: number, targetBytes: number, seed = 1): Promise<FloodImage> {
  const raw = noise(side * side * 3, seed);
  const encode = async (quality: number) => new Uint8Array(await sharp(raw, { raw: { width: side, height: side, channels: 3 } }).jpeg({ quality }).toBuffer());
  let low = 1;
  let high = 100;
  let best: FloodImage | undefined;
  // At most seven encodes of a 16-megapixel image: a second or two.
  while (low <= high) {
    const quality = (low + high) >> 1;
    const bytes = await encode(quality);
    if (bytes.byteLength <= targetBytes) {
      best = { bytes, width: side, height: side, quality };
      low = quality + 1;
    } else {
      high = quality - 1;
    }
  }
  if (!best) throw new Error(`a ${side}x${side} noise JPEG does not fit in ${targetBytes} bytes even at quality 1`);
  return best;
}
