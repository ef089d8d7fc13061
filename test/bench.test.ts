// The load bench as a tool: the CLI runs a tiny scenario against a server it starts itself and
// writes a report with the expected fields and sane values; the `ws` peer server (used for the
// transport comparison) serves the same protocol, here with the zero-cost benchmark model.
// No timing targets: those belong in docs/performance.md, not in a test on a shared machine.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FrameMessage } from '../shared/protocol.js';
import { startLocalServer } from '../bench/local-server.js';
import type { BenchRun } from '../bench/report/run.js';
import { runBenchCli } from './helpers/bench-cli.js';
import type { LoadResult } from '../bench/run-load.js';
import { temporaryZeroCostModel, ZERO_COST_MODEL_NAME } from '../bench/zero-cost-model.js';
import { TestClient } from './helpers/ws-client.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

describe('bench CLI', () => {
  test('a tiny typing scenario against a self-started server writes a complete report', async () => {
    const out = await mkdtemp(path.join(tmpdir(), 'bench-test-'));
    cleanups.push(() => rm(out, { recursive: true, force: true }));
    const { code, output } = await runBenchCli(['typing', '--sessions', '2', '--duration', '2', '--ramp', '0.5', '--workers', '1', '--out', out]);
    assert.equal(code, 0, output);

    const files = await readdir(out);
    const json = files.find((f) => f.endsWith('.json'));
    assert.ok(json, `no JSON report in ${files.join(', ')}`);
    assert.ok(files.some((f) => f.endsWith('.md')));
    for (const svg of files.filter((f) => f.endsWith('.svg'))) assert.match(await readFile(path.join(out, svg), 'utf8'), /^<svg /);
    assert.equal(files.filter((f) => f.endsWith('.svg')).length, 2);

    const run = JSON.parse(await readFile(path.join(out, json), 'utf8')) as BenchRun;
    assert.equal(run.bench, 'realtime-bench');
    assert.ok(run.machine.cores >= 1 && run.machine.node.startsWith('v'));
    const r = run.results[0] as LoadResult;
    assert.equal(r.kind, 'load');
    assert.equal(r.scenario.name, 'typing');
    assert.equal(r.target.transport, 'uws');
    assert.deepEqual(r.sessions, { planned: 2, connected: 2 });
    assert.ok(r.frames.total > 0 && r.frames.perSecond > 0);
    assert.ok(r.counts.sent >= r.counts.frames);
    assert.deepEqual(r.errors, {});
    for (const key of ['frame', 'firstPreview', 'connect'] as const) {
      const l = r.latencyMs[key];
      assert.ok(l.count > 0, `${key}: no samples`);
      assert.ok(l.p50 > 0 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, `${key}: ${JSON.stringify(l)}`);
    }
    assert.ok(r.server && r.server.cpuCores >= 0 && r.server.rssPeakMB > 0);
    assert.ok(r.generator.workers === 1 && r.generator.cpuCores >= 0);
    assert.ok(r.timeline.framesPerSecond.length > 0 && r.cdf.frame.length > 0);
  });

  test('rejects a non-loopback --url unless asked, and unknown scenarios', async () => {
    const remote = await runBenchCli(['typing', '--url', 'ws://192.0.2.1:8080/v1/realtime']);
    assert.equal(remote.code, 2);
    assert.match(remote.output, /--allow-remote/);
    const unknown = await runBenchCli(['nope']);
    assert.equal(unknown.code, 2);
  });
});

describe('ws peer server', () => {
  test('answers hello and completes a request, with the zero-cost benchmark model', async () => {
    const model = await temporaryZeroCostModel();
    cleanups.push(() => model.remove());
    const server = await startLocalServer({ transport: 'ws', args: ['--model', model.dir, '--threads', '1'] });
    cleanups.push(() => server.stop());

    const { client, hello } = await TestClient.connect(server.wsUrl);
    assert.equal(hello.model.name, ZERO_COST_MODEL_NAME);
    assert.equal(hello.model.width, 64);
    client.send({ type: 'generate', id: 'peer-1', prompt: 'a red circle', steps: 2, seed: 3 });
    const replies = await client.untilSettled('peer-1');
    assert.deepEqual(replies.map((m) => m.type), ['preview', 'frame']);
    const frame = replies[1] as FrameMessage;
    assert.equal(frame.width, 64);
    assert.ok(frame.image.byteLength > 0);
    await client.close();
    assert.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200);
  });
});
