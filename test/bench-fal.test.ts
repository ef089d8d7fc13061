// The `fal` bench suite as a tool: a tiny run through the CLI against a server it starts itself
// writes a report with both routes' stream figures, the queue's saturation and single-job latency,
// and the machine. No figures are held to targets here: on a shared machine only the shape is
// stable (docs/performance.md has the measurements).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FalReport, LatencyStats, RouteSummary } from '../bench/fal-report.js';
import { runBenchCli } from './helpers/bench-cli.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

const ordered = (l: { p50: number; p99: number }, what: string) => assert.ok(l.p50 > 0 && l.p50 <= l.p99, `${what}: ${JSON.stringify(l)}`);

describe('bench fal suite', () => {
  test('a tiny run compares both routes and the queue, and writes the JSON report', async () => {
    const out = await mkdtemp(path.join(tmpdir(), 'bench-fal-'));
    cleanups.push(() => rm(out, { recursive: true, force: true }));
    const { code, output } = await runBenchCli(['fal', '--duration', '0.5', '--warm', '0.2', '--rounds', '1', '--rate', '30', '--jobs', '3', '--requests', '1', '--out', out]);
    assert.equal(code, 0, output);
    assert.match(output, /\| closed \| fal \|/);

    const files = await readdir(out);
    const json = files.find((f) => /^fal-.*\.json$/.test(f));
    assert.ok(json, `no JSON report in ${files.join(', ')}`);
    const r = JSON.parse(await readFile(path.join(out, json), 'utf8')) as FalReport;
    assert.equal(r.bench, 'fal');
    assert.ok(r.machine.cores >= 1 && r.machine.node.startsWith('v') && r.machine.otherProcessesCores >= 0);
    assert.ok(r.config.model.length > 0 && r.config.size > 0);
    assert.equal(r.config.app, 'fal-ai/fast-turbo-diffusion');
    assert.deepEqual([r.config.rounds, r.config.jobs, r.config.requests, r.config.rateHz], [1, 3, 1, 30]);

    for (const loop of ['closedLoop', 'openLoop'] as const) {
      const s = r.realtime[loop];
      const routes: [string, RouteSummary][] = [['fal', s.fal], ['native', s.native]];
      for (const [route, x] of routes) {
        const what = `${loop} ${route}`;
        assert.ok(x.framesPerSecond > 0 && x.frames > 0 && x.sent >= x.frames, `${what}: ${JSON.stringify(x)}`);
        ordered(x, what);
        assert.deepEqual(x.errors, {}, what);
        assert.ok(x.serverCpuMsPerFrame > 0 && x.mainThreadMsPerFrame > 0, `${what}: server CPU`);
      }
      // Both routes ran the same requests.
      assert.equal(s.fal.stepsRun, s.native.stepsRun, loop);
      assert.ok(s.falOverNative.framesPerSecond > 0 && s.falOverNative.p50 > 0, loop);
      assert.deepEqual([r.windows[loop].fal.length, r.windows[loop].native.length], [1, 1], loop);
    }
    assert.equal(r.realtime.closedLoop.fal.dropped, 0, 'a closed loop drops nothing');

    const q = r.queue.saturation;
    assert.ok(q.queue.jobsPerSecond > 0 && q.realtime.requestsPerSecond > 0 && q.queueOverRealtime > 0, JSON.stringify(q));
    assert.equal(q.queue.errors + q.realtime.errors, 0);
    assert.deepEqual([r.windows.saturation.queueMs.length, r.windows.saturation.realtimeMs.length], [1, 1]);

    const l = r.queue.latency;
    const one = (s: LatencyStats, what: string) => {
      assert.equal(s.n, 1, what);
      ordered(s, what);
    };
    one(l.realtime, 'realtime');
    for (const watch of ['poll', 'stream'] as const) {
      one(l[watch].completed, `${watch} completed`);
      one(l[watch].image, `${watch} image`);
      assert.ok(l[watch].completed.p50 <= l[watch].image.p50, watch);
    }
  });

  test('refuses an out-of-range option', async () => {
    const { code, output } = await runBenchCli(['fal', '--rounds', '0']);
    assert.equal(code, 2);
    assert.match(output, /--rounds must be/);
  });
});
