// The `fal` suite's record: what its JSON holds (the test reads the same types), how the windows
// and runs are summarised, and the tables it prints.
import type { MachineInfo } from './report/machine.js';
import type { Route, StreamWindow } from './fal-realtime.js';
import type { Watch } from './fal-queue.js';

export const ROUTES: readonly Route[] = ['fal', 'native'];
export const WATCHES: readonly Watch[] = ['poll', 'stream'];

export const percentile = (xs: number[], p: number): number => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
/** The middle value, or the mean of the two middle ones: an even number of rounds must not lean up. */
export const median = (xs: number[]): number => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
const r1 = (x: number) => Math.round(x * 10) / 10;
const r3 = (x: number) => Math.round(x * 1000) / 1000;
export const framesPerSecond = (w: StreamWindow): number => w.frames / w.seconds;

export interface RouteSummary {
  /** Median of the rounds' windows. */
  framesPerSecond: number;
  /** Frame latency (input sent -> its image), pooled over the rounds, ms. */
  p50: number;
  p99: number;
  frames: number;
  sent: number;
  /** Inputs that got no image (latest wins), over whole windows. */
  dropped: number;
  /** Steps that ran per image (image-to-image runs floor(steps x strength)). */
  stepsRun: number | null;
  /** Server CPU per frame, medians of the windows: its main thread, and all of it with inference. */
  mainThreadMsPerFrame: number;
  serverCpuMsPerFrame: number;
  errors: Record<string, number>;
}

export type StreamSummary = Record<Route, RouteSummary> & {
  /** Median of the per-round ratios. */
  falOverNative: { framesPerSecond: number; p50: number };
};

export interface WindowRow {
  framesPerSecond: number;
  p50: number;
  p99: number;
  sent: number;
  dropped: number;
  mainThreadMsPerFrame: number;
  serverCpuMsPerFrame: number;
  errors: Record<string, number>;
}

export interface LatencyStats {
  p50: number;
  p99: number;
  n: number;
}

export interface QueueRun {
  ms: number;
  /** Until every submit was answered (queue only). */
  submitMs?: number;
  errors: number;
}

export interface FalReport {
  bench: 'fal';
  date: string;
  machine: MachineInfo & {
    loadAverage1m: { start: number; end: number };
    /** Cores other processes kept busy on average over the run (the machine is shared). */
    otherProcessesCores: number;
  };
  config: {
    model: string;
    size: number;
    img2img: boolean;
    app: string;
    steps: number;
    strength: number | null;
    durationS: number;
    warmS: number;
    rounds: number;
    rateHz: number;
    jobs: number;
    requests: number;
    pollMs: number;
    serverArgs: string[];
  };
  realtime: { closedLoop: StreamSummary; openLoop: StreamSummary };
  queue: {
    saturation: {
      queue: { jobsPerSecond: number; submitMs: number; errors: number };
      realtime: { requestsPerSecond: number; errors: number };
      /** Median of the per-round ratios of jobs/s. */
      queueOverRealtime: number;
    };
    latency: {
      realtime: LatencyStats;
    } & Record<Watch, { completed: LatencyStats; image: LatencyStats; addedMsP50: number }>;
  };
  windows: {
    closedLoop: Record<Route, WindowRow[]>;
    openLoop: Record<Route, WindowRow[]>;
    saturation: { queueMs: number[]; realtimeMs: number[] };
  };
}

function routeSummary(ws: StreamWindow[]): RouteSummary {
  const latencies = ws.flatMap((w) => w.latencies);
  const errors: Record<string, number> = {};
  for (const w of ws) for (const [k, v] of Object.entries(w.errors)) errors[k] = (errors[k] ?? 0) + v;
  return {
    framesPerSecond: r1(median(ws.map(framesPerSecond))),
    p50: r1(median(latencies)),
    p99: r1(percentile(latencies, 99)),
    frames: latencies.length,
    sent: ws.reduce((s, w) => s + w.sent, 0),
    dropped: ws.reduce((s, w) => s + w.dropped, 0),
    stepsRun: ws.find((w) => Number.isFinite(w.stepsRun))?.stepsRun ?? null,
    mainThreadMsPerFrame: r3(median(ws.map((w) => w.mainThreadMsPerFrame))),
    serverCpuMsPerFrame: r1(median(ws.map((w) => w.serverCpuMsPerFrame))),
    errors,
  };
}

/** Window i of each route ran in round i, back to back: their ratio is taken within the round. */
export function summariseStreams(windows: Record<Route, StreamWindow[]>): StreamSummary {
  const { fal, native } = windows;
  return {
    fal: routeSummary(fal),
    native: routeSummary(native),
    falOverNative: {
      framesPerSecond: r3(median(fal.map((w, i) => framesPerSecond(w) / framesPerSecond(native[i])))),
      p50: r3(median(fal.map((w, i) => median(w.latencies) / median(native[i].latencies)))),
    },
  };
}

