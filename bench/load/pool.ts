// Spreads the sessions of a scenario over worker threads, starts them on a shared clock and
// collects their reports. The main thread only waits, so it does not compete with the workers.
import { Worker } from 'node:worker_threads';
import type { InputSet } from '../inputs.js';
import type { LoadScenario } from '../scenarios.js';
import { epochNow, type LoadJob, type LoadReport } from './messages.js';

const WORKER_URL = new URL('./worker.js', import.meta.url);

export interface PoolOptions {
  url: string;
  headers: Record<string, string>;
  scenario: LoadScenario;
  inputs: InputSet;
  workers: number;
  drainMs?: number;
  connectTimeoutMs?: number;
}

export interface PoolRun {
  reports: LoadReport[];
  startAt: number;
  measureFrom: number;
  endAt: number;
  bucketMs: number;
}

/** Time for the workers to load before the shared clock starts. */
const STARTUP_MS = 500;

export async function runLoadPool(options: PoolOptions): Promise<PoolRun> {
  const { scenario } = options;
  const workers = Math.max(1, Math.min(options.workers, scenario.sessions));
  const drainMs = options.drainMs ?? 3000;
  const startAt = epochNow() + STARTUP_MS;
  const measureFrom = startAt + scenario.rampS * 1000;
  const endAt = measureFrom + scenario.durationS * 1000;
  // About 40 points over the window, no finer than 250 ms.
  const bucketMs = Math.max(250, Math.round(((endAt - startAt) / 40) / 250) * 250);

  const jobs: LoadJob[] = Array.from({ length: workers }, (_, w) => ({
    workerIndex: w,
    url: options.url,
    headers: options.headers,
    scenario,
    inputs: options.inputs,
    // Round-robin, so every worker gets sessions from the whole ramp.
    sessionIndices: Array.from({ length: scenario.sessions }, (_, i) => i).filter((i) => i % workers === w),
    totalSessions: scenario.sessions,
    startAt,
    measureFrom,
    endAt,
    drainMs,
    bucketMs,
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
  }));

  const reports = await Promise.all(
    jobs.map(
      (job) =>
        new Promise<LoadReport>((resolve, reject) => {
          const worker = new Worker(WORKER_URL, { workerData: job });
          // Bounded even if a worker hangs: it has drainMs after endAt, plus slack for closing.
          const watchdog = setTimeout(() => {
            void worker.terminate();
            reject(new Error(`load worker ${job.workerIndex} did not report in time`));
          }, endAt + drainMs + 15_000 - epochNow());
          worker.once('message', (report: LoadReport) => {
            clearTimeout(watchdog);
            resolve(report);
            void worker.terminate();
          });
          worker.once('error', (err) => {
            clearTimeout(watchdog);
            reject(err);
          });
        }),
    ),
  );
  return { reports, startAt, measureFrom, endAt, bucketMs };
}
