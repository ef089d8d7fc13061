// A stand-in for the server's fal routes, for testing the official fal client against: records
// every HTTP request and WebSocket upgrade, and answers as fal's hosts would (queue submit, status
// IN_PROGRESS then COMPLETED, result, cancel, SSE for streams, a JSON-string token from /tokens/,
// msgpack results on a realtime socket). It serves under PREFIX, as behind a reverse proxy, and
// reads its routes from the server's layout: /queue/* for queue.fal.run, /tokens/ and /storage/* for
// rest.fal.ai, /api/fal/proxy with x-fal-target-url, everything else for fal.run.
// Set FAL_SELF_HOST_LOG=1 to print every request as it arrives.
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { pack, unpack } from 'msgpackr';
import { FAL_PROXY_PATH } from '../../client/fal.js';

export const PREFIX = '/gw';
const LOG = process.env.FAL_SELF_HOST_LOG === '1';

export interface Recorded {
  method: string;
  /** Path and query as they reached the server, without PREFIX. */
  path: string;
  headers: IncomingHttpHeaders;
  body: unknown;
}

export interface Recorder {
  base: string;
  http: Recorded[];
  upgrades: { path: string; headers: IncomingHttpHeaders }[];
  frames: unknown[];
  /** Forgets everything recorded; request ids start again at req-1. */
  reset(): void;
  close(): Promise<void>;
}

/** The fal URL a request stands for: from x-fal-target-url on the proxy route, else from its path. */
function falUrlOf(path: string, headers: IncomingHttpHeaders): URL {
  if (path === FAL_PROXY_PATH) return new URL(String(headers['x-fal-target-url']));
  if (path.startsWith('/queue/')) return new URL('https://queue.fal.run' + path.slice('/queue'.length));
  if (path.startsWith('/tokens/') || path.startsWith('/storage/')) return new URL('https://rest.fal.ai' + path);
  return new URL('https://fal.run' + path);
}

function sse(res: http.ServerResponse, events: unknown[]): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'x-fal-request-id': 'stream-1' });
  for (const event of events) res.write(`data: ${JSON.stringify(event)}\n\n`);
  res.end();
}

function json(res: http.ServerResponse, body: unknown, status = 200): void {
  res.writeHead(status, { 'content-type': 'application/json', 'x-fal-request-id': 'run-1' }).end(JSON.stringify(body));
}

/** Answers what fal's hosts would, for whichever route the request came in on. */
function answer(url: URL, method: string, res: http.ServerResponse, polls: Map<string, number>): void {
  const host = url.host;
  const status = (id: string, state: string) => ({ status: state, request_id: id, logs: [], queue_position: 0 });
  if (host === 'rest.fal.ai' && method === 'POST' && url.pathname === '/tokens/') return json(res, 'jwt-1');
  if (host === 'queue.fal.run') {
    const m = /\/requests\/([^/]+)(\/status\/stream|\/status|\/cancel)?$/.exec(url.pathname);
    if (!m) {
      const id = `req-${polls.size + 1}`;
      polls.set(id, 0);
      const at = `https://queue.fal.run${url.pathname}/requests/${id}`;
      return json(res, { request_id: id, status: 'IN_QUEUE', queue_position: 0, response_url: at, status_url: `${at}/status`, cancel_url: `${at}/cancel` });
    }
    const [, id, what] = m;
    if (what === '/cancel') return json(res, { status: 'CANCELLATION_REQUESTED' }, 202);
    if (what === '/status/stream') return sse(res, [status(id, 'IN_PROGRESS'), status(id, 'COMPLETED')]);
    if (what === '/status') {
      const n = (polls.get(id) ?? 0) + 1;
      polls.set(id, n);
      return json(res, status(id, n === 1 ? 'IN_PROGRESS' : 'COMPLETED'));
    }
    return json(res, { images: [{ url: 'data:,', width: 64, height: 64 }], seed: 7, request_id: id });
  }
  if (host === 'fal.run' && url.pathname.endsWith('/stream')) return sse(res, [{ step: 1 }, { step: 2 }, { images: [], seed: 9 }]);
  if (host === 'fal.run') return json(res, { images: [{ url: 'data:,', width: 64, height: 64 }], seed: 42 });
  json(res, { detail: `no such route: ${method} ${url}` }, 404);
}

export async function startRecorder(): Promise<Recorder> {
  const recorded: Recorded[] = [];
  const upgrades: Recorder['upgrades'] = [];
  const frames: unknown[] = [];
  const polls = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url!.startsWith(PREFIX + '/') ? req.url!.slice(PREFIX.length) : req.url!;
      const text = Buffer.concat(chunks).toString();
      recorded.push({ method: req.method!, path, headers: req.headers, body: text ? JSON.parse(text) : undefined });
      if (LOG) console.log(req.method, req.url, JSON.stringify(pick(req.headers)), text);
      answer(falUrlOf(path.split('?')[0], req.headers), req.method!, res, polls);
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    upgrades.push({ path: req.url!.slice(PREFIX.length), headers: req.headers });
    if (LOG) console.log('UPGRADE', req.url, JSON.stringify(pick(req.headers)));
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data: Buffer) => {
        const input = unpack(data) as Record<string, unknown>;
        frames.push(input);
        ws.send(pack({ images: [{ content: new Uint8Array([1, 2, 3]), width: 64, height: 64 }], request_id: input.request_id }));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}${PREFIX}`;
  return {
    base,
    http: recorded,
    upgrades,
    frames,
    reset() {
      recorded.length = upgrades.length = frames.length = 0;
      polls.clear();
    },
    async close() {
      for (const ws of wss.clients) ws.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The headers worth reporting: fal's own and the ones a server routes or authenticates on. */
function pick(headers: IncomingHttpHeaders): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(headers).filter(([k]) => /^(authorization|accept|content-type|user-agent|x-fal-|x-app)/.test(k)),
  );
}

/** What reached the server, as `METHOD path` lines, with the fal URL behind the proxy route. */
export function lines(rec: Recorded[]): string[] {
  return rec.map((r) => `${r.method} ${r.path}` + (r.path === FAL_PROXY_PATH ? ` -> ${r.headers['x-fal-target-url']}` : ''));
}
