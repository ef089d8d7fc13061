import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GaussianRng } from '../server/pipeline/rng.js';
import { float16ToFloat32, float32ToFloat16 } from '../server/pipeline/fp16.js';

// ------------------------------------------------------------------------------------------------
// RNG. Golden values come from an independent Python transcription of the reference C code of
// xoshiro128** (Blackman & Vigna) seeded by splitmix32 (z += 0x9e3779b9; z ^= z>>>16; *0x21f0aaad;
// ^>>>15; *0x735a2d97; ^>>>15), and Box-Muller in float64 rounded to float32.

test('xoshiro128** stream matches the reference for fixed seeds', () => {
  const golden: [number, number[]][] = [
    [0, [1789933344, 44971166, 2521387044, 3848737593, 1138324114, 749234105]],
    [42, [660444221, 3652823732, 77672526, 910233633, 2297337756, 3786072677]],
    [0xdeadbeef, [3842467093, 879304004, 3694663928, 2788030634, 934155191, 702880729]],
  ];
  for (const [seed, values] of golden) {
    const r = new GaussianRng(seed);
    assert.deepEqual(Array.from({ length: values.length }, () => r.nextUint32()), values, `seed ${seed}`);
  }
});

test('Gaussian stream matches the reference (both Box-Muller outputs used)', () => {
  const ref = [0.5741420388221741, 0.06552115082740784, -0.1762818843126297, -1.2246999740600586, -0.3061771094799042,
    1.2679831981658936];
  assert.deepEqual(Array.from(new GaussianRng(42).gaussian(6)), ref);
  const r = new GaussianRng(42);
  assert.deepEqual(Array.from({ length: 6 }, () => Math.fround(r.nextGaussian())), ref);
});

test('same seed => same sequence; fill/gaussian/nextGaussian interleave consistently', () => {
  const a = new GaussianRng(123).gaussian(1001);
  const b = new GaussianRng(123).gaussian(1001);
  assert.deepEqual(a, b);
  assert.notDeepEqual(new GaussianRng(124).gaussian(16), a.slice(0, 16));
  // odd chunks keep the spare value: 3 + 1 + 997 equals one block of 1001
  const r = new GaussianRng(123);
  const parts = [...r.gaussian(3), Math.fround(r.nextGaussian()), ...r.fill(new Float32Array(997))];
  assert.deepEqual(Float32Array.from(parts), a);
  assert.equal(new GaussianRng(1).gaussian(0).length, 0);
  assert.throws(() => new GaussianRng(1).gaussian(-1), RangeError);
  // seeds are taken as uint32
  assert.deepEqual(new GaussianRng(-1).gaussian(4), new GaussianRng(0xffffffff).gaussian(4));
});

test('uniform in [0,1) and Gaussian moments look right', () => {
  const r = new GaussianRng(7);
  let min = 1;
  let max = 0;
  let sum = 0;
  for (let i = 0; i < 100_000; i++) {
    const u = r.nextUniform();
    assert.ok(u >= 0 && u < 1);
    if (u < min) min = u;
    if (u > max) max = u;
    sum += u;
  }
  assert.ok(min < 1e-3 && max > 1 - 1e-3);
  assert.ok(Math.abs(sum / 100_000 - 0.5) < 0.005);

  const g = new GaussianRng(99).gaussian(4 * 64 * 64 * 8);
  let m1 = 0;
  let m2 = 0;
  let m4 = 0;
  let over3 = 0;
  for (const x of g) {
    assert.ok(Number.isFinite(x));
    m1 += x;
    m2 += x * x;
    m4 += x ** 4;
    if (Math.abs(x) > 3) over3++;
  }
  const n = g.length;
  assert.ok(Math.abs(m1 / n) < 0.01, `mean ${m1 / n}`);
  assert.ok(Math.abs(m2 / n - 1) < 0.02, `variance ${m2 / n}`);
  assert.ok(Math.abs(m4 / n - 3) < 0.1, `kurtosis ${m4 / n}`);
  const p = over3 / n; // 0.0027 for a normal distribution
  assert.ok(p > 0.002 && p < 0.0035, `tail ${p}`);
});

// ------------------------------------------------------------------------------------------------
// fp16

const f32bits = (x: number): number => new Uint32Array(Float32Array.of(x).buffer)[0];
const fromBits = (b: number): number => new Float32Array(Uint32Array.of(b).buffer)[0];
const toHalf = (x: number): number => float32ToFloat16(Float32Array.of(x))[0];
const fromHalf = (h: number): number => float16ToFloat32(Uint16Array.of(h))[0];

