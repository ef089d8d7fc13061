// Markdown for a GPU benchmark result (bench/gpu.ts): model-call times per batch beside PyTorch's,
// the server's frames/s and time to first image per session count with the fast path off and on,
// and our figures beside the
// published anchors, each with its device and provider. Every table says what the model is: the
// random-weight stand-in, and at which scale, so a scaled smoke run is never read as SD-Turbo's.
import type { Device } from '../server/config.js';
import { STREAM_BATCH_MAX_PAIR_COST, streamBatchFor } from '../server/realtime/model-host.js';
import type { PipelineTimings } from './gpu-pipeline.js';
import type { SessionRun } from './gpu-sessions.js';

/** The few-step fast path in server flags: `off` is the path before it (VAE final frame, a preview
 * of the last step too, no stream batching); `on` is all of it (docs/performance.md). */
export const FAST_PATH_ARGS = {
  off: ['--final-decoder', 'vae', '--last-preview', '--stream-batch', 'off'],
  on: ['--final-decoder', 'preview', '--stream-batch', 'on'],
} as const;
export type FastPath = keyof typeof FAST_PATH_ARGS;

export interface ServerArm {
  warmupMs: number;
  /** The server's warm-up measure of pairing: a step of two over a step of one (what --stream-batch auto decides by). */
  pairCost?: number;
  steps: number;
  maxBatch: number;
  /** Requests each session kept in flight: 1 closed loop, 2 running + pending. */
  window: number;
  fastPath: FastPath;
  runs: SessionRun[];
}

export interface GpuBenchResult {
  kind: 'gpu';
  date: string;
  machine: { gpu: string | null; cpu: string; cores: number; node: string; onnxruntime: string };
  device: Device;
  modelDir: string;
  /** gpu/standin's standin.json when the model is the stand-in (scale, dtype, parameter counts). */
  standin: Record<string, unknown> | null;
  pipeline: PipelineTimings | null;
  /** One entry per fast-path arm run (none with --skip-server). */
  server: ServerArm[];
  torch: Record<string, unknown> | null;
}

/** Published figures we compare with (docs/gpu.md cites them). */
export const ANCHORS = [
  { system: 'StreamDiffusion: img2img, SD-Turbo, 1 step, TAESD', device: 'RTX 4090', provider: 'TensorRT', figure: '93.9 frames/s' },
  { system: 'ONNX Runtime: SD-Turbo, batch 1, 1 step, full VAE', device: 'A100', provider: 'ONNX Runtime CUDA', figure: 'about 27 images/s' },
];

type TorchStat = { medianMs: number };
type TorchTimes = Record<string, TorchStat> | undefined;

const ms = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? 'n/a' : x < 10 ? x.toFixed(2) : x.toFixed(1));

function modelLine(r: GpuBenchResult): string {
  const s = r.standin;
  if (!s) return `Model: \`${r.modelDir}\` (not the stand-in).`;
  const params = (s.parameters as Record<string, number> | undefined)?.unet;
  const scale = Number(s.scale);
  const size = Number(s.sampleSize) * 8;
  const what =
    scale === 1
      ? `SD-Turbo's UNet architecture and size (${params?.toLocaleString('en-US')} parameters), SD VAE decoder and TAESD sizes`
      : `the SD-Turbo architecture at 1/${scale} width (${params?.toLocaleString('en-US')} UNet parameters): a smoke test, NOT SD-Turbo's compute`;
  return `Model: the benchmark stand-in (random weights, never a model that draws): ${what}; ${s.dtype}, ${size}x${size}.`;
}

