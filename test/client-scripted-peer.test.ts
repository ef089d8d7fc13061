// The SDK's state machine against a scripted peer (test/helpers/scripted-peer.ts): real sockets
// and real msgpack, but each server reply written by the test. Used for what the real server in
// this tree does not produce on demand yet (going_away and the 1001 close of a draining server;
// not_ready, shutting_down, engine_restarted and overloaded replies; 4002/4004/4008 closes;
// duplicate_id with refusedId) and for the browser's view of a refused upgrade (invisible status,
// /readyz asked instead). What the real server does produce (503 + Retry-After, rate_limited) is
// tested against it in client-recovery.test.ts.
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { connect, type ConnectOptions, type RealtimeConnection, type RequestId } from '../client/index.js';
import { CloseCode, ErrorCode, type GenerateMessage, type ServerMessage, type Timings } from '../shared/protocol.js';
import { nextEvent, recordEvents } from './helpers/sdk.js';
import { BrowserWebSocket, scriptedPeer, type PeerSocket, type ScriptedPeer } from './helpers/scripted-peer.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((fn) => fn()));
});

async function setup(options: ConnectOptions = {}): Promise<{ peer: ScriptedPeer; connection: RealtimeConnection; events: ReturnType<typeof recordEvents> }> {
  const peer = await scriptedPeer();
  cleanups.push(() => peer.close());
  const connection = connect(peer.url, { WebSocket, ...options });
  cleanups.push(() => connection.close());
  const events = recordEvents(connection);
  return { peer, connection, events };
}

const frame = (id: RequestId): ServerMessage => ({
  type: 'frame', id, image: new Uint8Array([1, 2, 3]), format: 'jpeg', width: 64, height: 64, seed: 1, timings: {} as Timings,
});
const errorsIn = (events: ReturnType<typeof recordEvents>) => events.filter(([name]) => name === 'error').map(([, e]) => e);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('SDK state machine against a scripted peer: going_away', () => {
  test('going_away: reconnects at once instead of after the backoff, and the unanswered input completes on the new connection', async () => {
    // A backoff this long would take seconds on average: the reconnect must not use it.
    const { peer, connection, events } = await setup({ reconnect: { baseDelayMs: 5000, maxDelayMs: 10_000 } });
    const first = await peer.nextSocket();
    await nextEvent(connection, 'hello');
    const a = connection.send({ prompt: 'a' });
    await first.next();
    first.send(frame(a));
    await nextEvent(connection, 'frame', (f) => f.id === a);

    // B reaches the server as it starts draining: unanswered, so the SDK must send it again.
    const b = connection.send({ prompt: 'b' });
    await first.next((m) => m.type === 'generate' && m.id === b);
    const reconnecting = nextEvent(connection, 'state', (s) => s.state === 'reconnecting');
    const second = peer.nextSocket();
    const goneAt = performance.now();
    first.send({ type: 'going_away', reason: 'shutdown', reconnectAfterMs: 100 });
    first.close(CloseCode.GoingAway, 'shutting down');

    const state = await reconnecting;
    assert.ok(state.retryInMs! >= 100 && state.retryInMs! <= 350, `reconnect in ${state.retryInMs} ms: the server's 100 ms plus at most 250 ms jitter`);
    assert.equal(state.delayReason, 'going_away');
    const next = await second;
    const waited = peer.upgrades[1].at - goneAt;
    assert.ok(waited >= 90 && waited < 700, `reconnected ${Math.round(waited)} ms after going_away (backoff base 5000 ms)`);
    const resent = (await next.next()) as GenerateMessage;
    assert.equal(resent.id, b, 'the unanswered input is resent under its id');
    assert.equal(resent.prompt, 'b');
    next.send(frame(b));
    await nextEvent(connection, 'frame', (f) => f.id === b);
    assert.deepEqual(events.filter(([name]) => name === 'going_away').map(([, v]) => v), [{ announced: true, reconnectAfterMs: 100 }]);

    // A bare 1001 close (a proxy, or a server without the drain) is treated the same way.
    const third = peer.nextSocket();
    const closedAt = performance.now();
    next.close(CloseCode.GoingAway, '');
    await third;
    const again = peer.upgrades[2].at - closedAt;
    assert.ok(again < 600, `reconnected ${Math.round(again)} ms after a bare 1001 close`);
    assert.deepEqual(events.filter(([name]) => name === 'going_away').at(-1)![1], { announced: false, reconnectAfterMs: 0 });
    assert.deepEqual(errorsIn(events), [], 'a planned shutdown is not reported as an error');
  });
});

