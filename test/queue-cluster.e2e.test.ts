// fal's queue shared by three nodes behind nginx on a real redis-server: 50 jobs submitted through
// nginx, the node running the most of them killed with SIGKILL mid-run: every job completes (its
// lost runs taken over by another node once its lock lapses), each client sees one result per job,
// readable through any node, and every job's webhook fires. A file uploaded through fal's storage
// API on one node is taken and read by the others. Without nginx or redis-server: fails when
// CI=true, otherwise skips loudly.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { nginxMissing, startCluster, type Cluster } from '../bench/cluster/launcher.js';
import { redisMissing, startRedis, type RedisServer } from './helpers/redis-server.js';
import { cameraFrame, falReceiverVerifies, fetchWebhookKeys, startHookReceiver, waitFor, WEBHOOK_SECRET } from './helpers/fal-server.js';

const CI = process.env.CI === 'true';
const missing = nginxMissing() ?? redisMissing();
if (missing && !CI) console.warn(`\n!!! SKIPPING the shared queue cluster test: ${missing}\n`);
if (missing && CI) test('nginx and redis-server are installed (required when CI=true)', () => assert.fail(missing));

const APP = 'fal-ai/fast-lcm-diffusion';
const JOBS = 50;
type Result = Record<string, any>;

describe('fal queue on Redis across three nodes behind nginx', { skip: missing ?? false }, () => {
  let redis: RedisServer;
  let cluster: Cluster;
  before(async () => {
    redis = await startRedis();
    // A node silent for 2 s loses its running jobs: the kill below is noticed in seconds.
    cluster = await startCluster({ nodes: 3, args: ['--queue', redis.url, '--queue-lock', '2'], env: { WEBHOOK_SECRET } });
  });
  after(async () => {
    await cluster?.stop();
    await redis?.stop();
  });

  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Result }> => {
    const response = await fetch(`${cluster.url}/queue/${APP}${path}`, {
      method,
      headers: { authorization: `Key ${cluster.apiKey}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: response.status, json: (await response.json()) as Result };
  };

  test('an upload initiated on one node is taken by another and read by the third, and a job on any node uses it', async () => {
    const [a, b, c] = cluster.nodes.map((n) => n.httpUrl);
    const headers = { authorization: `Key ${cluster.apiKey}`, 'content-type': 'application/json' };
    const initiated = await fetch(`${a}/storage/upload/initiate`, { method: 'POST', headers, body: JSON.stringify({ content_type: 'image/jpeg', file_name: 'frame.jpg' }) });
    assert.equal(initiated.status, 200);
    const { upload_url: uploadUrl, file_url: fileUrl } = (await initiated.json()) as Result;
    const frame = await cameraFrame();
    // Signed with the pool's shared TOKEN_SECRET, stored in the shared Redis.
    const put = await fetch(uploadUrl.replace(a, b), { method: 'PUT', headers: { 'content-type': 'image/jpeg' }, body: new Blob([new Uint8Array(frame)]) });
    assert.equal(put.status, 200);
    assert.deepEqual(Buffer.from(await (await fetch(fileUrl.replace(a, c))).arrayBuffer()), frame);
    const submitted = await fetch(`${cluster.url}/queue/fal-ai/fast-turbo-diffusion/image-to-image`, {
      method: 'POST', headers, body: JSON.stringify({ prompt: 'a garden', image_url: fileUrl, strength: 0.6, num_inference_steps: 2 }),
    });
    assert.equal(submitted.status, 200);
    const { request_id: id } = (await submitted.json()) as Result;
    const done = await waitFor(async () => {
      const status = (await (await fetch(`${cluster.url}/queue/fal-ai/fast-turbo-diffusion/requests/${id}/status`, { headers })).json()) as Result;
      return status.status === 'COMPLETED' ? status : undefined;
    }, 30_000, 'the job with the uploaded image');
    assert.equal(done.error, undefined, JSON.stringify(done));
  });

  test('50 jobs, SIGKILL of a node running them: all complete once, results readable everywhere, webhooks fire', async () => {
    const receiver = await startHookReceiver();
    try {
      const ids: string[] = [];
      for (let i = 0; i < JOBS; i++) {
        const submitted = await api('POST', `?fal_webhook=${encodeURIComponent(receiver.url)}`, { prompt: `job ${i}`, num_inference_steps: 4, seed: i });
        assert.equal(submitted.status, 200, JSON.stringify(submitted.json));
        ids.push(submitted.json.request_id);
      }
      // The victim: a node with queued jobs running on it right now.
      const victim = await waitFor(async () => {
        const loads = await Promise.all(cluster.nodes.map((n) => cluster.load(n.index)));
        const busiest = loads.map((l, i) => ({ i, jobs: l?.backgroundJobs ?? 0 })).sort((a, b) => b.jobs - a.jobs)[0];
        return busiest.jobs > 0 ? busiest.i : undefined;
      }, 30_000, 'a node running queued jobs');
      const statuses = async () => Promise.all(ids.map(async (id) => (await api('GET', `/requests/${id}/status`)).json.status as string));
      const exit = await cluster.killNode(victim);
      assert.equal(exit.signal, 'SIGKILL');
      const open = (await statuses()).filter((s) => s !== 'COMPLETED').length;
      assert.ok(open >= 10, `most jobs were still open at the kill (${open} of ${JOBS})`);
      await waitFor(async () => ((await statuses()).every((s) => s === 'COMPLETED') ? true : undefined), 120_000, `all ${JOBS} jobs to complete`);
      for (const [i, id] of ids.entries()) {
        const result = await api('GET', `/requests/${id}`);
        assert.equal(result.status, 200, `job ${i}: ${JSON.stringify(result.json)}`);
        assert.equal(result.json.seed, i, 'the result is this job\'s');
        assert.equal(result.json.images.length, 1);
        // The image is served by whichever node answers: result files live in Redis.
        for (const node of cluster.nodes.filter((n) => n.index !== victim)) {
          const file = new URL(result.json.images[0].url);
          const image = await fetch(`${node.httpUrl}${file.pathname}`);
          assert.equal(image.status, 200, `job ${i}'s image from node ${node.index}`);
        }
      }
      // Webhooks: at least once each (a delivery cut by the kill may come twice), all signed.
      await waitFor(() => (ids.every((id) => receiver.hooks.some((h) => h.headers['x-fal-webhook-request-id'] === id)) ? true : undefined), 60_000, 'every webhook');
      // Every node signs with the key the shared secret gives, so any node's JWKS verifies them all.
      const keySets = await Promise.all(cluster.nodes.filter((n) => n.index !== victim).map((n) => fetchWebhookKeys(n.httpUrl)));
      assert.deepEqual(keySets[1], keySets[0], 'one public key across the nodes');
      for (const hook of receiver.hooks) {
        assert.ok(falReceiverVerifies(keySets[0]!, hook.headers, hook.body));
        assert.equal(JSON.parse(hook.body).status, 'OK');
      }
      const survivors = await Promise.all(cluster.nodes.filter((n) => n.index !== victim).map((n) => fetch(`${n.httpUrl}/metrics`).then((r) => r.text())));
      const completed = survivors.map((text) => Number(text.match(/^fal_queue_jobs_total\{outcome="completed"\} (\S+)$/m)?.[1] ?? 0));
      assert.ok(completed.every((n) => n > 0), `both surviving nodes ran jobs (${completed.join(', ')})`);
    } finally {
      await receiver.close();
    }
  });
});