export function gpuMarkdown(r: GpuBenchResult): string {
  const out: string[] = [];
  out.push(`# GPU benchmark: ${r.device} execution provider`, '');
  out.push(modelLine(r), '');
  out.push(
    `Machine: GPU ${r.machine.gpu ?? '(not named)'}; CPU ${r.machine.cpu} (${r.machine.cores} cores); Node ${r.machine.node}; ` +
      `onnxruntime-node ${r.machine.onnxruntime}, provider \`${r.device}\`. ${r.date}.`,
    '',
  );
  const torch = r.torch as { unet?: TorchTimes; vaeDecode?: TorchTimes; previewDecode?: TorchTimes; gpu?: string; torch?: string; dtype?: string } | null;

  if (r.pipeline) {
    const p = r.pipeline;
    out.push(`## Model calls in process (${p.size}x${p.size}, ${p.dtype}, 1 step)`, '');
    out.push('Medians in ms. "step" is the UNet call plus host-side dtype conversion, batching and the sampler update.');
    if (torch) out.push(`PyTorch columns: the same architecture in PyTorch ${torch.torch} (${torch.dtype}) on ${torch.gpu}, the ceiling.`);
    out.push('');
    out.push('| batch | UNet run | step | per image | preview decode | VAE decode | images/s (step + preview + VAE) | images/s, fast path (step + preview decoder as final) |' + (torch ? ' PyTorch UNet | PyTorch VAE decode | PyTorch TAESD |' : ''));
    out.push('|---:|---:|---:|---:|---:|---:|---:|---:|' + (torch ? '---:|---:|---:|' : ''));
    for (const b of p.batches) {
      const key = String(b.batch);
      const t = torch ? ` ${ms(torch.unet?.[key]?.medianMs)} | ${ms(torch.vaeDecode?.[key]?.medianMs)} | ${ms(torch.previewDecode?.[key]?.medianMs)} |` : '';
      out.push(
        `| ${b.batch} | ${ms(b.unetRun.medianMs)} | ${ms(b.step.medianMs)} | ${ms(b.step.medianMs / b.batch)} | ${ms(b.previewDecode.medianMs)} | ` +
          `${ms(b.vaeDecode.medianMs)} | ${b.imagesPerSecond} | ${b.imagesPerSecondFast ?? 'n/a'} |${t}`,
      );
    }
    out.push('');
  }

  for (const s of r.server) {
    out.push(`## Through the server, fast path ${s.fastPath} (text-to-image, ${s.steps} step${s.steps > 1 ? 's' : ''}, previews on, --max-batch ${s.maxBatch})`, '');
    const pairing = s.pairCost === undefined ? '' : ` Warm-up timed a step of two requests at ${s.pairCost}x a step of one, so \`--stream-batch auto\` (on at ${STREAM_BATCH_MAX_PAIR_COST}x or less) would turn stream batching ${streamBatchFor('auto', s.pairCost) ? 'on' : 'off'} here.`;
    out.push(`Server flags: \`${FAST_PATH_ARGS[s.fastPath].join(' ')}\`.${pairing} Each session keeps ${s.window === 1 ? 'one request in flight, the next sent when its frame arrives' : 'two requests in flight (running + pending, as a streaming client does)'}. Latencies in ms; first image is the first preview, or the frame when there is none.`, '');
    out.push('| sessions | frames/s | first image p50 | first image p90 | frame p50 | frame p90 | mean UNet batch | errors |');
    out.push('|---:|---:|---:|---:|---:|---:|---:|---|');
    for (const run of s.runs) {
      const errors = Object.entries(run.errors).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
      out.push(
        `| ${run.sessions} | ${run.framesPerSecond} | ${ms(run.firstPreviewMs.medianMs)} | ${ms(run.firstPreviewMs.p90Ms)} | ` +
          `${ms(run.frameLatencyMs.medianMs)} | ${ms(run.frameLatencyMs.p90Ms)} | ${run.meanBatch} | ${errors} |`,
      );
    }
    out.push('');
  }
  for (const off of r.server.filter((s) => s.fastPath === 'off')) {
    const on = r.server.find((s) => s.fastPath === 'on' && s.steps === off.steps);
    if (!on) continue;
    out.push(`## Fast path on against off, ${off.steps} step${off.steps > 1 ? 's' : ''}`, '');
    out.push('| sessions | frames/s off | frames/s on | on / off | frame p50 off | frame p50 on |', '|---:|---:|---:|---:|---:|---:|');
    for (const a of off.runs) {
      const b = on.runs.find((x) => x.sessions === a.sessions);
      if (!b) continue;
      out.push(`| ${a.sessions} | ${a.framesPerSecond} | ${b.framesPerSecond} | ${(b.framesPerSecond / a.framesPerSecond).toFixed(2)} | ${ms(a.frameLatencyMs.medianMs)} | ${ms(b.frameLatencyMs.medianMs)} |`);
    }
    out.push('');
  }

  out.push('## Beside the published anchors', '');
  out.push('| system | device | provider | figure |', '|---|---|---|---|');
  for (const a of ANCHORS) out.push(`| ${a.system} | ${a.device} | ${a.provider} | ${a.figure} |`);
  const gpu = r.machine.gpu ?? '(not named)';
  const ours = r.standin && Number(r.standin.scale) !== 1 ? ' (scaled stand-in: not comparable)' : '';
  const b1 = r.pipeline?.batches.find((b) => b.batch === 1);
  if (b1) out.push(`| this project, in process: batch 1, 1 step, TAESD preview + full VAE${ours} | ${gpu} | onnxruntime-node ${r.device} | ${b1.imagesPerSecond} images/s |`);
  if (b1) out.push(`| this project, in process: batch 1, 1 step, fast path (TAESD-size final decode)${ours} | ${gpu} | onnxruntime-node ${r.device} | ${b1.imagesPerSecondFast} images/s |`);
  for (const s of r.server) {
    const what = s.fastPath === 'on' ? 'fast path: TAESD-size final decode, stream batching' : 'TAESD previews + full VAE';
    for (const run of s.runs) {
      out.push(`| this server: ${run.sessions} session${run.sessions > 1 ? 's' : ''}, txt2img, ${s.steps} step${s.steps > 1 ? 's' : ''}, ${what}${ours} | ${gpu} | onnxruntime-node ${r.device} | ${run.framesPerSecond} frames/s |`);
    }
  }
  const t1 = torch?.unet?.['1']?.medianMs;
  if (t1) out.push(`| PyTorch ceiling: UNet alone, batch 1${ours} | ${torch?.gpu} | PyTorch ${torch?.torch} | ${(1000 / t1).toFixed(1)} UNet calls/s |`);
  out.push('');
  return out.join('\n');
}
