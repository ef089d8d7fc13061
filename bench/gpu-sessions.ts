// Through-the-server part of the GPU benchmark (bench/gpu.ts): starts the real server
// (dist/server/main.js) on loopback with the chosen device, then for each session count opens that
// many WebSockets, each running a closed loop (`window` requests in flight: 1 = send the next when
// the frame arrives; 2 = running + pending kept full, as a streaming client does), and measures
// frames/s and time to first image (first preview, or the frame of a 1-step request, which has no
// preview) over a fixed window after a warm-up window.
// Self-contained (its own spawn and client) so it runs from the packed GPU bundle as it is.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { decodeMessage, encodeMessage } from '../shared/codec.js';
import type { ServerMessage } from '../shared/protocol.js';
import { stat, type Stat } from './gpu-pipeline.js';

const MAIN = fileURLToPath(new URL('../server/main.js', import.meta.url));
const PROMPTS = ['a photo of a cat', 'a watercolor landscape', 'a red sports car', 'a bowl of fruit'];

export interface SessionRun {
  sessions: number;
  /** Steps each request asked for. */
  steps: number;
  windowS: number;
  frames: number;
  framesPerSecond: number;
  firstPreviewMs: Stat;
  frameLatencyMs: Stat;
  /** Mean UNet batch size the server formed, from the frames' timings. */
  meanBatch: number;
  errors: Record<string, number>;
}

export interface ServerBenchOptions {
  modelDir: string;
  device: string;
  deviceId: number;
  threads: number;
  maxBatch: number;
  sessions: number[];
  /** Steps of each request in a run. */
  steps: number;
  /** Runs each session count at each of these step counts on the one server (default: [steps]):
   * stream batching can pair a session's frames only when they take two steps or more. */
  stepCounts?: readonly number[];
  /** Requests each session keeps in flight (default 1). */
  window?: number;
  /** Extra server flags (the fast path's, for one arm of the comparison). */
  serverArgs?: readonly string[];
  /** Width and height of every request; the server then accepts no larger, so its warm-up compiles
   * no shape the bench never sends (on a GPU each costs a first run). */
  size?: number;
  warmS: number;
  durationS: number;
  /** Model load + warm-up can take minutes for a full-size model on a GPU. */
  readyTimeoutMs: number;
  log?: (line: string) => void;
}

