/** mulberry32: a tiny deterministic 32-bit PRNG, shared by the model generator and the scene rules. */
export class Mulberry32 {
  private s: number;
  constructor(state: number) {
    this.s = state >>> 0;
  }
  /** Uniform in [0, 1). */
  random(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}
