// Where the batch runner's iterations spend time outside onnxruntime. It replays the runner's
// calls for a batch of requests (admit: state, cached text encoding, starting latents; each step;
// the previews of steps that are not the last; the final decode) and measures, per call, the wall
// time and the time inside onnxruntime's run(); the difference is the host work around the model:
// tensor packing, float16 conversion, random numbers, sampler arithmetic, copies, planar-to-RGB.
// Then it times those operations one by one at the model's sizes, to say what the difference is
// made of. (A sampling profile attributes this badly: V8 inlines the helpers into their callers.)
//
//   node dist/bench/hot-path.js [--model DIR] [--size N] [--steps 2] [--batch 1,4] [--requests 100]
//        [--final-decoder vae|preview] [--threads 2] [--out DIR]
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_MODEL_DIR } from '../server/config.js';
import { float16ToFloat32, float32ToFloat16 } from '../server/pipeline/fp16.js';
import { isFinished } from '../server/pipeline/generation.js';
import { planarToRgb } from '../server/pipeline/image-tensors.js';
import { DiffusionPipeline, type GenerationState } from '../server/pipeline/pipeline.js';
import { GaussianRng } from '../server/pipeline/rng.js';
import { machineInfo } from './report/machine.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: DEFAULT_MODEL_DIR },
    size: { type: 'string' },
    steps: { type: 'string', default: '2' },
    batch: { type: 'string', default: '1,4' },
    requests: { type: 'string', default: '100' },
    threads: { type: 'string', default: '2' },
    'final-decoder': { type: 'string', default: 'vae' },
    out: { type: 'string', default: fileURLToPath(new URL('../../bench/results', import.meta.url)) },
  },
});

const PHASES = ['admit', 'step', 'previews', 'decode'] as const;
type Phase = (typeof PHASES)[number];

interface Row {
  batch: number;
  /** Per runner iteration (one step of the batch), ms: wall, inside onnxruntime, outside it. */
  iteration: { wallMs: number; onnxruntimeMs: number; outsideMs: number };
  /** Outside onnxruntime per phase, ms per iteration. */
  outsideByPhaseMs: Record<Phase, number>;
}

async function measureBatch(pipeline: DiffusionPipeline, batch: number, steps: number, size: number, requests: number): Promise<Row> {
  let ortMs = 0;
  const m = pipeline.model;
  const components = [m.textEncoder, m.unet, m.vaeDecoder, m.vaeEncoder, m.previewDecoder].filter((c) => c !== undefined);
  const originals = components.map((c) => c.run.bind(c));
  components.forEach((c, i) => {
    c.run = async (feeds) => {
      const t = performance.now();
      const out = await originals[i](feeds);
      ortMs += performance.now() - t;
      return out;
    };
  });
  const wall: Record<Phase, number> = { admit: 0, step: 0, previews: 0, decode: 0 };
  const ort: Record<Phase, number> = { admit: 0, step: 0, previews: 0, decode: 0 };
  const timed = async <T>(phase: Phase, work: () => Promise<T>): Promise<T> => {
    const [t0, o0] = [performance.now(), ortMs];
    const out = await work();
    wall[phase] += performance.now() - t0;
    ort[phase] += ortMs - o0;
    return out;
  };
  const finalDecoder = args['final-decoder'] === 'preview' ? 'preview' : 'vae';
  const rounds = Math.max(1, Math.ceil(requests / batch));
  const oneRound = async (round: number) => {
    const states = await timed('admit', async () => {
      const s: GenerationState[] = Array.from({ length: batch }, (_, i) =>
        pipeline.createState({ prompt: 'a red circle', steps, strength: 1, seed: round * 64 + i, width: size, height: size, previews: true, finalDecoder }),
      );
      await pipeline.encodeText(s);
      await pipeline.prepareLatents(s);
      return s;
    });
    while (!isFinished(states[0])) {
      const predictions = await timed('step', () => pipeline.step(states));
      if (!isFinished(states[0])) await timed('previews', () => pipeline.previews(states, predictions));
    }
    await timed('decode', () => pipeline.decode(states));
  };
  try {
    for (let r = 0; r < 3; r++) await oneRound(r);
    for (const p of PHASES) wall[p] = ort[p] = 0;
    for (let r = 0; r < rounds; r++) await oneRound(r);
  } finally {
    components.forEach((c, i) => (c.run = originals[i]));
  }
  const iterations = rounds * steps;
  const per = (ms: number) => Math.round((ms / iterations) * 1000) / 1000;
  const wallMs = PHASES.reduce((s, p) => s + wall[p], 0);
  const onnxMs = PHASES.reduce((s, p) => s + ort[p], 0);
  return {
    batch,
    iteration: { wallMs: per(wallMs), onnxruntimeMs: per(onnxMs), outsideMs: per(wallMs - onnxMs) },
    outsideByPhaseMs: Object.fromEntries(PHASES.map((p) => [p, per(wall[p] - ort[p])])) as Record<Phase, number>,
  };
}

