// Starts a server for the bench as a child process on a free loopback port: this project's server
// (uWebSockets.js, dist/server/main.js) or the same hub over `ws` (bench/peer/ws-server.ts). Both
// print the same JSON log lines; the bench waits for `listening` and `model ready`, then samples
// the child's CPU and RSS from /proc while a scenario runs.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ProcSampler } from './proc-sampler.js';
import { stopProcess } from '../test/helpers/server-process.js';

export type Transport = 'uws' | 'ws';

const SCRIPTS: Record<Transport, string> = {
  uws: fileURLToPath(new URL('../server/main.js', import.meta.url)),
  ws: fileURLToPath(new URL('./peer/ws-server.js', import.meta.url)),
};

// Children still running when the bench exits (a time limit, Ctrl-C, a crash) are killed with it.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Admission limits sized so they never refuse the bench's own sessions: they are not what it measures. */
export function admissionArgs(sessions: number): string[] {
  return ['--max-sessions', String(sessions + 1000), '--max-sessions-per-key', String(sessions + 1000)];
}

export interface LocalServerOptions {
  transport: Transport;
  /** Server flags (besides --host/--port, which the bench sets). */
  args?: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** Raise the child's open-file limit to this (sessions need one descriptor each). */
  openFiles?: number;
  timeoutMs?: number;
}

export interface LocalServer {
  transport: Transport;
  pid: number;
  port: number;
  wsUrl: string;
  httpUrl: string;
  sampler: ProcSampler;
  stop(): Promise<void>;
}

export async function startLocalServer(options: LocalServerOptions): Promise<LocalServer> {
  const { transport, timeoutMs = 60_000 } = options;
  const argv = [SCRIPTS[transport], '--host', '127.0.0.1', '--port', '0', ...(options.args ?? [])];
  // `ulimit -n` must be raised inside the child's shell; `exec` keeps the pid, so /proc sampling
  // and signals reach node itself.
  const proc: ChildProcess = options.openFiles
    ? spawn('bash', ['-c', `ulimit -n ${options.openFiles} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`, process.execPath, ...argv], {
        env: { ...process.env, LOG_LEVEL: 'info', ...options.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    : spawn(process.execPath, argv, { env: { ...process.env, LOG_LEVEL: 'info', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  let stderr = '';
  proc.stderr!.on('data', (chunk) => (stderr = (stderr + chunk).slice(-4000)));
  const lines = createInterface({ input: proc.stdout! });

  const stop = () => stopProcess(proc);

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${transport} server not ready in ${timeoutMs} ms\n${stderr}`)), timeoutMs);
      let listening = 0;
      let ready = false;
      lines.on('line', (line) => {
        let entry: { msg?: string; port?: number; err?: string };
        try {
          entry = JSON.parse(line);
        } catch {
          return;
        }
        if (entry.msg === 'listening') listening = entry.port ?? 0;
        if (entry.msg === 'model ready') ready = true;
        if (entry.msg === 'model failed to load') reject(new Error(`model failed to load: ${entry.err}`));
        if (listening && ready) {
          clearTimeout(timer);
          resolve(listening);
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${transport} server exited with ${code} before it was ready\n${stderr}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  lines.on('line', () => {});

  const sampler = new ProcSampler(proc.pid!).start();
  return {
    transport,
    pid: proc.pid!,
    port,
    wsUrl: `ws://127.0.0.1:${port}/v1/realtime`,
    httpUrl: `http://127.0.0.1:${port}`,
    sampler,
    async stop() {
      sampler.stop();
      await stop();
    },
  };
}
