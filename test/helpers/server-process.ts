// Starts the real server (dist/server/main.js) as a child process on a free port and waits until
// its model is warmed up, reading the JSON log lines it prints.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const MAIN = fileURLToPath(new URL('../../server/main.js', import.meta.url));

export interface ServerProcess {
  port: number;
  wsUrl: string;
  httpUrl: string;
  proc: ChildProcess;
  logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

export async function startServerProcess(
  args: string[] = [],
  options: { waitReady?: boolean; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<ServerProcess> {
  const { waitReady = true, timeoutMs = 60_000 } = options;
  // Each server its own queue store unless the test names one (to restart a server on it).
  const ownDataDir = args.includes('--data-dir') ? undefined : mkdtempSync(path.join(tmpdir(), 'rd-data-'));
  const dataArgs = ownDataDir ? ['--data-dir', ownDataDir] : [];
  const proc = spawn(process.execPath, [MAIN, '--port', '0', '--threads', '2', ...dataArgs, ...args], {
    // Stream batching off unless a test asks: its default (auto) decides by the machine's speed.
    env: { ...process.env, LOG_LEVEL: 'info', STREAM_BATCH: 'off', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  proc.stderr!.on('data', (chunk) => (stderr += chunk));
  const lines = createInterface({ input: proc.stdout! });

  const port = await new Promise<number>((resolve, reject) => {
    // A server that never got ready is nobody's to stop: kill it, or it keeps the test file alive.
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      fail(new Error(`server did not start in ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    let listening = 0;
    lines.on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg === 'listening') {
        listening = entry.port as number;
        if (!waitReady) done(listening);
      }
      if (entry.msg === 'model ready' && listening) done(listening);
      if (entry.msg === 'model failed to load') fail(new Error(`model failed to load: ${entry.err}`));
    });
    proc.once('exit', (code) => fail(new Error(`server exited with ${code} before it was ready\n${stderr}`)));
    function done(p: number) {
      clearTimeout(timer);
      resolve(p);
    }
    function fail(err: Error) {
      clearTimeout(timer);
      reject(err);
    }
  });

  return {
    port,
    wsUrl: `ws://127.0.0.1:${port}/v1/realtime`,
    httpUrl: `http://127.0.0.1:${port}`,
    proc,
    logs,
    stop: async () => {
      await stopProcess(proc);
      if (ownDataDir) rmSync(ownDataDir, { recursive: true, force: true });
    },
  };
}

/** SIGTERM (the server shuts down cleanly), then SIGKILL if it is still there after 5 s. */
export async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
