// fal's routes against the native route, side by side on one server process:
//   realtime  one session streaming camera frames (image-to-image) through fal's `/{app}/realtime`
//             and through `/v1/realtime`, closed loop (next input when the previous image arrives)
//             and open loop at a fixed rate above capacity (latest wins drops inputs); the two
//             routes alternate window by window, the order flipping each round.
//   queue     jobs/s when `--jobs` text-to-image jobs are submitted at once, against the same
//             requests sent at once on as many realtime sockets; and the latency one queued job
//             adds over the same request on an open realtime socket (status polled, or watched on
//             the status event stream), the arms alternating request by request.
//
//   node dist/bench/fal.js [--model DIR] [--app fal-ai/fast-turbo-diffusion] [--duration 3] [--warm 1]
//        [--rounds 8] [--rate 120] [--steps 2] [--strength 0.5] [--jobs 40] [--requests 20]
//        [--poll-ms 20] [--threads 2] [--quiet-wait S] [--out DIR]
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { decodeMessage } from '../shared/codec.js';
import type { HelloMessage } from '../shared/protocol.js';
import { burst, openRequester, streamWindow, type Input, type Route, type StreamWindow } from './fal-realtime.js';
import { queueBurst, queuedOnce, type QueueBase } from './fal-queue.js';
import { framesPerSecond as fps, latencySummary, median, printTables, ROUTES, saturationSummary, summariseStreams, WATCHES, windowRow, type FalReport, type QueueRun } from './fal-report.js';
import { prepareInputs } from './inputs.js';
import { admissionArgs, startLocalServer, type LocalServer } from './local-server.js';
import { readMachineBusySeconds, readProc, waitForQuietMachine } from './proc-sampler.js';
import { num } from './option-checks.js';
import { machineInfo } from './report/machine.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    app: { type: 'string', default: 'fal-ai/fast-turbo-diffusion' },
    duration: { type: 'string', default: '3' },
    warm: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '8' },
    rate: { type: 'string', default: '120' },
    steps: { type: 'string', default: '2' },
    strength: { type: 'string', default: '0.5' },
    jobs: { type: 'string', default: '40' },
    requests: { type: 'string', default: '20' },
    'poll-ms': { type: 'string', default: '20' },
    threads: { type: 'string', default: '2' },
    'quiet-wait': { type: 'string', default: '0' },
    out: { type: 'string', default: fileURLToPath(new URL('../../bench/results', import.meta.url)) },
  },
});

