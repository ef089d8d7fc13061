// Runs the hostile scenario: for each attack, a server (a fresh local one, so one attack's aftermath
// is not the next one's baseline; or the --url given), the well-behaved sessions in their worker,
// then baseline, attack and recovery phases on one clock, with the server's RSS watched so that an
// attack which would exhaust the machine is stopped first.
import { Worker } from 'node:worker_threads';
import { prepareInputs } from '../inputs.js';
import { mergeHistograms, summarize, type LatencySummary } from '../load/histogram.js';
import { epochNow } from '../load/messages.js';
import { admissionArgs, startLocalServer, type LocalServer } from '../local-server.js';
import { ProcSampler, readMachineBusySeconds } from '../proc-sampler.js';
import { machineInfo, type MachineInfo } from '../report/machine.js';
import type { TargetOptions } from '../run-load.js';
import { createAttack, type Attack } from './attacks.js';
import { floodImage, type FloodImage } from './flood-image.js';
import type { AttackReport, GoodJob, GoodReport, GoodWorkerMessage, Phase } from './messages.js';
import { ATTACK_DESCRIPTIONS, attackSessions, type AttackName, type HostileScenario } from './scenario.js';
import { servedModelName } from '../served-model.js';

export interface HostilePhaseResult {
  name: string;
  kind: Phase['kind'];
  seconds: number;
  good: {
    frames: number;
    framesPerSecond: number;
    /** Slowest and fastest session, frames/s: an attack may starve some sessions and not others. */
    sessionFramesPerSecond: { min: number; max: number };
    requests: number;
    latencyMs: LatencySummary;
    longestWaitMs: number;
    errors: Record<string, number>;
    otherReplies: Record<string, number>;
  };
  healthz: { latencyMs: LatencySummary; ok: number; failed: number; timedOut: number; skipped: number };
  /** Null against a --url server. */
  server: { rssPeakMB: number; rssEndMB: number; cpuCores: number; mainThreadCores: number } | null;
  /** Attackers, good sessions and the poller together (the bench process). */
  benchCpuCores: number;
  /** Cores busy with anything else on the machine; null against a --url server. */
  otherCpuCores: number | null;
}

export interface HostileAttackResult {
  attack: AttackName;
  description: string;
  phases: HostilePhaseResult[];
  attacker: AttackReport;
  /** Set when the RSS guard stopped the attack before its phase ended. */
  stoppedEarly?: string;
  /** Set when the server exited (or was killed by the guard) during the run. */
  serverExit?: string;
  good: { connected: number; reconnects: number; eventLoopUtilization: number };
}

export interface HostileResult {
  kind: 'hostile';
  date: string;
  machine: MachineInfo;
  scenario: HostileScenario;
  /** url null: local servers started by the bench, a fresh one for each attack. */
  target: { url: string | null; transport: string; model: string; serverArgs: readonly string[] };
  floodImage: { bytes: number; width: number; height: number; jpegQuality: number } | null;
  attacks: HostileAttackResult[];
  warnings: string[];
}

const HEALTHZ_TIMEOUT_MS = 5000;
const DRAIN_MS = 2000;
const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;
const sleepUntil = (t: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, t - epochNow())));

interface GoodWorker {
  /** Resolves with how many sessions connected; the phase clock starts after it. */
  connected: Promise<number>;
  start(phases: Phase[]): void;
  report: Promise<GoodReport>;
  terminate(): void;
}

function startGoodWorker(job: GoodJob): GoodWorker {
  const worker = new Worker(new URL('./good-worker.js', import.meta.url), { workerData: job });
  let connected!: { resolve(n: number): void; reject(err: Error): void };
  let report!: { resolve(r: GoodReport): void; reject(err: Error): void };
  const handle: GoodWorker = {
    connected: new Promise((resolve, reject) => (connected = { resolve, reject })),
    report: new Promise((resolve, reject) => (report = { resolve, reject })),
    start(phases) {
      worker.postMessage(phases);
      const endAt = phases[phases.length - 1].to;
      const watchdog = setTimeout(() => fail(new Error('the good-sessions worker did not report in time')), endAt + job.drainMs + 15_000 - epochNow());
      void handle.report.finally(() => clearTimeout(watchdog)).catch(() => undefined);
    },
    terminate: () => void worker.terminate(),
  };
  // Awaited later (or never, when connecting failed): not an unhandled rejection meanwhile.
  handle.report.catch(() => undefined);
  const fail = (err: Error) => {
    connected.reject(err);
    report.reject(err);
    void worker.terminate();
  };
  const connectWatchdog = setTimeout(() => fail(new Error('the good sessions did not connect in time')), 30_000);
  worker.on('message', (m: GoodWorkerMessage) => {
    if (m.kind === 'connected') {
      clearTimeout(connectWatchdog);
      connected.resolve(m.connected);
    } else {
      report.resolve(m.report);
      void worker.terminate();
    }
  });
  worker.once('error', (err) => {
    clearTimeout(connectWatchdog);
    fail(err);
  });
  return handle;
}

