// Measures what the embedded default model draws, through the server's own code:
//   1. prompt adherence on held-out captions (colour, shape, position combinations never trained on),
//      scored by the checker of scripts/scenes.ts, at 1, 2 and 4 steps (and on seen combinations);
//   2. image-to-image fidelity: rough drawings at strength 0.5, foreground IoU with the drawing;
//   3. the fast final frame: the same final latent through the preview decoder vs the VAE decoder
//      (PSNR, mean and lowest), on the held-out captions at 1-4 steps and on the drawings;
//   4. speed through the real server process over a WebSocket (one session, 2 steps);
//   5. a picture: docs/model-grid.png (prompts x steps 1..4, drawings -> outputs).
// Prints a table and writes JSON (docs/model-quality.json by default).
//
//   npm run build && node dist/bench/model-quality.js [--model DIR] [--captions N] [--drawings N]
//       [--requests N] [--no-speed] [--grid FILE] [--json FILE]
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp, { type OverlayOptions } from 'sharp';
import { DiffusionPipeline, type GenerateRequest } from '../server/pipeline/pipeline.js';
import { isFinished, type RgbImage } from '../server/pipeline/generation.js';
import type { FrameMessage } from '../shared/protocol.js';
import { startServerProcess } from '../test/helpers/server-process.js';
import { TestClient } from '../test/helpers/ws-client.js';
import * as S from '../scripts/scenes.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const { values: opts } = parseArgs({
  options: {
    model: { type: 'string', default: path.join(ROOT, 'models/default') },
    captions: { type: 'string', default: '250' },
    drawings: { type: 'string', default: '100' },
    requests: { type: 'string', default: '40' },
    threads: { type: 'string', default: '2' },
    'no-speed': { type: 'boolean', default: false },
    grid: { type: 'string', default: path.join(ROOT, 'docs/model-grid.png') },
    json: { type: 'string', default: path.join(ROOT, 'docs/model-quality.json') },
  },
});

const TARGETS = { colour: 0.8, shape: 0.6, position: 0.6, iou: 0.6, previewPsnr: 22, frameMs: 150, firstPreviewMs: 60 };
const log = (line: string) => console.error(line);

function psnr(a: Uint8Array, b: Uint8Array): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2;
  const mse = se / a.length;
  return mse === 0 ? 99 : 10 * Math.log10((255 * 255) / mse);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
const mean = (xs: number[]) => xs.reduce((s, v) => s + v, 0) / Math.max(1, xs.length);

interface Case {
  scene: S.Scene;
  prompt: string;
}

/** n captions cycling over the held-out (or seen) combinations in a shuffled order. */
function captions(n: number, heldOut: boolean, seed: number): Case[] {
  const rng = new S.Rng(seed);
  const combos: Array<[string, S.Shape, string]> = [];
  for (const c of S.COLOURS) for (const s of S.SHAPES) for (const p of S.POSITION_NAMES) if (S.isHeldOut(c, s, p) === heldOut) combos.push([c, s, p]);
  for (let i = combos.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [combos[i], combos[j]] = [combos[j], combos[i]];
  }
  return Array.from({ length: n }, (_, i) => {
    const [c, s, p] = combos[i % combos.length];
    const scene = S.canonicalScene(c, s, p, rng);
    return { scene, prompt: S.caption(scene, rng) };
  });
}

/** One request through the pipeline's primitives; its final latent decoded by the VAE (`image`, the
 * frame as served by default) and by the preview decoder (`fast`, the frame with finalDecoder 'preview'). */
async function run(pipe: DiffusionPipeline, request: Partial<GenerateRequest> & { prompt: string }) {
  const full: GenerateRequest = { steps: 2, strength: 1, seed: 0, width: 256, height: 256, previews: false, ...request, finalDecoder: 'vae' };
  const state = pipe.createState(full);
  await pipe.encodeText([state]);
  await pipe.prepareLatents([state]);
  while (!isFinished(state)) await pipe.step([state]);
  const [image] = await pipe.decode([state]);
  const [fast] = await pipe.decode([{ ...state, request: { ...full, finalDecoder: 'preview' } }]);
  return { image, fast };
}

