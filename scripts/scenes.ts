/**
 * The scene and caption rules of the embedded default model's training data, ported from
 * training/scenes.py (keep the two in sync: palette, shapes and their geometry, positions, sizes,
 * caption templates, held-out combinations, rough drawings), plus the checker the evaluation
 * (bench/model-quality.ts) scores generated images with. The checker is derived from the same
 * rules: background = the palette colour most border pixels are nearest to, foreground = pixels far
 * from the background, colour = nearest palette colour of the foreground mean, position = 3x3
 * region of the foreground centroid, shape = the template (rendered with these rules at the
 * foreground's centroid and area) that overlaps the foreground best.
 */
import { Mulberry32 } from './mulberry32.js';

export const SIZE = 256;

export const PALETTE: ReadonlyArray<readonly [string, readonly [number, number, number]]> = [
  ['red', [220, 40, 40]],
  ['orange', [245, 140, 20]],
  ['yellow', [245, 220, 40]],
  ['green', [40, 170, 70]],
  ['cyan', [40, 200, 220]],
  ['blue', [40, 80, 220]],
  ['purple', [140, 60, 190]],
  ['pink', [245, 140, 190]],
  ['white', [245, 245, 245]],
  ['black', [25, 25, 25]],
];
export const COLOURS = PALETTE.map(([n]) => n);
const RGB = new Map(PALETTE);

export const SHAPES = ['circle', 'square', 'triangle', 'star', 'ring'] as const;
export type Shape = (typeof SHAPES)[number];

export const POSITIONS: ReadonlyArray<readonly [string, readonly [number, number], readonly string[]]> = [
  ['top left', [0.22, 0.22], ['at the top left', 'in the top left corner', 'at the upper left']],
  ['top', [0.5, 0.22], ['at the top', 'at the top center']],
  ['top right', [0.78, 0.22], ['at the top right', 'in the top right corner', 'at the upper right']],
  ['left', [0.22, 0.5], ['on the left', 'at the left']],
  ['center', [0.5, 0.5], ['in the center', 'in the middle', 'at the center']],
  ['right', [0.78, 0.5], ['on the right', 'at the right']],
  ['bottom left', [0.22, 0.78], ['at the bottom left', 'in the bottom left corner', 'at the lower left']],
  ['bottom', [0.5, 0.78], ['at the bottom', 'at the bottom center']],
  ['bottom right', [0.78, 0.78], ['at the bottom right', 'in the bottom right corner', 'at the lower right']],
];
export const POSITION_NAMES = POSITIONS.map(([n]) => n);

export const SIZES: ReadonlyArray<readonly [string, number, readonly string[]]> = [
  ['small', 26, ['small']],
  ['medium', 38, ['']],
  ['big', 50, ['big', 'large']],
];

export const TEMPLATES = [
  '{A} {thing} {pos} on {a} {bg} background',
  '{thing} {pos}, {bg} background',
  '{A} {bg} background with {a} {thing} {pos}',
];

export interface Scene {
  colour: string;
  shape: Shape;
  position: string;
  bg: string;
  size: string;
  cx: number;
  cy: number;
  r: number;
  rot: number;
}

