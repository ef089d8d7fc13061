// Command-line options of the bench: parsed, checked against hard bounds (every run is bounded in
// time and count), and applied over a scenario's defaults.
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { IMAGE_FORMATS, type ImageFormat } from '../shared/protocol.js';
import type { Transport } from './local-server.js';
import { HOSTILE_ARGS, HOSTILE_USAGE, hostileScenario } from './hostile/options.js';
import type { HostileScenario } from './hostile/scenario.js';
import { int, num, UsageError } from './option-checks.js';
import type { LoadScenario } from './scenarios.js';

export { UsageError };

export const USAGE = `Usage: npm run bench -- <scenario | suite | list> [options]

Load scenarios: typing, camera-15, camera-30, drawing, burst, saturate, ceiling, ceiling-no-previews,
                transport-echo
Suites:         http, idle, peer, overhead, batching, hot-path, fastpath, cluster, fal, hostile, all   (npm run bench -- list describes each)

Target (default: a server started by the bench on 127.0.0.1, stopped after each scenario)
  --url URL            load this server instead (ws://HOST:PORT/v1/realtime)
  --allow-remote       let --url name a non-loopback host (only point it at servers you run)
  --api-key KEY        send "Authorization: Key KEY" (servers with API keys)
  --server uws|ws      transport of the local server: this server, or the ws peer (default uws)
  --model DIR          model folder for the local server (default: the server's default model)
  --server-arg FLAG    extra flag for the local server; repeat for more (e.g. --server-arg=--max-batch=1)

Load (override the scenario's defaults)
  --sessions N         concurrent sessions                 --duration S   seconds of load
  --rate HZ            messages/s per session (0: closed)  --window N     closed loop: in flight (2 = the protocol's most)
  --requests N         requests per session (0: no limit)  --ramp S       connect sessions over S seconds
  --steps N  --size N  --strength X  --previews on|off  --format jpeg|webp|png
  --workers N          load-generator worker threads (default: one per core)
  --quiet-wait S       before each load scenario, wait up to S s for other processes to go idle
                       (shared machines; each result reports the CPU others used anyway)

Suites
  --connections N      http: autocannon connections (default 50)
  --clients N          idle: client processes (default 4)
  --idle-sessions N    peer: idle sessions per transport (default 10000; 0 skips that part)

Output
  --out DIR            where the JSON, markdown and SVG files go (default bench/results)

${HOSTILE_USAGE}

overhead passes its options to bench/server-overhead.ts: [--model DIR] [--rounds 5] [--requests 20] [--steps 2] [--size 256]
batching passes its options to bench/batching.ts: [--sessions 1,4,16,64] [--batches 1,4,8] [--duration 4] [--steps 2] [--size 256]
hot-path passes its options to bench/hot-path.ts: [--model DIR] [--size N] [--steps 2] [--batch 1,4] [--requests 100]
fastpath passes its options to bench/fastpath.ts: [--model DIR] [--steps-run 1,2] [--rate 120] [--duration 5] [--rounds 3] [--arms ...]
cluster passes its options to bench/cluster.ts: [--sessions 24] [--duration 5] [--nodes 1,2,3] [--rounds 2] [--rates 1.5,0] [--kills 3] [--kill-rate 1.5] [--steps 2]
fal passes its options to bench/fal.ts: [--model DIR] [--duration 3] [--rounds 8] [--rate 120] [--jobs 40] [--requests 20] [--poll-ms 20] [--quiet-wait S]
report RUN.json [--out DIR] rewrites the markdown and charts of a saved run`;

/** Benchmarks that parse their own options: the command and its script (relative to bench/). */
export const SELF_CONTAINED: Record<string, string> = {
  overhead: './server-overhead.js',
  batching: './batching.js',
  'hot-path': './hot-path.js',
  fastpath: './fastpath.js',
  cluster: './cluster.js',
  fal: './fal.js',
};

export interface BenchOptions {
  command: string;
  url?: string;
  headers: Record<string, string>;
  transport: Transport;
  modelDir?: string;
  serverArgs: string[];
  workers?: number;
  quietWaitS: number;
  connections: number;
  clients: number;
  idleSessions: number;
  outDir: string;
  /** Scenario fields given on the command line. */
  overrides: Partial<LoadScenario>;
  /** The `hostile` command's scenario, defaults and options applied. */
  hostile?: HostileScenario;
  /** Everything after the command, verbatim (for `overhead`). */
  rest: string[];
}

const LIMITS = { sessions: 50_000, durationS: 600, rateHz: 1000, window: 64, requestsPerSession: 1_000_000, rampS: 120, workers: 64 };

const isLoopback = (host: string) => host === 'localhost' || host === '[::1]' || host === '::1' || /^127\./.test(host);

