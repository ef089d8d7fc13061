// The SDK's connection plumbing against a tiny local `ws` server that records upgrade requests:
// the API-key header, the browser token in the query string and its refresh (in-band `auth` on the
// open socket, a fresh token after the server closes with 4003), 503 refusals retried (after their
// Retry-After: 1), and the backoff schedule itself. No model is involved.
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { connect, RealtimeError, type RealtimeConnection } from '../client/index.js';
import { Backoff } from '../client/backoff.js';
import { decodeMessage, encodeMessage } from '../shared/codec.js';
import { CloseCode, PROTOCOL_VERSION, type ClientMessage, type HelloMessage } from '../shared/protocol.js';
import { nextEvent } from './helpers/sdk.js';

const HELLO = {
  type: 'hello',
  protocol: PROTOCOL_VERSION,
  model: { name: 'fake', width: 64, height: 64 },
  limits: {},
} as unknown as HelloMessage;

/** A fake server: answers the first `refuse` upgrades with 503, then accepts and says hello. */
async function fakeServer(options: { refuse?: number } = {}) {
  const upgrades: IncomingMessage[] = [];
  const received: ClientMessage[] = [];
  const sockets: WebSocket[] = [];
  let refuse = options.refuse ?? 0;
  const wss = new WebSocketServer({ noServer: true });
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket, head) => {
    upgrades.push(req);
    if (refuse > 0) {
      refuse--;
      socket.end('HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.push(ws);
      ws.on('message', (data: Buffer) => received.push(decodeMessage(data) as ClientMessage));
      ws.send(encodeMessage(HELLO));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/v1/realtime`,
    upgrades,
    received,
    sockets,
    async close() {
      for (const ws of sockets) ws.terminate();
      await new Promise((resolve) => server.close(resolve));
      server.closeAllConnections();
    },
  };
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((fn) => fn()));
});

function track<T extends { close(): Promise<unknown> }>(thing: T): T {
  cleanups.push(() => thing.close());
  return thing;
}

const until = async (condition: () => boolean, timeoutMs = 5000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

describe('authentication hooks', () => {
  test('apiKey travels as an Authorization: Key header on the upgrade', async () => {
    const server = track(await fakeServer());
    const connection: RealtimeConnection = track(connect(server.url, { WebSocket, apiKey: 'sk-test-123' }));
    await nextEvent(connection, 'hello');
    assert.equal(server.upgrades[0].headers.authorization, 'Key sk-test-123');
    assert.equal(new URL(server.upgrades[0].url!, 'http://x').searchParams.get('token'), null);
  });

  test('tokenProvider: token in the query string, refreshed before expiry and sent in-band', async () => {
    const server = track(await fakeServer());
    let issued = 0;
    const connection = track(connect(server.url, {
      WebSocket,
      // 600 ms tokens: refreshed at half their lifetime (the 30 s default margin is capped at that).
      tokenProvider: async () => ({ token: `tok-${++issued}`, expiresAt: Date.now() + 600 }),
    }));
    await nextEvent(connection, 'hello');
    const url = new URL(server.upgrades[0].url!, 'http://x');
    assert.equal(url.pathname, '/v1/realtime');
    assert.equal(url.searchParams.get('token'), 'tok-1');
    assert.equal(server.upgrades[0].headers.authorization, undefined);

    await until(() => server.received.some((m) => m.type === 'auth'));
    assert.deepEqual(server.received.find((m) => m.type === 'auth'), { type: 'auth', token: 'tok-2' });
    assert.equal(server.upgrades.length, 1, 'the refresh did not reconnect');

    // The server closes the socket because the token expired: the reconnect fetches a fresh one.
    const issuedBefore = issued;
    server.sockets[0].close(CloseCode.TokenExpired, 'token expired');
    await nextEvent(connection, 'hello');
    const token = new URL(server.upgrades[1].url!, 'http://x').searchParams.get('token');
    assert.ok(issued > issuedBefore, 'a new token was fetched for the reconnect');
    assert.equal(token, `tok-${issued}`);
  });

  test('expiresAt in Unix seconds (a JWT exp) is understood, not refreshed in a loop', async () => {
    const server = track(await fakeServer());
    let calls = 0;
    const connection = track(connect(server.url, {
      WebSocket,
      tokenProvider: async () => ({ token: `t${++calls}`, expiresAt: Math.floor(Date.now() / 1000) + 120 }),
    }));
    await nextEvent(connection, 'hello');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(calls, 1);
  });

  test('a failing tokenProvider gives auth_failed errors and is retried with backoff', async () => {
    const server = track(await fakeServer());
    let calls = 0;
    const connection = track(connect(server.url, {
      WebSocket,
      reconnect: { baseDelayMs: 10, maxDelayMs: 20 },
      tokenProvider: async () => {
        if (++calls < 3) throw new Error('token endpoint down');
        return { token: 'finally', expiresAt: Date.now() + 60_000 };
      },
    }));
    const error = await nextEvent(connection, 'error');
    assert.equal(error.code, 'auth_failed');
    assert.match(error.message, /token endpoint down/);
    await nextEvent(connection, 'hello');
    assert.equal(calls, 3);
    assert.equal(new URL(server.upgrades[0].url!, 'http://x').searchParams.get('token'), 'finally');
  });
});

describe('connection options and retries', () => {
  test('an upgrade refused with 503 (model loading) is retried until it succeeds', async () => {
    const server = track(await fakeServer({ refuse: 2 }));
    const connection = track(connect(server.url, { WebSocket, reconnect: { baseDelayMs: 20, maxDelayMs: 50 } }));
    const states: string[] = [];
    const errors: RealtimeError[] = [];
    connection.on('state', ({ state }) => states.push(state));
    connection.on('error', (err) => errors.push(err));
    await nextEvent(connection, 'hello');
    assert.equal(server.upgrades.length, 3);
    assert.deepEqual(states, ['connecting', 'reconnecting', 'connecting', 'reconnecting', 'connecting', 'open']);
    assert.deepEqual(errors.map((e) => e.code), ['connection_refused', 'connection_refused']);
    assert.match(errors[0].message, /503/);
  });

  test('maxAttempts gives up with connection_failed and closes', async () => {
    const server = track(await fakeServer({ refuse: 100 }));
    const connection = track(connect(server.url, { WebSocket, reconnect: { baseDelayMs: 5, maxDelayMs: 10, maxAttempts: 2 } }));
    const error = await nextEvent(connection, 'error', (e) => e.code === 'connection_failed');
    assert.match(error.message, /503.*gave up after 2 reconnect attempts/);
    await until(() => connection.state === 'closed');
    assert.equal(server.upgrades.length, 3, 'the first attempt and two retries');
  });

  test('Node without a WebSocket option, or an apiKey with the browser WebSocket, is refused up front', () => {
    assert.equal((globalThis as { WebSocket?: unknown }).WebSocket, undefined, 'Node 20 has no global WebSocket');
    assert.throws(() => connect('ws://127.0.0.1:1/v1/realtime'), (err: RealtimeError) => err.code === 'invalid_options');
    (globalThis as { WebSocket?: unknown }).WebSocket = WebSocket;
    try {
      assert.throws(() => connect('ws://127.0.0.1:1/v1/realtime', { apiKey: 'k' }), (err: RealtimeError) => err.code === 'invalid_options');
    } finally {
      delete (globalThis as { WebSocket?: unknown }).WebSocket;
    }
  });

  test('backoff: exponential caps with full jitter, capped, reset after success', () => {
    const high = new Backoff({ baseDelayMs: 250, maxDelayMs: 10_000 }, () => 0.999999);
    const delays = Array.from({ length: 8 }, () => high.next());
    assert.deepEqual(delays, [249, 499, 999, 1999, 3999, 7999, 9999, 9999]);
    high.reset();
    assert.equal(high.next(), 249);
    const low = new Backoff({}, () => 0);
    assert.equal(low.next(), 0, 'full jitter reaches down to zero');
    const random = new Backoff({ baseDelayMs: 100, maxDelayMs: 1000 });
    for (let i = 0; i < 50; i++) {
      const delay = random.next();
      assert.ok(delay >= 0 && delay < 1000);
    }
  });
});
