// The few-step fast path, arm by arm, in one run: one session streams image-to-image inputs (a
// moving camera scene, JPEG) faster than any arm serves them, previews on, at 1 and 2 steps run;
// frames/s, frame latency (input sent -> its frame) p50/p99, and where the worker's time per frame
// goes (UNet, previews, final decode). Arms, each its own server, alternating window by window so
// machine noise hits all alike:
//   today          --final-decoder vae  --last-preview                  (the path before the fast path)
//   fast decode    --final-decoder preview --last-preview               (the final frame from the preview decoder)
//   one decode     --final-decoder vae                                   (no preview of the last step)
//   fast + one decode  --final-decoder preview                           (both decode changes, no stream batching)
//   stream batch   --final-decoder vae  --last-preview --stream-batch   (next input beside the running one)
//   all together   --final-decoder preview --stream-batch
// A model without a VAE encoder (the SD-Turbo stand-in) streams changing prompts instead.
//
//   node dist/bench/fastpath.js [--model DIR] [--steps-run 1,2] [--rate 120] [--duration 5] [--warm 1]
//        [--rounds 3] [--size N] [--max-size 512] [--arms today,...] [--threads 2] [--out DIR]
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { decodeMessage, encodeMessage } from '../shared/codec.js';
import type { FrameMessage, GenerateMessage, HelloMessage, ServerMessage } from '../shared/protocol.js';
import { startServerProcess, type ServerProcess } from '../test/helpers/server-process.js';
import { prepareInputs } from './inputs.js';
import { machineInfo } from './report/machine.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    'steps-run': { type: 'string', default: '1,2' },
    rate: { type: 'string', default: '120' },
    duration: { type: 'string', default: '5' },
    warm: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    size: { type: 'string' },
    'max-size': { type: 'string', default: '512' },
    arms: { type: 'string' },
    threads: { type: 'string', default: '2' },
    out: { type: 'string', default: fileURLToPath(new URL('../../bench/results', import.meta.url)) },
  },
});

// Stream batching is named in every arm: its default (auto) would decide by the machine.
export const ARMS = {
  today: ['--final-decoder', 'vae', '--last-preview', '--stream-batch', 'off'],
  'fast decode': ['--final-decoder', 'preview', '--last-preview', '--stream-batch', 'off'],
  'one decode': ['--final-decoder', 'vae', '--stream-batch', 'off'],
  'fast + one decode': ['--final-decoder', 'preview', '--stream-batch', 'off'],
  'stream batch': ['--final-decoder', 'vae', '--last-preview', '--stream-batch', 'on'],
  'all together': ['--final-decoder', 'preview', '--stream-batch', 'on'],
} as const;
type Arm = keyof typeof ARMS;

interface Window {
  frames: number;
  seconds: number;
  latencies: number[];
  /** Worker ms per frame: UNet (each step's call divided by its batch size), previews, final decode. */
  unet: number[];
  previews: number[];
  decode: number[];
  decodes: number[];
  superseded: number;
  errors: Record<string, number>;
}

const percentile = (xs: number[], p: number) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const median = (xs: number[]) => percentile(xs, 50);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** One session streaming at `rate` Hz for warm + duration seconds; frames arriving after the warm-up count. */
async function streamWindow(url: string, request: Omit<GenerateMessage, 'type' | 'id'>, images: Uint8Array[], rate: number, warmS: number, durationS: number): Promise<Window> {
  const ws = new WebSocket(url);
  const w: Window = { frames: 0, seconds: durationS, latencies: [], unet: [], previews: [], decode: [], decodes: [], superseded: 0, errors: {} };
  const sentAt = new Map<number, number>();
  let measureFrom = Infinity;
  let measureTo = Infinity;
  const open = new Promise<void>((resolve, reject) => {
    ws.on('message', (data: Buffer) => {
      const m = decodeMessage(data) as ServerMessage;
      if (m.type === 'hello') return resolve();
      if (!('id' in m) || typeof m.id !== 'number') return;
      const now = performance.now();
      const inWindow = now >= measureFrom && now < measureTo;
      if (m.type === 'frame') {
        const f = m as FrameMessage;
        if (inWindow) {
          w.frames++;
          w.latencies.push(now - sentAt.get(f.id as number)!);
          w.unet.push(f.timings.steps.reduce((s, ms, i) => s + ms / (f.timings.batchSizes[i] ?? 1), 0));
          w.previews.push(f.timings.previews);
          w.decode.push(f.timings.decode);
          w.decodes.push(f.timings.decodes ?? Number.NaN);
        }
      } else if (m.type === 'superseded') {
        if (inWindow) w.superseded++;
      } else if (m.type === 'error' && inWindow) {
        w.errors[m.code] = (w.errors[m.code] ?? 0) + 1;
      }
      if (m.type !== 'preview') sentAt.delete(m.id as number);
    });
    ws.once('error', reject);
  });
  await open;
  let id = 0;
  const start = performance.now();
  measureFrom = start + warmS * 1000;
  measureTo = measureFrom + durationS * 1000;
  const interval = 1000 / rate;
  // Paced by the clock, not by setTimeout's drift: a camera does not slow down when we do.
  while (performance.now() < measureTo) {
    sentAt.set(id, performance.now());
    const input = images.length ? { image: images[id % images.length] } : { prompt: `${request.prompt} ${id % 7}` };
    ws.send(encodeMessage({ ...request, type: 'generate', id, ...input }));
    id++;
    const next = start + id * interval;
    await sleep(Math.max(0, next - performance.now()));
  }
  // Let what is in flight finish (it is outside the window) before the next arm starts.
  const deadline = performance.now() + 30_000;
  while (sentAt.size > 0 && performance.now() < deadline) await sleep(20);
  ws.close();
  return w;
}

