// The two realtime front doors of one server as the bench's clients see them: fal's route
// (`/{app}/realtime`, msgpack objects in and out, errors as JSON text) and the native protocol
// (`/v1/realtime`). Both speak through one small interface, so the stream windows and the single
// requests that compare them run the very same client code on either.
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { decodeMessage, encodeMessage, encodeValue } from '../shared/codec.js';
import type { ServerMessage } from '../shared/protocol.js';
import { readProc } from './proc-sampler.js';

export type Route = 'fal' | 'native';

/** One request's inputs, the same on both routes (fal's names are mapped at the socket). */
export interface Input {
  prompt: string;
  image?: Uint8Array;
  steps: number;
  strength?: number;
  size: number;
  seed: number;
}

export interface RouteHandlers {
  /** The final image of request `id`, with the steps that ran. */
  result(id: number, stepsRun: number): void;
  /** Request `id` will get no image: replaced by a newer input (latest wins) or skipped. Only the
   * native protocol says so; fal's route drops silently. */
  dropped(id: number): void;
  error(code: string): void;
}

export interface RouteClient {
  send(id: number, input: Input): void;
  close(): void;
}

function fail(reject: (err: Error) => void, route: Route) {
  return (err: Error) => reject(new Error(`${route} socket: ${err.message}`));
}

/** Opens a socket on `route` and resolves once requests may be sent (native: after `hello`). */
export function connectRoute(route: Route, base: { port: number; app: string }, on: RouteHandlers): Promise<RouteClient> {
  const url = route === 'fal' ? `ws://127.0.0.1:${base.port}/${base.app}/realtime` : `ws://127.0.0.1:${base.port}/v1/realtime`;
  const ws = new WebSocket(url);
  const client: RouteClient = {
    send: (id, input) => ws.send(route === 'fal' ? falInput(id, input) : nativeInput(id, input)),
    close: () => ws.close(),
  };
  return new Promise((resolve, reject) => {
    // Kept for the socket's life: an 'error' with no listener would end the process.
    ws.on('error', fail(reject, route));
    ws.once('close', (code) => reject(new Error(`${route} socket closed with ${code} before it was ready`)));
    if (route === 'fal') {
      ws.once('open', () => resolve(client));
      ws.on('message', (data: Buffer, isBinary) => onFalMessage(data, isBinary, on));
      return;
    }
    ws.on('message', (data: Buffer) => {
      const m = decodeMessage(data) as ServerMessage;
      if (m.type === 'hello') resolve(client);
      else onNativeMessage(m, on);
    });
  });
}

function falInput(id: number, input: Input): Uint8Array {
  return encodeValue({
    prompt: input.prompt,
    ...(input.image ? { image_bytes: input.image, strength: input.strength } : {}),
    num_inference_steps: input.steps,
    image_size: { width: input.size, height: input.size },
    output_format: 'jpeg',
    seed: input.seed,
    request_id: id,
  });
}

function nativeInput(id: number, input: Input): Uint8Array {
  return encodeMessage({
    type: 'generate',
    id,
    prompt: input.prompt,
    ...(input.image ? { image: input.image, strength: input.strength } : {}),
    steps: input.steps,
    width: input.size,
    height: input.size,
    // fal's route streams no previews unless asked (stream_previews): the native arm matches it.
    previews: false,
    format: 'jpeg',
    seed: input.seed,
  });
}

function onFalMessage(data: Buffer, isBinary: boolean, on: RouteHandlers): void {
  if (!isBinary) {
    const m = JSON.parse(data.toString('utf8')) as { type?: string; error?: string; status?: string };
    on.error(m.type === 'x-fal-error' ? String(m.error) : String(m.error ?? m.status ?? 'unknown'));
    return;
  }
  const m = decodeMessage(data) as { images?: unknown[]; request_id?: unknown; num_inference_steps?: number; partial?: boolean };
  if (Array.isArray(m.images) && m.images.length > 0 && !m.partial && typeof m.request_id === 'number') {
    on.result(m.request_id, m.num_inference_steps ?? Number.NaN);
  }
}

function onNativeMessage(m: ServerMessage, on: RouteHandlers): void {
  if (m.type === 'frame') on.result(m.id as number, m.timings.steps.length);
  else if (m.type === 'superseded' || m.type === 'skipped' || m.type === 'cancelled') on.dropped(m.id as number);
  else if (m.type === 'error') on.error(m.code);
}

/** What one stream window measured. */
export interface StreamWindow {
  route: Route;
  frames: number;
  seconds: number;
  /** Input sent -> its image arrived, for images that arrived inside the window. */
  latencies: number[];
  sent: number;
  /** Inputs that got no image (latest wins): sent - answered, over the whole window. */
  dropped: number;
  stepsRun: number;
  errors: Record<string, number>;
  /** The server's CPU over the measured part of the window: main thread (sockets, protocol,
   * scheduling) and the whole process tree (with inference), ms per frame. */
  mainThreadMsPerFrame: number;
  serverCpuMsPerFrame: number;
}

