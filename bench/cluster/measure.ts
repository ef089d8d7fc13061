// The three things `npm run bench -- cluster` measures, each on its own local cluster
// (launcher.ts) with client-SDK sessions streaming camera frames (camera-stream.ts):
//   scaling   frames/s of 1, 2, 3 nodes, closed loop, and how nginx spread sessions and frames;
//   restart   frame latency and frame gaps in steady state and during a rolling restart;
//   kill      the time from SIGKILL of a node to its sessions' next frame from another node.
import { startCluster, type Cluster, type NodeExit } from './launcher.js';
import { CameraStream, firstFrameAfter, frameGaps, gapAcross, percentile, type StreamRequest } from './camera-stream.js';
import { prepareInputs } from '../inputs.js';

export interface MeasureOptions {
  sessions: number;
  /** Seconds of each measured window. */
  durationS: number;
  steps: number;
  /** Flags for every node, besides the launcher's small-node defaults. */
  nodeArgs: string[];
  log: (line: string) => void;
}

export interface Spread {
  p50: number;
  p99: number;
  max: number;
  count: number;
}

export interface ScalingResult {
  nodes: number;
  framesPerSecond: number;
  /** Sessions each node held, in node order. */
  sessions: number[];
  /** Share of the window's frames each node made (0-1), in node order. */
  frameShare: number[];
  latencyMs: Spread;
}

export interface RestartResult {
  /** Inputs/s per session, or 0 for closed loop. */
  rate: number;
  steady: { framesPerSecond: number; latencyMs: Spread; gapMs: Spread };
  restart: { seconds: number; framesPerSecond: number; latencyMs: Spread; gapMs: Spread };
  /** Sessions moved by a drain: last frame on the old node to first frame on the new one. */
  drainWaitMs: Spread;
  /** The worst drain wait over the steady p99 gap. */
  worstWaitOverSteadyP99: number;
  exits: NodeExit[];
  lost: number;
  resent: number;
}