/** Deterministic PRNG (mulberry32) with the draws the scene rules need. */
export class Rng extends Mulberry32 {
  uniform(a: number, b: number): number {
    return a + (b - a) * this.random();
  }
  int(n: number): number {
    return Math.floor(this.random() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  normal(): number {
    const u = Math.max(this.random(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.random());
  }
}

export const defaultBackground = (colour: string): string => (colour === 'white' ? 'black' : 'white');

/** (colour, shape, position) combinations never used in training (as training/scenes.py). */
export function isHeldOut(colour: string, shape: string, position: string): boolean {
  const c = COLOURS.indexOf(colour);
  const s = (SHAPES as readonly string[]).indexOf(shape);
  const p = POSITION_NAMES.indexOf(position);
  return (3 * c + 7 * s + 11 * p) % 5 === 0;
}

const article = (word: string) => ('aeiou'.includes(word[0]) ? 'an' : 'a');

/** A caption naming colour, shape, position and background (the evaluation never omits any). */
export function caption(scene: Scene, rng: Rng): string {
  const sizeWords = SIZES.find(([n]) => n === scene.size)![2];
  const size = rng.pick(sizeWords);
  const thing = `${size ? size + ' ' : ''}${scene.colour} ${scene.shape}`;
  const pos = rng.pick(POSITIONS.find(([n]) => n === scene.position)![2]);
  const t = rng.pick(TEMPLATES);
  const first = t.startsWith('{A} {bg}') ? scene.bg : thing;
  const text = t
    .replace('{A}', article(first))
    .replace('{a}', article(thing))
    .replace('{thing}', thing)
    .replace('{pos}', pos)
    .replace('{bg}', scene.bg);
  return text.split(/\s+/).filter(Boolean).join(' ').replace(' ,', ',');
}

export function regionOf(cx: number, cy: number, width = SIZE, height = SIZE): string {
  const col = cx < width / 3 ? 0 : cx >= (2 * width) / 3 ? 2 : 1;
  const row = cy < height / 3 ? 0 : cy >= (2 * height) / 3 ? 2 : 1;
  return POSITION_NAMES[row * 3 + col];
}

export const sizeOf = (r: number) => (r < 32 ? 'small' : r < 44 ? 'medium' : 'big');

function pickColours(rng: Rng): [string, string] {
  const colour = rng.pick(COLOURS);
  let bg = colour;
  while (bg === colour) bg = rng.pick(COLOURS);
  return [colour, bg];
}

/** A scene its caption determines (up to a few pixels), as training/scenes.py canonical_scene. */
export function canonicalScene(colour: string, shape: Shape, position: string, rng: Rng): Scene {
  let bg = colour;
  while (bg === colour) bg = rng.pick(COLOURS);
  const [size, r] = rng.pick(SIZES);
  const [fx, fy] = POSITIONS.find(([n]) => n === position)![1];
  return { colour, shape, position, bg, size, cx: fx * SIZE + rng.uniform(-6, 6), cy: fy * SIZE + rng.uniform(-6, 6), r: r + rng.uniform(-3, 3), rot: 0 };
}

/** Any position and size, as a drawing might have (training/scenes.py free_scene). */
export function freeScene(rng: Rng): Scene {
  const [colour, bg] = pickColours(rng);
  const shape = rng.pick(SHAPES);
  const r = rng.uniform(20, 60);
  const cx = rng.uniform(r + 2, SIZE - r - 2);
  const cy = rng.uniform(r + 2, SIZE - r - 2);
  return { colour, shape, position: regionOf(cx, cy), bg, size: sizeOf(r), cx, cy, r, rot: 0 };
}

// ---------------------------------------------------------------------------------------------
// Signed distances (pixels, negative inside)

function polygon(shape: Shape, r: number): Array<[number, number]> {
  const pts: Array<[number, number]> = [];
  if (shape === 'triangle') {
    const R = 1.15 * r;
    for (const a of [-90, 30, 150]) pts.push([R * Math.cos((a * Math.PI) / 180), R * Math.sin((a * Math.PI) / 180)]);
  } else {
    const R = 1.15 * r;
    for (let k = 0; k < 10; k++) {
      const a = ((-90 + 36 * k) * Math.PI) / 180;
      const rr = k % 2 === 0 ? R : 0.5 * R;
      pts.push([rr * Math.cos(a), rr * Math.sin(a)]);
    }
  }
  return pts;
}

function polygonSdf(px: number, py: number, v: Array<[number, number]>): number {
  let d2 = Infinity;
  let inside = false;
  for (let i = 0; i < v.length; i++) {
    const [ax, ay] = v[i];
    const [bx, by] = v[(i + 1) % v.length];
    const ex = bx - ax;
    const ey = by - ay;
    const wx = px - ax;
    const wy = py - ay;
    const t = Math.min(1, Math.max(0, (wx * ex + wy * ey) / (ex * ex + ey * ey)));
    const dx = wx - ex * t;
    const dy = wy - ey * t;
    d2 = Math.min(d2, dx * dx + dy * dy);
    if ((ay <= py && py < by) || (by <= py && py < ay)) {
      if (px < ax + ((py - ay) * ex) / (ey !== 0 ? ey : 1e-12)) inside = !inside;
    }
  }
  const d = Math.sqrt(d2);
  return inside ? -d : d;
}

/** Signed distance function of a shape centred at (cx, cy) with size r, rotated by rot. */
export function shapeSdf(shape: Shape, cx: number, cy: number, r: number, rot: number): (x: number, y: number) => number {
  const c = Math.cos(rot);
  const s = Math.sin(rot);
  const poly = shape === 'triangle' || shape === 'star' ? polygon(shape, r) : [];
  return (x, y) => {
    let px = x - cx;
    let py = y - cy;
    if (rot) [px, py] = [c * px + s * py, -s * px + c * py];
    switch (shape) {
      case 'circle':
        return Math.hypot(px, py) - r;
      case 'ring':
        return Math.abs(Math.hypot(px, py) - 0.775 * r) - 0.225 * r;
      case 'square': {
        const h = 0.88 * r;
        const qx = Math.abs(px) - h;
        const qy = Math.abs(py) - h;
        return Math.hypot(Math.max(qx, 0), Math.max(qy, 0)) + Math.min(Math.max(qx, qy), 0);
      }
      default:
        return polygonSdf(px, py, poly);
    }
  };
}

/** Area of a shape of size r (for fitting templates). */
export function shapeArea(shape: Shape, r: number): number {
  switch (shape) {
    case 'circle':
      return Math.PI * r * r;
    case 'ring':
      return Math.PI * (r * r - (0.55 * r) ** 2);
    case 'square':
      return (1.76 * r) ** 2;
    case 'triangle':
      return ((3 * Math.sqrt(3)) / 4) * (1.15 * r) ** 2;
    case 'star': {
      // 10 triangles between the centre and consecutive outer/inner points.
      const R = 1.15 * r;
      return 10 * 0.5 * R * 0.5 * R * Math.sin(Math.PI / 5);
    }
  }
}

export interface RgbImage {
  rgb: Uint8Array;
  width: number;
  height: number;
}

/** Clean render (interleaved RGB), anti-aliased over one pixel. */
export function render(scene: Scene, size = SIZE): RgbImage {
  const sdf = shapeSdf(scene.shape, scene.cx, scene.cy, scene.r, scene.rot);
  const fg = RGB.get(scene.colour)!;
  const bg = RGB.get(scene.bg)!;
  const rgb = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const a = Math.min(1, Math.max(0, 0.5 - sdf(x + 0.5, y + 0.5)));
      const i = (y * size + x) * 3;
      for (let c = 0; c < 3; c++) rgb[i + c] = Math.round(bg[c] * (1 - a) + fg[c] * a);
    }
  }
  return { rgb, width: size, height: size };
}

/**
 * A rough drawing of a scene, as training/scenes.py render_rough: wobbly outline, a small rotation,
 * off-palette colours, an optional darker outline, shading and pixel noise. Returns the drawing and
 * its foreground mask.
 */
export function renderRough(scene: Scene, rng: Rng): { image: RgbImage; mask: Uint8Array } {
  const wobble = [2, 3, 4, 5].map((k) => [k, rng.uniform(0, 0.035), rng.uniform(0, 2 * Math.PI)] as const);
  const rot = scene.shape === 'circle' || scene.shape === 'ring' ? 0 : rng.uniform(-0.2, 0.2);
  const base = (name: string, j: number) => RGB.get(name)!.map((v) => Math.min(255, Math.max(0, v + rng.uniform(-j, j))));
  const fg = base(scene.colour, 30);
  const bg = base(scene.bg, 20);
  const gx = rng.uniform(-12, 12);
  const gy = rng.uniform(-12, 12);
  const outline = rng.random() < 0.4;
  const sdf = shapeSdf(scene.shape, scene.cx, scene.cy, scene.r, rot);
  const rgb = new Uint8Array(SIZE * SIZE * 3);
  const mask = new Uint8Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const X = x + 0.5;
      const Y = y + 0.5;
      const theta = Math.atan2(Y - scene.cy, X - scene.cx);
      let wob = 0;
      for (const [k, a, ph] of wobble) wob += a * Math.sin(k * theta + ph);
      const d = sdf(X, Y) - scene.r * wob;
      const a = Math.min(1, Math.max(0, 0.5 - d));
      const o = outline ? Math.min(1, Math.max(0, 2 - Math.abs(d + 1))) : 0;
      const shade = gx * (X / SIZE - 0.5) + gy * (Y / SIZE - 0.5);
      const p = y * SIZE + x;
      mask[p] = d < 0 ? 1 : 0;
      for (let c = 0; c < 3; c++) {
        let v = bg[c] * (1 - a) + fg[c] * a;
        v = v * (1 - o) + fg[c] * 0.55 * o;
        rgb[p * 3 + c] = Math.min(255, Math.max(0, Math.round(v + shade + rng.normal() * 6)));
      }
    }
  }
  return { image: { rgb, width: SIZE, height: SIZE }, mask };
}

