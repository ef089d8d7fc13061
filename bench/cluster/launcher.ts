// A local cluster: N server nodes on loopback behind Debian's nginx running the repository's config
// (nginx-config.ts), for the cluster tests and `npm run bench -- cluster`. Nodes share API_KEYS
// and TOKEN_SECRET, as a deployment's nodes do, and keep their port across restarts so nginx's
// upstream list stays valid: a rolling restart here is what it is in production, a process that
// drains, exits and comes back at the same address.
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import type { NodeLoad } from '../../server/realtime/hub.js';
import { failTimeoutMs, nginxConfigPath, renderNginxConfig } from './nginx-config.js';
import { isRunning, reapOnExit, startNodeProcess, stopNodeProcess, type NodeExit, type NodeProcess } from './node-process.js';

export type { NodeExit } from './node-process.js';

// dist/bench/cluster -> the repository root
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const NGINX = process.env.NGINX_PATH ?? '/usr/sbin/nginx';

/** Why the cluster cannot run here, or undefined when it can. */
export function nginxMissing(): string | undefined {
  return existsSync(NGINX) ? undefined : `nginx not found at ${NGINX}: run scripts/ensure-nginx.sh (apt-get install nginx-light) or set NGINX_PATH`;
}

/** Small enough that three nodes share two cores: one onnxruntime thread, two requests per UNet call. */
export const SMALL_NODE_ARGS = ['--threads', '1', '--max-batch', '2'];

export interface ClusterOptions {
  nodes: number;
  /** Flags for every node, after SMALL_NODE_ARGS (a repeated flag's last value wins). */
  args?: readonly string[];
  /** Flags for one node, after `args`. */
  nodeArgs?: (index: number) => readonly string[];
  env?: NodeJS.ProcessEnv;
}

export interface ClusterNode {
  readonly index: number;
  readonly port: number;
  readonly httpUrl: string;
  /** The running process, if any. */
  process: NodeProcess | undefined;
  /** How each of its processes ended, oldest first. */
  readonly exits: NodeExit[];
}

