// Crash-only recovery, against the real server process: the inference process killed in the middle
// of a request, a model that cannot be loaded again, a model that cannot be loaded at start, and a
// model exported with fixed shapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeTinyModel } from '../scripts/tiny-model.js';
import { DEFAULT_MODEL_DIR } from '../server/config.js';
import { ErrorCode } from '../shared/protocol.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';

function enginePids(server: ServerProcess): number[] {
  return server.logs.filter((e) => e.msg === 'inference process started').map((e) => e.enginePid as number);
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('the inference process killed mid-request: the server survives, the request fails retryably, a resend completes', { timeout: 60_000 }, async () => {
  const server = await startServerProcess();
  try {
    const [first] = enginePids(server);
    assert.ok(first && isAlive(first), 'the server logs its inference process');
    const { client } = await TestClient.connect(server.wsUrl);
    const { client: bystander } = await TestClient.connect(server.wsUrl);
    client.send({ type: 'generate', id: 'doomed', prompt: 'a blue square', steps: 8, width: 1024, height: 1024 });
    bystander.send({ type: 'generate', id: 'bystander', prompt: 'a red circle', steps: 8, width: 512, height: 512 });
    await client.next((m) => m.type === 'preview' && m.id === 'doomed');
    process.kill(first, 'SIGKILL');

    const doomed = (await client.untilSettled('doomed')).at(-1)!;
    assert.equal(doomed.type, 'error', client.summary());
    assert.equal(doomed.type === 'error' && doomed.code, ErrorCode.EngineRestarted);
    assert.ok(doomed.type === 'error' && (doomed.retryAfterMs ?? 0) > 0);
    // The other session's request either finished before the kill or failed the same way: once.
    const other = (await bystander.untilSettled('bystander')).filter((m) => m.type === 'frame' || m.type === 'error');
    assert.equal(other.length, 1, bystander.summary());
    assert.ok(other[0].type === 'frame' || other[0].code === ErrorCode.EngineRestarted, bystander.summary());
    assert.equal(server.proc.exitCode, null, 'the server process is still running');
    assert.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200);

    // While the model reloads a request is refused with not_ready; once /readyz is 200 it runs.
    await until('a restarted inference process', () => enginePids(server).length === 2);
    await until('/readyz 200 again', async () => (await fetch(`${server.httpUrl}/readyz`)).status === 200);
    client.send({ type: 'generate', id: 'again', prompt: 'a blue square', steps: 2 });
    const again = await client.untilSettled('again');
    assert.equal(again.at(-1)?.type, 'frame', client.summary());
    assert.ok(server.logs.some((e) => e.msg === 'inference process exited; restarting' && e.signal === 'SIGKILL' && Number(e.jobsFailed) >= 1));
    const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
    assert.match(metrics, /^realtime_engine_restarts_total 1$/m);
    await client.close();
    await bystander.close();
  } finally {
    await server.stop();
  }
});

test('a model that cannot be loaded again: every attempt logged, /healthz fails, exit 1', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'rds-reload-'));
  try {
    await cp(DEFAULT_MODEL_DIR, dir, { recursive: true });
    const server = await startServerProcess(['--model', dir, '--engine-restarts', '2']);
    const exited = once(server.proc, 'exit');
    // The file is replaced on disk (a botched deploy), then the inference process dies.
    await writeFile(path.join(dir, 'unet', 'model.onnx'), 'not an onnx model');
    process.kill(enginePids(server)[0], 'SIGKILL');
    await until('/healthz 503 or exit', async () => {
      if (server.proc.exitCode !== null) return true;
      try {
        return (await fetch(`${server.httpUrl}/healthz`)).status === 503;
      } catch {
        return true; // gone already
      }
    });
    const [code, signal] = await exited;
    assert.equal(signal, null, 'no native abort');
    assert.equal(code, 1);
    assert.equal(server.logs.filter((e) => e.msg === 'model reload failed').length, 2);
    assert.equal(server.logs.filter((e) => e.msg === 'inference process exited; restarting').length, 2);
    assert.ok(server.logs.some((e) => e.msg === 'exiting: the inference engine is gone'));
    for (const pid of enginePids(server)) assert.ok(!isAlive(pid), `inference process ${pid} left behind`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a model that cannot load at start: exit 1 with the reason, no native abort', { timeout: 30_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'rds-broken-'));
  try {
    await cp(DEFAULT_MODEL_DIR, dir, { recursive: true });
    await writeFile(path.join(dir, 'unet', 'model.onnx'), 'not an onnx model');
    for (let run = 0; run < 3; run++) {
      const server = await startServerProcess(['--model', dir], { waitReady: false });
      const [code, signal] = await once(server.proc, 'exit');
      assert.equal(signal, null);
      assert.equal(code, 1);
      const failed = server.logs.find((e) => e.msg === 'model failed to load');
      assert.match(String(failed?.err), /unet: cannot load/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a UNet exported with fixed shapes: served at its one size and batch, other sizes refused up front', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'rds-fixed-'));
  await writeTinyModel(dir, { fixedUnetShape: true });
  const server = await startServerProcess(['--model', dir]);
  try {
    const { client, hello } = await TestClient.connect(server.wsUrl);
    assert.deepEqual(hello.model.fixedSize, { width: 256, height: 256 });
    client.send({ type: 'generate', id: 'other-size', prompt: 'x', width: 512, height: 512 });
    const refused = (await client.untilSettled('other-size')).at(-1)!;
    assert.equal(refused.type === 'error' && refused.code, ErrorCode.InvalidSize);
    assert.match(refused.type === 'error' ? refused.message : '', /fixed shapes and serves 256x256 only/);
    // Batch 1 only: four sessions at once are stepped one by one instead of failing together.
    const others = await Promise.all([0, 1, 2].map(async () => (await TestClient.connect(server.wsUrl)).client));
    const all = [client, ...others];
    all.forEach((c, i) => c.send({ type: 'generate', id: `ok-${i}`, prompt: 'a red circle', steps: 2 }));
    for (const [i, c] of all.entries()) assert.equal((await c.untilSettled(`ok-${i}`)).at(-1)?.type, 'frame', c.summary());
    await Promise.all(all.map((c) => c.close()));
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
