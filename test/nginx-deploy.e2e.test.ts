// deploy/nginx/nginx.conf, the front of deploy/compose.yaml, run by Debian's nginx in front of two real
// server processes on loopback: only the upstream addresses, the listen address and the paths a
// non-container nginx needs are changed. Sessions spread over both nodes, frames come back through
// the proxy, browser tokens work across nodes with one TOKEN_SECRET, fal bodies up to the server's
// own limit get through and larger ones stop at nginx, a node that leaves costs new clients nothing, and with every node gone
// clients still get 503 + Retry-After. Without nginx: fails when CI=true, otherwise skips loudly
// (scripts/ensure-nginx.sh installs it).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServerProcess, stopProcess, type ServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';
import WebSocket from 'ws';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const NGINX = process.env.NGINX_PATH ?? '/usr/sbin/nginx';
const CI = process.env.CI === 'true';
const missing = existsSync(NGINX) ? undefined : `nginx not found at ${NGINX}: run scripts/ensure-nginx.sh (apt-get install nginx-light) or set NGINX_PATH`;
if (missing && !CI) console.warn(`\n!!! SKIPPING the nginx deployment test: ${missing}\n`);
if (missing && CI) test('nginx is installed (required when CI=true)', () => assert.fail(missing));

const API_KEY = 'nginx-test-key-0123456789abcdef';
const SHARED = { API_KEYS: API_KEY, TOKEN_SECRET: 'nginx-test-shared-token-secret-0123456789' };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
    probe.once('error', reject);
  });
}

/** deploy/nginx/nginx.conf with the compose service names and port replaced by loopback addresses. */
function localConfig(dir: string, listen: number, nodes: ServerProcess[]): string {
  let conf = readFileSync(path.join(REPO, 'deploy', 'nginx', 'nginx.conf'), 'utf8');
  const upstreams = [...conf.matchAll(/server (node\d):(\d+)/g)];
  assert.equal(upstreams.length, nodes.length, 'one upstream per node');
  upstreams.forEach((m, i) => (conf = conf.replace(m[0], `server 127.0.0.1:${nodes[i].port}`)));
  conf = conf.replace(/listen \d+;/, `listen 127.0.0.1:${listen};`).replace('worker_processes auto;', 'worker_processes 1;');
  const paths = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((p) => `  ${p}_temp_path ${dir}/${p};`).join('\n');
  return conf.replace('http {', `http {\n  access_log off;\n${paths}`);
}

/** client_max_body_size of deploy/nginx/nginx.conf, in bytes. */
function nginxBodyLimit(): number {
  const conf = readFileSync(path.join(REPO, 'deploy', 'nginx', 'nginx.conf'), 'utf8');
  const m = conf.match(/^\s*client_max_body_size (\d+)([km]?);/m);
  assert.ok(m, 'client_max_body_size in nginx.conf');
  const unit: Record<string, number> = { '': 1, k: 1024, m: 1024 * 1024 };
  return Number(m[1]) * unit[m[2]];
}

async function metric(node: ServerProcess, name: string): Promise<number> {
  const text = await (await fetch(`${node.httpUrl}/metrics`)).text();
  return Number(text.match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1]);
}

