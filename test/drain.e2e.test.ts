// Graceful drain on SIGTERM/SIGINT, against the real server process: every request open at the
// signal is answered, then `going_away` and close 1001, and the process exits 0. Repeated, because
// the old shutdown aborted (SIGABRT) in about two runs of three.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import WebSocket from 'ws';
import { CloseCode, ErrorCode, type ServerMessage } from '../shared/protocol.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';

const RUNS = 20;
const FINAL = new Set(['frame', 'superseded', 'skipped', 'cancelled', 'error']);

function exitOf(server: ServerProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const { proc } = server;
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  return once(proc, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
}

/** Final replies per request id, and whether `going_away` came after all of them. */
function audit(client: TestClient, ids: string[]) {
  const finals = new Map<string, ServerMessage[]>();
  for (const id of ids) finals.set(id, []);
  let goingAwayIndex = -1;
  client.messages.forEach((m, i) => {
    if (m.type === 'going_away') goingAwayIndex = i;
    if ('id' in m && m.id !== undefined && FINAL.has(m.type)) finals.get(String(m.id))?.push(m);
  });
  const lastFinal = Math.max(...client.messages.map((m, i) => ('id' in m && FINAL.has(m.type) ? i : -1)));
  return { finals, goingAwayAfterFinals: goingAwayIndex > lastFinal };
}

test(`SIGTERM with sessions streaming, ${RUNS} times: every open request answered, going_away, 1001, exit 0`, { timeout: 240_000 }, async () => {
  for (let run = 0; run < RUNS; run++) {
    // --max-size 512 only shortens each start's warm-up; the requests below stay within it.
    const server = await startServerProcess(['--max-size', '512']);
    const clients = await Promise.all([0, 1, 2].map(async () => (await TestClient.connect(server.wsUrl)).client));
    const sent = clients.map(() => [] as string[]);
    // Closed-loop streams for a moment, then a running and a pending request on every connection.
    await Promise.all(clients.map(async (client, c) => {
      for (let k = 0; k < 2; k++) {
        const id = `warm-${c}-${k}`;
        sent[c].push(id);
        client.send({ type: 'generate', id, prompt: 'a red circle on a blue background', steps: 2 });
        await client.untilSettled(id);
      }
    }));
    clients.forEach((client, c) => {
      for (const k of ['running', 'pending']) {
        const id = `${k}-${c}`;
        sent[c].push(id);
        client.send({ type: 'generate', id, prompt: 'a big green star', steps: 4, width: 512, height: 512 });
      }
    });
    // Let the first of them reach the inference process before the signal.
    await clients[0].next((m) => m.type === 'preview');
    const exited = exitOf(server);
    server.proc.kill(run % 2 === 0 ? 'SIGTERM' : 'SIGINT');
    const closes = clients.map((client) => (client.closeCode !== undefined ? Promise.resolve() : once(client.ws, 'close')));
    await Promise.all(closes);
    const { code, signal } = await exited;
    assert.equal(signal, null, `run ${run}: killed by ${signal}`);
    assert.equal(code, 0, `run ${run}: exit code ${code}`);
    clients.forEach((client, c) => {
      const { finals, goingAwayAfterFinals } = audit(client, sent[c]);
      for (const [id, replies] of finals) {
        assert.equal(replies.length, 1, `run ${run}: ${id} got ${replies.length} final replies: ${client.summary()}`);
        // Latest wins: the first of the two may still have been pending when the second arrived.
        const allowed = id === `running-${c}` ? ['frame', 'superseded'] : ['frame'];
        assert.ok(allowed.includes(replies[0].type), `run ${run}: ${id} ended with ${client.summary()}`);
      }
      assert.ok(goingAwayAfterFinals, `run ${run}: going_away must follow every frame: ${client.summary()}`);
      assert.equal(client.closeCode, CloseCode.GoingAway, `run ${run}: close code`);
    });
  }
});

test('while draining: /readyz 503, upgrades 503 + Retry-After, new requests shutting_down', { timeout: 60_000 }, async () => {
  // A long request keeps the drain open while we look.
  const { server, client, exited } = await drainingWithLongRequest();

  const ready = await fetch(`${server.httpUrl}/readyz`);
  assert.equal(ready.status, 503);
  assert.deepEqual(await ready.json(), { status: 'draining' });
  assert.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200, 'a draining server is alive');

  const refused = await new Promise<{ status: number; retryAfter: string | undefined }>((resolve, reject) => {
    const ws = new WebSocket(server.wsUrl);
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined });
      ws.terminate();
    });
    ws.on('open', () => reject(new Error('upgrade accepted while draining')));
    ws.on('error', () => {});
  });
  assert.deepEqual(refused, { status: 503, retryAfter: '1' });

  client.send({ type: 'generate', id: 'late', prompt: 'a red ring' });
  const late = await client.untilSettled('late');
  assert.equal(late.length, 1);
  assert.equal(late[0].type, 'error');
  assert.equal(late[0].type === 'error' && late[0].code, ErrorCode.ShuttingDown);
  assert.ok(late[0].type === 'error' && (late[0].retryAfterMs ?? 0) > 0);

  const long = await client.untilSettled('long', 60_000);
  assert.equal(long.at(-1)?.type, 'frame', client.summary());
  assert.equal((await exited).code, 0);
  assert.equal(client.closeCode, CloseCode.GoingAway);
});