interface Shared {
  scenario: HostileScenario;
  target: TargetOptions;
  images: Uint8Array[];
  prompt: string;
  flood?: FloodImage;
  log: (line: string) => void;
}

async function runAttack(name: AttackName, shared: Shared, onModel: (model: string) => void): Promise<HostileAttackResult> {
  const { scenario: s, target } = shared;
  let server: LocalServer | undefined;
  let guard: NodeJS.Timeout | undefined;
  let attack: Attack | undefined;
  let good: GoodWorker | undefined;
  try {
    if (!target.url) {
      const sessions = s.good.sessions + attackSessions(s, name);
      server = await startLocalServer({
        transport: target.transport,
        // The operator's flags come last, so they override the bench's admission limits too.
        args: [...(target.modelDir ? ['--model', target.modelDir] : []), ...admissionArgs(sessions), ...target.serverArgs],
        openFiles: sessions + 1024,
      });
    }
    const url = target.url ?? server!.wsUrl;
    const httpUrl = url.replace(/^ws/, 'http').replace(/\/v1\/realtime.*$/, '');
    onModel(await servedModelName(httpUrl, target.headers));

    good = startGoodWorker({
      url, httpUrl, headers: target.headers, sessions: s.good.sessions, size: s.good.size, steps: s.good.steps, strength: s.good.strength,
      prompt: shared.prompt, images: shared.images, healthzIntervalMs: s.healthzIntervalMs, healthzTimeoutMs: HEALTHZ_TIMEOUT_MS, drainMs: DRAIN_MS,
    });
    await good.connected;
    const first = epochNow() + s.warmupS * 1000;
    const ms = s.phaseS * 1000;
    const phases: Phase[] = [
      { name: 'baseline', kind: 'baseline', from: first, to: first + ms },
      { name: name, kind: 'attack', from: first + ms, to: first + 2 * ms },
      { name: 'recovery', kind: 'recovery', from: first + 2 * ms, to: first + 3 * ms },
    ];
    good.start(phases);
    const bench = new ProcSampler(process.pid).start();
    const machineAt: ({ at: number; busySeconds: number } | undefined)[] = [];
    phases.forEach((p, i) => {
      void sleepUntil(p.from).then(() => (machineAt[i] = readMachineBusySeconds()));
      if (i === phases.length - 1) void sleepUntil(p.to).then(() => (machineAt[i + 1] = readMachineBusySeconds()));
    });

    let attackRunning = false;
    let stoppedEarly: string | undefined;
    let serverExit: string | undefined;
    const phaseName = (t: number) => phases.find((p) => t >= p.from && t < p.to)?.name ?? (t < first ? 'warm-up' : 'drain');
    if (server) {
      const { pid, sampler } = server;
      const limitKB = s.rssLimitMB * 1024;
      guard = setInterval(() => {
        if (serverExit) return;
        const now = epochNow();
        const sample = sampler.sample();
        if (!sample || sample.rssKB === 0) {
          serverExit = `the server exited during ${phaseName(now)}`;
          shared.log(`  ${serverExit}`);
          void attack?.stop();
          return;
        }
        if (sample.rssKB > limitKB && attack && attackRunning) {
          attackRunning = false;
          stoppedEarly = `server RSS ${Math.round(sample.rssKB / 1024)} MB passed the ${s.rssLimitMB} MB guard ${round((now - phases[1].from) / 1000, 1)} s into the attack`;
          shared.log(`  ${stoppedEarly}: stopping the attack`);
          void attack.stop();
        }
        if (sample.rssKB > limitKB * 1.25) {
          serverExit = `killed by the RSS guard at ${Math.round(sample.rssKB / 1024)} MB during ${phaseName(now)}`;
          shared.log(`  ${serverExit}`);
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // Gone already.
          }
        }
      }, 250);
    }

    await sleepUntil(phases[1].from);
    attack = createAttack(name, { url, headers: target.headers, scenario: s, floodImage: shared.flood });
    if (!serverExit) {
      attack.start();
      attackRunning = true;
    }
    await sleepUntil(phases[1].to);
    attackRunning = false;
    const attacker = await attack.stop();
    const goodReport = await good.report;
    // The worker can report a moment before this thread's last boundary timer fires.
    machineAt[phases.length] ??= readMachineBusySeconds();
    bench.stop();
    clearInterval(guard);
    server?.sampler.sample();

    const results = phases.map((p, i): HostilePhaseResult => {
      const g = goodReport.phases[i];
      const seconds = (p.to - p.from) / 1000;
      const serverWindow = server?.sampler.window(p.from, p.to);
      const benchCores = bench.window(p.from, p.to)?.cpuCores ?? 0;
      const m0 = machineAt[i];
      const m1 = machineAt[i + 1];
      const machineCores = m0 && m1 ? (m1.busySeconds - m0.busySeconds) / ((m1.at - m0.at) / 1000) : undefined;
      return {
        name: p.name,
        kind: p.kind,
        seconds,
        good: {
          frames: g.frames,
          framesPerSecond: round(g.frames / seconds),
          sessionFramesPerSecond: { min: round(Math.min(...g.framesPerSession) / seconds), max: round(Math.max(...g.framesPerSession) / seconds) },
          requests: g.requests,
          latencyMs: summarize(mergeHistograms([g.frameHistogram])),
          longestWaitMs: g.longestWaitMs,
          errors: g.errors,
          otherReplies: g.otherReplies,
        },
        healthz: { latencyMs: summarize(mergeHistograms([g.healthzHistogram])), ...g.healthz },
        server: serverWindow
          ? { rssPeakMB: serverWindow.rssPeakMB, rssEndMB: serverWindow.rssEndMB, cpuCores: serverWindow.cpuCores, mainThreadCores: serverWindow.mainThreadCores }
          : null,
        benchCpuCores: benchCores,
        otherCpuCores: server && machineCores !== undefined ? Math.max(0, round(machineCores - (serverWindow?.cpuCores ?? 0) - benchCores)) : null,
      };
    });
    return {
      attack: name,
      description: ATTACK_DESCRIPTIONS[name],
      phases: results,
      attacker,
      ...(stoppedEarly ? { stoppedEarly } : {}),
      ...(serverExit ? { serverExit } : {}),
      good: { connected: goodReport.connected, reconnects: goodReport.reconnects, eventLoopUtilization: round(goodReport.eventLoopUtilization, 3) },
    };
  } finally {
    clearInterval(guard);
    good?.terminate();
    await attack?.stop();
    await server?.stop();
  }
}

