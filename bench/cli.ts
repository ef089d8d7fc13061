// The bench's entry point: parse the command line, run the scenario or suite, write and print the
// report. Everything else lives in modules.
//
//   npm run bench -- <scenario | suite | list> [options]     (npm run bench -- --help)
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runHostile } from './hostile/run.js';
import { attackSessions } from './hostile/scenario.js';
import { runHttpBench } from './http.js';
import { runIdleBench } from './idle.js';
import { parseOptions, SELF_CONTAINED, UsageError, USAGE, type BenchOptions } from './options.js';
import { runPeerComparison } from './peer/compare.js';
import { machineInfo } from './report/machine.js';
import { runMarkdown } from './report/markdown.js';
import { writeRun, type BenchRun } from './report/run.js';
import { runLoadScenario, type TargetOptions } from './run-load.js';
import { findScenario, LOAD_SCENARIOS, SUITES, type LoadScenario } from './scenarios.js';

const log = (line: string) => console.error(line);

function scenario(name: string, o: BenchOptions): LoadScenario {
  const s = findScenario(name);
  if (!s) throw new UsageError(`unknown scenario ${name}`);
  return { ...s, ...o.overrides };
}

const target = (o: BenchOptions): TargetOptions => ({
  url: o.url,
  headers: o.headers,
  transport: o.transport,
  modelDir: o.modelDir,
  serverArgs: o.serverArgs,
  workers: o.workers,
  quietWaitS: o.quietWaitS,
});

async function runOne(name: string, o: BenchOptions): Promise<BenchRun['results'][number]> {
  if (name === 'http') {
    log(`http: ${o.connections} connections, ${o.overrides.durationS ?? 5} s per endpoint ...`);
    return runHttpBench({ url: o.url, headers: o.headers, connections: o.connections, durationS: o.overrides.durationS ?? 5, workers: o.workers });
  }
  if (name === 'hostile') return runHostile(o.hostile!, target(o), log);
  if (name === 'idle') {
    const sessions = o.overrides.sessions ?? 10_000;
    log(`idle: ${sessions} sessions from ${o.clients} client processes ...`);
    return runIdleBench({ ...target(o), sessions, clients: o.clients, batch: 100 });
  }
  const s = scenario(name, o);
  log(`${s.name}: ${s.sessions} sessions, ${s.durationS} s, ${s.description} ...`);
  const r = await runLoadScenario(s, target(o));
  log(`  ${r.frames.perSecond} frames/s, frame p99 ${r.latencyMs.frame.p99} ms, server ${r.server?.cpuCores ?? 'n/a'} cores, generator ${r.generator.cpuCores} cores`);
  return r;
}

/** Whole-run time limit: every run stops by itself, even if something hangs. */
function timeLimitMs(o: BenchOptions): number {
  const per = (s: LoadScenario) => (s.rampS + s.durationS + o.quietWaitS) * 1000 + 90_000;
  const duration = (name: string) => per({ ...(findScenario(name) ?? LOAD_SCENARIOS[0]), ...o.overrides });
  switch (o.command) {
    case 'all':
      return LOAD_SCENARIOS.reduce((sum, s) => sum + per({ ...s, ...o.overrides }), 0) + 600_000;
    case 'peer':
      return 6 * duration('saturate') + 600_000;
    case 'http':
      return 3 * ((o.overrides.durationS ?? 5) * 1000 + 30_000) + 60_000;
    case 'idle':
      return 400_000;
    case 'hostile': {
      // Per attack: server start, warm-up, three phases, drain; plus making the flood image.
      const h = o.hostile!;
      return 60_000 + h.attacks.reduce((sum, a) => sum + (h.warmupS + 3 * h.phaseS) * 1000 + 90_000 + attackSessions(h, a) * 20, 0);
    }
    default:
      return duration(o.command);
  }
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--help' || argv[0] === '-h') {
    console.log(USAGE);
    return 0;
  }
  const o = parseOptions(argv);
  if (o.command === 'list') {
    for (const s of LOAD_SCENARIOS) console.log(`${s.name.padEnd(20)} ${s.sessions} sessions, ${s.durationS} s: ${s.description}`);
    for (const [name, text] of Object.entries(SUITES)) console.log(`${name.padEnd(20)} ${text}`);
    return 0;
  }
  if (o.command === 'report') {
    // Re-renders the markdown and charts of a saved run (after a change to the report code).
    const file = o.rest[0];
    if (!file || file.startsWith('-')) throw new UsageError('usage: npm run bench -- report RUN.json [--out DIR]');
    const run = JSON.parse(await readFile(file, 'utf8')) as BenchRun;
    const outIndex = o.rest.indexOf('--out');
    const dir = outIndex > 0 ? o.rest[outIndex + 1] : path.dirname(file);
    for (const written of await writeRun(dir, run, path.basename(file, '.json'))) console.log(`wrote ${written}`);
    return 0;
  }
  if (o.command in SELF_CONTAINED) {
    // Self-contained benchmarks with their own options, run as they are.
    const script = fileURLToPath(new URL(SELF_CONTAINED[o.command], import.meta.url));
    const child = spawn(process.execPath, [script, ...o.rest], { stdio: 'inherit' });
    return new Promise((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
  }
  if (!findScenario(o.command) && !(o.command in SUITES)) throw new UsageError(`unknown scenario or suite "${o.command}"\n\n${USAGE}`);
  if (o.command === 'peer' && o.url) throw new UsageError('peer starts both servers itself: --url does not apply');

  setTimeout(() => {
    console.error(`bench: time limit of ${Math.round(timeLimitMs(o) / 1000)} s reached; stopping`);
    process.exit(3);
  }, timeLimitMs(o)).unref();

  const run: BenchRun = {
    bench: 'realtime-bench',
    name: o.command,
    date: new Date().toISOString(),
    machine: machineInfo(),
    command: `npm run bench -- ${argv.join(' ')}`,
    results: [],
  };
  if (o.command === 'peer') {
    run.peer = await runPeerComparison({
      echoScenario: scenario('transport-echo', o),
      zeroCostScenario: scenario('ceiling', o),
      defaultScenario: scenario('saturate', o),
      target: target(o),
      idleSessions: o.idleSessions,
      idleClients: o.clients,
      log,
    });
  } else if (o.command === 'all') {
    for (const name of [...LOAD_SCENARIOS.map((s) => s.name), 'http', 'idle']) run.results.push(await runOne(name, o));
  } else {
    run.results.push(await runOne(o.command, o));
  }
  const files = await writeRun(o.outDir, run);
  console.log(runMarkdown(run));
  for (const file of files) console.log(`wrote ${file}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UsageError) {
      console.error(err.message);
      process.exit(2);
    }
    console.error(err);
    process.exit(1);
  },
);
