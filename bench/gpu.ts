// GPU benchmark of the SD-Turbo-scale stand-in (gpu/standin) or any model folder, on one execution
// provider: UNet step time at each batch size, preview and VAE decode times (in process, through
// the pipeline's batched primitives), then frames/s and time to first image through the real
// server with 1, 8 and 32 sessions, with the few-step fast path off and on (--fast-path). Writes
// JSON and a markdown table (with a PyTorch ceiling and the published anchors beside ours when
// given). gpu/measure.sh runs it on GPU hosts; on a CPU it runs the same way, small, as a smoke test.
//
//   node dist/bench/gpu.js --model DIR --device webgpu [--batches 1,4,8] [--sessions 1,8,32]
//        [--steps 1[,2...]] [--duration 20] [--warm 5] [--iters 10] [--size 512] [--max-batch 8]
//        [--fast-path off|on|both] [--window 1|2]
//        [--torch-json FILE] [--gpu-name NAME] [--out DIR] [--skip-server] [--skip-pipeline]
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus } from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEVICES, type Device } from '../server/config.js';
import { benchPipeline } from './gpu-pipeline.js';
import { benchServer } from './gpu-sessions.js';
import { FAST_PATH_ARGS, gpuMarkdown, type FastPath, type GpuBenchResult } from './gpu-report.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    device: { type: 'string', default: 'cpu' },
    'device-id': { type: 'string', default: '0' },
    threads: { type: 'string', default: String(availableParallelism()) },
    batches: { type: 'string', default: '1,4,8' },
    sessions: { type: 'string', default: '1,8,32' },
    steps: { type: 'string', default: '1' },
    size: { type: 'string' },
    iters: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    warm: { type: 'string', default: '5' },
    duration: { type: 'string', default: '20' },
    'max-batch': { type: 'string', default: '8' },
    'fast-path': { type: 'string', default: 'both' },
    window: { type: 'string', default: '1' },
    'ready-timeout': { type: 'string', default: '900' },
    'torch-json': { type: 'string' },
    'gpu-name': { type: 'string' },
    out: { type: 'string', default: fileURLToPath(new URL('../../bench/results', import.meta.url)) },
    'skip-server': { type: 'boolean', default: false },
    'skip-pipeline': { type: 'boolean', default: false },
  },
});

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

const list = (raw: string, name: string) =>
  raw.split(',').map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1 || n > 1024) fail(`--${name}: positive integers, comma-separated, got "${raw}"`);
    return n;
  });
const int = (name: keyof typeof args) => {
  const n = Number(args[name]);
  if (!Number.isFinite(n) || n < 0) fail(`--${name} must be a non-negative number`);
  return n;
};

async function main(): Promise<void> {
  if (!args.model) fail('--model DIR is required (e.g. a stand-in from gpu/standin/make_standin.py)');
  const device = args.device as Device;
  if (!(DEVICES as readonly string[]).includes(device)) fail(`--device must be one of ${DEVICES.join(', ')}`);
  const modelDir = path.resolve(args.model);
  const log = (line: string) => console.log(`[gpu-bench] ${line}`);
  const common = { modelDir, device, deviceId: int('device-id'), threads: int('threads'), size: args.size ? int('size') : undefined };
  const readJson = (file: string) => (existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>) : null);

  const pipeline = args['skip-pipeline']
    ? null
    : await benchPipeline({ ...common, batches: list(args.batches!, 'batches'), iters: int('iters'), warmup: int('warmup'), log });
  // Several step counts run on each arm's one server (one warm-up): `--steps 1,2`.
  const stepCounts = list(args.steps!, 'steps');
  const maxBatch = int('max-batch');
  const window = int('window');
  if (window !== 1 && window !== 2) fail('--window is 1 (closed loop) or 2 (running + pending, a streaming client)');
  const arms: FastPath[] = args['fast-path'] === 'both' ? ['off', 'on'] : [args['fast-path'] as FastPath];
  if (!arms.every((a) => a === 'off' || a === 'on')) fail('--fast-path must be off, on or both');
  const server: GpuBenchResult['server'] = [];
  if (!args['skip-server']) {
    for (const fastPath of arms) {
      log(`fast path ${fastPath}: ${FAST_PATH_ARGS[fastPath].join(' ')}`);
      const run = await benchServer({
        ...common,
        maxBatch,
        sessions: list(args.sessions!, 'sessions'),
        steps: stepCounts[0]!,
        stepCounts,
        window,
        serverArgs: FAST_PATH_ARGS[fastPath],
        warmS: int('warm'),
        durationS: int('duration'),
        readyTimeoutMs: int('ready-timeout') * 1000,
        log,
      });
      // One report section per step count, each with the server's one warm-up.
      for (const steps of stepCounts) {
        server.push({ ...run, runs: run.runs.filter((r) => r.steps === steps), steps, maxBatch, window, fastPath });
      }
    }
  }

  const ortVersion = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
  const result: GpuBenchResult = {
    kind: 'gpu',
    date: new Date().toISOString(),
    machine: { gpu: args['gpu-name'] ?? null, cpu: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), node: process.version, onnxruntime: ortVersion },
    device,
    modelDir,
    standin: readJson(path.join(modelDir, 'standin.json')),
    pipeline,
    server,
    torch: args['torch-json'] ? readJson(path.resolve(args['torch-json'])) : null,
  };
  await mkdir(args.out!, { recursive: true });
  const stem = path.join(args.out!, `gpu-${device}-${result.date.replace(/[:.]/g, '-')}`);
  await writeFile(`${stem}.json`, JSON.stringify(result, null, 2) + '\n');
  await writeFile(`${stem}.md`, gpuMarkdown(result));
  log(`wrote ${stem}.json and ${stem}.md`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
