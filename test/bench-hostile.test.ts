// The hostile-clients bench as a tool: every attack runs briefly against a server the CLI starts
// itself, and the report has its phases, the good sessions' frames, /healthz figures, the server's
// memory and what each attacker did. No figures are held to targets here: on a shared machine
// only the shape is stable (docs/performance.md has the measurements).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { HostileResult } from '../bench/hostile/run.js';
import { ATTACK_NAMES } from '../bench/hostile/scenario.js';
import type { BenchRun } from '../bench/report/run.js';
import { runBenchCli } from './helpers/bench-cli.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

describe('bench hostile scenario', () => {
  test('every attack, tiny, between a baseline and a recovery: a complete report', async () => {
    const out = await mkdtemp(path.join(tmpdir(), 'bench-hostile-'));
    cleanups.push(() => rm(out, { recursive: true, force: true }));
    const { code, output } = await runBenchCli(
      [
        'hostile', '--duration', '1', '--warmup', '0.5', '--sessions', '2', '--bomb-rate', '5', '--flood-sessions', '1',
        '--big-sessions', '1', '--idle-clients', '3', '--partial-clients', '2', '--out', out,
      ],
      150_000,
    );
    assert.equal(code, 0, output);
    assert.match(output, /## Hostile clients/);

    const files = await readdir(out);
    const json = files.find((f) => f.endsWith('.json'));
    assert.ok(json, `no JSON report in ${files.join(', ')}`);
    assert.ok(files.some((f) => f.endsWith('.md')));
    const run = JSON.parse(await readFile(path.join(out, json), 'utf8')) as BenchRun;
    assert.equal(run.name, 'hostile');
    assert.ok(run.machine.cores >= 1 && run.machine.node.startsWith('v'));
    const r = run.results[0] as HostileResult;
    assert.equal(r.kind, 'hostile');
    assert.equal(r.target.url, null);
    assert.notEqual(r.target.model, 'unknown');
    assert.ok(r.floodImage && r.floodImage.width === 4000 && r.floodImage.bytes <= r.scenario.flood.imageBytes);
    assert.deepEqual(r.attacks.map((a) => a.attack), [...ATTACK_NAMES]);

    for (const a of r.attacks) {
      assert.deepEqual(a.phases.map((p) => p.kind), ['baseline', 'attack', 'recovery'], a.attack);
      assert.equal(a.phases[1].name, a.attack);
      assert.equal(a.good.connected, 2, `${a.attack}: good sessions connected`);
      const baseline = a.phases[0];
      assert.ok(baseline.good.frames > 0 && baseline.good.framesPerSecond > 0, `${a.attack}: no good frames in the baseline`);
      const l = baseline.good.latencyMs;
      assert.ok(l.count > 0 && l.p50 > 0 && l.p50 <= l.p99 && l.p99 <= l.max, `${a.attack}: ${JSON.stringify(l)}`);
      assert.ok(baseline.healthz.ok > 0 && baseline.healthz.latencyMs.p99 > 0, `${a.attack}: no /healthz answers in the baseline`);
      for (const p of a.phases) {
        assert.ok(p.server && p.server.rssPeakMB > 0, `${a.attack} ${p.name}: no server RSS`);
        assert.ok(p.seconds === 1 && p.benchCpuCores >= 0);
      }
      assert.ok(Object.keys(a.attacker.counts).length > 0);
    }
    const attacker = Object.fromEntries(r.attacks.map((a) => [a.attack, a.attacker]));
    assert.ok(attacker.bomb.counts.sent > 0);
    assert.ok(attacker.flood.counts.sent > 0 && attacker.flood.counts.bytesSent >= r.floodImage!.bytes);
    assert.ok(attacker.big.counts.sent > 0);
    assert.equal(attacker.idle.counts.connected, 3);
    assert.equal(attacker.idle.lifetimeMs?.count, 3);
    assert.equal(attacker.partial.counts.headersSent, 2);
    assert.equal(attacker.partial.lifetimeMs?.count, 2);
  });

  test('attack options are checked and belong to the hostile scenario only', async () => {
    const wrongScenario = await runBenchCli(['typing', '--bomb-rate', '5'], 20_000);
    assert.equal(wrongScenario.code, 2);
    assert.match(wrongScenario.output, /hostile scenario only/);
    const unknownAttack = await runBenchCli(['hostile', '--attacks', 'bomb,teapot'], 20_000);
    assert.equal(unknownAttack.code, 2);
    const tooFast = await runBenchCli(['hostile', '--flood-rate', '1000'], 20_000);
    assert.equal(tooFast.code, 2);
  });
});