export interface StreamPlan {
  /** 0: closed loop (the next input goes as soon as the previous image arrives); else inputs/s. */
  rateHz: number;
  warmS: number;
  durationS: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * One session streaming inputs on `route` for warm + duration seconds. Inputs cycle through
 * `inputs`; the window counts the images that arrive after the warm-up, as in bench/fastpath.ts.
 */
export async function streamWindow(route: Route, base: { port: number; app: string; pid: number }, inputs: Input[], plan: StreamPlan): Promise<StreamWindow> {
  const w: StreamWindow = { route, frames: 0, seconds: plan.durationS, latencies: [], sent: 0, dropped: 0, stepsRun: Number.NaN, errors: {}, mainThreadMsPerFrame: Number.NaN, serverCpuMsPerFrame: Number.NaN };
  const sentAt = new Map<number, number>();
  let measureFrom = Infinity;
  let measureTo = Infinity;
  let answered = 0;
  let wake: (() => void) | undefined;
  // Images come in input order, so an image also settles every older input still open: fal's
  // route drops replaced inputs without a word. (A native `superseded` settles its input alone: it
  // can arrive while an older input is still running.)
  const settle = (id: number, older: boolean) => {
    if (older) for (const key of sentAt.keys()) if (key < id) sentAt.delete(key);
    sentAt.delete(id);
    wake?.();
  };
  const client = await connectRoute(route, base, {
    result: (id, stepsRun) => {
      const now = performance.now();
      answered++;
      if (now >= measureFrom && now < measureTo && sentAt.has(id)) {
        w.frames++;
        w.latencies.push(now - sentAt.get(id)!);
        w.stepsRun = stepsRun;
      }
      settle(id, true);
    },
    dropped: (id) => settle(id, false),
    error: (code) => {
      w.errors[code] = (w.errors[code] ?? 0) + 1;
      // An error answers the oldest open input; the stream must not stall on it.
      const oldest = sentAt.keys().next();
      if (!oldest.done) settle(oldest.value, false);
    },
  });
  const start = performance.now();
  measureFrom = start + plan.warmS * 1000;
  measureTo = measureFrom + plan.durationS * 1000;
  let cpuFrom: ReturnType<typeof readProc>;
  let id = 0;
  const sendNext = () => {
    // The CPU window opens at the first input after the warm-up: within one frame of measureFrom.
    if (cpuFrom === undefined && performance.now() >= measureFrom) cpuFrom = readProc(base.pid);
    sentAt.set(id, performance.now());
    client.send(id, inputs[id % inputs.length]);
    id++;
  };
  const replyOrEnd = () =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => wake?.(), Math.max(0, measureTo - performance.now()));
      wake = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
    });
  while (performance.now() < measureTo) {
    sendNext();
    if (plan.rateHz > 0) {
      // Paced by the clock, not by setTimeout's drift: a camera does not slow down when we do.
      await sleep(Math.max(0, start + (id * 1000) / plan.rateHz - performance.now()));
    } else {
      // Closed loop: the next input goes when this one is answered (or the window ends).
      while (sentAt.size > 0 && performance.now() < measureTo) await replyOrEnd();
    }
  }
  const cpuTo = readProc(base.pid);
  // Let what is in flight finish outside the window, so the next window starts on an idle server.
  const deadline = performance.now() + 30_000;
  while (sentAt.size > 0 && performance.now() < deadline) await sleep(10);
  client.close();
  w.sent = id;
  w.dropped = id - answered;
  if (cpuFrom && cpuTo && w.frames > 0) {
    w.mainThreadMsPerFrame = ((cpuTo.mainThreadCpuSeconds - cpuFrom.mainThreadCpuSeconds) * 1000) / w.frames;
    w.serverCpuMsPerFrame = ((cpuTo.cpuSeconds - cpuFrom.cpuSeconds) * 1000) / w.frames;
  }
  return w;
}

/** A socket kept open for single requests: each `request` is sent alone and timed to its image. */
export async function openRequester(route: Route, base: { port: number; app: string }): Promise<{ request(input: Input): Promise<number>; close(): void }> {
  let waiting: { id: number; at: number; resolve(ms: number): void; reject(err: Error): void } | undefined;
  const client = await connectRoute(route, base, {
    result: (id) => {
      if (waiting?.id === id) waiting.resolve(performance.now() - waiting.at);
    },
    dropped: (id) => waiting?.id === id && waiting.reject(new Error(`${route}: request ${id} was dropped`)),
    error: (code) => waiting?.reject(new Error(`${route}: ${code}`)),
  });
  let next = 0;
  return {
    request: (input) =>
      new Promise<number>((resolve, reject) => {
        waiting = { id: next++, at: performance.now(), resolve, reject };
        client.send(waiting.id, input);
      }),
    close: () => client.close(),
  };
}

/** Opens one socket per input, then sends them all at once: ms until the last image arrived. */
export async function burst(route: Route, base: { port: number; app: string }, inputs: Input[]): Promise<{ ms: number; errors: number }> {
  let left = inputs.length;
  let errors = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => (done = resolve));
  const one = () => {
    if (--left === 0) done();
  };
  const clients = await Promise.all(inputs.map(() => connectRoute(route, base, { result: one, dropped: one, error: () => (errors++, one()) })));
  const t0 = performance.now();
  clients.forEach((c, i) => c.send(i, inputs[i]));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([finished, new Promise<void>((resolve) => (timer = setTimeout(resolve, 120_000)))]);
  clearTimeout(timer);
  const ms = performance.now() - t0;
  for (const c of clients) c.close();
  if (left > 0) throw new Error(`${route} burst: ${left} of ${inputs.length} requests unanswered after 120 s`);
  return { ms, errors };
}
