// A scripted stand-in for the server, for SDK behaviours the real server in this tree cannot be
// made to produce on demand (going_away, shutting_down, engine_restarted, overloaded, not_ready
// mid-session, the 4002/4004/4008 closes, a /readyz seen from a browser): real sockets on a local
// `ws` server and real msgpack (shared/codec.ts), with each reply written by the test.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { decodeMessage, encodeMessage } from '../../shared/codec.js';
import { PROTOCOL_VERSION, type ClientMessage, type HelloMessage, type ServerMessage } from '../../shared/protocol.js';
import type { WebSocketConstructor, WebSocketLike } from '../../client/index.js';

export const FAKE_HELLO = {
  type: 'hello',
  protocol: PROTOCOL_VERSION,
  model: { name: 'scripted', width: 64, height: 64 },
  limits: { maxRequestsPerSecond: 60 },
} as unknown as HelloMessage;

/** An HTTP answer the peer gives instead of accepting an upgrade, or for /readyz. */
export interface HttpAnswer {
  status: number;
  headers?: Record<string, string>;
}

export class PeerSocket {
  readonly received: ClientMessage[] = [];
  closeCode: number | undefined;
  private waiters: { match: (m: ClientMessage) => boolean; resolve: (m: ClientMessage) => void }[] = [];

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const message = decodeMessage(data) as ClientMessage;
      this.received.push(message);
      this.waiters = this.waiters.filter((w) => (w.match(message) ? (w.resolve(message), false) : true));
    });
    ws.on('close', (code) => (this.closeCode = code));
  }

  send(message: ServerMessage): void {
    this.ws.send(encodeMessage(message));
  }

  close(code: number, reason = ''): void {
    this.ws.close(code, reason);
  }

  /** The next message (from now on) that matches; `generate` by default. */
  next(match: (m: ClientMessage) => boolean = (m) => m.type === 'generate', timeoutMs = 10_000): Promise<ClientMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the peer got no matching message in ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ match, resolve: (m) => (clearTimeout(timer), resolve(m)) });
    });
  }
}

export interface ScriptedPeer {
  url: string;
  /** Every upgrade request and /readyz request, with the time it arrived (performance.now()). */
  upgrades: { at: number; url: string }[];
  readyzRequests: { at: number; url: string }[];
  sockets: PeerSocket[];
  /** Decides each upgrade: an answer refuses it, undefined accepts it (and sends hello). */
  refuse: (index: number) => HttpAnswer | undefined;
  readyz: () => HttpAnswer;
  /** Called with every accepted socket, after its hello. */
  onSocket: (socket: PeerSocket) => void;
  /** The next accepted socket. */
  nextSocket(timeoutMs?: number): Promise<PeerSocket>;
  close(): Promise<void>;
}

export async function scriptedPeer(): Promise<ScriptedPeer> {
  const wss = new WebSocketServer({ noServer: true });
  let waiting: ((socket: PeerSocket) => void)[] = [];
  const answer = (res: http.ServerResponse, { status, headers = {} }: HttpAnswer) => res.writeHead(status, headers).end();
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/readyz')) {
      peer.readyzRequests.push({ at: performance.now(), url: req.url });
      answer(res, peer.readyz());
    } else {
      answer(res, { status: 404 });
    }
  });
  const peer: ScriptedPeer = {
    url: '',
    upgrades: [],
    readyzRequests: [],
    sockets: [],
    refuse: () => undefined,
    readyz: () => ({ status: 200 }),
    onSocket: () => undefined,
    nextSocket(timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no connection in ${timeoutMs} ms`)), timeoutMs);
        waiting.push((socket) => (clearTimeout(timer), resolve(socket)));
      });
    },
    async close() {
      for (const socket of peer.sockets) socket.ws.terminate();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  server.on('upgrade', (req, socket, head) => {
    const index = peer.upgrades.length;
    peer.upgrades.push({ at: performance.now(), url: req.url ?? '' });
    const refusal = peer.refuse(index);
    if (refusal) {
      const headers = Object.entries(refusal.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      socket.end(`HTTP/1.1 ${refusal.status} Refused\r\n${headers}Content-Length: 0\r\nConnection: close\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const peerSocket = new PeerSocket(ws);
      peer.sockets.push(peerSocket);
      peerSocket.send(FAKE_HELLO);
      peer.onSocket(peerSocket);
      const [first, ...rest] = waiting;
      waiting = rest;
      first?.(peerSocket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  peer.url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/realtime`;
  return peer;
}

/**
 * What a browser's WebSocket shows the SDK: the WHATWG surface only. A refused upgrade is a bare
 * error event and a 1006 close, its status and headers invisible (no `ws` 'unexpected-response').
 */
class BrowserLikeWebSocket implements WebSocketLike {
  onopen: ((event: any) => void) | null = null;
  onmessage: ((event: any) => void) | null = null;
  onclose: ((event: any) => void) | null = null;
  onerror: ((event: any) => void) | null = null;
  private readonly ws: WebSocket;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.onopen = () => this.onopen?.({});
    this.ws.onmessage = (event) => this.onmessage?.({ data: event.data });
    this.ws.onerror = () => this.onerror?.({});
    this.ws.onclose = (event) => this.onclose?.({ code: event.code, reason: event.reason });
  }

  get binaryType(): string {
    return this.ws.binaryType;
  }

  set binaryType(value: string) {
    this.ws.binaryType = value as WebSocket['binaryType'];
  }

  get readyState(): number {
    return this.ws.readyState;
  }

  send(data: Uint8Array): void {
    this.ws.send(data);
  }

  close(code?: number, reason?: string): void {
    this.ws.close(code, reason);
  }
}

export const BrowserWebSocket: WebSocketConstructor = BrowserLikeWebSocket;
