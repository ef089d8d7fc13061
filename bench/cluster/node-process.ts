// One server node of a local cluster: dist/server/main.js as a child process on loopback, ready
// once it logs `listening` and `model ready`. Kept apart from test/helpers (bench/ does not import
// from test/) and apart from bench/local-server.ts, whose nodes never restart: a cluster node
// outlives its processes, so its port, data folder and exit history stay with the node.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../server/main.js', import.meta.url));

export interface NodeExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface NodeProcess {
  proc: ChildProcess;
  port: number;
  /** Resolves when the process has exited, with its code or signal. */
  exited: Promise<NodeExit>;
  /** The JSON log lines it printed, newest last (bounded). */
  logs: Record<string, unknown>[];
}

const MAX_LOG_LINES = 2000;

// Processes still running when this one exits (a crash, a time limit) go with it: a stray node or
// nginx would keep its port and its share of the CPU.
const running = new Map<ChildProcess, NodeJS.Signals>();
process.once('exit', () => {
  for (const [child, signal] of running) child.kill(signal);
});

/**
 * Signals `child` when this process exits, should it still be running then. SIGKILL suits a node
 * (its inference process follows it); nginx wants SIGTERM, or its workers outlive their master.
 */
export function reapOnExit(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  running.set(child, signal);
  child.once('exit', () => running.delete(child));
}

export function isRunning(proc: ChildProcess): boolean {
  return proc.exitCode === null && proc.signalCode === null;
}

/**
 * Starts a node and waits until it is ready. `args` come after the launcher's `--port 0`, so a
 * `--port P` among them wins (the server takes the last of a repeated flag): that is how a node
 * restarts on the port the balancer knows.
 */
export async function startNodeProcess(args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<NodeProcess> {
  const proc = spawn(process.execPath, [MAIN, '--host', '127.0.0.1', '--port', '0', ...args], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  reapOnExit(proc);
  const exited = once(proc, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  let stderr = '';
  proc.stderr!.on('data', (chunk) => (stderr = (stderr + chunk).slice(-4000)));
  const logs: Record<string, unknown>[] = [];
  const lines = createInterface({ input: proc.stdout! });
  // Read every line for the process's whole life, or a full pipe would stall its event loop.
  lines.on('line', (line) => {
    try {
      logs.push(JSON.parse(line));
    } catch {
      return;
    }
    if (logs.length > MAX_LOG_LINES) logs.splice(0, logs.length - MAX_LOG_LINES);
  });

  const port = await new Promise<number>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => finish(new Error(`server node not ready in ${timeoutMs} ms\n${stderr}`)), timeoutMs);
    let listening = 0;
    let ready = false;
    const onLine = () => {
      const entry = logs.at(-1)!;
      if (entry.msg === 'listening') listening = entry.port as number;
      if (entry.msg === 'model ready') ready = true;
      if (entry.msg === 'model failed to load') finish(new Error(`model failed to load: ${entry.err}`));
      if (listening && ready) finish(undefined, listening);
    };
    const onExit = ({ code, signal }: NodeExit) => finish(new Error(`server node exited (${code ?? signal}) before it was ready\n${stderr}`));
    lines.on('line', onLine);
    void exited.then(onExit);
    function finish(err: Error | undefined, value?: number) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      lines.off('line', onLine);
      if (err) {
        proc.kill('SIGKILL');
        reject(err);
      } else {
        resolve(value!);
      }
    }
  });
  return { proc, port, exited, logs };
}

/** SIGTERM (a graceful drain), then SIGKILL if it is still there after `graceMs`; its exit. */
export async function stopNodeProcess(node: NodeProcess, graceMs = 30_000): Promise<NodeExit> {
  if (isRunning(node.proc)) node.proc.kill('SIGTERM');
  const timer = setTimeout(() => node.proc.kill('SIGKILL'), graceMs);
  const exit = await node.exited;
  clearTimeout(timer);
  return exit;
}
