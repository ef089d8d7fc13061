// Runs one load scenario end to end: model (the zero-cost instrument when asked), server (started
// here on loopback, or the --url given), pre-encoded inputs, the worker-thread load generator, CPU
// and RSS sampling of both sides, and the aggregation of the workers' reports into one result.
import { availableParallelism } from 'node:os';
import { prepareInputs } from './inputs.js';
import { admissionArgs, startLocalServer, type LocalServer, type Transport } from './local-server.js';
import { cdfPoints, mergeHistograms, summarize, type LatencySummary } from './load/histogram.js';
import { emptyCounts, type LoadCounts, type LoadReport } from './load/messages.js';
import { runLoadPool } from './load/pool.js';
import { ProcSampler, readMachineBusySeconds, waitForQuietMachine, type ProcWindow } from './proc-sampler.js';
import { machineInfo, type MachineInfo } from './report/machine.js';
import type { LoadScenario } from './scenarios.js';
import { temporaryZeroCostModel, ZERO_COST_MODEL_NAME } from './zero-cost-model.js';
import { servedModelName } from './served-model.js';

export interface TargetOptions {
  /** A server to load instead of starting one (its model is whatever it serves). */
  url?: string;
  /** Upgrade headers, e.g. Authorization for a server with API keys. */
  headers: Record<string, string>;
  /** Local server only: which transport serves the hub. */
  transport: Transport;
  /** Local server only: the default model folder (server default when absent). */
  modelDir?: string;
  /** Local server only: more flags. */
  serverArgs: readonly string[];
  /** Load-generator worker threads (default: one per core, at most one per session). */
  workers?: number;
  /** Before loading, wait up to this long for other processes to go quiet (0: do not wait). */
  quietWaitS?: number;
}

