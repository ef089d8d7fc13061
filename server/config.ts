// Server configuration from command-line flags and environment variables. Flags win over
// environment; everything has a default so `npm start` works with no arguments.
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { FINAL_DECODERS, type FinalDecoder, type Limits } from '../shared/protocol.js';
import { ApiKeyError, ApiKeys } from './security/api-keys.js';
import { loadFalConfig, type FalConfig } from './fal/fal-config.js';

/** onnxruntime execution providers the server can run on (docs/gpu.md). */
export const DEVICES = ['cpu', 'cuda', 'tensorrt', 'webgpu'] as const;
export type Device = (typeof DEVICES)[number];

export interface ServerConfig {
  host: string;
  /** 0 picks a free port. */
  port: number;
  modelDir: string;
  device: Device;
  /** GPU ordinal for cuda and tensorrt (the WebGPU provider takes the default adapter). */
  deviceId: number;
  /** onnxruntime intra-op threads for the inference process. */
  threads: number;
  /** onnxruntime intra-op threads busy-wait between parallel sections (off: they yield the core). */
  spinning: boolean;
  logLevel: string;
  logPretty: boolean;
  /** Requests stepped together in one UNet call (1 = no batching). */
  maxBatch: number;
  /** Share of the maxBatch slots that heavy requests (costing more than a batch of the model's
   * default requests) may hold together; the rest stay free for light ones (realtime/scheduler.ts). */
  heavyShare: number;
  /** Decoder of final frames for requests that name none; `preview` needs a model with a preview
   * decoder, else the server serves `vae` and says so at startup. */
  finalDecoder: FinalDecoder;
  /** Preview a request's last step too, as before the frame stood for it: one more decode and encode
   * per request, for clients that count on a preview per step. */
  lastPreview: boolean;
  /** Start a session's pending request beside its running one once that one is stepping, so one
   * UNet call advances both (at most one extra per session; realtime/session.ts): always, never, or
   * `auto`, where the device pairs work cheaply enough (realtime/model-host.ts). */
  streamBatch: StreamBatchMode;
  /** Open sessions at most; further upgrades get 503 with Retry-After. */
  maxSessions: number;
  /** /readyz reports the node full (503) while more sessions than this wait for the GPU. */
  fullQueue: number;
  /** Bytes buffered for a reader above which previews are dropped. */
  previewBackpressureBytes: number;
  /** Bytes buffered above which final frames are held back (latest wins) until the socket drains. */
  frameBackpressureBytes: number;
  /** A reader that stays above frameBackpressureBytes this long is closed (CloseCode.SlowReader). */
  slowReaderMs: number;
  /** Hard per-socket buffer limit passed to uWebSockets.js. */
  maxBackpressureBytes: number;
  /** Bytes of input images being decoded or waiting to run, over all sessions; a request that
   * would exceed it is answered `overloaded`. */
  imageMemoryBytes: number;
  /** On SIGTERM/SIGINT: how long running and pending requests may take to finish before the
   * process exits anyway. Below Kubernetes' default 30 s grace period. */
  drainTimeoutMs: number;
  /** Inference-process restarts tried in a row (without a successful load between) before the
   * server gives up, fails /healthz and exits non-zero for its supervisor to restart it. */
  engineMaxRestarts: number;
  previewJpegQuality: number;
  frameJpegQuality: number;
  limits: Limits;
  security: SecurityConfig;
  /** fal's realtime, queue and run APIs (server/fal/). */
  fal: FalConfig;
  /** Serve https/wss directly with these PEM files. */
  tls?: { certFile: string; keyFile: string };
}

export interface SecurityConfig {
  /** Empty: no authentication (then only loopback binds are allowed, unless insecure). */
  apiKeys: ApiKeys;
  /** HS256 secret for browser tokens (env TOKEN_SECRET); random per process when absent. */
  tokenSecret: string | undefined;
  tokenTtlSeconds: number;
  /** Origins allowed to open sockets and ask for tokens; undefined = same-origin pages only. */
  allowedOrigins: string[] | '*' | undefined;
  insecure: boolean;
}

/** The embedded model shipped in the repository (dist/server -> ../../models/default). */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../../models/default', import.meta.url));

export class ConfigError extends Error {}