const number = (name: keyof typeof args, min: number, max: number): number => {
  try {
    return num(name, args[name] as string, min, max)!;
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
};
const cfg = {
  app: args.app!,
  durationS: number('duration', 0.2, 120),
  warmS: number('warm', 0, 30),
  rounds: Math.round(number('rounds', 1, 20)),
  rateHz: number('rate', 1, 1000),
  steps: Math.round(number('steps', 1, 50)),
  strength: number('strength', 0.01, 1),
  jobs: Math.round(number('jobs', 1, 500)),
  requests: Math.round(number('requests', 1, 500)),
  pollMs: number('poll-ms', 1, 1000),
  quietWaitS: number('quiet-wait', 0, 600),
};

type Base = { port: number; app: string; pid: number };

async function hello(port: number): Promise<HelloMessage> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/realtime`);
    ws.once('message', (data: Buffer) => {
      resolve(decodeMessage(data) as HelloMessage);
      ws.close();
    });
    ws.once('error', reject);
  });
}

type Request = { input: Input; job: Record<string, unknown> };

/** The stream windows and the saturation runs, round by round, the order of the arms flipping each round. */
async function runRounds(base: Base, queueBase: QueueBase, streamInputs: Input[], jobs: Request[]) {
  const closed: Record<Route, StreamWindow[]> = { fal: [], native: [] };
  const open: Record<Route, StreamWindow[]> = { fal: [], native: [] };
  const saturation: Record<'queue' | 'realtime', QueueRun[]> = { queue: [], realtime: [] };
  for (let round = 0; round < cfg.rounds; round++) {
    const routes = round % 2 === 0 ? ROUTES : [...ROUTES].reverse();
    for (const [label, windows, rateHz] of [['closed loop', closed, 0], [`${cfg.rateHz} inputs/s`, open, cfg.rateHz]] as const) {
      for (const route of routes) {
        const w = await streamWindow(route, base, streamInputs, { rateHz, warmS: cfg.warmS, durationS: cfg.durationS });
        windows[route].push(w);
        console.error(`round ${round + 1}, ${label}, ${route}: ${fps(w).toFixed(1)} frames/s, p50 ${median(w.latencies).toFixed(1)} ms`);
      }
    }
    for (const arm of round % 2 === 0 ? (['queue', 'realtime'] as const) : (['realtime', 'queue'] as const)) {
      const run = arm === 'queue'
        ? await queueBurst(queueBase, jobs.map((r) => r.job), cfg.pollMs)
        : await burst('fal', base, jobs.map((r) => r.input));
      saturation[arm].push(run);
      console.error(`round ${round + 1}, ${cfg.jobs} at once, ${arm}: ${((1000 * cfg.jobs) / run.ms).toFixed(1)} per s`);
    }
  }
  return { closed, open, saturation };
}

/** One request at a time: on an open fal realtime socket, and as a queued job watched two ways. */
async function runSingleRequests(base: Base, queueBase: QueueBase, requests: Request[]) {
  const latency = { realtime: [] as number[], poll: { completed: [] as number[], image: [] as number[] }, stream: { completed: [] as number[], image: [] as number[] } };
  const requester = await openRequester('fal', base);
  try {
    const arms = ['realtime', ...WATCHES] as const;
    for (const [i, { input, job }] of requests.entries()) {
      // Rotate the order so no arm always follows the same one.
      for (const arm of arms.map((_, k) => arms[(k + i) % arms.length])) {
        if (arm === 'realtime') {
          latency.realtime.push(await requester.request(input));
        } else {
          const t = await queuedOnce(queueBase, job, arm, cfg.pollMs);
          latency[arm].completed.push(t.completedMs);
          latency[arm].image.push(t.imageMs);
        }
      }
    }
  } finally {
    requester.close();
  }
  return latency;
}

interface Busy {
  machine: ReturnType<typeof readMachineBusySeconds>;
  server: ReturnType<typeof readProc>;
  own: NodeJS.CpuUsage;
}

const busyNow = (serverPid: number): Busy => ({ machine: readMachineBusySeconds(), server: readProc(serverPid), own: process.cpuUsage() });

/** Cores other processes kept busy since `before`: the machine's busy time less the server's and the bench's. */
function otherProcessesCores(before: Busy, serverPid: number): number {
  const after = busyNow(serverPid);
  const [m0, m1, s0, s1] = [before.machine, after.machine, before.server, after.server];
  if (!m0 || !m1 || !s0 || !s1) return Number.NaN;
  const ownSeconds = (after.own.user - before.own.user + after.own.system - before.own.system) / 1e6;
  const othersSeconds = m1.busySeconds - m0.busySeconds - (s1.cpuSeconds - s0.cpuSeconds) - ownSeconds;
  return Math.round((100 * Math.max(0, othersSeconds)) / ((m1.at - m0.at) / 1000)) / 100;
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'fal-bench-'));
  const modelArgs = args.model ? ['--model', path.resolve(args.model)] : [];
  const serverArgs = [...modelArgs, '--threads', args.threads!, '--rate-limit', '10000', '--skip-threshold', '0', '--data-dir', dataDir, ...admissionArgs(cfg.jobs)];
  let server: LocalServer | undefined;
  try {
    console.error('starting the server ...');
    server = await startLocalServer({ transport: 'uws', args: serverArgs, timeoutMs: 300_000 });
    const base: Base = { port: server.port, app: cfg.app, pid: server.pid };
    const queueBase: QueueBase = { httpUrl: server.httpUrl, app: cfg.app };
    const { model } = await hello(server.port);
    const size = model.width;
    const img2img = model.img2img;
    const camera = await prepareInputs(img2img ? 'camera' : 'prompt', size);
    const typing = await prepareInputs('prompt', size);
    // A model without a VAE encoder streams changing prompts instead of camera frames.
    const streamInputs: Input[] = img2img
      ? camera.images.map((image, i) => ({ prompt: camera.prompts[0], image, strength: cfg.strength, steps: cfg.steps, size, seed: i }))
      : typing.prompts.map((prompt, i) => ({ prompt, steps: cfg.steps, size, seed: i }));
    const textInputs: Input[] = Array.from({ length: Math.max(cfg.jobs, cfg.requests) }, (_, i) => ({ prompt: typing.prompts[i % typing.prompts.length], steps: cfg.steps, size, seed: 1000 + i }));
    // The same text-to-image requests go through the queue (fal's JSON input) and the realtime socket.
    const requests: Request[] = textInputs.map((input) => ({
      input,
      job: { prompt: input.prompt, num_inference_steps: input.steps, image_size: { width: size, height: size }, output_format: 'jpeg', seed: input.seed },
    }));
    if (cfg.quietWaitS > 0) {
      console.error(`waiting up to ${cfg.quietWaitS} s for other processes to go idle ...`);
      console.error(`  ${await waitForQuietMachine(cfg.quietWaitS)} cores busy`);
    }
    const loadBefore = loadavg()[0];
    // The machine is shared: what other processes took during the run is part of what the figures mean.
    const busyBefore = busyNow(server.pid);
    console.error(`${model.name}, ${size}x${size}, ${img2img ? `camera image-to-image, ${cfg.steps} steps, strength ${cfg.strength}` : `text-to-image, ${cfg.steps} steps`}; app ${cfg.app}`);

    const { closed, open, saturation } = await runRounds(base, queueBase, streamInputs, requests.slice(0, cfg.jobs));
    const latency = await runSingleRequests(base, queueBase, requests.slice(0, cfg.requests));
    const others = otherProcessesCores(busyBefore, server.pid);
    const onePerRound = (runs: QueueRun[]) => runs.map((r) => Math.round(r.ms * 10) / 10);
    const report: FalReport = {
      bench: 'fal',
      date: new Date().toISOString(),
      machine: { ...machineInfo(), loadAverage1m: { start: loadBefore, end: loadavg()[0] }, otherProcessesCores: others },
      config: { model: model.name, size, img2img, app: cfg.app, steps: cfg.steps, strength: img2img ? cfg.strength : null, durationS: cfg.durationS, warmS: cfg.warmS, rounds: cfg.rounds, rateHz: cfg.rateHz, jobs: cfg.jobs, requests: cfg.requests, pollMs: cfg.pollMs, serverArgs: serverArgs.map((a) => (a === dataDir ? '<temporary>' : a)) },
      realtime: { closedLoop: summariseStreams(closed), openLoop: summariseStreams(open) },
      queue: { saturation: saturationSummary(cfg.jobs, saturation.queue, saturation.realtime), latency: latencySummary(latency.realtime, latency) },
      // Per window and per run, to see each round's spread.
      windows: {
        closedLoop: { fal: closed.fal.map(windowRow), native: closed.native.map(windowRow) },
        openLoop: { fal: open.fal.map(windowRow), native: open.native.map(windowRow) },
        saturation: { queueMs: onePerRound(saturation.queue), realtimeMs: onePerRound(saturation.realtime) },
      },
    };
    printTables(report);
    console.log(`\nload average (1 min) at the start ${loadBefore.toFixed(1)}, at the end ${loadavg()[0].toFixed(1)}; other processes used ${others} cores on average (${report.machine.cores} cores)`);
    await mkdir(args.out!, { recursive: true });
    const file = path.join(args.out!, `fal-${report.date.replace(/[:.]/g, '-')}.json`);
    await writeFile(file, JSON.stringify(report, null, 2) + '\n');
    console.log(`\nwrote ${file}`);
  } finally {
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

// Every run stops by itself, even if something hangs: the server's start and the run's expected
// length, with room for each window's drain, each round's bursts and slow requests.
const limitMs = 600_000 + cfg.rounds * (4 * (cfg.warmS + cfg.durationS) * 1000 + 4 * 30_000) + cfg.requests * 3 * 2000;
setTimeout(() => {
  console.error(`fal bench: time limit of ${Math.round(limitMs / 1000)} s reached; stopping`);
  process.exit(3);
}, limitMs).unref();

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
