// Capacity a balancer can see: a node at --max-sessions answers /readyz 503 "full" (and /v1/load
// says so) while it keeps serving its sessions, and 200 again once a session leaves.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';
import { waitFor } from './helpers/fal-server.js';

let server: ServerProcess;
before(async () => {
  server = await startServerProcess(['--max-sessions', '2']);
});
after(async () => {
  await server?.stop();
});

const readyz = async () => {
  const response = await fetch(`${server.httpUrl}/readyz`);
  return { status: response.status, body: (await response.json()) as { status: string } };
};
const load = async () => (await (await fetch(`${server.httpUrl}/v1/load`)).json()) as Record<string, unknown>;

test('a full node reports itself full until a session leaves, and keeps serving meanwhile', async () => {
  assert.deepEqual(await readyz(), { status: 200, body: { status: 'ready' } });
  assert.deepEqual(await load(), { state: 'ready', sessions: 0, maxSessions: 2, waiting: 0, fullQueue: 64, pendingRequests: 0, backgroundJobs: 0, full: false });

  const first = await TestClient.connect(server.wsUrl);
  const second = await TestClient.connect(server.wsUrl);
  assert.deepEqual(await readyz(), { status: 503, body: { status: 'full' } });
  assert.equal((await load()).full, true);
  await assert.rejects(TestClient.connect(server.wsUrl), /503/);

  second.client.send({ type: 'generate', id: 1, prompt: 'a red circle', steps: 2 });
  assert.equal((await second.client.next((m) => m.type === 'frame')).type, 'frame', 'a full node still serves its sessions');

  await first.client.close();
  await waitFor(async () => ((await readyz()).status === 200 ? true : undefined), 5000, 'readyz 200 again');
  assert.deepEqual(await load(), { state: 'ready', sessions: 1, maxSessions: 2, waiting: 0, fullQueue: 64, pendingRequests: 0, backgroundJobs: 0, full: false });
  await second.client.close();

  const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
  assert.match(metrics, /^realtime_max_sessions 2$/m);
  assert.match(metrics, /^realtime_full 0$/m);
});
