// Several nodes behind nginx (the repository's config, rendered for loopback by
// bench/cluster/launcher.ts), driven by client-SDK sessions streaming camera frames:
//   1. frames/s of 1, 2 and 3 nodes, closed loop, with the share of sessions and frames each got
//      (rounds in rotating order, medians: other work on a shared machine comes and goes);
//   2. frame latency and frame gaps in steady state and during a rolling restart (SIGTERM, drain,
//      start again, wait for nginx to route to it, next node), at a camera's rate and closed loop;
//   3. the time from SIGKILL of a node to the next frame of each session it held.
// Nodes run one onnxruntime thread and batches of two, so three fit a small machine; on a machine
// with fewer cores than nodes, more nodes share the same cores and frames/s cannot grow with them.
//
//   node dist/bench/cluster.js [--sessions 24] [--duration 5] [--nodes 1,2,3] [--rounds 2] [--rates 1.5,0]
//        [--kills 3] [--kill-rate 1.5] [--steps 2] [--out DIR]
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { nginxMissing, SMALL_NODE_ARGS } from './cluster/launcher.js';
import { measureKills, measureRestart, measureScaling, type KillResult, type MeasureOptions, type RestartResult, type ScalingResult, type Spread } from './cluster/measure.js';
import { num, UsageError } from './option-checks.js';
import { describeMachine, machineInfo } from './report/machine.js';

const { values: args } = parseArgs({
  options: {
    sessions: { type: 'string', default: '24' },
    duration: { type: 'string', default: '5' },
    nodes: { type: 'string', default: '1,2,3' },
    rounds: { type: 'string', default: '2' },
    rates: { type: 'string', default: '1.5,0' },
    kills: { type: 'string', default: '3' },
    'kill-rate': { type: 'string', default: '1.5' },
    steps: { type: 'string', default: '2' },
    out: { type: 'string', default: fileURLToPath(new URL('../../bench/results', import.meta.url)) },
  },
});

const bounded = (name: string, raw: string, min: number, max: number): number => num(name, raw, min, max)!;

const list = (name: string, raw: string, min: number, max: number) => raw.split(',').map((x) => bounded(name, x, min, max));
const ms = (s: Spread) => `${s.p50} / ${s.p99}`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

/** Per node count: the round with the median frames/s stands for it, every round's frames/s beside it. */
function summariseScaling(rounds: ScalingResult[][]): (ScalingResult & { roundsFramesPerSecond: number[] })[] {
  const counts = [...new Set(rounds.flat().map((r) => r.nodes))].sort((a, b) => a - b);
  return counts.map((nodes) => {
    const runs = rounds.flat().filter((r) => r.nodes === nodes);
    const fps = runs.map((r) => r.framesPerSecond);
    const mid = runs.find((r) => r.framesPerSecond === median(fps))!;
    return { ...mid, roundsFramesPerSecond: fps };
  });
}

function printTables(scaling: ReturnType<typeof summariseScaling>, restarts: RestartResult[], kill: KillResult | undefined, sessions: number): void {
  console.log(`\nFrames/s by node count: ${sessions} sessions, closed loop (next input when the frame arrives); the median round, every round's frames/s in brackets\n`);
  console.log('| nodes | frames/s | x 1 node | sessions per node | frames per node | frame latency p50 / p99 ms |');
  console.log('|---:|---:|---:|---|---|---:|');
  const one = scaling.find((r) => r.nodes === 1)?.framesPerSecond;
  for (const r of scaling) {
    const ratio = one ? (r.framesPerSecond / one).toFixed(2) : 'n/a';
    console.log(`| ${r.nodes} | ${r.framesPerSecond} (${r.roundsFramesPerSecond.join(', ')}) | ${ratio} | ${r.sessions.join(' / ')} | ${r.frameShare.map((x) => `${Math.round(x * 100)}%`).join(' / ')} | ${ms(r.latencyMs)} |`);
  }
  if (restarts.length) {
    console.log(`\nRolling restart of 3 nodes, ${sessions} sessions: steady state, then each node drained, started again and routed to in turn\n`);
    console.log('| load | phase | seconds | frames/s | frame latency p50 / p99 ms | frame gap p50 / p99 ms |');
    console.log('|---|---|---:|---:|---:|---:|');
    for (const r of restarts) {
      const load = r.rate ? `${r.rate} inputs/s per session` : 'closed loop';
      console.log(`| ${load} | steady | | ${r.steady.framesPerSecond} | ${ms(r.steady.latencyMs)} | ${ms(r.steady.gapMs)} |`);
      console.log(`| ${load} | rolling restart | ${r.restart.seconds} | ${r.restart.framesPerSecond} | ${ms(r.restart.latencyMs)} | ${ms(r.restart.gapMs)} |`);
    }
    console.log('\nSessions moved by a drain: the wait from their last frame on the old node to their first on the new one\n');
    console.log('| load | sessions moved | wait p50 / p99 ms | worst ms | worst / steady p99 gap | exit codes | requests lost | resent by the SDK |');
    console.log('|---|---:|---:|---:|---:|---|---:|---:|');
    for (const r of restarts) {
      const load = r.rate ? `${r.rate} inputs/s per session` : 'closed loop';
      console.log(`| ${load} | ${r.drainWaitMs.count} | ${ms(r.drainWaitMs)} | ${r.drainWaitMs.max} | ${r.worstWaitOverSteadyP99}x | ${r.exits.map((e) => e.code ?? e.signal).join(', ')} | ${r.lost} | ${r.resent} |`);
    }
  }
  if (kill) {
    console.log(`\nSIGKILL of a node (${kill.kills} kills, each node once, started again between), ${sessions} sessions\n`);
    console.log('| sessions on the killed nodes | kill to next frame p50 / p99 ms | worst ms | requests lost |');
    console.log('|---:|---:|---:|---:|');
    console.log(`| ${kill.affected} | ${ms(kill.nextFrameMs)} | ${kill.nextFrameMs.max} | ${kill.lost} |`);
  }
}

