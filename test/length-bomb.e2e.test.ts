// The 21-byte message that froze the server: an array32 header claiming 33,554,432 elements. Sent 20
// times a second by a client that reconnects whenever it is closed, it must neither starve a
// well-behaved session nor /healthz, and each of the attacker's connections must end with 4002.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { decodeMessage } from '../shared/codec.js';
import { CloseCode, ErrorCode, type ServerMessage } from '../shared/protocol.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';

const BOMB = Uint8Array.from([0xdd, 0x02, 0x00, 0x00, 0x00, ...new Array(16).fill(0)]);
const BOMBS_PER_SECOND = 20;
const WINDOW_MS = 3000;

let server: ServerProcess;
before(async () => {
  // Frames come faster than the default 60 requests/s allow at this size: rate limiting is not what this measures.
  server = await startServerProcess(['--rate-limit', '1000']);
});
after(() => server?.stop());

/** Runs `loop` until stopped; its failure surfaces from stop(), not as an unhandled rejection. */
function background(loop: (running: () => boolean) => Promise<void>): () => Promise<void> {
  let running = true;
  let failure: unknown;
  const done = loop(() => running).catch((err) => {
    failure = err;
    running = false;
  });
  return async () => {
    running = false;
    await done;
    if (failure) throw failure;
  };
}

/** Sends generates back to back, each after the previous frame, and records when frames arrive. */
function streamFrames(client: TestClient) {
  const frames: number[] = [];
  const stop = background(async (running) => {
    for (let n = 0; running(); n++) {
      client.send({ type: 'generate', id: `good-${n}`, prompt: 'a green triangle', steps: 2 });
      const last = (await client.untilSettled(`good-${n}`, 20_000)).at(-1);
      assert.equal(last?.type, 'frame', client.summary().slice(-300));
      frames.push(performance.now());
    }
  });
  return { rate: (from: number, to: number) => (frames.filter((t) => t >= from && t < to).length * 1000) / (to - from), stop };
}

interface AttackConnection {
  bombs: number;
  errors: number;
  closeCode?: number;
  reason?: string;
}

/** Bombs at a steady rate; every time the server closes the socket, connects again and goes on. */
function attack(url: string) {
  const connections: AttackConnection[] = [];
  const stop = background(async (running) => {
    while (running()) {
      const ws = new WebSocket(url);
      const stats: AttackConnection = { bombs: 0, errors: 0 };
      connections.push(stats);
      ws.on('message', (data: Buffer) => {
        const message = decodeMessage(data) as ServerMessage;
        if (message.type === 'error' && message.code === ErrorCode.BadMessage) stats.errors++;
      });
      const closed = new Promise<void>((resolve) => {
        ws.on('close', (code, reason) => {
          stats.closeCode = code;
          stats.reason = reason.toString();
          resolve();
        });
        ws.on('error', () => resolve());
      });
      const timer = setInterval(() => {
        if (!running()) ws.close();
        else if (ws.readyState === WebSocket.OPEN) {
          ws.send(BOMB);
          stats.bombs++;
        }
      }, 1000 / BOMBS_PER_SECOND);
      await closed;
      clearInterval(timer);
    }
  });
  return { connections, stop };
}

/** Polls /healthz every 100 ms, recording how long each answer took. */
function pollHealth(url: string) {
  const latencies: number[] = [];
  const stop = background(async (running) => {
    while (running()) {
      const t0 = performance.now();
      const res = await fetch(`${url}/healthz`);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      latencies.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  return { latencies, stop };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test(`${BOMBS_PER_SECOND} length bombs a second: the good session keeps >= 70% of its frame rate, the attacker is closed with 4002`, { timeout: 60_000 }, async (t) => {
  const { client, hello } = await TestClient.connect(server.wsUrl);
  const limit = hello.limits.maxBadMessagesPerMinute;
  const good = streamFrames(client);
  await sleep(500); // first frames pay for caches and the JIT
  const t0 = performance.now();
  await sleep(WINDOW_MS);
  const t1 = performance.now();

  const attacker = attack(server.wsUrl);
  const health = pollHealth(server.httpUrl);
  await sleep(WINDOW_MS + 1000);
  const t2 = performance.now();
  await Promise.all([health.stop(), attacker.stop()]);
  const { latencies } = health;
  const t3 = performance.now();
  // A baseline on both sides of the attack, so a neighbour's load that comes or goes is not blamed on it.
  await sleep(WINDOW_MS);
  const t4 = performance.now();
  await good.stop();
  await client.close();

  const before = good.rate(t0, t1);
  const during = good.rate(t1, t2);
  const afterwards = good.rate(t3, t4);
  const baseline = (before + afterwards) / 2;
  const slowestHealth = Math.max(...latencies);
  const { connections } = attacker;
  const bombs = connections.reduce((a, c) => a + c.bombs, 0);
  t.diagnostic(
    `good session: ${before.toFixed(1)} frames/s before, ${during.toFixed(1)} during, ${afterwards.toFixed(1)} after; ` +
      `${bombs} bombs over ${connections.length} connections; slowest /healthz ${slowestHealth.toFixed(0)} ms of ${latencies.length}`,
  );

  assert.ok(before > 0 && afterwards > 0, 'the good session streamed');
  assert.ok(during >= 0.7 * baseline, `frames/s fell from ${baseline.toFixed(1)} to ${during.toFixed(1)}`);
  assert.ok(slowestHealth < 1000, `slowest /healthz took ${slowestHealth.toFixed(0)} ms`);
  assert.ok(bombs >= BOMBS_PER_SECOND * (WINDOW_MS / 1000) * 0.8, `only ${bombs} bombs sent`);

  // Every connection the server ended got error replies first, and ended with 4002 at the limit.
  const ended = connections.filter((c) => c.closeCode === CloseCode.TooManyBadMessages);
  assert.ok(ended.length >= 2, `closes: ${connections.map((c) => c.closeCode).join(', ')}`);
  for (const c of connections.slice(0, -1)) {
    assert.equal(c.closeCode, CloseCode.TooManyBadMessages, `a connection closed with ${c.closeCode}`);
    assert.equal(c.reason, 'too many bad messages');
    assert.ok(c.errors >= limit && c.errors <= limit + 1, `${c.errors} error replies before the close (limit ${limit})`);
  }
  const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
  assert.match(metrics, new RegExp(`realtime_closes_total\\{reason="bad_messages"\\} ${ended.length}\\b`));
});
