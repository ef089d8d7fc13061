// What fal's queue promises across failures, against the real server process: 20 queued jobs, the
// server killed with SIGKILL while they run, started again on the same data directory: all 20
// complete, their results are readable, and each one's webhook fires. And fal's realtime idle
// TIMEOUT: the client ignores it and reconnects on its next send, as it does against fal.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DATABASE_FILE } from '../server/queue/job-store.js';
import { openDatabase } from '../server/queue/sqlite-driver.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { FAL_ENV, FAL_KEY, falClientFor, startHookReceiver, waitFor } from './helpers/fal-server.js';

const APP = 'fal-ai/fast-lcm-diffusion';
type Result = Record<string, any>;

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function queueApi(base: string, method: string, pathname: string, body?: unknown): Promise<{ status: number; json: Result }> {
  const response = await fetch(`${base}/queue/${APP}${pathname}`, {
    method,
    headers: { authorization: `Key ${FAL_KEY}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: response.status, json: (await response.json()) as Result };
}

describe('the queue survives SIGKILL', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'rd-fal-crash-'));
  let server: ServerProcess | undefined;
  after(async () => {
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('20 jobs, a SIGKILL while they run, a restart: all complete, readable, webhooks fired', async (t) => {
    const receiver = await startHookReceiver();
    try {
      // One job at a time, so that most are still queued or running when the kill comes; the same
      // port after the restart, as a real deployment has, since result URLs name it.
      const args = ['--data-dir', dataDir, '--max-batch', '2', '--port', String(await freePort())];
      server = await startServerProcess(args, { env: FAL_ENV });
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const submitted = await queueApi(server.httpUrl, 'POST', `?fal_webhook=${encodeURIComponent(receiver.url)}`, { prompt: `job ${i}`, num_inference_steps: 8, seed: i });
        assert.equal(submitted.status, 200, JSON.stringify(submitted.json));
        ids.push(submitted.json.request_id);
      }
      const statusOf = async (base: string, id: string) => (await queueApi(base, 'GET', `/requests/${id}/status`)).json.status as string;
      // Kill while work is in flight: at least one running, most not yet done.
      await waitFor(async () => ((await Promise.all(ids.map((id) => statusOf(server!.httpUrl, id)))).includes('IN_PROGRESS') ? true : undefined), 30_000, 'a job in progress');
      const before = await Promise.all(ids.map((id) => statusOf(server!.httpUrl, id)));
      server.proc.kill('SIGKILL');
      await new Promise((resolve) => server!.proc.once('exit', resolve));
      assert.ok(before.filter((s) => s !== 'COMPLETED').length >= 10, `most jobs were still open at the kill (${before.join(',')})`);
      // What the kill left running, read from the file itself: a job may finish, and the next one
      // not yet be claimed, in the moment between the status poll above and the kill.
      const db = openDatabase(path.join(dataDir, DATABASE_FILE));
      const running = Number(db.prepare("SELECT COUNT(*) AS n FROM jobs WHERE status = 'running'").get()?.n);
      db.close();
      t.diagnostic(`${running} job(s) running at the kill; statuses just before it: ${before.join(',')}`);

      server = await startServerProcess(args, { env: FAL_ENV });
      const requeued = server.logs.find((l) => l.msg === 'queued jobs that were running when the server stopped are queued again');
      assert.equal(requeued?.jobs ?? 0, running, 'the restart puts back exactly the jobs the kill left running, and says so');
      const base = server.httpUrl;
      await waitFor(async () => ((await Promise.all(ids.map((id) => statusOf(base, id)))).every((s) => s === 'COMPLETED') ? true : undefined), 90_000, 'all 20 jobs to complete');
      for (const [i, id] of ids.entries()) {
        const result = await queueApi(base, 'GET', `/requests/${id}`);
        assert.equal(result.status, 200, `job ${i}: ${JSON.stringify(result.json)}`);
        assert.equal(result.json.seed, i);
        const image = await fetch(result.json.images[0].url);
        assert.equal(image.status, 200);
      }
      // At least once: every job's webhook arrived (a delivery cut by the kill may come twice).
      await waitFor(() => (ids.every((id) => receiver.hooks.some((h) => h.headers['x-fal-webhook-request-id'] === id)) ? true : undefined), 30_000, 'every webhook');
      for (const hook of receiver.hooks) assert.equal(JSON.parse(hook.body).status, 'OK');
    } finally {
      await receiver.close();
    }
  });
});

describe('fal realtime idle timeout', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess(['--session-idle-timeout', '2'], { env: FAL_ENV });
  });
  after(async () => {
    await server?.stop();
  });

  test('TIMEOUT and a normal close are silent; the next send reconnects and gets its result', async () => {
    const { fal, uninstall } = falClientFor(server.httpUrl);
    try {
      const results: Result[] = [];
      const errors: Error[] = [];
      const connection = fal.realtime.connect('fal-ai/fast-turbo-diffusion', {
        throttleInterval: 0,
        onResult: (r: Result) => results.push(r),
        onError: (e: Error) => errors.push(e),
      });
      connection.send({ prompt: 'first', num_inference_steps: 1, request_id: 'before-idle' });
      await waitFor(() => results.find((r) => r.request_id === 'before-idle'), 30_000, 'the first result');
      // The sweep closes within a second of the timeout.
      await waitFor(async () => {
        const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
        return /realtime_closes_total\{reason="idle"\} [1-9]/.test(metrics) ? true : undefined;
      }, 10_000, 'the idle close');
      connection.send({ prompt: 'second', num_inference_steps: 1, request_id: 'after-idle' });
      await waitFor(() => results.find((r) => r.request_id === 'after-idle'), 30_000, 'a result after reconnecting');
      connection.close();
      assert.deepEqual(errors.map((e) => e.message), [], 'TIMEOUT and the 1000 close reach no onError');
    } finally {
      uninstall();
    }
  });
});
