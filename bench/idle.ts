// Idle capacity: how much server memory one connected, idle session costs. Opens N sessions (10,000
// by default) from several child processes in batches, waits for every `hello`, lets the server
// settle, and reports RSS per connection = (RSS with N connected - RSS before) / N. The RSS before
// is read after a warm-up round of connections, so one-time allocations are not charged to them.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { mergeHistograms, summarize, type LatencySummary } from './load/histogram.js';
import type { IdleClientsJob, IdleClientsReport } from './load/idle-clients.js';
import { admissionArgs, startLocalServer, type LocalServer, type Transport } from './local-server.js';
import { readProc } from './proc-sampler.js';
import { machineInfo, type MachineInfo } from './report/machine.js';

const CLIENT_SCRIPT = fileURLToPath(new URL('./load/idle-clients.js', import.meta.url));
const TIME_LIMIT_MS = 180_000;
const WARMUP_SESSIONS = 200;

export interface IdleOptions {
  url?: string;
  headers: Record<string, string>;
  transport: Transport;
  sessions: number;
  /** Client processes the sessions are spread over. */
  clients: number;
  /** Handshakes in flight per client process. */
  batch: number;
  modelDir?: string;
  serverArgs: readonly string[];
}

export interface IdleResult {
  kind: 'idle';
  date: string;
  machine: MachineInfo;
  target: { url: string; transport: Transport | 'external' };
  sessions: { planned: number; connected: number };
  clientProcesses: number;
  connect: { seconds: number; perSecond: number; latencyMs: LatencySummary };
  errors: Record<string, number>;
  /** Null when the server is not local. */
  server: { rssBeforeMB: number; rssConnectedMB: number; rssPerConnectionKB: number; cpuCoresWhileIdle: number } | null;
}

interface ClientHandle {
  child: ChildProcess;
  connected: Promise<Extract<IdleClientsReport, { kind: 'connected' }>>;
  close(): Promise<void>;
}

function startClients(job: IdleClientsJob): ClientHandle {
  // One descriptor per socket: raise this child's limit in its own shell (exec keeps the IPC fd).
  const child = spawn('bash', ['-c', `ulimit -n ${job.count + 256} 2>/dev/null || true; exec "$0" "$@"`, process.execPath, CLIENT_SCRIPT], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const connected = new Promise<Extract<IdleClientsReport, { kind: 'connected' }>>((resolve, reject) => {
    child.once('message', (m: IdleClientsReport) => (m.kind === 'connected' ? resolve(m) : reject(new Error('unexpected report'))));
    child.once('exit', (code) => reject(new Error(`idle client process exited with ${code}`)));
  });
  child.send(job);
  return {
    child,
    connected,
    async close() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.send('close');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Median of a few RSS readings a fifth of a second apart (single readings jitter with GC). */
async function steadyRssKB(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 5; i++) {
    readings.push(readProc(pid)?.rssKB ?? 0);
    await new Promise((r) => setTimeout(r, 200));
  }
  return readings.sort((a, b) => a - b)[2];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function withTimeLimit<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: over ${TIME_LIMIT_MS / 1000} s`)), TIME_LIMIT_MS)));
  try {
    return await Promise.race([work, limit]);
  } finally {
    clearTimeout(timer);
  }
}

export async function runIdleBench(options: IdleOptions): Promise<IdleResult> {
  let server: LocalServer | undefined;
  const handles: ClientHandle[] = [];
  try {
    if (!options.url) {
      server = await startLocalServer({
        transport: options.transport,
        args: [
          ...(options.modelDir ? ['--model', options.modelDir] : []),
          ...admissionArgs(options.sessions + WARMUP_SESSIONS),
          ...options.serverArgs,
        ],
        openFiles: options.sessions + 4096,
      });
    }
    const url = options.url ?? server!.wsUrl;
    const base = { url, headers: options.headers, batch: options.batch, connectTimeoutMs: 30_000 };

    const warmup = startClients({ ...base, count: WARMUP_SESSIONS });
    await withTimeLimit(warmup.connected, 'warm-up connections');
    await warmup.close();
    await sleep(1000);
    const rssBefore = server ? await steadyRssKB(server.pid) : 0;

    const clients = Math.max(1, Math.min(options.clients, options.sessions));
    const started = performance.now();
    for (let c = 0; c < clients; c++) {
      const count = Math.floor(options.sessions / clients) + (c < options.sessions % clients ? 1 : 0);
      handles.push(startClients({ ...base, count }));
    }
    const reports = await withTimeLimit(Promise.all(handles.map((h) => h.connected)), 'idle connections');
    const seconds = (performance.now() - started) / 1000;
    const connected = reports.reduce((s, r) => s + r.connected, 0);
    const errors: Record<string, number> = {};
    for (const r of reports) for (const [code, n] of Object.entries(r.errors)) errors[code] = (errors[code] ?? 0) + n;

    // Let the server finish what the connection storm started (GC, buffers) before reading.
    await sleep(2000);
    const idleFrom = server ? readProc(server.pid) : undefined;
    const rssConnected = server ? await steadyRssKB(server.pid) : 0;
    const idleTo = server ? readProc(server.pid) : undefined;
    const cpuCoresWhileIdle =
      idleFrom && idleTo ? Math.round(((idleTo.cpuSeconds - idleFrom.cpuSeconds) / ((idleTo.at - idleFrom.at) / 1000)) * 1000) / 1000 : 0;

    return {
      kind: 'idle',
      date: new Date().toISOString(),
      machine: machineInfo(),
      target: { url, transport: server ? server.transport : 'external' },
      sessions: { planned: options.sessions, connected },
      clientProcesses: clients,
      connect: {
        seconds: Math.round(seconds * 100) / 100,
        perSecond: Math.round(connected / seconds),
        latencyMs: summarize(mergeHistograms(reports.map((r) => r.connectHistogram))),
      },
      errors,
      server: server
        ? {
            rssBeforeMB: Math.round(rssBefore / 102.4) / 10,
            rssConnectedMB: Math.round(rssConnected / 102.4) / 10,
            rssPerConnectionKB: connected > 0 ? Math.round(((rssConnected - rssBefore) / connected) * 100) / 100 : 0,
            cpuCoresWhileIdle,
          }
        : null,
    };
  } finally {
    await Promise.all(handles.map((h) => h.close().catch(() => undefined)));
    await server?.stop();
  }
}
