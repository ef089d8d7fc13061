// The client SDK against the real server's recovery paths, with no help from the app: a request
// whose inference process is killed completes after the restart, and a session on a draining
// server moves to the next server and finishes its newest input there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import WebSocket from 'ws';
import { connect } from '../client/index.js';
import { startServerProcess } from './helpers/server-process.js';
import { finalEvent, nextEvent, recordEvents } from './helpers/sdk.js';

test('the inference process killed under a request: the SDK resends it and the frame arrives', { timeout: 60_000 }, async () => {
  const server = await startServerProcess();
  const connection = connect(server.wsUrl, { WebSocket });
  try {
    const events = recordEvents(connection);
    await nextEvent(connection, 'hello');
    const id = connection.send({ prompt: 'a blue square', steps: 8, width: 1024, height: 1024, seed: 9 });
    await nextEvent(connection, 'preview', (p) => p.id === id);
    const enginePid = server.logs.find((e) => e.msg === 'inference process started')?.enginePid as number;
    process.kill(enginePid, 'SIGKILL');
    const ending = await finalEvent(connection, id, 40_000);
    assert.equal(ending.event, 'frame', `ended with ${ending.event}: ${ending.value?.message ?? ''}`);
    assert.equal(ending.value.seed, 9);
    const retried = events.filter(([name, v]) => name === 'retrying' && v.id === id);
    assert.ok(retried.length >= 1, 'the SDK reported the retry');
    assert.equal(events.filter(([name]) => name === 'error').length, 0, 'no error reached the app');
    assert.equal(events.filter(([name]) => name === 'hello').length, 1, 'the same connection carried on');
  } finally {
    await connection.close();
    await server.stop();
  }
});

test('a drain moves an SDK session to the next server without an error, and its newest input completes there', { timeout: 60_000 }, async () => {
  // The same port for both servers stands in for a balancer's one URL.
  const port = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(p));
    });
  });
  let server = await startServerProcess(['--port', String(port)]);
  const connection = connect(server.wsUrl, { WebSocket, reconnect: { baseDelayMs: 2000, maxDelayMs: 5000 } });
  try {
    const events = recordEvents(connection);
    await nextEvent(connection, 'hello');
    const running = connection.send({ prompt: 'a red circle', steps: 8, width: 1024, height: 1024, seed: 1 });
    await nextEvent(connection, 'preview', (p) => p.id === running);
    const goingAway = nextEvent(connection, 'going_away');
    const first = server;
    first.proc.kill('SIGTERM');
    const finished = await finalEvent(connection, running);
    assert.equal(finished.event, 'frame', 'the request running at the signal was delivered by the draining server');
    await goingAway;
    const next = connection.send({ prompt: 'a green star', steps: 2, seed: 2 });
    await new Promise((resolve) => first.proc.once('exit', resolve));
    server = await startServerProcess(['--port', String(port)]);
    const t0 = performance.now();
    const ending = await finalEvent(connection, next, 20_000);
    assert.equal(ending.event, 'frame');
    assert.equal(ending.value.seed, 2);
    // While no server listens the SDK reports refused attempts (connection_refused); nothing else.
    const errors = events.filter(([name]) => name === 'error').map(([, e]) => e.code);
    assert.deepEqual(errors.filter((code) => code !== 'connection_refused'), [], 'a drain is not an error');
    assert.equal(events.filter(([name]) => name === 'hello').length, 2);
    // Reconnect attempts follow the server's Retry-After and going_away hints, not the 2-5 s backoff.
    assert.ok(performance.now() - t0 < 2500, `frame ${Math.round(performance.now() - t0)} ms after the next server was ready`);
  } finally {
    await connection.close();
    await server.stop();
  }
});
