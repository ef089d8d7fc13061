// The client SDK against the real server: latest-wins throttling (the server only ever sees one
// request in flight plus the newest input), the minimum send interval, error events with the
// protocol's codes, cancel, close, and reconnecting to a restarted server with the newest input
// resent.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { connect, ErrorCode, RealtimeError, type RealtimeConnection } from '../client/index.js';
import type { GenerateMessage } from '../shared/protocol.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { finalEvent, nextEvent, recordEvents, spyWebSocket, type WireLog } from './helpers/sdk.js';

const sentGenerates = (log: WireLog) =>
  log.sent.filter((s) => s.message.type === 'generate').map((s) => s.message as GenerateMessage);

async function openConnection(url: string, options: Parameters<typeof connect>[1] = {}) {
  const spy = spyWebSocket();
  const connection = connect(url, { WebSocket: spy.WebSocket, ...options });
  const events = recordEvents(connection);
  await nextEvent(connection, 'hello');
  return { connection, log: spy.log, events };
}

describe('client SDK against the server', () => {
  let server: ServerProcess;
  const connections: RealtimeConnection[] = [];
  before(async () => {
    server = await startServerProcess();
  });
  after(async () => {
    await Promise.all(connections.map((c) => c.close()));
    await server?.stop();
  });
  const open = async (options: Parameters<typeof connect>[1] = {}) => {
    const opened = await openConnection(server.wsUrl, options);
    connections.push(opened.connection);
    return opened;
  };

  test('a burst of inputs: only the one in flight and the newest reach the server', async () => {
    const { connection, log, events } = await open();
    const ids = [];
    for (let i = 1; i <= 30; i++) ids.push(connection.send({ prompt: `input ${i}`, seed: i, steps: 2, width: 64, height: 64 }));
    const last = ids.at(-1)!;
    const frame = await nextEvent(connection, 'frame', (f) => f.id === last);

    // The first input left at once; 2..29 were replaced while it ran; the newest followed.
    assert.deepEqual(sentGenerates(log).map((m) => m.id), [ids[0], last]);
    const superseded = events.filter(([name]) => name === 'superseded').map(([, v]) => v);
    assert.deepEqual(superseded.map((s) => s.id), ids.slice(1, -1));
    assert.ok(superseded.every((s) => s.local));
    // The final frame is the last input's.
    assert.equal(frame.seed, 30);
    assert.equal(sentGenerates(log).at(-1)!.prompt, 'input 30');
    assert.deepEqual(connection.pending, { inFlight: undefined, queued: undefined });
  });

  test('a steady stream of inputs: never more than one request outstanding on the wire', async () => {
    const { connection, log, events } = await open();
    let outstanding = 0;
    let maxOutstanding = 0;
    connection.on('sent', () => (maxOutstanding = Math.max(maxOutstanding, ++outstanding)));
    for (const name of ['frame', 'superseded', 'skipped', 'cancelled', 'error'] as const) {
      connection.on(name, (value: any) => {
        const id = value instanceof RealtimeError ? value.requestId : value.id;
        if (!value.local && id !== undefined) outstanding--;
      });
    }
    let last: string | number = 0;
    for (let i = 1; i <= 60; i++) {
      last = connection.send({ prompt: `typing ${'x'.repeat(i)}`, seed: 1000 + i, steps: 4 });
      await new Promise((resolve) => setTimeout(resolve, 4));
    }
    const frame = await nextEvent(connection, 'frame', (f) => f.id === last);
    assert.equal(frame.seed, 1060, 'the final frame is the newest input');
    const sent = sentGenerates(log);
    assert.ok(maxOutstanding === 1, `outstanding on the wire peaked at ${maxOutstanding}`);
    assert.ok(sent.length < 60, `${sent.length} of 60 inputs were sent`);
    // The server never had to supersede anything: the client only sent what it could take.
    assert.equal(events.filter(([name, v]) => name === 'superseded' && !v.local).length, 0);
    // Every request that was sent ended in a frame.
    const frames = new Set(events.filter(([name]) => name === 'frame').map(([, v]) => v.id));
    assert.ok(sent.every((m) => frames.has(m.id)), 'every sent request got its frame');
  });

  test('minIntervalMs spaces requests out', async () => {
    const { connection, log } = await open({ minIntervalMs: 250 });
    const first = connection.send({ prompt: 'a', steps: 1, width: 64, height: 64 });
    await nextEvent(connection, 'frame', (f) => f.id === first);
    const second = connection.send({ prompt: 'b', steps: 1, width: 64, height: 64 });
    await nextEvent(connection, 'frame', (f) => f.id === second);
    const [a, b] = log.sent.filter((s) => s.message.type === 'generate');
    assert.ok(b.at - a.at >= 245, `second request left ${Math.round(b.at - a.at)} ms after the first`);
  });

  test('server errors arrive as error events with the protocol code, and the next input still runs', async () => {
    const { connection } = await open();
    const bad = connection.send({ prompt: 'too many steps', steps: 99 });
    const error = await nextEvent(connection, 'error');
    assert.ok(error instanceof RealtimeError);
    assert.equal(error.code, ErrorCode.InvalidSteps);
    assert.equal(error.requestId, bad);
    assert.equal(error.fromServer, true);
    const good = connection.send({ prompt: 'fine', steps: 1, width: 64, height: 64 });
    await nextEvent(connection, 'frame', (f) => f.id === good);
  });

  test('cancel: a waiting input is dropped locally, a running one is cancelled by the server', async () => {
    const { connection, log } = await open();
    const running = connection.send({ prompt: 'long', steps: 8, width: 1024, height: 1024 });
    const waiting = connection.send({ prompt: 'next', steps: 1 });
    assert.equal(connection.cancel(waiting), true);
    await nextEvent(connection, 'preview', (p) => p.id === running);
    assert.equal(connection.cancel(running), true);
    const ended = await finalEvent(connection, running);
    assert.equal(ended.event, 'cancelled', 'an 8-step 1024x1024 request is cancelled before it finishes');
    assert.equal(ended.value.local, false);
    assert.deepEqual(log.sent.map((s) => `${s.message.type}:${'id' in s.message ? s.message.id : ''}`), [`generate:${running}`, `cancel:${running}`]);
    assert.equal(connection.cancel(running), false, 'a settled id cannot be cancelled');
  });

  test('close() ends outstanding requests and refuses new ones', async () => {
    const { connection, events } = await open();
    const running = connection.send({ prompt: 'long', steps: 8, width: 512, height: 512 });
    const waiting = connection.send({ prompt: 'next', steps: 1 });
    await connection.close();
    assert.equal(connection.state, 'closed');
    const cancelled = events.filter(([name]) => name === 'cancelled').map(([, v]) => v);
    assert.deepEqual(cancelled.map((c) => [c.id, c.local]).sort(), [[running, true], [waiting, true]]);
    assert.throws(() => connection.send({ prompt: 'late' }), (err: RealtimeError) => err.code === 'closed');
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

describe('reconnecting to a restarted server', () => {
  let server: ServerProcess | undefined;
  let connection: RealtimeConnection | undefined;
  after(async () => {
    await connection?.close();
    await server?.stop();
  });

  test('the input in flight at the drop, then the newest unsent input, complete after restarts', async () => {
    // An explicit port from the start: uWS sets SO_REUSEADDR only for non-zero ports, and without
    // it on the first server its closed connections' TIME_WAIT would block the restart's bind.
    const port = await freePort();
    server = await startServerProcess(['--port', String(port)]);
    const opened = await openConnection(server.wsUrl, { reconnect: { baseDelayMs: 50, maxDelayMs: 400 } });
    connection = opened.connection;
    const { events, log } = opened;

    // 1. A long request is running when the server dies (a crash: a drain would finish it first):
    // it is resent to the new server.
    const long = connection.send({ prompt: 'long', steps: 8, width: 1024, height: 1024, seed: 5 });
    await nextEvent(connection, 'preview', (p) => p.id === long);
    const reconnecting = nextEvent(connection, 'state', (s) => s.state === 'reconnecting');
    const died = once(server.proc, 'exit');
    server.proc.kill('SIGKILL');
    await died;
    const { retryInMs } = await reconnecting;
    assert.ok(retryInMs !== undefined && retryInMs >= 0 && retryInMs <= 400, `retry in ${retryInMs} ms`);
    const lost = events.find(([name, v]) => name === 'error' && v.code === 'connection_lost');
    assert.ok(lost, 'a connection_lost error was emitted');
    assert.equal(connection.pending.queued, long, 'the request in flight waits to be resent');

    server = await startServerProcess(['--port', String(port)]);
    const resent = await nextEvent(connection, 'frame', (f) => f.id === long);
    assert.equal(resent.seed, 5);
    assert.equal(events.filter(([name]) => name === 'hello').length, 2, 'the frame came from the new server');
    assert.equal(sentGenerates(log).filter((m) => m.id === long).length, 2, 'sent once to each server');

    // 2. Inputs given while the server is down: only the newest is sent once it is back.
    await server.stop();
    await nextEvent(connection, 'state', (s) => s.state === 'reconnecting');
    const stale = connection.send({ prompt: 'stale', steps: 1, seed: 1 });
    const newest = connection.send({ prompt: 'newest', steps: 1, seed: 2 });
    server = await startServerProcess(['--port', String(port)]);
    const frame = await nextEvent(connection, 'frame', (f) => f.id === newest);
    assert.equal(frame.seed, 2);
    assert.ok(!sentGenerates(log).some((m) => m.id === stale), 'the replaced input never left the client');
    assert.equal(connection.state, 'open');
  });
});