const FLAGS = {
  '--host': 'host',
  '--port': 'port',
  '--model': 'model',
  '--device': 'device',
  '--device-id': 'deviceId',
  '--threads': 'threads',
  '--log-level': 'logLevel',
  '--max-steps': 'maxSteps',
  '--max-size': 'maxSize',
  '--idle-timeout': 'idleTimeout',
  '--max-batch': 'maxBatch',
  '--heavy-share': 'heavyShare',
  '--final-decoder': 'finalDecoder',
  '--stream-batch': 'streamBatch',
  '--max-sessions': 'maxSessions',
  '--rate-limit': 'rateLimit',
  '--skip-threshold': 'skipThreshold',
  '--slow-reader-timeout': 'slowReaderTimeout',
  '--max-prompt-chars': 'maxPromptChars',
  '--max-image-bytes': 'maxImageBytes',
  '--max-image-pixels': 'maxImagePixels',
  '--max-sessions-per-key': 'maxSessionsPerKey',
  '--api-keys-file': 'apiKeysFile',
  '--token-ttl': 'tokenTtl',
  '--allowed-origins': 'allowedOrigins',
  '--tls-cert': 'tlsCert',
  '--tls-key': 'tlsKey',
  '--session-idle-timeout': 'sessionIdleTimeout',
  '--message-deadline': 'messageDeadline',
  '--max-bad-messages': 'maxBadMessages',
  '--image-memory': 'imageMemory',
  '--drain-timeout': 'drainTimeout',
  '--engine-restarts': 'engineRestarts',
  '--full-queue': 'fullQueue',
  '--app': 'app',
  '--data-dir': 'dataDir',
  '--queue': 'queue',
  '--queue-lock': 'queueLock',
  '--queue-max': 'queueMax',
  '--queue-max-per-key': 'queueMaxPerKey',
  '--result-ttl': 'resultTtl',
  '--image-hosts': 'imageHosts',
  '--public-url': 'publicUrl',
} as const;
/** May be given more than once. */
const REPEATED_FLAGS: ReadonlySet<string> = new Set(['--app']);
const BOOLEAN_FLAGS = { '--log-pretty': 'logPretty', '--spinning': 'spinning', '--insecure': 'insecure', '--last-preview': 'lastPreview' } as const;

export const STREAM_BATCH_MODES = ['auto', 'on', 'off'] as const;
export type StreamBatchMode = (typeof STREAM_BATCH_MODES)[number];

type FlagName = (typeof FLAGS)[keyof typeof FLAGS] | (typeof BOOLEAN_FLAGS)[keyof typeof BOOLEAN_FLAGS];