function warningsFor(r: HostileResult): string[] {
  const out: string[] = [];
  for (const a of r.attacks) {
    if (a.good.connected < r.scenario.good.sessions) out.push(`${a.attack}: only ${a.good.connected} of ${r.scenario.good.sessions} well-behaved sessions connected`);
    if (a.good.eventLoopUtilization > 0.8) out.push(`${a.attack}: the good sessions' thread was busy ${Math.round(a.good.eventLoopUtilization * 100)} % of the run: their latencies include the bench's own delay`);
    const busy = a.phases.filter((p) => (p.otherCpuCores ?? 0) > 0.15);
    if (busy.length) {
      out.push(`${a.attack}: other processes kept ${busy.map((p) => `${p.otherCpuCores} cores busy in ${p.name}`).join(', ')}: figures are disturbed`);
    }
  }
  return out;
}

export async function runHostile(scenario: HostileScenario, target: TargetOptions, log: (line: string) => void): Promise<HostileResult> {
  const inputs = await prepareInputs('camera', scenario.good.size);
  const flood = scenario.attacks.includes('flood') ? await floodImage(scenario.flood.imageSide, scenario.flood.imageBytes) : undefined;
  if (flood) log(`  flood image: ${flood.width}x${flood.height} JPEG, ${flood.bytes.byteLength} bytes (quality ${flood.quality})`);
  const shared: Shared = { scenario, target, images: inputs.images, prompt: inputs.prompts[0], flood, log };
  const result: HostileResult = {
    kind: 'hostile',
    date: new Date().toISOString(),
    machine: machineInfo(),
    scenario,
    target: { url: target.url ?? null, transport: target.url ? 'external' : target.transport, model: 'unknown', serverArgs: target.serverArgs },
    floodImage: flood ? { bytes: flood.bytes.byteLength, width: flood.width, height: flood.height, jpegQuality: flood.quality } : null,
    attacks: [],
    warnings: [],
  };
  for (const name of scenario.attacks) {
    log(`hostile: ${name}: ${scenario.phaseS} s baseline, ${scenario.phaseS} s attack, ${scenario.phaseS} s recovery ...`);
    const a = await runAttack(name, shared, (model) => (result.target.model = model));
    const [base, during, after] = a.phases;
    log(
      `  good frames/s ${base.good.framesPerSecond} -> ${during.good.framesPerSecond} -> ${after.good.framesPerSecond}; ` +
        `healthz p99 ${base.healthz.latencyMs.p99} -> ${during.healthz.latencyMs.p99} -> ${after.healthz.latencyMs.p99} ms; ` +
        `server RSS peak ${during.server?.rssPeakMB ?? 'n/a'} MB`,
    );
    result.attacks.push(a);
  }
  result.warnings = warningsFor(result);
  return result;
}
