// The load scenarios, as plain data: what clients do, how many, for how long, against which model.
// The runner (run-load.ts) interprets them; nothing here executes. Every field can be overridden
// from the command line (see options.ts), so these are defaults, not limits.
import type { ImageFormat } from '../shared/protocol.js';

/**
 * What each message carries: a generate with a changing prompt, a camera frame or a drawing; or
 * (`cancel`) a cancel for an id the server does not know, which the session answers at once with
 * `error unknown_request`: no model, queue or image work, only the transport and the session's
 * message path. For `cancel`, "frames" in the results count those replies.
 */
export type InputKind = 'prompt' | 'camera' | 'drawing' | 'cancel';

/**
 * `default`: the model the server serves by default (the embedded one, or --model DIR).
 * `zero-cost`: a BENCHMARK INSTRUMENT whose networks do almost no arithmetic, so what is measured
 * is the server around the model (transport, validation, queueing, image encoding). Never a
 * server default; generated into a temporary folder at bench time (zero-cost-model.ts).
 */
export type ModelChoice = 'default' | 'zero-cost';

export interface LoadScenario {
  name: string;
  description: string;
  sessions: number;
  /** Seconds of load after the sessions are connected (the measurement window). */
  durationS: number;
  input: InputKind;
  /**
   * Open loop: generate messages per second per session, sent on a clock whatever the server
   * does (as a camera or a typist would). 0 = closed loop, driven by replies (see `window`).
   */
  rateHz: number;
  /** Closed loop: requests kept outstanding per session (2 = running + pending, the protocol's most). */
  window: number;
  /** Each session stops after this many requests (0 = keeps going until the duration ends). */
  requestsPerSession: number;
  /** Sessions connect spread evenly over this many seconds; 0 = all at once. */
  rampS: number;
  steps: number;
  /** Width and height of requested images (and of the input frames). */
  size: number;
  /** Image-to-image strength (camera and drawing inputs). */
  strength: number;
  previews: boolean;
  format: ImageFormat;
  model: ModelChoice;
  /** Extra flags for a server the bench starts itself (ignored with --url). */
  serverArgs: readonly string[];
}

const base = {
  durationS: 10,
  rateHz: 0,
  window: 1,
  requestsPerSession: 0,
  rampS: 0,
  steps: 2,
  size: 256,
  strength: 0.5,
  previews: true,
  format: 'jpeg',
  model: 'default',
  serverArgs: [],
} as const satisfies Partial<LoadScenario>;

export const LOAD_SCENARIOS: readonly LoadScenario[] = [
  {
    ...base,
    name: 'typing',
    description: 'text-to-image; the prompt changes every 100 ms, as while someone types',
    sessions: 4,
    input: 'prompt',
    rateHz: 10,
    rampS: 1,
  },
  {
    ...base,
    name: 'camera-15',
    description: 'image-to-image from a 15 fps camera (JPEG frames of a moving scene)',
    sessions: 4,
    input: 'camera',
    rateHz: 15,
    rampS: 1,
  },
  {
    ...base,
    name: 'camera-30',
    description: 'image-to-image from a 30 fps camera (JPEG frames of a moving scene)',
    sessions: 4,
    input: 'camera',
    rateHz: 30,
    rampS: 1,
  },
  {
    ...base,
    name: 'drawing',
    description: 'image-to-image from a canvas: a PNG of the drawing after each new stroke, 20 per second',
    sessions: 4,
    input: 'drawing',
    rateHz: 20,
    steps: 4,
    strength: 0.5,
    rampS: 1,
  },
  {
    ...base,
    name: 'burst',
    description: 'many sessions connect at the same instant and each asks for two frames, one after the other',
    sessions: 100,
    durationS: 20,
    input: 'prompt',
    requestsPerSession: 2,
  },
  {
    ...base,
    name: 'saturate',
    description: 'default model, closed loop with the running and pending slots kept full: the most frames/s the server makes',
    sessions: 4,
    input: 'prompt',
    window: 2,
  },
  {
    ...base,
    name: 'ceiling',
    description: 'zero-cost model (benchmark instrument), 64x64, 1 step, previews on: what the server itself can push',
    // Enough requests in flight to keep the server busy, one per session so none is superseded.
    sessions: 32,
    input: 'prompt',
    steps: 1,
    size: 64,
    model: 'zero-cost',
    // The per-session rate limit would cap a closed loop at 60 requests/s; it is not what this measures.
    serverArgs: ['--rate-limit', '10000'],
  },
  {
    ...base,
    name: 'ceiling-no-previews',
    description: 'as ceiling, with previews off: one message per request',
    sessions: 32,
    input: 'prompt',
    steps: 1,
    size: 64,
    previews: false,
    model: 'zero-cost',
    serverArgs: ['--rate-limit', '10000'],
  },
  {
    ...base,
    name: 'transport-echo',
    description: 'no model work: each message is a cancel for an unknown id, answered at once; "frames" are those replies',
    sessions: 32,
    input: 'cancel',
    // Replies take about a millisecond: several in flight per session keep the server busy.
    window: 8,
    // Loads in milliseconds; no request ever reaches it.
    model: 'zero-cost',
  },
];

/** Benchmarks that are not a load scenario: each has its own runner. */
export const SUITES = {
  http: 'HTTP endpoints with autocannon: GET /healthz, GET /v1/models, POST /v1/tokens (when the server has it)',
  idle: 'idle capacity: server RSS per connected, idle session (10,000 sessions by default)',
  peer: 'the same hub over `ws` against uWebSockets.js: transport echo, zero-cost and default model, idle RSS per connection',
  hostile: 'hostile clients beside well-behaved sessions: length bombs, an image flood, big requests, idle and partial-message clients; baseline, attack and recovery for each (bench/hostile/)',
  overhead: 'server overhead: one session through the server against the in-process pipeline (bench/server-overhead.ts)',
  batching: 'step-level batching on and off: 1 to 64 closed-loop sessions per --max-batch value (bench/batching.ts)',
  fastpath: 'the few-step fast path arm by arm (final decoder, one decode per image, stream batching, all together) on one camera stream (bench/fastpath.ts)',
  fal: "fal's routes against the native route on one server: a realtime camera stream each way (closed and open loop), queue jobs/s at saturation and the latency a queued job adds (bench/fal.ts)",
  'hot-path': "the batch runner's host work around onnxruntime per iteration, and what it is made of (bench/hot-path.ts)",
  cluster: 'several nodes behind nginx: frames/s of 1, 2, 3 nodes, latency during a rolling restart, SIGKILL to next frame (bench/cluster.ts)',
  all: 'every load scenario, then http and idle, each against its own fresh local server',
} as const;
export type SuiteName = keyof typeof SUITES;

export function findScenario(name: string): LoadScenario | undefined {
  return LOAD_SCENARIOS.find((s) => s.name === name);
}