export function parseOptions(argv: readonly string[]): BenchOptions {
  const [command, ...rest] = argv;
  if (!command || command.startsWith('-')) throw new UsageError(USAGE);
  if (command in SELF_CONTAINED || command === 'report') return { ...defaults(command), rest };
  const { values: v } = parseArgs({
    args: rest,
    strict: true,
    options: {
      url: { type: 'string' }, 'allow-remote': { type: 'boolean' }, 'api-key': { type: 'string' },
      server: { type: 'string' }, model: { type: 'string' }, 'server-arg': { type: 'string', multiple: true },
      sessions: { type: 'string' }, duration: { type: 'string' }, rate: { type: 'string' }, window: { type: 'string' },
      requests: { type: 'string' }, ramp: { type: 'string' }, steps: { type: 'string' }, size: { type: 'string' },
      strength: { type: 'string' }, previews: { type: 'string' }, format: { type: 'string' }, workers: { type: 'string' },
      'quiet-wait': { type: 'string' },
      connections: { type: 'string' }, clients: { type: 'string' }, 'idle-sessions': { type: 'string' }, out: { type: 'string' },
      ...HOSTILE_ARGS,
    },
  });
  const hostileGiven = Object.keys(HOSTILE_ARGS).filter((k) => v[k as keyof typeof HOSTILE_ARGS] !== undefined);
  if (command !== 'hostile' && hostileGiven.length) throw new UsageError(`--${hostileGiven[0]} applies to the hostile scenario only`);
  if (v.url) {
    let host: string;
    try {
      const u = new URL(v.url);
      if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error();
      host = u.hostname;
    } catch {
      throw new UsageError(`--url must be a ws:// or wss:// URL, got "${v.url}"`);
    }
    if (!isLoopback(host) && !v['allow-remote']) {
      throw new UsageError(`--url ${v.url} is not a loopback address: add --allow-remote if you mean to load that server`);
    }
  }
  if (v.server && v.server !== 'uws' && v.server !== 'ws') throw new UsageError('--server must be uws or ws');
  if (v.previews && v.previews !== 'on' && v.previews !== 'off') throw new UsageError('--previews must be on or off');
  if (v.format && !(IMAGE_FORMATS as readonly string[]).includes(v.format)) throw new UsageError(`--format must be one of ${IMAGE_FORMATS.join(', ')}`);

  const overrides: Partial<LoadScenario> = {};
  const set = <K extends keyof LoadScenario>(key: K, value: LoadScenario[K] | undefined) => {
    if (value !== undefined) overrides[key] = value;
  };
  set('sessions', int('sessions', v.sessions, 1, LIMITS.sessions));
  set('durationS', num('duration', v.duration, 0.5, LIMITS.durationS));
  set('rateHz', num('rate', v.rate, 0, LIMITS.rateHz));
  set('window', int('window', v.window, 1, LIMITS.window));
  set('requestsPerSession', int('requests', v.requests, 0, LIMITS.requestsPerSession));
  set('rampS', num('ramp', v.ramp, 0, LIMITS.rampS));
  set('steps', int('steps', v.steps, 1, 100));
  set('size', int('size', v.size, 64, 4096));
  set('strength', num('strength', v.strength, 0.01, 1));
  set('previews', v.previews === undefined ? undefined : v.previews === 'on');
  set('format', v.format as ImageFormat | undefined);

  return {
    ...defaults(command),
    url: v.url,
    headers: v['api-key'] ? { authorization: `Key ${v['api-key']}` } : {},
    transport: (v.server as Transport | undefined) ?? 'uws',
    modelDir: v.model,
    serverArgs: v['server-arg'] ?? [],
    workers: int('workers', v.workers, 1, LIMITS.workers),
    quietWaitS: num('quiet-wait', v['quiet-wait'], 0, 600) ?? 0,
    connections: int('connections', v.connections, 1, 10_000) ?? 50,
    clients: int('clients', v.clients, 1, 64) ?? 4,
    idleSessions: int('idle-sessions', v['idle-sessions'], 0, LIMITS.sessions) ?? 10_000,
    outDir: v.out ?? defaults(command).outDir,
    overrides,
    hostile: command === 'hostile' ? hostileScenario(v, overrides) : undefined,
    rest,
  };
}

function defaults(command: string): BenchOptions {
  return {
    command,
    headers: {},
    transport: 'uws',
    serverArgs: [],
    quietWaitS: 0,
    connections: 50,
    clients: 4,
    idleSessions: 10_000,
    // dist/bench/options.js -> <repo>/bench/results
    outDir: fileURLToPath(new URL('../../bench/results', import.meta.url)),
    overrides: {},
    rest: [],
  };
}