describe('SDK state machine against a scripted peer: retryable errors', () => {
  for (const code of [ErrorCode.NotReady, ErrorCode.EngineRestarted, ErrorCode.Overloaded, ErrorCode.ShuttingDown]) {
    test(`${code}: the input is resent after retryAfterMs and completes without the app resending`, async () => {
      const { peer, connection, events } = await setup();
      const socket = await peer.nextSocket();
      await nextEvent(connection, 'hello');
      const id = connection.send({ prompt: 'x', steps: 2 });
      const sent = (await socket.next()) as GenerateMessage;
      const refusedAt = performance.now();
      const retrying = nextEvent(connection, 'retrying');
      socket.send({ type: 'error', id, code, message: 'not now', retryAfterMs: 200 });
      const retry = await retrying;
      assert.deepEqual({ ...retry, retryInMs: undefined }, { id, code, message: 'not now', attempt: 1, retryInMs: undefined });
      assert.ok(retry.retryInMs >= 200 && retry.retryInMs <= 250, `retry in ${retry.retryInMs} ms`);
      const again = (await socket.next()) as GenerateMessage;
      const gap = performance.now() - refusedAt;
      assert.ok(gap >= 195 && gap < 600, `resent ${Math.round(gap)} ms after the refusal`);
      assert.deepEqual(again, sent, 'the same message, same id');
      socket.send(frame(id));
      await nextEvent(connection, 'frame', (f) => f.id === id);
      assert.deepEqual(errorsIn(events), [], `${code} is not reported as an error`);
    });
  }

  test('retries are bounded per input; a non-retryable error ends the request at once', async () => {
    const { peer, connection, events } = await setup({ requestRetries: 2 });
    const socket = await peer.nextSocket();
    await nextEvent(connection, 'hello');
    const id = connection.send({ prompt: 'x' });
    for (let i = 0; i < 3; i++) {
      await socket.next();
      socket.send({ type: 'error', id, code: ErrorCode.Overloaded, message: 'image memory full', retryAfterMs: 20 });
    }
    const error = await nextEvent(connection, 'error');
    assert.equal(error.code, ErrorCode.Overloaded);
    assert.equal(error.requestId, id, 'the third refusal ends the request');
    assert.equal(error.retryAfterMs, 20);
    assert.deepEqual(events.filter(([name]) => name === 'retrying').map(([, r]) => r.attempt), [1, 2]);
    assert.equal(socket.received.filter((m) => m.type === 'generate').length, 3, 'sent once and resent twice');

    const bad = connection.send({ prompt: 'y', steps: 99 });
    await socket.next((m) => m.type === 'generate' && m.id === bad);
    socket.send({ type: 'error', id: bad, code: ErrorCode.InvalidSteps, message: 'steps must be 1 to 8' });
    const invalid = await nextEvent(connection, 'error', (e) => e.requestId === bad);
    assert.equal(invalid.code, ErrorCode.InvalidSteps);
    await sleep(100);
    assert.equal(socket.received.filter((m) => m.type === 'generate' && m.id === bad).length, 1, 'not resent');
    assert.deepEqual(connection.pending, { inFlight: undefined, queued: undefined });
  });

  test('duplicate_id names the refused id in refusedId and does not end the request in flight', async () => {
    const { peer, connection } = await setup();
    const socket = await peer.nextSocket();
    await nextEvent(connection, 'hello');
    const id = connection.send({ prompt: 'x' });
    await socket.next();
    socket.send({ type: 'error', code: ErrorCode.DuplicateId, message: 'a request with this id is already running', refusedId: id });
    const error = await nextEvent(connection, 'error');
    assert.equal(error.code, ErrorCode.DuplicateId);
    assert.equal(error.refusedId, id);
    assert.equal(error.requestId, undefined);
    assert.equal(connection.pending.inFlight, id, 'still in flight');
    // A server from before refusedId put the refused id in `id`: still not the request's end.
    socket.send({ type: 'error', id, code: ErrorCode.DuplicateId, message: 'a request with this id is already running' });
    const old = await nextEvent(connection, 'error');
    assert.equal(old.requestId, undefined);
    assert.equal(old.refusedId, id);
    assert.equal(connection.pending.inFlight, id, 'still in flight');
    socket.send(frame(id));
    await nextEvent(connection, 'frame', (f) => f.id === id);
    assert.deepEqual(connection.pending, { inFlight: undefined, queued: undefined });
  });
});

