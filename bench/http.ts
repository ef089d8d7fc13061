// HTTP endpoints under load with autocannon: GET /healthz, GET /v1/models, and POST /v1/tokens when
// the server has it (it needs an API key: a local server gets a generated one). Each endpoint runs
// for a bounded time with a fixed number of connections; autocannon's own worker threads keep the
// generator off the server's event loop as far as two cores allow.
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import autocannon from 'autocannon';
import { startLocalServer, type LocalServer } from './local-server.js';
import { ProcSampler } from './proc-sampler.js';
import { machineInfo, type MachineInfo } from './report/machine.js';

export interface HttpEndpointResult {
  method: 'GET' | 'POST';
  path: string;
  requestsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  total: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Null when the server is not local. */
  serverCpuCores: number | null;
  generatorCpuCores: number;
}

export interface HttpResult {
  kind: 'http';
  date: string;
  machine: MachineInfo;
  target: { url: string; local: boolean };
  connections: number;
  durationS: number;
  endpoints: HttpEndpointResult[];
  /** Endpoints not measured, and why. */
  skipped: string[];
}

export interface HttpOptions {
  /** ws:// or http:// URL of a server to measure instead of starting one. */
  url?: string;
  headers: Record<string, string>;
  connections: number;
  durationS: number;
  workers?: number;
}

interface Endpoint {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

async function probe(base: string, e: Endpoint): Promise<number> {
  try {
    const res = await fetch(base + e.path, { method: e.method, headers: e.headers, body: e.body, signal: AbortSignal.timeout(5000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

export async function runHttpBench(options: HttpOptions): Promise<HttpResult> {
  // Keys must be at least 16 characters; this one lives only for this run.
  const apiKey = `bench-${randomBytes(16).toString('hex')}`;
  let server: LocalServer | undefined;
  try {
    if (!options.url) server = await startLocalServer({ transport: 'uws', env: { API_KEYS: apiKey } });
    const base = server ? server.httpUrl : options.url!.replace(/^ws/, 'http').replace(/\/v1\/realtime.*$/, '');
    const auth = server ? { authorization: `Key ${apiKey}` } : options.headers;
    const endpoints: Endpoint[] = [
      { method: 'GET', path: '/healthz' },
      { method: 'GET', path: '/v1/models', headers: auth },
      { method: 'POST', path: '/v1/tokens', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' },
    ];
    const results: HttpEndpointResult[] = [];
    const skipped: string[] = [];
    const generator = new ProcSampler(process.pid).start();
    for (const e of endpoints) {
      const status = await probe(base, e);
      if (status < 200 || status >= 300) {
        skipped.push(`${e.method} ${e.path}: answered ${status || 'nothing'} to a probe${status === 404 ? ' (this server has no such endpoint)' : ''}`);
        continue;
      }
      const from = performance.timeOrigin + performance.now();
      const r = await autocannon({
        url: base + e.path,
        method: e.method,
        headers: e.headers,
        body: e.body,
        connections: options.connections,
        duration: options.durationS,
        workers: options.workers ?? Math.max(1, availableParallelism() - 1),
      });
      const to = performance.timeOrigin + performance.now();
      server?.sampler.sample();
      generator.sample();
      results.push({
        method: e.method,
        path: e.path,
        requestsPerSecond: Math.round(r.requests.average),
        latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max, mean: r.latency.average },
        total: r.requests.total,
        non2xx: r.non2xx,
        errors: r.errors,
        timeouts: r.timeouts,
        serverCpuCores: server?.sampler.window(from, to)?.cpuCores ?? null,
        generatorCpuCores: generator.window(from, to)?.cpuCores ?? 0,
      });
    }
    generator.stop();
    return {
      kind: 'http',
      date: new Date().toISOString(),
      machine: machineInfo(),
      target: { url: base, local: Boolean(server) },
      connections: options.connections,
      durationS: options.durationS,
      endpoints: results,
      skipped,
    };
  } finally {
    await server?.stop();
  }
}
