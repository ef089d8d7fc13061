/**
 * Seeded Gaussian noise: xoshiro128** (state seeded through splitmix32) + Box-Muller using both outputs.
 *
 * All integer work is 32-bit (Math.imul, >>>), so the uniform stream is identical everywhere. The Gaussian
 * transform uses Math.log/Math.sqrt/Math.cos/Math.sin; V8 implements log/cos/sin in software (its fdlibm
 * port, not the C library), so a given seed gives the same float32 noise on every platform Node runs on.
 */

const TWO_PI = 2 * Math.PI;
const INV_2_53 = 1 / 9007199254740992;

export class GaussianRng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare = 0;
  private hasSpare = false;

  constructor(seed: number /* uint32 */) {
    if (!Number.isFinite(seed)) throw new RangeError(`seed must be a finite number, got ${seed}`);
    // splitmix32 to spread the seed over the 128-bit state (never all zero).
    let z = seed >>> 0;
    const next = (): number => {
      z = (z + 0x9e3779b9) | 0;
      let t = z ^ (z >>> 16);
      t = Math.imul(t, 0x21f0aaad);
      t ^= t >>> 15;
      t = Math.imul(t, 0x735a2d97);
      t ^= t >>> 15;
      return t >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next raw 32-bit output (xoshiro128**). */
  nextUint32(): number {
    const s0 = this.s0;
    const s1 = this.s1;
    const s2 = this.s2;
    const s3 = this.s3;
    const m = Math.imul(s1, 5);
    const result = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
    const t = s1 << 9;
    let n2 = s2 ^ s0;
    let n3 = s3 ^ s1;
    const n1 = s1 ^ n2;
    const n0 = s0 ^ n3;
    n2 ^= t;
    n3 = (n3 << 11) | (n3 >>> 21);
    this.s0 = n0;
    this.s1 = n1;
    this.s2 = n2;
    this.s3 = n3;
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  nextUniform(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) * INV_2_53;
  }

  /** Standard normal sample (Box-Muller; the second value of each pair is kept for the next call). */
  nextGaussian(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    const u1 = 1 - this.nextUniform(); // (0, 1]: log() stays finite
    const u2 = this.nextUniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    const a = TWO_PI * u2;
    this.spare = r * Math.sin(a);
    this.hasSpare = true;
    return r * Math.cos(a);
  }

  /** Fills `out` with standard normal samples and returns it. */
  fill(out: Float32Array): Float32Array {
    let i = 0;
    const n = out.length;
    if (this.hasSpare && n > 0) {
      out[i++] = this.spare;
      this.hasSpare = false;
    }
    for (; i + 1 < n; i += 2) {
      const u1 = 1 - this.nextUniform();
      const u2 = this.nextUniform();
      const r = Math.sqrt(-2 * Math.log(u1));
      const a = TWO_PI * u2;
      out[i] = r * Math.cos(a);
      out[i + 1] = r * Math.sin(a);
    }
    if (i < n) out[i] = this.nextGaussian();
    return out;
  }

  /** A new Float32Array of `n` standard normal samples. */
  gaussian(n: number): Float32Array {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`length must be a non-negative integer, got ${n}`);
    return this.fill(new Float32Array(n));
  }
}