export function windowRow(w: StreamWindow): WindowRow {
  return {
    framesPerSecond: r1(framesPerSecond(w)),
    p50: r1(median(w.latencies)),
    p99: r1(percentile(w.latencies, 99)),
    sent: w.sent,
    dropped: w.dropped,
    mainThreadMsPerFrame: r3(w.mainThreadMsPerFrame),
    serverCpuMsPerFrame: r1(w.serverCpuMsPerFrame),
    errors: w.errors,
  };
}

export const latencyStats = (xs: number[]): LatencyStats => ({ p50: r1(median(xs)), p99: r1(percentile(xs, 99)), n: xs.length });

export function saturationSummary(jobs: number, queue: QueueRun[], realtime: QueueRun[]): FalReport['queue']['saturation'] {
  const perSecond = (runs: QueueRun[]) => r1(median(runs.map((r) => (1000 * jobs) / r.ms)));
  return {
    queue: { jobsPerSecond: perSecond(queue), submitMs: r1(median(queue.map((r) => r.submitMs ?? Number.NaN))), errors: queue.reduce((s, r) => s + r.errors, 0) },
    realtime: { requestsPerSecond: perSecond(realtime), errors: realtime.reduce((s, r) => s + r.errors, 0) },
    queueOverRealtime: r3(median(queue.map((q, i) => realtime[i].ms / q.ms))),
  };
}

export function latencySummary(realtime: number[], queued: Record<Watch, { completed: number[]; image: number[] }>): FalReport['queue']['latency'] {
  const watched = (w: Watch) => ({
    completed: latencyStats(queued[w].completed),
    image: latencyStats(queued[w].image),
    addedMsP50: r1(median(queued[w].image) - median(realtime)),
  });
  return { realtime: latencyStats(realtime), poll: watched('poll'), stream: watched('stream') };
}

export function printTables(report: FalReport): void {
  const c = report.config;
  const what = c.img2img ? `camera image-to-image, ${c.steps} steps at strength ${c.strength}` : `text-to-image, ${c.steps} steps`;
  console.log(`\n${c.model}, ${c.size}x${c.size}, ${what}; one session per route, ${c.rounds} rounds alternating; frames/s: median of rounds; latency pooled; fal / native: median of per-round ratios\n`);
  console.log('| loop | route | frames/s | fal / native | frame p50 ms | frame p99 ms | inputs dropped | main thread ms/frame | server CPU ms/frame | errors |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const [loop, s] of [['closed', report.realtime.closedLoop], [`open, ${c.rateHz}/s`, report.realtime.openLoop]] as const) {
    for (const route of ROUTES) {
      const r = s[route];
      const errors = Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(', ') || '0';
      const ratio = route === 'fal' ? `${s.falOverNative.framesPerSecond} (p50 ${s.falOverNative.p50})` : '1';
      console.log(`| ${loop} | ${route} | ${r.framesPerSecond} | ${ratio} | ${r.p50} | ${r.p99} | ${r.dropped} of ${r.sent} | ${r.mainThreadMsPerFrame} | ${r.serverCpuMsPerFrame} | ${errors} |`);
    }
  }
  const q = report.queue.saturation;
  console.log(`\n${c.jobs} text-to-image requests at once (${c.steps} steps), median of ${c.rounds} rounds:\n`);
  console.log('| path | per second | queue / realtime | errors |\n|---|---:|---:|---:|');
  console.log(`| queue: submit all, poll the oldest unfinished every ${c.pollMs} ms | ${q.queue.jobsPerSecond} | ${q.queueOverRealtime} | ${q.queue.errors} |`);
  console.log(`| fal realtime: one socket each, all sent at once | ${q.realtime.requestsPerSecond} | 1 | ${q.realtime.errors} |`);
  const l = report.queue.latency;
  console.log(`\nOne request at a time, ${c.requests} each, arms alternating (the p99 of ${c.requests} samples is about their largest):\n`);
  console.log('| path | COMPLETED seen p50 / p99 ms | image in hand p50 / p99 ms | added p50 ms |\n|---|---:|---:|---:|');
  console.log(`| fal realtime socket (open), send -> result | | ${l.realtime.p50} / ${l.realtime.p99} | 0 |`);
  for (const w of WATCHES) {
    const label = w === 'poll' ? `queue, status polled every ${c.pollMs} ms` : 'queue, status/stream events';
    console.log(`| ${label} | ${l[w].completed.p50} / ${l[w].completed.p99} | ${l[w].image.p50} / ${l[w].image.p99} | ${l[w].addedMsP50} |`);
  }
}