const psnrSummary = (xs: number[]) => ({ psnrMeanDb: mean(xs), psnrMinDb: Math.min(...xs), n: xs.length });

interface Adherence {
  colour: number;
  shape: number;
  position: number;
  background: number;
  all: number;
  n: number;
}

/** Per requested shape: what the checker saw (shape is the hardest of the three to get right). */
function shapeConfusion(cases: Case[], images: RgbImage[]): Record<string, Record<string, number>> {
  const table: Record<string, Record<string, number>> = {};
  cases.forEach(({ scene }, i) => {
    const seen = S.analyse(images[i]).shape ?? 'none';
    const row = (table[scene.shape] ??= {});
    row[seen] = (row[seen] ?? 0) + 1;
  });
  return table;
}

function score(cases: Case[], images: RgbImage[]): Adherence {
  const acc = { colour: 0, shape: 0, position: 0, background: 0, all: 0 };
  cases.forEach(({ scene }, i) => {
    const a = S.analyse(images[i]);
    const ok = { colour: a.colour === scene.colour, shape: a.shape === scene.shape, position: a.position === scene.position, background: a.bg === scene.bg };
    for (const k of Object.keys(ok) as (keyof typeof ok)[]) if (ok[k]) acc[k]++;
    if (ok.colour && ok.shape && ok.position) acc.all++;
  });
  const n = cases.length;
  return { colour: acc.colour / n, shape: acc.shape / n, position: acc.position / n, background: acc.background / n, all: acc.all / n, n };
}