// ---------------------------------------------------------------------------------------------
// Checker

export interface Analysis {
  bg: string;
  colour: string | null;
  shape: Shape | null;
  position: string | null;
  /** Foreground mask (1 = foreground), width x height. */
  mask: Uint8Array;
  area: number;
}

function nearestColour(r: number, g: number, b: number): string {
  let best = '';
  let bestD = Infinity;
  for (const [name, [pr, pg, pb]] of PALETTE) {
    const d = (r - pr) ** 2 + (g - pg) ** 2 + (b - pb) ** 2;
    if (d < bestD) {
      bestD = d;
      best = name;
    }
  }
  return best;
}

/** Foreground: farther than this (RGB distance) from the background colour. */
export const FOREGROUND_DISTANCE = 60;

export function analyse(img: RgbImage): Analysis {
  const { rgb, width: w, height: h } = img;
  // Background: the palette colour most border pixels (2-pixel frame) are nearest to; its measured
  // colour is the mean of those pixels.
  const counts = new Map<string, { n: number; sum: [number, number, number] }>();
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (x >= 2 && y >= 2 && x < w - 2 && y < h - 2) continue;
      const i = (y * w + x) * 3;
      const name = nearestColour(rgb[i], rgb[i + 1], rgb[i + 2]);
      const e = counts.get(name) ?? { n: 0, sum: [0, 0, 0] };
      e.n++;
      for (let c = 0; c < 3; c++) e.sum[c] += rgb[i + c];
      counts.set(name, e);
    }
  }
  const [bg, bgStats] = [...counts.entries()].sort((a, b) => b[1].n - a[1].n)[0];
  const bgRgb = bgStats.sum.map((v) => v / bgStats.n);
  const mask = new Uint8Array(w * h);
  let area = 0;
  let sx = 0;
  let sy = 0;
  const sum = [0, 0, 0];
  for (let p = 0; p < w * h; p++) {
    const i = p * 3;
    const d = Math.hypot(rgb[i] - bgRgb[0], rgb[i + 1] - bgRgb[1], rgb[i + 2] - bgRgb[2]);
    if (d > FOREGROUND_DISTANCE) {
      mask[p] = 1;
      area++;
      sx += (p % w) + 0.5;
      sy += Math.floor(p / w) + 0.5;
      for (let c = 0; c < 3; c++) sum[c] += rgb[i + c];
    }
  }
  if (area < 0.005 * w * h) return { bg, colour: null, shape: null, position: null, mask, area };
  const cx = sx / area;
  const cy = sy / area;
  const colour = nearestColour(sum[0] / area, sum[1] / area, sum[2] / area);
  const position = regionOf(cx, cy, w, h);
  let shape: Shape | null = null;
  let bestIou = -1;
  for (const s of SHAPES) {
    const r = Math.sqrt(area / shapeArea(s, 1));
    const iou = maskIou(mask, templateMask(s, cx, cy, r, w, h));
    if (iou > bestIou) {
      bestIou = iou;
      shape = s;
    }
  }
  return { bg, colour, shape, position, mask, area };
}

function templateMask(shape: Shape, cx: number, cy: number, r: number, w: number, h: number): Uint8Array {
  const sdf = shapeSdf(shape, cx, cy, r, 0);
  const m = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) m[y * w + x] = sdf(x + 0.5, y + 0.5) < 0 ? 1 : 0;
  return m;
}

export function maskIou(a: Uint8Array, b: Uint8Array): number {
  let inter = 0;
  let union = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] && b[i]) inter++;
    if (a[i] || b[i]) union++;
  }
  return union === 0 ? 0 : inter / union;
}