export interface LoadResult {
  kind: 'load';
  scenario: LoadScenario;
  date: string;
  machine: MachineInfo;
  target: { url: string; transport: Transport | 'external'; model: string };
  /** The measurement window: after the ramp, until sends stop (or the last frame, for runs that finish early). */
  windowSeconds: number;
  sessions: { planned: number; connected: number };
  frames: {
    total: number;
    inWindow: number;
    perSecond: number;
    perSessionPerSecond: { mean: number; min: number; median: number; max: number };
  };
  messages: { receivedPerSecond: number; sentPerSecond: number };
  latencyMs: { frame: LatencySummary; firstPreview: LatencySummary; connect: LatencySummary };
  counts: LoadCounts;
  errors: Record<string, number>;
  /** Null when the server is not local (then its CPU and memory cannot be read). */
  server:
    | (ProcWindow & {
        perCore: { framesPerSecond: number; messagesOutPerSecond: number };
        /**
         * Main-thread CPU microseconds per WebSocket message (in + out). The main thread owns every
         * socket, so this is where one transport costs more than another, even when throughput is
         * bounded elsewhere (the inference worker).
         */
        mainThreadUsPerMessage: number;
      })
    | null;
  generator: { workers: number; cpuCores: number; maxEventLoopUtilization: number };
  /**
   * Cores busy with anything but the server and the generator (other processes on the machine).
   * Null against a --url server, which may itself be one of those processes.
   */
  otherCpuCores: number | null;
  cdf: { frame: [number, number][]; firstPreview: [number, number][] };
  timeline: { bucketMs: number; framesPerSecond: number[]; serverCpuCores: number[] | null; generatorCpuCores: number[] };
  warnings: string[];
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

function sumCounts(reports: readonly LoadReport[]): LoadCounts {
  const total = emptyCounts();
  for (const r of reports) for (const key of Object.keys(total) as (keyof LoadCounts)[]) total[key] += r.counts[key];
  return total;
}

function sumErrors(reports: readonly LoadReport[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of reports) for (const [code, n] of Object.entries(r.errors)) out[code] = (out[code] ?? 0) + n;
  return out;
}

function spread(values: number[]): { mean: number; min: number; median: number; max: number } {
  if (values.length === 0) return { mean: 0, min: 0, median: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return { mean: round(mean), min: round(sorted[0]), median: round(sorted[sorted.length >> 1]), max: round(sorted[sorted.length - 1]) };
}

export async function runLoadScenario(scenario: LoadScenario, target: TargetOptions): Promise<LoadResult> {
  const zeroCost = scenario.model === 'zero-cost' && !target.url ? await temporaryZeroCostModel() : undefined;
  let server: LocalServer | undefined;
  try {
    const modelDir = zeroCost?.dir ?? target.modelDir;
    if (!target.url) {
      server = await startLocalServer({
        transport: target.transport,
        args: [...(modelDir ? ['--model', modelDir] : []), ...admissionArgs(scenario.sessions), ...scenario.serverArgs, ...target.serverArgs],
        openFiles: scenario.sessions + 1024,
      });
    }
    const url = target.url ?? server!.wsUrl;
    const httpUrl = url.replace(/^ws/, 'http').replace(/\/v1\/realtime.*$/, '');
    const model = zeroCost ? ZERO_COST_MODEL_NAME : await servedModelName(httpUrl, target.headers);
    const inputs = await prepareInputs(scenario.input, scenario.size);
    const workers = Math.max(1, Math.min(target.workers ?? availableParallelism(), scenario.sessions));

    // The server is up and idle now: anything else busy is another process.
    if (target.quietWaitS) await waitForQuietMachine(target.quietWaitS);
    const generator = new ProcSampler(process.pid).start();
    const machineBefore = readMachineBusySeconds();
    const run = await runLoadPool({ url, headers: target.headers, scenario, inputs, workers });
    const machineAfter = readMachineBusySeconds();
    generator.stop();
    server?.sampler.sample();
    const { reports } = run;

    const counts = sumCounts(reports);
    const finishedEarly = reports.every((r) => r.finishedEarly);
    const lastFrameAt = Math.max(...reports.map((r) => r.lastFrameAt));
    const windowEnd = finishedEarly && lastFrameAt > run.measureFrom ? Math.min(run.endAt, lastFrameAt) : run.endAt;
    const windowSeconds = Math.max(0.001, (windowEnd - run.measureFrom) / 1000);
    const framesPerSecond = counts.framesInWindow / windowSeconds;
    const messagesOut = counts.messagesReceivedInWindow / windowSeconds;

    const histograms = (key: 'frame' | 'firstPreview' | 'connect') => mergeHistograms(reports.map((r) => r.histograms[key]));
    const frame = histograms('frame');
    const firstPreview = histograms('firstPreview');
    const serverWindow = server?.sampler.window(run.measureFrom, windowEnd);
    const generatorWindow = generator.window(run.startAt, run.endAt);
    // Whole-run figures (connect to drain) for all three, so the subtraction compares like with like.
    const wholeRun = (w: ProcWindow | undefined) => w?.cpuCores ?? 0;
    const machineCores =
      machineBefore && machineAfter ? (machineAfter.busySeconds - machineBefore.busySeconds) / ((machineAfter.at - machineBefore.at) / 1000) : 0;
    const otherCpuCores = !server ? null : Math.max(
      0,
      round(machineCores - wholeRun(server?.sampler.window(machineBefore?.at ?? 0, machineAfter?.at ?? 0)) - wholeRun(generator.window(machineBefore?.at ?? 0, machineAfter?.at ?? 0))),
    );
    // Charts stop when sends stop: the drain that follows only settles what is in flight.
    const buckets = Math.min(reports[0]?.timeline.frames.length ?? 0, Math.ceil((run.endAt - run.startAt) / run.bucketMs));
    const perBucket = (pick: (r: LoadReport) => number[]) =>
      Array.from({ length: buckets }, (_, b) => round(reports.reduce((s, r) => s + pick(r)[b], 0) / (run.bucketMs / 1000), 1));

    const result: LoadResult = {
      kind: 'load',
      scenario,
      date: new Date().toISOString(),
      machine: machineInfo(),
      target: { url, transport: server ? server.transport : 'external', model },
      windowSeconds: round(windowSeconds, 3),
      sessions: { planned: scenario.sessions, connected: reports.reduce((s, r) => s + r.connected, 0) },
      frames: {
        total: counts.frames,
        inWindow: counts.framesInWindow,
        perSecond: round(framesPerSecond),
        perSessionPerSecond: spread(reports.flatMap((r) => r.framesPerSession.map((f) => f / windowSeconds))),
      },
      messages: { receivedPerSecond: round(messagesOut), sentPerSecond: round(counts.messagesSentInWindow / windowSeconds) },
      latencyMs: { frame: summarize(frame), firstPreview: summarize(firstPreview), connect: summarize(histograms('connect')) },
      counts,
      errors: sumErrors(reports),
      server: serverWindow
        ? {
            ...serverWindow,
            perCore: {
              framesPerSecond: round(framesPerSecond / Math.max(serverWindow.cpuCores, 0.01), 1),
              messagesOutPerSecond: round(messagesOut / Math.max(serverWindow.cpuCores, 0.01), 1),
            },
            mainThreadUsPerMessage: round((serverWindow.mainThreadCores * 1e6) / Math.max(messagesOut + counts.messagesSentInWindow / windowSeconds, 1), 1),
          }
        : null,
      generator: {
        workers,
        cpuCores: generatorWindow?.cpuCores ?? 0,
        maxEventLoopUtilization: round(Math.max(...reports.map((r) => r.eventLoopUtilization)), 3),
      },
      otherCpuCores,
      cdf: { frame: cdfPoints(frame), firstPreview: cdfPoints(firstPreview) },
      timeline: {
        bucketMs: run.bucketMs,
        framesPerSecond: perBucket((r) => r.timeline.frames),
        serverCpuCores: server ? server.sampler.timeline(run.startAt, run.bucketMs, buckets).cpuCores : null,
        generatorCpuCores: generator.timeline(run.startAt, run.bucketMs, buckets).cpuCores,
      },
      warnings: [],
    };
    result.warnings = warningsFor(result);
    return result;
  } finally {
    await server?.stop();
    await zeroCost?.remove();
  }
}

/** Says when a number may be the generator's or the machine's limit rather than the server's. */
function warningsFor(r: LoadResult): string[] {
  const out: string[] = [];
  if (r.generator.maxEventLoopUtilization > 0.8) {
    out.push(`a load worker's event loop was busy ${Math.round(r.generator.maxEventLoopUtilization * 100)} % of the run: the generator may be the limit (add --workers, or use a separate load machine)`);
  }
  if (r.counts.clientSkippedSends > 0) out.push(`${r.counts.clientSkippedSends} sends skipped because the generator's own socket buffer was full`);
  if (r.counts.lateTicks > r.counts.sent * 0.01) out.push(`${r.counts.lateTicks} send ticks fired over one interval late: the generator fell behind its clock`);
  const busy = (r.server?.cpuCores ?? 0) + r.generator.cpuCores;
  if (r.server && busy > r.machine.cores * 0.9) {
    out.push(`server (${r.server.cpuCores}) and generator (${r.generator.cpuCores}) together kept ${busy.toFixed(2)} of ${r.machine.cores} cores busy: they compete for the CPU`);
  }
  if (r.otherCpuCores !== null && r.otherCpuCores > 0.15) {
    out.push(`other processes on the machine kept ${r.otherCpuCores} cores busy during the run: numbers are disturbed, run again on a quiet machine`);
  }
  if (r.sessions.connected < r.sessions.planned) out.push(`only ${r.sessions.connected} of ${r.sessions.planned} sessions connected`);
  return out;
}