async function png(img: RgbImage, size: number): Promise<Buffer> {
  return sharp(Buffer.from(img.rgb), { raw: { width: img.width, height: img.height, channels: 3 } }).resize(size, size).png().toBuffer();
}

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function labelSvg(lines: string[], width: number, height: number, size = 14): Buffer {
  const y0 = height / 2 - ((lines.length - 1) * (size + 4)) / 2 + size / 3;
  const text = lines
    .map((l, i) => `<text x="8" y="${y0 + i * (size + 4)}" font-family="DejaVu Sans, sans-serif" font-size="${size}" fill="#222">${escapeXml(l)}</text>`)
    .join('');
  return Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="#fff"/>${text}</svg>`);
}

function wrap(text: string, max: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && (line + ' ' + word).length > max) {
      lines.push(line);
      line = word;
    } else line = line ? line + ' ' + word : word;
  }
  if (line) lines.push(line);
  return lines;
}

async function writeGrid(file: string, rows: Array<{ label: string; tiles: RgbImage[] }>, header: string[]): Promise<void> {
  const tile = 160;
  const gap = 6;
  const labelW = 250;
  const headerH = 28;
  const cols = Math.max(...rows.map((r) => r.tiles.length));
  const width = labelW + cols * (tile + gap);
  const height = headerH + rows.length * (tile + gap);
  const layers: OverlayOptions[] = [];
  header.forEach((h, i) => layers.push({ input: labelSvg([h], tile, headerH, 13), left: labelW + i * (tile + gap), top: 0 }));
  for (const [r, row] of rows.entries()) {
    const top = headerH + r * (tile + gap);
    layers.push({ input: labelSvg(wrap(row.label, 30), labelW - 6, tile, 13), left: 0, top });
    for (const [c, img] of row.tiles.entries()) layers.push({ input: await png(img, tile), left: labelW + c * (tile + gap), top });
  }
  await sharp({ create: { width, height, channels: 3, background: '#ffffff' } }).composite(layers).png({ compressionLevel: 9 }).toFile(file);
}

async function speed(modelDir: string, cases: Case[], requests: number) {
  const server = await startServerProcess(['--model', modelDir]);
  try {
    const { client } = await TestClient.connect(server.wsUrl);
    const time = async (id: string, prompt: string, extra: Record<string, unknown> = {}) => {
      const t0 = performance.now();
      let first = 0;
      const firstPreview = client.next((m) => m.type === 'preview' && m.id === id, 60_000).then(() => (first = performance.now() - t0));
      client.send({ type: 'generate', id, prompt, steps: 2, seed: 1, ...extra });
      const replies = await client.untilSettled(id, 60_000);
      const frameMs = performance.now() - t0;
      await firstPreview;
      const frame = replies.at(-1) as FrameMessage;
      if (frame.type !== 'frame') throw new Error(`request ${id}: ${JSON.stringify(frame)}`);
      return { frameMs, firstMs: first };
    };
    for (let i = 0; i < 5; i++) await time(`warm${i}`, cases[i % cases.length].prompt);
    const t2i: Array<{ frameMs: number; firstMs: number }> = [];
    for (let i = 0; i < requests; i++) t2i.push(await time(`t${i}`, cases[(i + 5) % cases.length].prompt));
    // The drawing demo: an encoded drawing at strength 0.5.
    const rng = new S.Rng(77);
    const drawings = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const scene = S.freeScene(rng);
        const { image } = S.renderRough(scene, rng);
        return { prompt: S.caption(scene, rng), bytes: await sharp(Buffer.from(image.rgb), { raw: { width: 256, height: 256, channels: 3 } }).jpeg({ quality: 85 }).toBuffer() };
      }),
    );
    const i2i: Array<{ frameMs: number; firstMs: number }> = [];
    for (let i = 0; i < requests; i++) {
      const d = drawings[i % drawings.length];
      i2i.push(await time(`d${i}`, d.prompt, { image: new Uint8Array(d.bytes), strength: 0.5, steps: 4 }));
    }
    await client.close();
    const summary = (xs: Array<{ frameMs: number; firstMs: number }>) => ({
      frameMedianMs: median(xs.map((x) => x.frameMs)),
      frameP90Ms: quantile(xs.map((x) => x.frameMs), 0.9),
      firstPreviewMedianMs: median(xs.map((x) => x.firstMs)),
      firstPreviewP90Ms: quantile(xs.map((x) => x.firstMs), 0.9),
      n: xs.length,
    });
    return { textToImage: summary(t2i), imageToImage: summary(i2i) };
  } finally {
    await server.stop();
  }
}

async function main() {
  const modelDir = path.resolve(opts.model!);
  const nCaptions = Number(opts.captions);
  const nDrawings = Number(opts.drawings);
  const threads = Number(opts.threads);
  const pipe = await DiffusionPipeline.load(modelDir, 'cpu', { executionProviders: ['cpu'], threads });
  await pipe.warmup();
  log(`model ${pipe.info.name} from ${modelDir}`);

  // 1 + 3: adherence (held out, by steps; seen at 2 steps) and preview PSNR.
  const heldOut = captions(nCaptions, true, 2024);
  const seen = captions(nCaptions, false, 4048);
  const adherence: Record<string, Adherence> = {};
  const fastPsnr: Record<number, number[]> = {};
  const gridRows: Array<{ label: string; tiles: RgbImage[] }> = [];
  const byStep: Record<number, RgbImage[]> = {};
  for (const steps of [1, 2, 3, 4]) {
    const images: RgbImage[] = [];
    for (const [i, c] of heldOut.entries()) {
      const { image, fast } = await run(pipe, { prompt: c.prompt, steps, seed: i });
      images.push(image);
      (fastPsnr[steps] ??= []).push(psnr(fast.rgb, image.rgb));
    }
    byStep[steps] = images;
    adherence[`heldOut_${steps}step`] = score(heldOut, images);
    log(`held-out, ${steps} step(s): ${JSON.stringify(adherence[`heldOut_${steps}step`])}`);
  }
  // The checker on the generator's own renders of the same scenes: how far it can be trusted.
  const checkerOnRenders = score(heldOut, heldOut.map((c) => S.render(c.scene)));
  log(`checker on clean renders: ${JSON.stringify(checkerOnRenders)}`);
  const confusion2step = shapeConfusion(heldOut, byStep[2]);
  const seenImages: RgbImage[] = [];
  for (const [i, c] of seen.entries()) seenImages.push((await run(pipe, { prompt: c.prompt, steps: 2, seed: i })).image);
  adherence.seen_2step = score(seen, seenImages);
  log(`seen, 2 steps: ${JSON.stringify(adherence.seen_2step)}`);
  for (let r = 0; r < 8; r++) {
    const i = Math.floor((r * heldOut.length) / 8);
    gridRows.push({ label: heldOut[i].prompt, tiles: [1, 2, 3, 4].map((s) => byStep[s][i]) });
  }

  // 2: image-to-image on rough drawings.
  const rng = new S.Rng(99);
  const ious: number[] = [];
  const fastPsnrDrawings: number[] = [];
  const i2iCases: Case[] = [];
  const i2iImages: RgbImage[] = [];
  for (let i = 0; i < nDrawings; i++) {
    const scene = S.freeScene(rng);
    const { image: drawing, mask } = S.renderRough(scene, rng);
    const prompt = S.caption(scene, rng);
    const { image, fast } = await run(pipe, { prompt, image: drawing.rgb, strength: 0.5, steps: 2, seed: i });
    fastPsnrDrawings.push(psnr(fast.rgb, image.rgb));
    ious.push(S.maskIou(S.analyse(image).mask, mask));
    i2iCases.push({ scene, prompt });
    i2iImages.push(image);
    if (i < 6) {
      const strong = (await run(pipe, { prompt, image: drawing.rgb, strength: 0.75, steps: 4, seed: i })).image;
      gridRows.push({ label: `drawing + "${prompt}"`, tiles: [drawing, image, strong] });
    }
  }
  const i2i = { iouMean: mean(ious), iouMedian: median(ious), iouMin: Math.min(...ious), n: ious.length, adherence: score(i2iCases, i2iImages) };
  log(`image-to-image: ${JSON.stringify(i2i)}`);

  await writeGrid(opts.grid!, gridRows, ['1 step', '2 steps', '3 steps', '4 steps']);
  log(`grid: ${opts.grid} (rows 1-8: held-out prompts at 1-4 steps; rows 9-14: drawing, strength 0.5 / 2 steps, strength 0.75 / 4 steps)`);

  // 4: speed through the server.
  const speedResult = opts['no-speed'] ? undefined : await speed(modelDir, heldOut, Number(opts.requests));
  if (speedResult) log(`speed: ${JSON.stringify(speedResult)}`);

  const a2 = adherence.heldOut_2step;
  const rows: Array<[string, string, string, boolean | undefined]> = [
    ['colour, held-out captions, 2 steps', pct(a2.colour), `>= ${pct(TARGETS.colour)}`, a2.colour >= TARGETS.colour],
    ['shape, held-out captions, 2 steps', pct(a2.shape), `>= ${pct(TARGETS.shape)}`, a2.shape >= TARGETS.shape],
    ['position, held-out captions, 2 steps', pct(a2.position), `>= ${pct(TARGETS.position)}`, a2.position >= TARGETS.position],
    ['image-to-image IoU (strength 0.5), mean', i2i.iouMean.toFixed(3), `>= ${TARGETS.iou}`, i2i.iouMean >= TARGETS.iou],
    ['fast final frame (preview decoder) vs VAE frame PSNR, held-out, 2 steps, mean', `${mean(fastPsnr[2]).toFixed(2)} dB`, `>= ${TARGETS.previewPsnr} dB`, mean(fastPsnr[2]) >= TARGETS.previewPsnr],
    ['the same, lowest', `${Math.min(...fastPsnr[2]).toFixed(2)} dB`, '', undefined],
    ['the same on drawings (strength 0.5, 2 steps), mean / lowest', `${mean(fastPsnrDrawings).toFixed(2)} / ${Math.min(...fastPsnrDrawings).toFixed(2)} dB`, `>= ${TARGETS.previewPsnr} dB (mean)`, mean(fastPsnrDrawings) >= TARGETS.previewPsnr],
  ];
  if (speedResult) {
    const t = speedResult.textToImage;
    rows.push(['request -> frame, 2 steps, median', `${t.frameMedianMs.toFixed(1)} ms`, `<= ${TARGETS.frameMs} ms`, t.frameMedianMs <= TARGETS.frameMs]);
    rows.push(['request -> first preview, median', `${t.firstPreviewMedianMs.toFixed(1)} ms`, `<= ${TARGETS.firstPreviewMs} ms`, t.firstPreviewMedianMs <= TARGETS.firstPreviewMs]);
  }
  const table = [
    '| metric | measured | target | |',
    '|---|---|---|---|',
    ...rows.map(([m, v, t, ok]) => `| ${m} | ${v} | ${t} | ${ok === undefined ? '' : ok ? 'pass' : 'MISS'} |`),
  ].join('\n');
  console.log(table);
  console.log('\nadherence (colour / shape / position / background / all three):');
  for (const [k, v] of Object.entries(adherence)) console.log(`  ${k.padEnd(16)} ${pct(v.colour)} / ${pct(v.shape)} / ${pct(v.position)} / ${pct(v.background)} / ${pct(v.all)}  (n=${v.n})`);
  console.log(`  image-to-image   ${pct(i2i.adherence.colour)} / ${pct(i2i.adherence.shape)} / ${pct(i2i.adherence.position)} / ${pct(i2i.adherence.background)} / ${pct(i2i.adherence.all)}  (n=${i2i.n})`);
  console.log(`  (the checker on clean renders of the held-out scenes: ${pct(checkerOnRenders.colour)} / ${pct(checkerOnRenders.shape)} / ${pct(checkerOnRenders.position)} / ${pct(checkerOnRenders.background)})`);
  console.log(`shape seen by the checker, per requested shape (held-out, 2 steps): ${JSON.stringify(confusion2step)}`);
  for (const [steps, xs] of Object.entries(fastPsnr)) console.log(`fast final frame vs VAE frame, held-out, ${steps} step(s): PSNR mean ${mean(xs).toFixed(2)} dB, lowest ${Math.min(...xs).toFixed(2)} dB`);
  console.log(`fast final frame vs VAE frame, drawings: PSNR mean ${mean(fastPsnrDrawings).toFixed(2)} dB, lowest ${Math.min(...fastPsnrDrawings).toFixed(2)} dB`);
  if (speedResult) console.log(`speed: ${JSON.stringify(speedResult)}`);

  const result = {
    model: pipe.info.name,
    modelDir: path.relative(ROOT, modelDir) || modelDir,
    date: new Date().toISOString(),
    targets: TARGETS,
    adherence,
    checkerOnRenders,
    shapeConfusion_heldOut_2step: confusion2step,
    imageToImage: i2i,
    // The last step's preview was the preview decoder on the final latent: the fast final frame.
    preview: psnrSummary(fastPsnr[2]),
    fastFinal: {
      heldOut: Object.fromEntries(Object.entries(fastPsnr).map(([steps, xs]) => [`${steps}step`, psnrSummary(xs)])),
      drawings: psnrSummary(fastPsnrDrawings),
    },
    speed: speedResult,
    table: rows.map(([metric, measured, target, ok]) => ({ metric, measured, target, pass: ok })),
  };
  await writeFile(opts.json!, JSON.stringify(result, null, 2) + '\n');
  log(`wrote ${opts.json}`);
}

function pct(v: number): string {
  return `${(100 * v).toFixed(1)}%`;
}

await main();