/** Median µs of `fn` over `n` runs after a warm-up. */
function micro(fn: () => unknown, n = 60): number {
  for (let i = 0; i < 10; i++) fn();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    fn();
    times.push((performance.now() - t) * 1000);
  }
  times.sort((a, b) => a - b);
  return Math.round(times[n >> 1]);
}

/** The host operations of one request's step and decodes, at this model's sizes, one by one. */
function operations(pipeline: DiffusionPipeline, size: number, steps: number): Record<string, number> {
  const m = pipeline.model;
  const state = pipeline.createState({ prompt: '', steps, strength: 1, seed: 1, width: size, height: size, previews: true });
  const latents = new GaussianRng(2).gaussian(state.latentSize);
  const eps = new GaussianRng(3).gaussian(state.latentSize);
  const rng = new GaussianRng(4);
  // A decoder's output is a smooth image, nearly all of it in range (random values would make the
  // clamping branches unpredictable and the conversion look several times slower than it is).
  const rgb = new Float32Array(3 * size * size).map((_, i) => 0.9 * Math.sin(i / 997) * Math.cos(i / 31));
  const rgbHalf = float32ToFloat16(rgb);
  const hiddenWidth = m.unet.input('encoder_hidden_states').shape.at(-1);
  const hidden = new Float32Array(77 * (typeof hiddenWidth === 'number' ? hiddenWidth : 1024));
  const ops: Record<string, number> = {
    [`random numbers: one latent of noise (${state.latentSize} values)`]: micro(() => rng.gaussian(state.latentSize)),
    'sampler: input scaling': micro(() => state.sampler.scaleModelInput(latents, 0)),
    'sampler: update, noise aside': micro(() => state.sampler.step(latents, eps, 0, () => eps)),
    'float16: latent to float16 (UNet input)': micro(() => float32ToFloat16(latents)),
    'float16: UNet output to float32': micro(() => float16ToFloat32(float32ToFloat16(eps))) - micro(() => float32ToFloat16(eps)),
    [`float16: text embedding to float16 (${hidden.length} values; now once per batch of prompts)`]: micro(() => float32ToFloat16(hidden)),
    [`copy: one ${size}x${size} decoder output (now a view)`]: micro(() => rgb.slice()),
    [`planar to RGB: ${size}x${size} from float32`]: micro(() => planarToRgb(rgb, size, size, -1, 1)),
    [`planar to RGB: ${size}x${size} from float16`]: micro(() => planarToRgb(rgbHalf, size, size, -1, 1)),
  };
  return ops;
}

async function main(): Promise<void> {
  const modelDir = path.resolve(args.model!);
  const pipeline = await DiffusionPipeline.load(modelDir, 'cpu', { executionProviders: ['cpu'], threads: Number(args.threads) });
  await pipeline.warmup();
  const size = Number(args.size ?? pipeline.info.width);
  const steps = Number(args.steps);
  const title = `${pipeline.info.name} (${pipeline.info.dtype}), ${size}x${size}, ${steps} steps, previews on, final decoder ${args['final-decoder']}`;
  console.log(title);
  const rows: Row[] = [];
  for (const batch of args.batch!.split(',').map(Number)) rows.push(await measureBatch(pipeline, batch, steps, size, Number(args.requests)));
  const ops = operations(pipeline, size, steps);
  const cols = rows.map((r) => `batch ${r.batch}`).join(' | ');
  console.log(`\n| per runner iteration, ms | ${cols} |\n|---|${rows.map(() => '---:').join('|')}|`);
  console.log(`| wall | ${rows.map((r) => r.iteration.wallMs.toFixed(3)).join(' | ')} |`);
  console.log(`| inside onnxruntime run() | ${rows.map((r) => r.iteration.onnxruntimeMs.toFixed(3)).join(' | ')} |`);
  console.log(`| **outside onnxruntime** | ${rows.map((r) => `**${r.iteration.outsideMs.toFixed(3)}**`).join(' | ')} |`);
  for (const p of PHASES) console.log(`| - in ${p} | ${rows.map((r) => r.outsideByPhaseMs[p].toFixed(3)).join(' | ')} |`);
  console.log('\n| host operation (one request) | median µs |\n|---|---:|');
  for (const [name, us] of Object.entries(ops)) console.log(`| ${name} | ${us} |`);
  const report = {
    bench: 'hot-path',
    date: new Date().toISOString(),
    machine: { ...machineInfo(), loadAverage1m: loadavg()[0] },
    config: { model: pipeline.info.name, dtype: pipeline.info.dtype, size, steps, finalDecoder: args['final-decoder'], requests: Number(args.requests) },
    rows,
    operationsMicroseconds: ops,
  };
  await mkdir(args.out!, { recursive: true });
  const file = path.join(args.out!, `hot-path-${report.date.replace(/[:.]/g, '-')}.json`);
  await writeFile(file, JSON.stringify(report, null, 2));
  console.log(`\nwrote ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