test('float32 -> float16: known encodings (IEEE 754 binary16 table)', () => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest finite
    [65519.996, 0x7bff], // just under the rounding boundary
    [65520, 0x7c00], // rounds to infinity
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // tie between 0 and 2^-24 -> even (0)
    [-(2 ** -25), 0x8000],
    [fromBits(f32bits(2 ** -25) + 1), 0x0001], // just above the tie
    [3 * 2 ** -25, 0x0002], // tie between 1 and 2 units -> even (2)
    [5 * 2 ** -25, 0x0002], // tie between 2 and 3 units -> even (2)
    [2 ** -14 - 2 ** -25, 0x0400], // tie between 0x03ff and 0x0400 -> even (0x0400)
    [1e-10, 0x0000],
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [Math.PI, 0x4248],
    [1 + 2 ** -11, 0x3c00], // tie -> even mantissa
    [1 + 3 * 2 ** -11, 0x3c02], // tie -> even mantissa (up)
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // above the tie
    [2047, 0x67ff],
    [2049, 0x6800], // tie between 2048 and 2050 -> 2048
    [2051, 0x6802], // tie between 2050 and 2052 -> 2052
  ];
  for (const [x, h] of cases) {
    assert.equal(toHalf(x), h, `${x} -> 0x${h.toString(16)} (got 0x${toHalf(x).toString(16)})`);
  }
  // NaN stays NaN (exponent all ones, mantissa non-zero), sign kept
  for (const bits of [0x7fc00000, 0x7f800001, 0xffc00000, 0x7fbfffff]) {
    const h = toHalf(fromBits(bits));
    assert.equal(h & 0x7c00, 0x7c00);
    assert.notEqual(h & 0x03ff, 0);
    assert.equal(h >>> 15, bits >>> 31);
  }
  // float32 subnormals flush to signed zero
  assert.equal(toHalf(fromBits(0x00000001)), 0x0000);
  assert.equal(toHalf(fromBits(0x80000001)), 0x8000);
});

test('float16 -> float32: known decodings', () => {
  assert.equal(fromHalf(0x3c00), 1);
  assert.equal(fromHalf(0xc000), -2);
  assert.equal(fromHalf(0x7bff), 65504);
  assert.equal(fromHalf(0x0400), 2 ** -14);
  assert.equal(fromHalf(0x0001), 2 ** -24);
  assert.equal(fromHalf(0x03ff), 1023 * 2 ** -24);
  assert.equal(fromHalf(0x8001), -(2 ** -24));
  assert.equal(fromHalf(0x7c00), Infinity);
  assert.equal(fromHalf(0xfc00), -Infinity);
  assert.ok(Number.isNaN(fromHalf(0x7e00)));
  assert.ok(Number.isNaN(fromHalf(0xfd01)));
  assert.ok(Object.is(fromHalf(0x8000), -0));
  assert.ok(Object.is(fromHalf(0x0000), 0));
  assert.equal(fromHalf(0x3555), 0.333251953125);
});

/** Exact value of a finite half bit pattern, by the textbook definition (independent of the code under test). */
function halfValue(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

test('exhaustive: every half decodes to its textbook value and round-trips', () => {
  const all = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i;
  const f = float16ToFloat32(all);
  const back = float32ToFloat16(f);
  for (let h = 0; h < 65536; h++) {
    const e = (h >>> 10) & 0x1f;
    if (e === 31 && (h & 0x3ff) !== 0) {
      assert.ok(Number.isNaN(f[h]));
      assert.equal(back[h] & 0x7c00, 0x7c00);
      assert.notEqual(back[h] & 0x3ff, 0);
      continue;
    }
    if (e !== 31) assert.ok(Object.is(f[h], halfValue(h)) || (f[h] === 0 && halfValue(h) === 0), `decode 0x${h.toString(16)}`);
    assert.equal(back[h], h, `round trip 0x${h.toString(16)}`);
  }
});

test('exhaustive: midpoints between neighbouring halves round to even, neighbours of midpoints to nearest', () => {
  // For every pair of adjacent positive finite halves (h, h+1) the midpoint is exactly representable in
  // float32; it must go to whichever of h, h+1 is even. One float32 ulp below/above goes to h/h+1.
  const mids: number[] = [];
  const expect: number[] = [];
  for (let h = 0; h < 0x7bff; h++) {
    const mid = (halfValue(h) + halfValue(h + 1)) / 2;
    const midBits = f32bits(mid);
    assert.equal(fromBits(midBits), mid, 'midpoint exact in float32');
    mids.push(mid, fromBits(midBits - 1), fromBits(midBits + 1));
    expect.push(h % 2 === 0 ? h : h + 1, h, h + 1);
    mids.push(-mid);
    expect.push((h % 2 === 0 ? h : h + 1) | 0x8000);
  }
  // the midpoint between 65504 and the (virtual) next value 65536 goes to infinity
  mids.push(65520, fromBits(f32bits(65520) - 1));
  expect.push(0x7c00, 0x7bff);
  const got = float32ToFloat16(Float32Array.from(mids));
  for (let i = 0; i < mids.length; i++) {
    if (got[i] !== expect[i]) assert.fail(`${mids[i]} -> 0x${got[i].toString(16)}, expected 0x${expect[i].toString(16)}`);
  }
});

test('fp16 conversion works on subarray views and is fast enough for per-step latents', () => {
  const big = new Float32Array(10);
  big.set([1, 2, 3, 4], 4);
  const view = big.subarray(4, 8);
  assert.deepEqual(Array.from(float32ToFloat16(view)), [0x3c00, 0x4000, 0x4200, 0x4400]);
  const h = Uint16Array.of(0, 0x3c00, 0x4000, 0x4200);
  assert.deepEqual(Array.from(float16ToFloat32(h.subarray(1))), [1, 2, 3]);

  const x = new GaussianRng(5).gaussian(4 * 64 * 64);
  const t0 = performance.now();
  for (let i = 0; i < 50; i++) float16ToFloat32(float32ToFloat16(x));
  const ms = (performance.now() - t0) / 50;
  assert.ok(ms < 20, `round trip of 16384 values took ${ms.toFixed(2)} ms`);
  // relative error of a round trip is at most 2^-11 for normal values
  const y = float16ToFloat32(float32ToFloat16(x));
  for (let i = 0; i < x.length; i++) {
    if (Math.abs(x[i]) >= 2 ** -14) assert.ok(Math.abs(y[i] - x[i]) <= Math.abs(x[i]) * 2 ** -11);
  }
});