async function main(): Promise<void> {
  const arms = (args.arms ? args.arms.split(',') : Object.keys(ARMS)) as Arm[];
  for (const a of arms) if (!(a in ARMS)) throw new Error(`unknown arm "${a}" (arms: ${Object.keys(ARMS).join(', ')})`);
  const modelArgs = args.model ? ['--model', path.resolve(args.model)] : [];
  // --max-size bounds the sizes warm-up proves: a large model's 1024x1024 warm-up takes minutes on a CPU.
  const common = [...modelArgs, '--threads', args.threads!, '--rate-limit', '10000', '--skip-threshold', '0', '--max-steps', '16', '--max-size', args['max-size']!];
  console.error(`starting ${arms.length} servers ...`);
  const servers = new Map<Arm, ServerProcess>();
  const results: Record<string, Record<string, Window[]>> = {};
  try {
    for (const arm of arms) servers.set(arm, await startServerProcess([...common, ...ARMS[arm]], { timeoutMs: 600_000 }));
    const hello = await new Promise<HelloMessage>((resolve, reject) => {
      const ws = new WebSocket(servers.get(arms[0])!.wsUrl);
      ws.on('message', (data: Buffer) => {
        resolve(decodeMessage(data) as HelloMessage);
        ws.close();
      });
      ws.once('error', reject);
    });
    const model = hello.model;
    const size = Number(args.size ?? model.width);
    const img2img = model.img2img;
    const inputs = await prepareInputs(img2img ? 'camera' : 'prompt', size);
    const stepsRun = args['steps-run']!.split(',').map(Number);
    // Other processes on a shared machine: their load is part of what the figures mean.
    const loadBefore = loadavg()[0];
    console.error(`${model.name}, ${size}x${size}, ${img2img ? 'image-to-image camera stream (strength 0.5)' : 'text-to-image stream (changing prompt)'}, ${args.rate} inputs/s offered, previews on`);
    for (let round = 0; round < Number(args.rounds); round++) {
      for (const n of stepsRun) {
        // Euler image-to-image at strength 0.5 runs floor(steps x 0.5) steps.
        const request = { prompt: inputs.prompts[0], steps: img2img ? 2 * n : n, strength: img2img ? 0.5 : 1, width: size, height: size, previews: true, format: 'jpeg' as const };
        // Rotate the order each round so that no arm always runs first or last.
        const order = arms.map((_, i) => arms[(i + round) % arms.length]);
        for (const arm of order) {
          const w = await streamWindow(servers.get(arm)!.wsUrl, request, inputs.images, Number(args.rate), Number(args.warm), Number(args.duration));
          ((results[n] ??= {})[arm] ??= []).push(w);
          console.error(`round ${round + 1}, ${n} step(s), ${arm}: ${(w.frames / w.seconds).toFixed(1)} frames/s, p50 ${median(w.latencies).toFixed(1)} ms`);
        }
      }
    }
    const report = summarise(results, arms);
    printTables(report, `${model.name}, ${size}x${size}, ${img2img ? 'camera image-to-image' : 'text-to-image'}`);
    console.log(`\nload average (1 min) at the start ${loadBefore.toFixed(1)}, at the end ${loadavg()[0].toFixed(1)} (${machineInfo().cores} cores)`);
    const out = {
      bench: 'fastpath',
      date: new Date().toISOString(),
      machine: { ...machineInfo(), loadAverage1m: { start: loadBefore, end: loadavg()[0] } },
      config: { model: model.name, size, img2img, rate: Number(args.rate), durationS: Number(args.duration), rounds: Number(args.rounds), stepsRun, arms: Object.fromEntries(arms.map((a) => [a, ARMS[a]])) },
      summary: report,
      // Per window, not per frame: enough to see each round's spread.
      windows: Object.fromEntries(Object.entries(results).map(([n, byArm]) => [n, Object.fromEntries(Object.entries(byArm).map(([arm, ws]) => [arm, ws.map(compact)]))])),
    };
    await mkdir(args.out!, { recursive: true });
    const file = path.join(args.out!, `fastpath-${out.date.replace(/[:.]/g, '-')}.json`);
    await writeFile(file, JSON.stringify(out, null, 2));
    console.log(`\nwrote ${file}`);
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop()));
  }
}