export interface KillResult {
  kills: number;
  /** Kill to each affected session's next frame. */
  nextFrameMs: Spread;
  affected: number;
  lost: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function spread(values: readonly number[]): Spread {
  const r = (x: number) => Math.round(x);
  return { p50: r(percentile(values, 50)), p99: r(percentile(values, 99)), max: r(values.length ? Math.max(...values) : Number.NaN), count: values.length };
}

async function cameraRequest(cluster: Cluster, steps: number): Promise<StreamRequest> {
  const { models } = (await (await fetch(`${cluster.url}/v1/models`)).json()) as { models: { width: number }[] };
  const frames = await prepareInputs('camera', models[0].width);
  return { prompt: 'a photo of a red ball in a garden', images: [frames.images[0], frames.images[15]], steps, strength: 0.5, previews: false };
}

async function openStreams(cluster: Cluster, request: StreamRequest, count: number, rate: number): Promise<CameraStream[]> {
  const streams = Array.from({ length: count }, () => new CameraStream(cluster.wsUrl, cluster.apiKey, request, { rate }));
  await Promise.all(streams.map((s) => s.opened()));
  return streams;
}

async function nodeFrames(cluster: Cluster): Promise<number[]> {
  return Promise.all(cluster.nodes.map(async (n) => {
    const text = await (await fetch(`${n.httpUrl}/metrics`)).text();
    return Number(/^realtime_frames_total (\S+)$/m.exec(text)?.[1] ?? 0);
  }));
}

const latenciesIn = (streams: CameraStream[], from: number, to: number) =>
  streams.flatMap((s) => s.latencies.filter((l) => l.at >= from && l.at < to).map((l) => l.ms));
const framesIn = (streams: CameraStream[], from: number, to: number) =>
  streams.reduce((n, s) => n + s.frames.filter((t) => t >= from && t < to).length, 0);

/** Stops and closes every stream; the requests that did not end in a frame, superseded or skipped. */
async function finish(streams: CameraStream[]): Promise<number> {
  await Promise.all(streams.map((s) => s.stop()));
  const lost = streams.reduce((n, s) => n + s.lost().length, 0);
  await Promise.all(streams.map((s) => s.close()));
  return lost;
}

async function withCluster<T>(nodes: number, o: MeasureOptions, run: (cluster: Cluster, request: StreamRequest) => Promise<T>): Promise<T> {
  const cluster = await startCluster({ nodes, args: o.nodeArgs });
  try {
    return await run(cluster, await cameraRequest(cluster, o.steps));
  } finally {
    await cluster.stop();
  }
}

export function measureScaling(nodes: number, o: MeasureOptions): Promise<ScalingResult> {
  return withCluster(nodes, o, async (cluster, request) => {
    const streams = await openStreams(cluster, request, o.sessions, 0);
    try {
      const sessions = await Promise.all(cluster.nodes.map(async (n) => (await cluster.load(n.index))?.sessions ?? 0));
      streams.forEach((s) => s.start());
      await sleep(1500);
      const framesBefore = await nodeFrames(cluster);
      const from = performance.now();
      await sleep(o.durationS * 1000);
      const to = performance.now();
      const made = (await nodeFrames(cluster)).map((n, i) => n - framesBefore[i]);
      const total = made.reduce((a, b) => a + b, 0);
      const result = {
        nodes,
        framesPerSecond: Math.round((10 * framesIn(streams, from, to)) / ((to - from) / 1000)) / 10,
        sessions,
        frameShare: made.map((n) => Math.round((100 * n) / total) / 100),
        latencyMs: spread(latenciesIn(streams, from, to)),
      };
      o.log(`  ${nodes} node(s): ${result.framesPerSecond} frames/s, sessions ${sessions.join('/')}`);
      await finish(streams);
      return result;
    } finally {
      await Promise.all(streams.map((s) => s.close()));
    }
  });
}

export function measureRestart(rate: number, o: MeasureOptions): Promise<RestartResult> {
  return withCluster(3, o, async (cluster, request) => {
    const streams = await openStreams(cluster, request, o.sessions, rate);
    try {
      streams.forEach((s) => s.start());
      await sleep(1500);
      const steadyFrom = performance.now();
      await sleep(o.durationS * 1000);
      const restartFrom = performance.now();
      const exits: NodeExit[] = [];
      const drains: [number, number][] = [];
      for (const node of cluster.nodes) {
        const from = performance.now();
        exits.push(await cluster.restartNode(node.index));
        drains.push([from, performance.now()]);
      }
      const restartTo = performance.now();
      // The last drained sessions' next frames may still be on their way.
      await sleep(1500);
      const waits = drains.flatMap(([from, to]) => streams.flatMap((s) =>
        s.times('going_away', from).filter((g) => g < to).map((g) => gapAcross(s.frames, g)?.ms ?? Number.POSITIVE_INFINITY)));
      const window = (from: number, to: number) => ({
        framesPerSecond: Math.round((10 * framesIn(streams, from, to)) / ((to - from) / 1000)) / 10,
        latencyMs: spread(latenciesIn(streams, from, to)),
        gapMs: spread(streams.flatMap((s) => frameGaps(s.frames, from, to))),
      });
      const steady = window(steadyFrom, restartFrom);
      const resent = streams.reduce((n, s) => n + s.resent.size, 0);
      const lost = await finish(streams);
      const drainWaitMs = spread(waits);
      const result: RestartResult = {
        rate,
        steady,
        restart: { seconds: Math.round((restartTo - restartFrom) / 100) / 10, ...window(restartFrom, restartTo) },
        drainWaitMs,
        worstWaitOverSteadyP99: Math.round((100 * drainWaitMs.max) / steady.gapMs.p99) / 100,
        exits,
        lost,
        resent,
      };
      o.log(`  ${rate ? `${rate} inputs/s per session` : 'closed loop'}: drain wait p50 ${drainWaitMs.p50} ms, max ${drainWaitMs.max} ms (${result.worstWaitOverSteadyP99}x steady p99 gap), exits ${exits.map((e) => e.code ?? e.signal).join('/')}`);
      return result;
    } finally {
      await Promise.all(streams.map((s) => s.close()));
    }
  });
}

export function measureKills(kills: number, rate: number, o: MeasureOptions): Promise<KillResult> {
  return withCluster(3, o, async (cluster, request) => {
    const streams = await openStreams(cluster, request, o.sessions, rate);
    const waits: number[] = [];
    let affected = 0;
    try {
      streams.forEach((s) => s.start());
      for (let k = 0; k < kills; k++) {
        await sleep(1500);
        const victim = k % cluster.nodes.length;
        const killedAt = performance.now();
        await cluster.killNode(victim);
        // Its sessions are the ones whose socket dropped: the SDK reconnects them with backoff.
        const moved = () => streams.filter((s) => s.times('state', killedAt, (v) => v.state === 'reconnecting').length > 0);
        const deadline = killedAt + 15_000;
        await sleep(200);
        while (moved().some((s) => firstFrameAfter(s.frames, killedAt) === undefined) && performance.now() < deadline) await sleep(50);
        const hit = moved();
        affected += hit.length;
        waits.push(...hit.map((s) => firstFrameAfter(s.frames, killedAt) ?? Number.POSITIVE_INFINITY));
        await cluster.startNode(victim);
        await cluster.waitRouted(victim);
      }
      const lost = await finish(streams);
      const nextFrameMs = spread(waits);
      o.log(`  ${kills} kills, ${affected} sessions moved: next frame p50 ${nextFrameMs.p50} ms, p99 ${nextFrameMs.p99} ms`);
      return { kills, nextFrameMs, affected, lost };
    } finally {
      await Promise.all(streams.map((s) => s.close()));
    }
  });
}