interface Server {
  port: number;
  warmupMs: number;
  /** Warm-up's step of two requests over a step of one (what --stream-batch auto decides by). */
  pairCost?: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

async function startServer(options: ServerBenchOptions, maxSessions: number): Promise<Server> {
  const args = [
    MAIN, '--host', '127.0.0.1', '--port', '0', '--model', options.modelDir, '--device', options.device,
    ...(options.device === 'webgpu' ? [] : ['--device-id', String(options.deviceId)]),
    '--threads', String(options.threads), '--max-batch', String(options.maxBatch),
    '--max-sessions', String(maxSessions), '--max-sessions-per-key', String(maxSessions),
    // The bench's own closed loops must never be refused: these limits are not what it measures.
    '--rate-limit', '10000', '--max-steps', String(Math.max(8, options.steps, ...(options.stepCounts ?? []))),
    ...(options.size ? ['--max-size', String(options.size)] : []),
    ...(options.serverArgs ?? []),
  ];
  const proc = spawn(process.execPath, args, { env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (chunk) => (stderr = (stderr + chunk).slice(-4000)));
  const lines = createInterface({ input: proc.stdout! });
  const ready = await new Promise<{ port: number; warmupMs: number; pairCost?: number }>((resolve, reject) => {
    let port = 0;
    const timer = setTimeout(() => reject(new Error(`server not ready in ${options.readyTimeoutMs} ms\n${stderr}`)), options.readyTimeoutMs);
    lines.on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.msg === 'listening') port = entry.port as number;
      if (entry.msg === 'model ready') {
        clearTimeout(timer);
        resolve({ port, warmupMs: entry.warmupMs as number, ...(typeof entry.pairCost === 'number' ? { pairCost: entry.pairCost } : {}) });
      }
      if (entry.msg === 'model failed to load') {
        clearTimeout(timer);
        reject(new Error(`model failed to load: ${entry.err}`));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}\n${stderr}`));
    });
  });
  return {
    ...ready,
    proc,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, 'exit');
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** One closed-loop session: `window` requests in flight at all times while `running`. */
class LoopSession {
  private seq = 0;
  private sentAt = new Map<number, number>();
  private previewed = new Set<number>();
  running = true;
  idle: Promise<void> = Promise.resolve();
  private settleIdle: () => void = () => {};

  constructor(
    private readonly ws: WebSocket,
    private readonly index: number,
    private readonly options: ServerBenchOptions,
    private readonly record: (kind: 'preview' | 'frame' | 'error', ms: number, extra?: string | number[]) => void,
  ) {
    ws.on('message', (data: Buffer) => this.onMessage(decodeMessage(new Uint8Array(data)) as ServerMessage));
  }

  start(): void {
    this.idle = new Promise((resolve) => (this.settleIdle = resolve));
    for (let i = 0; i < (this.options.window ?? 1); i++) this.send();
  }

  private send(): void {
    const id = this.index * 1_000_000 + this.seq++;
    this.sentAt.set(id, performance.now());
    const size = this.options.size;
    this.ws.send(
      encodeMessage({
        type: 'generate', id, prompt: PROMPTS[this.index % PROMPTS.length], steps: this.options.steps, seed: id % 2 ** 32,
        previews: true, format: 'jpeg', ...(size ? { width: size, height: size } : {}),
      }),
    );
  }

  private onMessage(message: ServerMessage): void {
    if (message.type === 'hello') return;
    const id = 'id' in message ? (message.id as number) : undefined;
    const sent = id === undefined ? undefined : this.sentAt.get(id);
    if (sent === undefined) return;
    const now = performance.now();
    if (message.type === 'preview' && !this.previewed.has(id!)) {
      this.previewed.add(id!);
      this.record('preview', now - sent);
      return;
    }
    if (message.type === 'frame' || message.type === 'error' || message.type === 'superseded') {
      if (message.type === 'frame') {
        // A request's last step has no preview: a 1-step request's first image is its frame.
        if (!this.previewed.has(id!)) this.record('preview', now - sent);
        this.record('frame', now - sent, message.timings.batchSizes);
      } else this.record('error', now - sent, message.type === 'error' ? message.code : 'superseded');
      this.sentAt.delete(id!);
      this.previewed.delete(id!);
      if (this.running) this.send();
      else if (this.sentAt.size === 0) this.settleIdle();
    }
  }
}

async function runSessions(port: number, count: number, options: ServerBenchOptions): Promise<SessionRun> {
  let measuring = false;
  const firstPreview: number[] = [];
  const frameLatency: number[] = [];
  const batchSizes: number[] = [];
  const errors: Record<string, number> = {};
  let frames = 0;
  const record = (kind: 'preview' | 'frame' | 'error', ms: number, extra?: string | number[]) => {
    if (!measuring) return;
    if (kind === 'preview') firstPreview.push(ms);
    else if (kind === 'frame') {
      frames++;
      frameLatency.push(ms);
      batchSizes.push(...((extra as number[]) ?? []));
    } else errors[extra as string] = (errors[extra as string] ?? 0) + 1;
  };
  const sockets = await Promise.all(
    Array.from({ length: count }, () => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/realtime`);
      return once(ws, 'open').then(() => ws);
    }),
  );
  const loops = sockets.map((ws, i) => new LoopSession(ws, i, options, record));
  loops.forEach((loop) => loop.start());
  await sleep(options.warmS * 1000);
  measuring = true;
  const start = performance.now();
  await sleep(options.durationS * 1000);
  measuring = false;
  const windowS = (performance.now() - start) / 1000;
  for (const loop of loops) loop.running = false;
  // Let requests in flight finish (at most a minute), without a timer that outlives them.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(loops.map((l) => l.idle)), new Promise<void>((resolve) => (timer = setTimeout(resolve, 60_000)))]);
  clearTimeout(timer);
  for (const ws of sockets) ws.close();
  const mean = batchSizes.length ? batchSizes.reduce((a, b) => a + b, 0) / batchSizes.length : 0;
  return {
    sessions: count,
    steps: options.steps,
    windowS: Math.round(windowS * 100) / 100,
    frames,
    framesPerSecond: Math.round((frames / windowS) * 100) / 100,
    firstPreviewMs: stat(firstPreview.length ? firstPreview : [NaN]),
    frameLatencyMs: stat(frameLatency.length ? frameLatency : [NaN]),
    meanBatch: Math.round(mean * 100) / 100,
    errors,
  };
}

export async function benchServer(options: ServerBenchOptions): Promise<{ warmupMs: number; pairCost?: number; runs: SessionRun[] }> {
  const log = options.log ?? (() => {});
  const server = await startServer(options, Math.max(...options.sessions) + 16);
  if (options.serverArgs?.length) log(`server flags: ${options.serverArgs.join(' ')}`);
  log(`server ready on port ${server.port} (${options.device}), warm-up ${server.warmupMs} ms, a step of two costs ${server.pairCost ?? 'n/a'}x a step of one`);
  const runs: SessionRun[] = [];
  try {
    for (const count of options.sessions) {
      for (const steps of options.stepCounts ?? [options.steps]) {
        const run = await runSessions(server.port, count, { ...options, steps });
        runs.push(run);
        log(
          `${count} sessions, ${steps} step${steps > 1 ? 's' : ''}: ${run.framesPerSecond} frames/s, first image p50 ${run.firstPreviewMs.medianMs} ms, ` +
            `frame p50 ${run.frameLatencyMs.medianMs} ms, mean UNet batch ${run.meanBatch}`,
        );
      }
    }
  } finally {
    await server.stop();
  }
  return { warmupMs: server.warmupMs, ...(server.pairCost !== undefined ? { pairCost: server.pairCost } : {}), runs };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