function compact(w: Window) {
  const r = (x: number) => Math.round(x * 10) / 10;
  return { framesPerSecond: r(w.frames / w.seconds), p50: r(median(w.latencies)), p99: r(percentile(w.latencies, 99)), frames: w.frames, superseded: w.superseded, errors: w.errors };
}

interface Summary {
  stepsRun: number;
  arm: string;
  framesPerSecond: number;
  fpsRatio: number;
  p50: number;
  p99: number;
  p50Ratio: number;
  unetMs: number;
  previewsMs: number;
  decodeMs: number;
  decodesPerFrame: number;
  superseded: number;
  errors: Record<string, number>;
}

function summarise(results: Record<string, Record<string, Window[]>>, arms: Arm[]): Summary[] {
  const rows: Summary[] = [];
  for (const [n, byArm] of Object.entries(results)) {
    const base = byArm[arms[0]];
    // Ratios per round (same moment of the run), then their median: noise common to a round cancels.
    const fps = (ws: Window[]) => ws.map((w) => w.frames / w.seconds);
    for (const arm of arms) {
      const ws = byArm[arm];
      const pooled = (k: 'latencies' | 'unet' | 'previews' | 'decode' | 'decodes') => ws.flatMap((w) => w[k]);
      const baseP50 = fps(base).map((_, i) => median(base[i].latencies));
      const errors: Record<string, number> = {};
      for (const w of ws) for (const [k, v] of Object.entries(w.errors)) errors[k] = (errors[k] ?? 0) + v;
      rows.push({
        stepsRun: Number(n),
        arm,
        framesPerSecond: median(fps(ws)),
        fpsRatio: median(fps(ws).map((f, i) => f / fps(base)[i])),
        p50: median(pooled('latencies')),
        p99: percentile(pooled('latencies'), 99),
        p50Ratio: median(ws.map((w, i) => median(w.latencies) / baseP50[i])),
        unetMs: median(pooled('unet')),
        previewsMs: median(pooled('previews')),
        decodeMs: median(pooled('decode')),
        decodesPerFrame: median(pooled('decodes')),
        superseded: ws.reduce((s, w) => s + w.superseded, 0),
        errors,
      });
    }
  }
  return rows;
}

function printTables(rows: Summary[], title: string): void {
  const f1 = (x: number) => (Number.isNaN(x) ? 'n/a' : x.toFixed(1));
  console.log(`\n${title}: one session, previews on; medians of rounds, latencies pooled; ratios against "${rows[0]?.arm}" per round\n`);
  console.log('| steps run | arm | frames/s | x today | frame p50 ms | p50 x today | frame p99 ms | decodes/frame | superseded | errors |');
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const r of rows) {
    const errors = Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(', ') || '0';
    console.log(`| ${r.stepsRun} | ${r.arm} | ${f1(r.framesPerSecond)} | ${r.fpsRatio.toFixed(2)} | ${f1(r.p50)} | ${r.p50Ratio.toFixed(2)} | ${f1(r.p99)} | ${r.decodesPerFrame} | ${r.superseded} | ${errors} |`);
  }
  console.log('\nWorker time per frame, medians (UNet: each step\'s call divided by the requests it carried):\n');
  console.log('| steps run | arm | UNet ms | previews ms | final decode ms | UNet share | previews share | decode share |');
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const total = r.unetMs + r.previewsMs + r.decodeMs;
    const pct = (x: number) => `${((100 * x) / total).toFixed(0)}%`;
    console.log(`| ${r.stepsRun} | ${r.arm} | ${f1(r.unetMs)} | ${f1(r.previewsMs)} | ${f1(r.decodeMs)} | ${pct(r.unetMs)} | ${pct(r.previewsMs)} | ${pct(r.decodeMs)} |`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