test('a drain that runs out of time answers shutting_down, then going_away, and still exits 0', { timeout: 60_000 }, async () => {
  // One request at a time in the engine and four long ones left to run after latest-wins (each connection's
  // `a` is superseded by its `b`): 128 steps at 1024x1024, about 8 s on 2 cores, so a one-second drain
  // cuts some short on any machine the tests run on.
  const server = await startServerProcess(['--drain-timeout', '1', '--max-batch', '1', '--max-steps', '32']);
  const clients = await Promise.all([0, 1, 2, 3].map(async () => (await TestClient.connect(server.wsUrl)).client));
  const ids = clients.map((client, c) => ['a', 'b'].map((k) => {
    const id = `${k}-${c}`;
    client.send({ type: 'generate', id, prompt: 'a blue square', steps: 32, width: 1024, height: 1024 });
    return id;
  }));
  await clients[0].next((m) => m.type === 'preview');
  const started = performance.now();
  const exited = exitOf(server);
  server.proc.kill('SIGTERM');
  const { code } = await exited;
  const ms = performance.now() - started;
  assert.equal(code, 0);
  assert.ok(ms < 5000, `exit took ${ms.toFixed(0)} ms with --drain-timeout 1`);
  let shuttingDown = 0;
  clients.forEach((client, c) => {
    const { finals } = audit(client, ids[c]);
    for (const [id, replies] of finals) {
      assert.equal(replies.length, 1, `${id}: ${client.summary()}`);
      if (replies[0].type === 'error' && replies[0].code === ErrorCode.ShuttingDown) shuttingDown++;
      // Latest wins: a request replaced by the same connection's newer one is answered superseded.
      else assert.ok(['frame', 'superseded'].includes(replies[0].type), client.summary());
    }
    assert.equal(client.messages.at(-1)?.type, 'going_away', client.summary());
  });
  assert.ok(shuttingDown >= 1, 'the timeout cut at least one request short');
});

test('a second signal exits at once', { timeout: 60_000 }, async () => {
  const { server, exited } = await drainingWithLongRequest();
  const started = performance.now();
  server.proc.kill('SIGTERM');
  const { code, signal } = await exited;
  assert.equal(signal, null);
  assert.equal(code, 128 + 15);
  assert.ok(performance.now() - started < 2000);
});

/** A server draining after SIGTERM while one session's 1024x1024, 8-step request is still running. */
async function drainingWithLongRequest() {
  const server = await startServerProcess();
  const { client } = await TestClient.connect(server.wsUrl);
  client.send({ type: 'generate', id: 'long', prompt: 'a blue square', steps: 8, width: 1024, height: 1024 });
  await client.next((m) => m.type === 'preview');
  const exited = exitOf(server);
  server.proc.kill('SIGTERM');
  await waitForLog(server, 'draining: finishing accepted requests');
  return { server, client, exited };
}

async function waitForLog(server: ServerProcess, msg: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!server.logs.some((entry) => entry.msg === msg)) {
    if (performance.now() > deadline) throw new Error(`no "${msg}" log line in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