export const USAGE = `Usage: npm start -- [options]
  --host HOST          address to bind (default 127.0.0.1; env HOST)
  --port N             port, 0 = pick a free one (default 8080; env PORT)
  --model DIR          diffusers/optimum ONNX model folder (default: embedded model; env MODEL)
  --device D           execution provider: cpu, cuda, tensorrt or webgpu (default cpu; env DEVICE; docs/gpu.md)
  --device-id N        GPU ordinal for cuda and tensorrt (default 0; env DEVICE_ID)
  --threads N          inference threads (default: all cores; env THREADS)
  --spinning           let inference threads busy-wait (faster on dedicated many-core hosts only)
  --max-steps N        largest accepted step count (default 8)
  --max-size N         largest accepted width/height in pixels (default 1024)
  --idle-timeout S     close sockets silent for S seconds, a multiple of 4 (default 120)
  --max-batch N        requests stepped together in one UNet call, 1 = off (default 4)
  --heavy-share F      share of those slots that heavy requests (more pixels x steps than a batch of
                       the model's default ones) may hold together, at least one (default 0.25; 1 = all)
  --final-decoder D    decoder of final frames when a request names none: vae (full quality) or preview
                       (the model's preview decoder: several times cheaper, a little softer) (default vae;
                       env FINAL_DECODER)
  --last-preview       also preview each request's last step (off: the frame is that step's image, and a
                       1-step request costs one decode instead of two)
  --stream-batch M     start a session's next request beside its running one once that one is stepping,
                       one UNet call advancing both, at most one extra per session: on, off or auto
                       (default: on where warm-up finds a step of two requests costs at most 1.25x a
                       step of one, as batching on a GPU should; on a CPU it costs nearly 2x, and
                       stream batching there costs latency: docs/performance.md); env STREAM_BATCH
  --max-sessions N     open sessions at most; more get HTTP 503 (default 256)
  --full-queue N       /readyz says 503 "full" (take no more sessions) while more than N sessions wait
                       for the GPU, or the node is at --max-sessions (default 64; env FULL_QUEUE)
  --rate-limit N       generate messages per second per session, burst N (default 60)
  --skip-threshold D   skip image-to-image frames differing from the last by less than D (0-255 mean; 0 = off; default 1.5)
  --slow-reader-timeout S  close readers whose send buffer stays full this many seconds (default 10)
  --session-idle-timeout S close sessions that send no request for S seconds, pongs aside (default 600; 0 = never)
  --message-deadline S   a message must arrive whole within S seconds (default 20)
  --max-bad-messages N   malformed or invalid messages per minute before a session is closed (default 20)
  --image-memory MB      memory for input images being decoded or waiting, all sessions (default 512)
  --drain-timeout S      on SIGTERM, time for accepted requests to finish before exiting (default 25)
  --engine-restarts N    inference restarts in a row before the server exits non-zero (default 3)
  --max-prompt-chars N   longest prompt (default 1000)
  --max-image-bytes N    largest input image in bytes (default 8388608)
  --max-image-pixels N   largest input image in decoded pixels, checked from its header (default 16777216)
  --max-sessions-per-key N  concurrent sessions per API key and its tokens (default 32)
  --api-keys-file PATH   API keys, one per line (env API_KEYS: comma-separated); none = no auth, loopback only
  --token-ttl S        lifetime of browser tokens from POST /v1/tokens (default 120; secret: env TOKEN_SECRET)
  --allowed-origins L  comma-separated origins allowed for browser sockets and tokens, or * (default: same origin)
  --insecure           allow binding a non-loopback address without API keys
  --tls-cert PATH      serve https/wss with this PEM certificate (with --tls-key)
  --tls-key PATH       private key for --tls-cert
  --log-level LEVEL    pino level (default info; env LOG_LEVEL)
  --log-pretty         human-readable logs (env LOG_PRETTY=1)
fal's API (docs/fal.md):
  --app ID=DIR         serve fal app id ID (owner/alias, with its sub-paths) with the model folder DIR; repeatable.
                       Each folder is loaded once, in its own inference process, beside --model (default:
                       fal-ai/fast-turbo-diffusion, fal-ai/fast-lcm-diffusion and fal-ai/lcm-sd15-i2i on --model;
                       env APPS: comma-separated)
  --data-dir DIR       the queue's SQLite database and result images (default ./data; env DATA_DIR)
  --queue URL          share the queue among several servers in Redis: redis://HOST:PORT[/DB] (default: SQLite
                       in --data-dir, for one server; env QUEUE)
  --queue-lock S       shared queue: a server silent S seconds loses its running jobs to the others (default 30)
  --queue-max N        queued jobs at most; more get 429 (default 10000)
  --queue-max-per-key N  queued jobs per API key (default 1000)
  --result-ttl S       keep finished results and their images S seconds (default 3600)
  --image-hosts L      comma-separated hosts image_url may be fetched from (default: none, data URIs only; env IMAGE_HOSTS)
  --public-url URL     scheme and host of returned URLs when clients reach the server by another name
                       (default: from the request's Host; env PUBLIC_URL); webhook secret: env WEBHOOK_SECRET`;

type ParsedFlags = Partial<Record<FlagName, string>> & { apps?: string[] };

function parseFlags(argv: readonly string[]): ParsedFlags {
  const out: ParsedFlags = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (flag in BOOLEAN_FLAGS) {
      out[BOOLEAN_FLAGS[flag as keyof typeof BOOLEAN_FLAGS]] = eq > 0 ? arg.slice(eq + 1) : 'true';
    } else if (flag in FLAGS) {
      const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined) throw new ConfigError(`${flag} needs a value`);
      if (REPEATED_FLAGS.has(flag)) (out.apps ??= []).push(value);
      else out[FLAGS[flag as keyof typeof FLAGS]] = value;
    } else {
      throw new ConfigError(`unknown option ${arg}\n${USAGE}`);
    }
  }
  return out;
}

