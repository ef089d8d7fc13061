// The client SDK following the real server's retry advice: a full server's 503 + Retry-After sets
// the wait before the next attempt (no hammering with a short backoff, no needless wait with a
// long one), and an input refused with `rate_limited` is resent after the server's pause, unless a
// newer input replaced it meanwhile. (Replies the real server in this tree does not produce on
// demand are tested against a scripted peer in client-scripted-peer.test.ts.)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, ErrorCode, type ConnectOptions, type RealtimeConnection } from '../client/index.js';
import type { GenerateMessage } from '../shared/protocol.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { nextEvent, recordEvents, spyWebSocket } from './helpers/sdk.js';
import { TestClient } from './helpers/ws-client.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** --max-sessions refusals carry `Retry-After: 5` (server/realtime/socket.ts). */
const FULL_RETRY_AFTER_MS = 5000;
/** The SDK spreads a server-advised wait by up to a fifth. */
const SPREAD_MS = FULL_RETRY_AFTER_MS * 0.2;

function watch(url: string, options: ConnectOptions) {
  const spy = spyWebSocket();
  const connection = connect(url, { WebSocket: spy.WebSocket, ...options });
  const events = recordEvents(connection);
  return { connection, events, upgrades: spy.log.urls, log: spy.log };
}

describe('Retry-After from a full server (--max-sessions 1)', () => {
  let server: ServerProcess;
  const connections: RealtimeConnection[] = [];
  before(async () => {
    server = await startServerProcess(['--max-sessions', '1']);
  });
  after(async () => {
    await Promise.all(connections.map((c) => c.close()));
    await server?.stop();
  });

  /**
   * `holder` has the only session; a second client is refused with 503 + Retry-After: 5. The holder
   * leaves a second later; the second client must be in within Retry-After plus its spread.
   */
  async function refusedThenAdmitted(release: () => Promise<void>, reconnect: ConnectOptions['reconnect']) {
    const client = watch(server.wsUrl, { reconnect });
    connections.push(client.connection);
    const state = await nextEvent(client.connection, 'state', (s) => s.state === 'reconnecting');
    const refusedAt = performance.now();
    assert.ok(
      state.retryInMs! >= FULL_RETRY_AFTER_MS && state.retryInMs! <= FULL_RETRY_AFTER_MS + SPREAD_MS,
      `next attempt in ${state.retryInMs} ms for Retry-After: 5 (backoff ${JSON.stringify(reconnect)})`,
    );
    assert.equal(state.delayReason, 'retry_after');
    const refusal = client.events.find(([name]) => name === 'error')![1];
    assert.equal(refusal.code, 'connection_refused');
    assert.match(refusal.message, /503 \(Retry-After 5 s\)/);
    await sleep(1000);
    await release();
    await nextEvent(client.connection, 'hello', undefined, FULL_RETRY_AFTER_MS + SPREAD_MS + 2000);
    const waited = performance.now() - refusedAt;
    assert.ok(waited <= state.retryInMs! + 500, `admitted ${Math.round(waited)} ms after the refusal`);
    assert.equal(client.upgrades.length, 2, 'one refused attempt, then the one that got in: nothing in between');
    return client.connection;
  }

  test('/readyz can be read from pages on other origins, Retry-After included (browsers ask it)', async () => {
    const response = await fetch(`${server.httpUrl}/readyz`, { headers: { origin: 'https://app.example' } });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('access-control-allow-origin'), '*');
    assert.match(response.headers.get('access-control-expose-headers') ?? '', /retry-after/i);
  });

  test('a short backoff does not hammer the server, a long one does not keep the user waiting', async () => {
    const { client: holder } = await TestClient.connect(server.wsUrl);
    // 50-200 ms backoff: without Retry-After this client would try ~25 times in the 5 s.
    const second = await refusedThenAdmitted(() => holder.close(), { baseDelayMs: 50, maxDelayMs: 200 });
    // 30-60 s backoff: without Retry-After its first retry would come at a random 0-30 s.
    await refusedThenAdmitted(() => second.close(), { baseDelayMs: 30_000, maxDelayMs: 60_000 });
  });
});

describe('rate_limited from the real server (--rate-limit 1)', () => {
  let server: ServerProcess;
  let connection: RealtimeConnection | undefined;
  before(async () => {
    server = await startServerProcess(['--rate-limit', '1']);
  });
  after(async () => {
    await connection?.close();
    await server?.stop();
  });

  test('the refused input is resent after the pause and completes; a newer input replaces one waiting to be resent', async () => {
    const client = watch(server.wsUrl, {});
    connection = client.connection;
    const { events, log } = client;
    await nextEvent(connection, 'hello');
    const input = (prompt: string, seed: number) => ({ prompt, seed, steps: 1, width: 64, height: 64 });
    const generates = () => log.sent.filter((s) => s.message.type === 'generate') as { at: number; message: GenerateMessage }[];

    // One request per second, burst 1: A takes the only token, B follows A's frame at once.
    const a = connection.send(input('a', 1));
    await nextEvent(connection, 'frame', (f) => f.id === a);
    const b = connection.send(input('b', 2));
    const retry = await nextEvent(connection, 'retrying', (r) => r.id === b);
    assert.equal(retry.code, ErrorCode.RateLimited);
    // No retryAfterMs from this server: one token refills in 1 / (1 per second).
    assert.ok(retry.retryInMs >= 1000 && retry.retryInMs <= 1200, `retry in ${retry.retryInMs} ms`);
    const frameB = await nextEvent(connection, 'frame', (f) => f.id === b);
    assert.equal(frameB.seed, 2);
    const sentB = generates().filter((s) => s.message.id === b);
    assert.equal(sentB.length, 2, 'refused once, resent once');
    assert.ok(sentB[1].at - sentB[0].at >= 1000, `resent ${Math.round(sentB[1].at - sentB[0].at)} ms later`);

    // C is refused too; D arrives while C waits to be resent: C is dropped, D goes after the pause.
    const c = connection.send(input('c', 3));
    const retryC = await nextEvent(connection, 'retrying', (r) => r.id === c);
    const refusedAt = performance.now();
    const d = connection.send(input('d', 4));
    const frameD = await nextEvent(connection, 'frame', (f) => f.id === d);
    assert.equal(frameD.seed, 4);
    assert.ok(events.some(([name, v]) => name === 'superseded' && v.id === c && v.local), 'C ended as superseded (local)');
    assert.equal(generates().filter((s) => s.message.id === c).length, 1, 'C was not resent');
    const sentD = generates().find((s) => s.message.id === d)!;
    assert.ok(sentD.at - refusedAt >= retryC.retryInMs - 50, 'D waited out the pause the server asked for');
    assert.deepEqual(events.filter(([name]) => name === 'error'), [], 'no error events: every refusal was retried');
  });
});