describe('SDK state machine against a scripted peer: close codes', () => {
  test('idle close 4008: no reconnect (and no token refresh) until the next send, which reconnects and runs', async () => {
    let tokens = 0;
    const { peer, connection, events } = await setup({
      reconnect: { baseDelayMs: 10, maxDelayMs: 20 },
      // 400 ms tokens are refreshed every 200 ms while a connection is open.
      tokenProvider: async () => ({ token: `t${++tokens}`, expiresAt: Date.now() + 400 }),
    });
    const socket = await peer.nextSocket();
    await nextEvent(connection, 'hello');
    const idle = nextEvent(connection, 'state', (s) => s.state === 'idle');
    socket.close(CloseCode.Idle, 'idle');
    await idle;
    const tokensAtIdle = tokens;
    await sleep(700);
    assert.equal(peer.upgrades.length, 1, 'no reconnect while idle');
    assert.equal(connection.state, 'idle');
    assert.equal(tokens, tokensAtIdle, 'no token refresh while idle');
    assert.deepEqual(errorsIn(events), []);

    const second = peer.nextSocket();
    const id = connection.send({ prompt: 'back' });
    const next = await second;
    assert.equal(((await next.next()) as GenerateMessage).id, id);
    next.send(frame(id));
    await nextEvent(connection, 'frame', (f) => f.id === id);
    assert.equal(connection.state, 'open');
  });

  for (const code of [CloseCode.TooManyBadMessages, CloseCode.MessageDeadline]) {
    test(`close ${code}: reported, and the reconnects back off across such closes instead of looping`, async () => {
      const { peer, connection, events } = await setup({ reconnect: { baseDelayMs: 20, maxDelayMs: 100, maxAttempts: 3 } });
      // Every connection is closed right after its hello, as a server would a client that keeps misbehaving.
      peer.onSocket = (socket) => socket.close(code, 'go away');
      const failed = await nextEvent(connection, 'error', (e) => e.code === 'connection_failed');
      assert.match(failed.message, /gave up after 3 reconnect attempts/);
      const lost = errorsIn(events).filter((e) => e.code === 'connection_lost');
      assert.equal(lost.length, 4, 'each of the four connections was closed');
      assert.ok(lost.every((e) => e.closeCode === code), 'the close code is reported');
      assert.equal(peer.upgrades.length, 4, 'the first connection and three reconnects, despite each reaching hello');
    });
  }
});

describe('SDK state machine against a scripted peer: what a browser sees of a refused upgrade', () => {
  test('the status is invisible, so Retry-After comes from /readyz (503 while loading)', async () => {
    const { peer, connection, events } = await setup({ WebSocket: BrowserWebSocket, reconnect: { baseDelayMs: 30_000, maxDelayMs: 60_000 } });
    let loading = true;
    peer.refuse = () => (loading ? { status: 503, headers: { 'Retry-After': '1' } } : undefined);
    peer.readyz = () => (loading ? { status: 503, headers: { 'Retry-After': '1' } } : { status: 200 });
    const state = await nextEvent(connection, 'state', (s) => s.state === 'reconnecting');
    const refusedAt = performance.now();
    loading = false;
    assert.ok(state.retryInMs! >= 1000 && state.retryInMs! <= 1200, `retry in ${state.retryInMs} ms`);
    assert.equal(state.delayReason, 'retry_after');
    assert.match(errorsIn(events)[0].message, /readiness check answered 503 \(Retry-After 1 s\)/);
    assert.equal(peer.readyzRequests.length, 1);
    assert.equal(peer.readyzRequests[0].url, '/readyz');
    await nextEvent(connection, 'hello');
    const waited = performance.now() - refusedAt;
    assert.ok(waited < 1200 + 400, `connected ${Math.round(waited)} ms after the refusal (backoff base 30 s)`);
  });

  test('when /readyz says ready (or cannot say), the exponential backoff applies', async () => {
    const { peer, connection } = await setup({ WebSocket: BrowserWebSocket, reconnect: { baseDelayMs: 50, maxDelayMs: 50 } });
    peer.refuse = (index) => (index === 0 ? { status: 503, headers: { 'Retry-After': '5' } } : undefined);
    const state = await nextEvent(connection, 'state', (s) => s.state === 'reconnecting');
    assert.equal(state.delayReason, 'backoff');
    assert.ok(state.retryInMs! < 50);
    await nextEvent(connection, 'hello');
    assert.equal(peer.readyzRequests.length, 1);
  });

  test('with ws the refused upgrade itself is read: no /readyz request', async () => {
    const { peer, connection } = await setup({ reconnect: { baseDelayMs: 30_000, maxDelayMs: 60_000 } });
    peer.refuse = (index) => (index === 0 ? { status: 429, headers: { 'Retry-After': '0' } } : undefined);
    const state = await nextEvent(connection, 'state', (s) => s.state === 'reconnecting');
    assert.ok(state.retryInMs! <= 50, `retry in ${state.retryInMs} ms`);
    assert.equal(state.delayReason, 'retry_after');
    await nextEvent(connection, 'hello');
    assert.equal(peer.readyzRequests.length, 0);
  });
});
