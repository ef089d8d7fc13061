// What the simulated clients send, prepared once before the run so the load generator spends no CPU
// on it while measuring: prompt sequences for typing, and real encoded images (JPEG camera frames of
// a moving scene, PNG canvases growing stroke by stroke) rendered from SVG with sharp.
import sharp from 'sharp';
import type { InputKind } from './scenarios.js';

export interface InputSet {
  kind: InputKind;
  /** Sent in order, cycling; every generate carries one. */
  prompts: string[];
  /** Encoded image bytes for image-to-image inputs, sent in order, cycling; empty for prompts. */
  images: Uint8Array[];
}

const SENTENCE = 'a red circle on a blue background with a yellow star at the top and green trees below';
const FRAMES = 30;

/** Every prefix of a sentence at word-and-a-half granularity: what a prompt box holds while typing. */
function typingPrompts(): string[] {
  const out: string[] = [];
  for (let i = 3; i <= SENTENCE.length; i += 3) out.push(SENTENCE.slice(0, i).trimEnd());
  return out;
}

/**
 * A camera looking at a moving scene: a ball crosses the frame, a box drifts the other way and the
 * light changes. Consecutive frames differ clearly (the server skips near-identical frames).
 */
function cameraSvg(i: number, size: number): string {
  const t = i / FRAMES;
  const hue = Math.round(200 + 40 * Math.sin(2 * Math.PI * t));
  const cx = size * (0.15 + 0.7 * t);
  const cy = size * (0.5 + 0.2 * Math.sin(2 * Math.PI * t));
  const bx = size * (0.75 - 0.5 * t);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}">
  <defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1">
    <stop offset="0" stop-color="hsl(${hue},60%,70%)"/><stop offset="1" stop-color="hsl(${hue + 60},50%,30%)"/>
  </linearGradient></defs>
  <rect width="100%" height="100%" fill="url(#g)"/>
  <rect x="${bx}" y="${size * 0.6}" width="${size * 0.25}" height="${size * 0.3}" fill="#3a6" />
  <circle cx="${cx}" cy="${cy}" r="${size * 0.18}" fill="#d33"/>
</svg>`;
}

/** A canvas after `i + 1` strokes: thick coloured curves, one more per frame. */
function drawingSvg(i: number, size: number): string {
  const colours = ['#e33', '#36c', '#2a4', '#fb0', '#a3c', '#111'];
  const strokes: string[] = [];
  for (let k = 0; k <= i; k++) {
    const y = size * (0.1 + 0.8 * ((k * 7) % FRAMES) / FRAMES);
    const x0 = size * (0.05 + 0.3 * ((k * 3) % 5) / 5);
    const path = `M ${x0} ${y} q ${size * 0.2} ${-size * 0.15} ${size * 0.4} 0 t ${size * 0.4} 0`;
    strokes.push(`<path d="${path}" stroke="${colours[k % colours.length]}" stroke-width="${size / 14}" fill="none" stroke-linecap="round"/>`);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}">
  <rect width="100%" height="100%" fill="#fff"/>${strokes.join('')}</svg>`;
}

async function render(svgs: string[], format: 'jpeg' | 'png'): Promise<Uint8Array[]> {
  return Promise.all(
    svgs.map(async (svg) => {
      const image = sharp(Buffer.from(svg));
      const bytes = format === 'jpeg' ? await image.jpeg({ quality: 80 }).toBuffer() : await image.png({ compressionLevel: 6 }).toBuffer();
      return new Uint8Array(bytes);
    }),
  );
}

export async function prepareInputs(kind: InputKind, size: number): Promise<InputSet> {
  const prompts = typingPrompts();
  const indices = Array.from({ length: FRAMES }, (_, i) => i);
  switch (kind) {
    case 'prompt':
      return { kind, prompts, images: [] };
    case 'cancel':
      return { kind, prompts: [], images: [] };
    case 'camera':
      return { kind, prompts: ['a photo of a red ball in a garden'], images: await render(indices.map((i) => cameraSvg(i, size)), 'jpeg') };
    case 'drawing':
      return { kind, prompts: ['a colourful painting'], images: await render(indices.map((i) => drawingSvg(i, size)), 'png') };
  }
}
