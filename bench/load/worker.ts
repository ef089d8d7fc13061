// A load-generator worker thread: runs its share of the simulated sessions and posts one report
// (tallies and HdrHistograms, encoded) when they are all closed. Several of these spread the
// generator over cores, so the client side is not what limits a run.
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { encodeHistogram, newHistogram } from './histogram.js';
import { emptyCounts, epochNow, type LoadJob, type LoadReport } from './messages.js';
import { SimulatedClient, type Tally } from './simulated-client.js';

if (!parentPort) throw new Error('bench/load/worker.js must run as a worker thread');
const port = parentPort;
const job = workerData as LoadJob;

const buckets = Math.ceil((job.endAt - job.startAt + job.drainMs) / job.bucketMs) + 1;
const tally: Tally = {
  counts: emptyCounts(),
  errors: {},
  frame: newHistogram(),
  firstPreview: newHistogram(),
  connect: newHistogram(),
  timeline: { frames: new Array(buckets).fill(0), messages: new Array(buckets).fill(0) },
  lastFrameAt: 0,
};

const elu0 = performance.eventLoopUtilization();
const clients = job.sessionIndices.map((index) => new SimulatedClient(job, index, tally));
for (const client of clients) client.start();

// Hard stop: whatever happens, this worker reports shortly after the drain time.
const deadline = setTimeout(() => {
  for (const client of clients) client.close();
}, Math.max(0, job.endAt + job.drainMs - epochNow()));

await Promise.all(clients.map((c) => c.done));
clearTimeout(deadline);

const report: LoadReport = {
  workerIndex: job.workerIndex,
  sessions: clients.length,
  // One connect time is recorded per hello.
  connected: tally.connect.totalCount,
  histograms: { frame: encodeHistogram(tally.frame), firstPreview: encodeHistogram(tally.firstPreview), connect: encodeHistogram(tally.connect) },
  counts: tally.counts,
  errors: tally.errors,
  framesPerSession: clients.map((c) => c.framesInWindow),
  timeline: tally.timeline,
  lastFrameAt: tally.lastFrameAt,
  finishedEarly: job.scenario.requestsPerSession > 0 && clients.every((c) => c.finished),
  eventLoopUtilization: performance.eventLoopUtilization(elu0).utilization,
};
port.postMessage(report);