export interface Cluster {
  /** nginx's address: http://127.0.0.1:PORT */
  readonly url: string;
  /** The realtime endpoint through nginx. */
  readonly wsUrl: string;
  readonly apiKey: string;
  readonly nodes: readonly ClusterNode[];
  /** The upstream's fail_timeout: how long nginx passes over a node after one failed attempt. */
  readonly failTimeoutMs: number;
  /** SIGTERM: the node drains and exits; its exit. */
  drainNode(index: number): Promise<NodeExit>;
  /** SIGKILL: the node is gone at once; its exit. */
  killNode(index: number): Promise<NodeExit>;
  /** Starts a stopped node again on its port, and waits for its /readyz 200. */
  startNode(index: number): Promise<void>;
  /**
   * Resolves once nginx sends a new session to the node again. nginx's health checks are passive:
   * a node that refused or failed a connection (draining, down) is passed over for fail_timeout,
   * even after its /readyz says 200. Draining the next node before then can leave nginx with no
   * live upstream at all, and every reconnecting client gets 502.
   */
  waitRouted(index: number): Promise<void>;
  /** drainNode, startNode, waitRouted: one step of a rolling restart. */
  restartNode(index: number): Promise<NodeExit>;
  /** The node's /v1/load, or undefined when it is not running. */
  load(index: number): Promise<NodeLoad | undefined>;
  /** nginx's error log so far (warnings and up). */
  nginxLog(): string;
  /** Stops nginx and every node; each node's exits. */
  stop(): Promise<NodeExit[][]>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
    probe.once('error', reject);
  });
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, stillAlive: () => string | undefined, everyMs = 50): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const dead = stillAlive();
    if (dead) throw new Error(dead);
    if (await check().catch(() => false)) return;
    if (performance.now() > deadline) throw new Error(`${what} not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const missing = nginxMissing();
  if (missing) throw new Error(missing);
  const apiKey = `cluster-${randomBytes(12).toString('hex')}`;
  const env = { API_KEYS: apiKey, TOKEN_SECRET: randomBytes(24).toString('hex'), ...options.env };
  const dir = await mkdtemp(path.join(tmpdir(), 'rd-cluster-'));
  await chmod(dir, 0o755); // nginx's workers run as nobody when started by root
  // A node keeps its data folder (fal's job queue) across restarts, as a container keeps its volume.
  const argsOf = (index: number) => [
    ...SMALL_NODE_ARGS,
    '--data-dir', path.join(dir, `node${index}`),
    ...(options.args ?? []),
    ...(options.nodeArgs?.(index) ?? []),
  ];
  const nodes: ClusterNode[] = [];
  let nginx: ChildProcess | undefined;
  let nginxStderr = '';

  const stop = async (): Promise<NodeExit[][]> => {
    if (nginx && nginx.exitCode === null && nginx.signalCode === null) {
      const gone = once(nginx, 'exit');
      nginx.kill('SIGTERM');
      await gone;
    }
    await Promise.all(nodes.map(async (node) => {
      if (node.process && isRunning(node.process.proc)) node.exits.push(await stopNodeProcess(node.process));
    }));
    await rm(dir, { recursive: true, force: true });
    return nodes.map((n) => n.exits);
  };

  try {
    // Each node gets its port up front, never --port 0: uSockets sets SO_REUSEADDR only on a
    // listen socket with a port given, and the TIME_WAIT connections of one without it keep the
    // port from being bound again for a minute after the process exits.
    const ports = await distinctFreePorts(options.nodes);
    const started = await Promise.allSettled(ports.map((port, index) => startNodeProcess([...argsOf(index), '--port', String(port)], env)));
    started.forEach((result, index) => {
      const process = result.status === 'fulfilled' ? result.value : undefined;
      nodes.push({ index, port: ports[index], httpUrl: `http://127.0.0.1:${ports[index]}`, process, exits: [] });
    });
    // The nodes that did start are in `nodes` now, so the catch below stops them.
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const source = nginxConfigPath(REPO);
    const listenPort = await freePort();
    const confFile = path.join(dir, 'nginx.conf');
    const sourceText = readFileSync(source, 'utf8');
    writeFileSync(confFile, renderNginxConfig(sourceText, { dir, listenPort, upstreamPorts: nodes.map((n) => n.port), sourceDir: path.dirname(source) }));
    nginx = spawn(NGINX, ['-p', dir, '-c', confFile, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
    reapOnExit(nginx, 'SIGTERM');
    nginx.stderr!.on('data', (chunk) => (nginxStderr = (nginxStderr + chunk).slice(-4000)));
    const url = `http://127.0.0.1:${listenPort}`;
    const proxy = nginx;
    await waitFor('nginx answering /readyz', async () => (await fetch(`${url}/readyz`)).ok, 10_000, () =>
      proxy.exitCode !== null ? `nginx exited with ${proxy.exitCode}: ${nginxStderr}` : undefined);

    const nodeAt = (index: number) => {
      const node = nodes[index];
      if (!node) throw new Error(`no node ${index}`);
      return node;
    };
    const ended = async (node: ClusterNode, exit: Promise<NodeExit>) => {
      const result = await exit;
      node.exits.push(result);
      node.process = undefined;
      return result;
    };
    const cluster: Cluster = {
      url,
      wsUrl: `${url.replace('http', 'ws')}/v1/realtime`,
      apiKey,
      nodes,
      failTimeoutMs: failTimeoutMs(sourceText),
      drainNode: (index) => {
        const node = nodeAt(index);
        if (!node.process) throw new Error(`node ${index} is not running`);
        return ended(node, stopNodeProcess(node.process));
      },
      killNode: (index) => {
        const node = nodeAt(index);
        if (!node.process) throw new Error(`node ${index} is not running`);
        node.process.proc.kill('SIGKILL');
        return ended(node, node.process.exited);
      },
      async startNode(index) {
        const node = nodeAt(index);
        if (node.process) throw new Error(`node ${index} is still running`);
        const proc = await startNodeProcess([...argsOf(index), '--port', String(node.port)], env);
        node.process = proc;
        await waitFor(`node ${index} /readyz 200`, async () => (await fetch(`${node.httpUrl}/readyz`)).ok, 30_000, () =>
          isRunning(proc.proc) ? undefined : `node ${index} exited while starting`);
      },
      async waitRouted(index) {
        const node = nodeAt(index);
        // least_conn sends a new session to the node with the fewest: a node just back has none,
        // so a probe lands there as soon as nginx counts it live again.
        await waitFor(`nginx routing to node ${index}`, async () => {
          const probe = new WebSocket(cluster.wsUrl, { headers: { authorization: `Key ${apiKey}` }, handshakeTimeout: 5000 });
          try {
            await once(probe, 'open');
            const load = await cluster.load(index);
            return (load?.sessions ?? 0) > 0;
          } finally {
            probe.terminate();
          }
        }, cluster.failTimeoutMs + 10_000, () => (node.process && isRunning(node.process.proc) ? undefined : `node ${index} is not running`), 250);
      },
      async restartNode(index) {
        const exit = await cluster.drainNode(index);
        await cluster.startNode(index);
        await cluster.waitRouted(index);
        return exit;
      },
      async load(index) {
        const node = nodeAt(index);
        if (!node.process || !isRunning(node.process.proc)) return undefined;
        return (await (await fetch(`${node.httpUrl}/v1/load`)).json()) as NodeLoad;
      },
      nginxLog: () => {
        try {
          return readFileSync(path.join(dir, 'error.log'), 'utf8');
        } catch {
          return nginxStderr;
        }
      },
      stop,
    };
    return cluster;
  } catch (err) {
    await stop();
    throw err;
  }
}