async function main(): Promise<void> {
  const missing = nginxMissing();
  if (missing) throw new Error(missing);
  const sessions = bounded('sessions', args.sessions!, 1, 1000);
  const nodeCounts = list('nodes', args.nodes!, 1, 8);
  const rounds = bounded('rounds', args.rounds!, 1, 10);
  const rates = args.rates ? list('rates', args.rates, 0, 60) : [];
  const kills = bounded('kills', args.kills!, 0, 30);
  const o: MeasureOptions = {
    sessions,
    durationS: bounded('duration', args.duration!, 1, 120),
    steps: bounded('steps', args.steps!, 1, 16),
    // Every input runs: the similar-frame skip would make frames/s depend on the pictures.
    nodeArgs: ['--skip-threshold', '0'],
    log: (line) => console.error(line),
  };
  const loadBefore = loadavg()[0];
  console.error(`cluster bench: ${sessions} sessions, ${o.durationS} s windows, ${o.steps} steps, image-to-image camera frames`);
  const scalingRounds: ScalingResult[][] = [];
  console.error('frames/s by node count ...');
  for (let round = 0; round < rounds; round++) {
    // Rotated each round, so that no node count always runs first or last.
    const order = nodeCounts.map((_, i) => nodeCounts[(i + round) % nodeCounts.length]);
    const results: ScalingResult[] = [];
    for (const n of order) results.push(await measureScaling(n, o));
    scalingRounds.push(results);
  }
  const scaling = summariseScaling(scalingRounds);
  const restarts: RestartResult[] = [];
  if (rates.length) console.error('rolling restarts ...');
  for (const rate of rates) restarts.push(await measureRestart(rate, o));
  let kill: KillResult | undefined;
  if (kills > 0) {
    console.error('kills ...');
    kill = await measureKills(kills, bounded('kill-rate', args['kill-rate']!, 0, 60), o);
  }
  const machine = machineInfo();
  printTables(scaling, restarts, kill, sessions);
  console.log(`\n${describeMachine(machine)}; load average (1 min) ${loadBefore.toFixed(1)} at the start, ${loadavg()[0].toFixed(1)} at the end`);
  const out = {
    bench: 'cluster',
    date: new Date().toISOString(),
    machine: { ...machine, loadAverage1m: { start: loadBefore, end: loadavg()[0] } },
    config: { sessions, durationS: o.durationS, steps: o.steps, nodeArgs: [...SMALL_NODE_ARGS, ...o.nodeArgs], nodeCounts, rounds, rates, kills, killRate: Number(args['kill-rate']) },
    scaling,
    scalingRounds,
    restarts,
    kill,
  };
  await mkdir(args.out!, { recursive: true });
  const file = path.join(args.out!, `cluster-${out.date.replace(/[:.]/g, '-')}.json`);
  await writeFile(file, JSON.stringify(out, null, 2) + '\n');
  console.log(`\nwrote ${file}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err instanceof UsageError ? err.message : err);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