describe('deploy/nginx/nginx.conf in front of two server nodes', { skip: missing ?? false }, () => {
  let dir: string;
  let nodes: ServerProcess[];
  let nginx: ChildProcess;
  let url: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nginx-deploy-'));
    await chmod(dir, 0o755); // nginx's workers run as nobody when started by root
    nodes = await Promise.all([startServerProcess([], { env: SHARED }), startServerProcess([], { env: SHARED })]);
    const port = await freePort();
    const conf = path.join(dir, 'nginx.conf');
    writeFileSync(conf, localConfig(dir, port, nodes));
    let stderr = '';
    nginx = spawn(NGINX, ['-p', dir, '-c', conf, '-g', `daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;`], { stdio: ['ignore', 'ignore', 'pipe'] });
    nginx.stderr!.on('data', (chunk) => (stderr += chunk));
    url = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      if (nginx.exitCode !== null) throw new Error(`nginx exited with ${nginx.exitCode}: ${stderr}`);
      const ok = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
      if (ok) break;
      if (i > 100) throw new Error(`nginx did not answer /readyz: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  after(async () => {
    if (nginx) await stopProcess(nginx);
    await Promise.all((nodes ?? []).map((n) => n.stop()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const sessions = () => Promise.all(nodes.map((n) => (n.proc.exitCode === null && n.proc.signalCode === null ? metric(n, 'realtime_sessions') : 0)));
  /** A session through nginx, and the node it landed on (the one whose session count went up). */
  const connect = async () => {
    const before = await sessions();
    const { client, hello } = await TestClient.connect(`${url.replace('http', 'ws')}/v1/realtime`, { authorization: `Key ${API_KEY}` });
    const after = await sessions();
    return { client, hello, node: after.findIndex((n, i) => n > before[i]) };
  };

  test('WebSocket sessions go to the node with the fewest (least_conn) and frames come back through the proxy', async () => {
    const opened: TestClient[] = [];
    try {
      const first = [await connect(), await connect(), await connect()];
      opened.push(...first.map((s) => s.client));
      assert.ok(first.every((s) => s.node === 0 || s.node === 1), 'each session landed on a node');
      assert.deepEqual((await sessions()).sort(), [1, 2], 'spread over both nodes');
      for (const [i, { client }] of first.entries()) {
        client.send({ type: 'generate', id: i, prompt: 'a red circle on a blue background', steps: 2 });
        assert.equal((await client.untilSettled(i)).at(-1)?.type, 'frame', client.summary());
      }
      // Empty the busier node: round robin would send the next session to the other one.
      const busier = (await sessions()).indexOf(2);
      await Promise.all(first.filter((s) => s.node === busier).map((s) => s.client.close()));
      for (let i = 0; (await sessions())[busier] !== 0; i++) {
        assert.ok(i < 50, 'the closed sessions end on the server');
        await new Promise((r) => setTimeout(r, 100));
      }
      const next = await connect();
      opened.push(next.client);
      assert.equal(next.node, busier, 'the new session went to the node with none');
    } finally {
      await Promise.all(opened.map((c) => c.close()));
    }
  });

  test('a browser token issued through the proxy opens a socket whichever node it lands on', async () => {
    const origin = url;
    for (let i = 0; i < 4; i++) {
      const reply = await fetch(`${url}/v1/tokens`, { method: 'POST', headers: { authorization: `Key ${API_KEY}`, origin } });
      assert.equal(reply.status, 200, await reply.clone().text());
      const { token } = (await reply.json()) as { token: string };
      const { client } = await TestClient.connect(`${url.replace('http', 'ws')}/v1/realtime?token=${encodeURIComponent(token)}`, { origin });
      await client.close();
    }
  });

  test("fal bodies up to nginx's limit reach a node, whose own limit is no lower; nginx refuses larger ones", async () => {
    const limit = nginxBodyLimit();
    assert.ok(limit >= Math.ceil((8 * 1024 * 1024 * 4) / 3) + 1024, 'room for an 8 MiB image as a base64 data URI');
    const post = (bytes: number) =>
      fetch(`${url}/fal-ai/fast-turbo-diffusion`, {
        method: 'POST',
        headers: { authorization: `Key ${API_KEY}`, 'content-type': 'application/json' },
        body: Buffer.alloc(bytes, 0x20),
      });
    // A body of exactly the limit is read whole by a node, which answers in fal's JSON (the
    // blank body is not a valid input); one byte more is refused by nginx without a node, so a
    // node never refuses a body mid-upload, which resets the connection and costs it its place
    // in nginx's rotation.
    const whole = await post(limit);
    assert.notEqual(whole.status, 413, await whole.clone().text());
    assert.ok(typeof ((await whole.json()) as { message?: unknown }).message === 'string', 'answered by a node');
    const over = await post(limit + 1);
    assert.equal(over.status, 413);
    assert.doesNotMatch(over.headers.get('content-type') ?? '', /json/, "nginx's own 413");
  });

  test('a draining node sends new clients on to the other node, and finishes what it accepted', async () => {
    const [drainingNode, otherNode] = [0, 1];
    const opened: TestClient[] = [];
    try {
      // The node to drain runs a long request and holds fewer sessions, so least_conn picks it next.
      let busy: TestClient | undefined;
      for (let i = 0; !busy; i++) {
        assert.ok(i < 8, 'a session on the node to drain');
        const s = await connect();
        opened.push(s.client);
        if (s.node === drainingNode) busy = s.client;
      }
      for (let i = 0; (await sessions())[otherNode] <= (await sessions())[drainingNode]; i++) {
        assert.ok(i < 8, 'more sessions on the other node');
        opened.push((await connect()).client);
      }
      assert.ok(busy);
      busy.send({ type: 'generate', id: 'long', prompt: 'a tree', steps: 8, width: 1024, height: 1024 });
      await busy.next((m) => m.type === 'preview');
      nodes[drainingNode].proc.kill('SIGTERM');
      // Its upgrades now get 503: nginx must try the other node (proxy_next_upstream http_503).
      const next = await connect();
      opened.push(next.client);
      assert.equal(next.hello.type, 'hello');
      assert.equal(next.node, otherNode);
      assert.equal((await busy.untilSettled('long')).at(-1)?.type, 'frame', 'the accepted request finished');
      await stopProcess(nodes[drainingNode].proc);
      for (let i = 0; i < 3; i++) {
        const after = await connect();
        opened.push(after.client);
        assert.equal(after.hello.type, 'hello', 'a node that left costs new clients nothing');
      }
    } finally {
      await Promise.all(opened.map((c) => c.close()));
    }
  });

  test('with no node able to take a client nginx answers 503 and Retry-After, as a node would, not 502', async () => {
    // The previous test stopped node 0; stop whatever is left, so every upstream refuses.
    await Promise.all(nodes.map((n) => stopProcess(n.proc)));
    for (let i = 0; i < 3; i++) {
      const reply = await fetch(`${url}/readyz`);
      assert.equal(reply.status, 503, `try ${i}`);
      assert.equal(reply.headers.get('retry-after'), '1');
      assert.equal(reply.headers.get('access-control-allow-origin'), '*', 'readable by a page on another origin, like /readyz');
    }
    const refused = await new Promise<{ status: number; retryAfter: unknown }>((resolve, reject) => {
      const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/realtime`, { headers: { authorization: `Key ${API_KEY}` } });
      ws.once('unexpected-response', (_req, res) => {
        resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] });
        ws.terminate();
      });
      ws.once('open', () => reject(new Error('upgraded with no node up')));
      ws.once('error', () => undefined);
    });
    assert.deepEqual(refused, { status: 503, retryAfter: '1' }, 'the client SDK waits and retries on 503 + Retry-After');
  });
});
