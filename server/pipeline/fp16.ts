/**
 * IEEE 754 binary32 <-> binary16 conversion on raw bits (Node 20 has no Float16Array).
 * float32 -> float16 rounds to nearest, ties to even; handles subnormals, overflow to infinity, inf and NaN
 * (NaN stays NaN, quiet, with as much of its payload as fits).
 */

export function float32ToFloat16(src: Float32Array): Uint16Array {
  const n = src.length;
  const bits = new Uint32Array(src.buffer, src.byteOffset, n);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000;
    const abs = x & 0x7fffffff;
    let h: number;
    if (abs >= 0x38800000) {
      // |x| >= 2^-14: normal half, or overflow / inf / NaN
      if (abs >= 0x7f800000) {
        h = abs > 0x7f800000 ? 0x7e00 | ((abs >>> 13) & 0x3ff) : 0x7c00;
      } else if (abs >= 0x477ff000) {
        h = 0x7c00; // rounds to >= 65520: infinity
      } else {
        // rebias exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even;
        // a mantissa carry correctly bumps the exponent.
        h = (abs - 0x38000000 + 0xfff + ((abs >>> 13) & 1)) >>> 13;
      }
    } else if (abs >= 0x33000000) {
      // 2^-25 <= |x| < 2^-14: subnormal half (unit 2^-24); may round up to the smallest normal 0x0400.
      const e = abs >>> 23; // 102..112
      const m = (abs & 0x7fffff) | 0x800000;
      const shift = 126 - e; // 14..24
      let q = m >>> shift;
      const rem = m & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (q & 1) !== 0)) q++;
      h = q;
    } else {
      h = 0; // |x| <= 2^-25 (the tie at 2^-25 goes to even 0)
    }
    out[i] = sign | h;
  }
  return out;
}

export function float16ToFloat32(src: Uint16Array): Float32Array {
  const n = src.length;
  const out = new Float32Array(n);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) {
    const h = src[i];
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) {
      // zero or subnormal: m * 2^-24 (exact in float32)
      const v = m * 5.960464477539063e-8;
      out[i] = h & 0x8000 ? -v : v;
    } else if (e === 31) {
      bits[i] = ((h & 0x8000) << 16) | 0x7f800000 | (m << 13);
    } else {
      bits[i] = ((h & 0x8000) << 16) | ((e + 112) << 23) | (m << 13);
    }
  }
  return out;
}

let halfTable: Float32Array | undefined;

/** float16 bits -> float32 value for all 65,536 patterns (256 KB, built on first use): a lookup
 * beats the bit arithmetic where a float16 output is read once, straight into pixels. */
export function halfToFloatTable(): Float32Array {
  if (!halfTable) {
    const bits = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) bits[i] = i;
    halfTable = float16ToFloat32(bits);
  }
  return halfTable;
}