function integer(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

/** auto, on or off; 1/true/yes and 0/false/no too, as the variable was once a switch. */
function streamBatchMode(raw: string | undefined): StreamBatchMode {
  if (raw === undefined || raw === '') return 'auto';
  const value = raw.toLowerCase();
  if ((STREAM_BATCH_MODES as readonly string[]).includes(value)) return value as StreamBatchMode;
  if (['1', 'true', 'yes'].includes(value)) return 'on';
  if (['0', 'false', 'no'].includes(value)) return 'off';
  throw new ConfigError(`--stream-batch must be one of ${STREAM_BATCH_MODES.join(', ')}, got "${raw}"`);
}

function truthy(raw: string | undefined): boolean {
  return raw !== undefined && !['', '0', 'false', 'no'].includes(raw.toLowerCase());
}

export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ServerConfig {
  const flags = parseFlags(argv);
  const device = parseDevice(flags.device ?? env.DEVICE ?? 'cpu');
  const deviceId = integer('--device-id', flags.deviceId ?? env.DEVICE_ID, 0, 0, 63);
  // Dawn picks the adapter itself; the Node binding has no option to choose one.
  if (device === 'webgpu' && deviceId !== 0) throw new ConfigError('--device-id applies to cuda and tensorrt; the webgpu provider uses the default adapter');
  const idleTimeoutSeconds = integer('--idle-timeout', flags.idleTimeout, 120, 8, 960);
  if (idleTimeoutSeconds % 4 !== 0) throw new ConfigError('--idle-timeout must be a multiple of 4 seconds');
  const maxImageBytes = integer('--max-image-bytes', flags.maxImageBytes, 8 * 1024 * 1024, 1024, 256 * 1024 * 1024);
  const rateLimit = integer('--rate-limit', flags.rateLimit, 60, 1, 10_000);
  const skipThreshold = Number(flags.skipThreshold ?? 1.5);
  if (!Number.isFinite(skipThreshold) || skipThreshold < 0 || skipThreshold > 255) {
    throw new ConfigError(`--skip-threshold must be a number from 0 to 255, got "${flags.skipThreshold}"`);
  }
  const heavyShare = Number(flags.heavyShare ?? 0.25);
  if (!Number.isFinite(heavyShare) || heavyShare < 0 || heavyShare > 1) {
    throw new ConfigError(`--heavy-share must be a number from 0 to 1, got "${flags.heavyShare}"`);
  }
  const finalDecoder = flags.finalDecoder ?? env.FINAL_DECODER ?? 'vae';
  if (!(FINAL_DECODERS as readonly string[]).includes(finalDecoder)) {
    throw new ConfigError(`--final-decoder must be one of ${FINAL_DECODERS.join(', ')}, got "${finalDecoder}"`);
  }
  const host = flags.host ?? env.HOST ?? '127.0.0.1';
  const security = loadSecurity(flags, env, host);
  if (Boolean(flags.tlsCert) !== Boolean(flags.tlsKey)) throw new ConfigError('--tls-cert and --tls-key go together');
  const tls = flags.tlsCert && flags.tlsKey ? { certFile: path.resolve(flags.tlsCert), keyFile: path.resolve(flags.tlsKey) } : undefined;
  const modelDir = path.resolve(flags.model ?? env.MODEL ?? DEFAULT_MODEL_DIR);
  let fal: FalConfig;
  try {
    fal = loadFalConfig({ ...flags, app: flags.apps }, env, modelDir, integer);
  } catch (err) {
    throw err instanceof ConfigError ? err : new ConfigError((err as Error).message);
  }
  return {
    host,
    port: integer('--port', flags.port ?? env.PORT, 8080, 0, 65535),
    modelDir,
    device,
    deviceId,
    threads: integer('--threads', flags.threads ?? env.THREADS, availableParallelism(), 1, 256),
    spinning: truthy(flags.spinning),
    logLevel: flags.logLevel ?? env.LOG_LEVEL ?? 'info',
    logPretty: truthy(flags.logPretty ?? env.LOG_PRETTY),
    maxBatch: integer('--max-batch', flags.maxBatch, 4, 1, 64),
    heavyShare,
    finalDecoder: finalDecoder as FinalDecoder,
    lastPreview: truthy(flags.lastPreview),
    streamBatch: streamBatchMode(flags.streamBatch ?? env.STREAM_BATCH),
    maxSessions: integer('--max-sessions', flags.maxSessions, 256, 1, 100_000),
    fullQueue: integer('--full-queue', flags.fullQueue ?? env.FULL_QUEUE, 64, 0, 100_000),
    previewBackpressureBytes: 256 * 1024,
    frameBackpressureBytes: 1024 * 1024,
    slowReaderMs: 1000 * integer('--slow-reader-timeout', flags.slowReaderTimeout, 10, 1, 3600),
    maxBackpressureBytes: 16 * 1024 * 1024,
    imageMemoryBytes: 1024 * 1024 * integer('--image-memory', flags.imageMemory, 512, 16, 1 << 20),
    drainTimeoutMs: 1000 * integer('--drain-timeout', flags.drainTimeout ?? env.DRAIN_TIMEOUT, 25, 1, 3600),
    engineMaxRestarts: integer('--engine-restarts', flags.engineRestarts, 3, 0, 1000),
    previewJpegQuality: 70,
    frameJpegQuality: 90,
    limits: {
      // Room for the largest image plus the rest of a generate message.
      maxMessageBytes: maxImageBytes + 64 * 1024,
      maxPromptChars: integer('--max-prompt-chars', flags.maxPromptChars, 1000, 1, 100_000),
      maxImageBytes,
      maxImagePixels: integer('--max-image-pixels', flags.maxImagePixels, 4096 * 4096, 64 * 64, 1 << 30),
      minSize: 64,
      maxSize: integer('--max-size', flags.maxSize, 1024, 64, 4096),
      // Filled in from the model once it is loaded.
      sizeMultiple: 8,
      minSteps: 1,
      maxSteps: integer('--max-steps', flags.maxSteps, 8, 1, 100),
      // Strength is a fraction of the noise schedule: its range is fixed by the math.
      minStrength: 0,
      maxStrength: 1,
      maxSessionsPerKey: integer('--max-sessions-per-key', flags.maxSessionsPerKey, 32, 1, 100_000),
      maxPendingPerSession: 1,
      idleTimeoutSeconds,
      sessionIdleSeconds: integer('--session-idle-timeout', flags.sessionIdleTimeout, 600, 0, 86_400),
      messageDeadlineSeconds: integer('--message-deadline', flags.messageDeadline, 20, 2, 3600),
      maxBadMessagesPerMinute: integer('--max-bad-messages', flags.maxBadMessages, 20, 1, 100_000),
      maxRequestsPerSecond: rateLimit,
      requestBurst: rateLimit,
      similarFrameThreshold: skipThreshold,
    },
    security,
    fal,
    ...(tls ? { tls } : {}),
  };
}

function parseDevice(raw: string): Device {
  const device = raw.toLowerCase();
  if (!(DEVICES as readonly string[]).includes(device)) throw new ConfigError(`--device must be one of ${DEVICES.join(', ')}, got "${raw}"`);
  return device as Device;
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || host.startsWith('127.');

function loadSecurity(flags: Partial<Record<FlagName, string>>, env: NodeJS.ProcessEnv, host: string): SecurityConfig {
  let apiKeys: ApiKeys;
  try {
    apiKeys = ApiKeys.load(flags.apiKeysFile, env.API_KEYS);
  } catch (err) {
    if (err instanceof ApiKeyError) throw new ConfigError(err.message);
    throw err;
  }
  const insecure = truthy(flags.insecure);
  if (!apiKeys.enabled && !isLoopback(host) && !insecure) {
    throw new ConfigError(
      `refusing to serve ${host} without API keys: anyone who can reach it could use the model. ` +
        'Give --api-keys-file PATH or API_KEYS, or pass --insecure if that is really what you want.',
    );
  }
  const origins = flags.allowedOrigins?.trim();
  return {
    apiKeys,
    tokenSecret: env.TOKEN_SECRET || undefined,
    tokenTtlSeconds: integer('--token-ttl', flags.tokenTtl, 120, 1, 86_400),
    allowedOrigins: !origins ? undefined : origins === '*' ? '*' : origins.split(',').map((o) => o.trim()).filter(Boolean),
    insecure,
  };
}
