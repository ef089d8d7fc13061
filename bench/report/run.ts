// One invocation of the bench: every result it produced, with the machine and the command, written
// as JSON (the record), markdown (the tables) and SVG charts (latency CDF, frames/s over time).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { HostileResult } from '../hostile/run.js';
import type { HttpResult } from '../http.js';
import type { IdleResult } from '../idle.js';
import type { PeerComparison } from '../peer/compare.js';
import type { LoadResult } from '../run-load.js';
import type { MachineInfo } from './machine.js';
import { runMarkdown } from './markdown.js';
import { lineChart, type Series } from './svg.js';

export interface BenchRun {
  bench: 'realtime-bench';
  /** Scenario or suite name. */
  name: string;
  date: string;
  machine: MachineInfo;
  command: string;
  results: (LoadResult | HttpResult | IdleResult | HostileResult)[];
  peer?: PeerComparison;
}

const label = (r: LoadResult) => `${r.scenario.name}${r.target.transport === 'ws' ? ' (ws)' : r.target.transport === 'uws' ? '' : ' (remote)'}`;

/**
 * The load results a run's charts show: its own and the peer comparison's, without the transport
 * echo (a hundred thousand replies a second would flatten every frame curve).
 */
function chartedResults(run: BenchRun): LoadResult[] {
  const own = run.results.filter((r): r is LoadResult => r.kind === 'load');
  const p = run.peer;
  const all = p ? [...own, p.zeroCost.uws, p.zeroCost.ws, p.defaultModel.uws, p.defaultModel.ws] : own;
  return all.filter((r) => r.scenario.input !== 'cancel');
}

export function latencyCdfSvg(results: readonly LoadResult[], title = 'Frame latency (solid) and time to first preview (dashed)'): string {
  const series: Series[] = [];
  results.forEach((r, colour) => {
    series.push({ name: `${label(r)} frame`, points: r.cdf.frame, colour });
    if (r.scenario.previews && r.cdf.firstPreview.length) series.push({ name: `${label(r)} 1st preview`, points: r.cdf.firstPreview, dashed: true, colour });
  });
  return lineChart({ title, xLabel: 'milliseconds from send (log scale)', yLabel: '% of requests at or below', series, xLog: true, yMax: 100 });
}

export function framesOverTimeSvg(results: readonly LoadResult[], title = 'Frames/s over time (all sessions)'): string {
  const series: Series[] = results.map((r) => ({
    name: label(r),
    points: r.timeline.framesPerSecond.map((fps, b) => [((b + 0.5) * r.timeline.bucketMs) / 1000, fps] as const),
  }));
  return lineChart({ title, xLabel: 'seconds since the first connection', yLabel: 'frames/s', series });
}

/** Writes <stem>.json, .md and the charts into `dir` (stem: <name>-<date>); returns the paths. */
export async function writeRun(dir: string, run: BenchRun, stemName = `${run.name}-${run.date.replace(/[:.]/g, '-')}`): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const stem = path.join(dir, stemName);
  const files: [string, string][] = [
    [`${stem}.json`, JSON.stringify(run, null, 2) + '\n'],
    [`${stem}.md`, runMarkdown(run)],
  ];
  const charted = chartedResults(run);
  if (charted.length) files.push([`${stem}-latency-cdf.svg`, latencyCdfSvg(charted)]);
  // Frames/s of the zero-cost instrument are ten times the model's: separate charts keep both readable.
  const model = charted.filter((r) => r.scenario.model !== 'zero-cost');
  const zeroCost = charted.filter((r) => r.scenario.model === 'zero-cost');
  if (model.length) files.push([`${stem}-frames-per-second.svg`, framesOverTimeSvg(model)]);
  if (zeroCost.length) {
    files.push([`${stem}-frames-per-second-zero-cost.svg`, framesOverTimeSvg(zeroCost, 'Frames/s over time, zero-cost benchmark instrument')]);
  }
  await Promise.all(files.map(([file, text]) => writeFile(file, text)));
  return files.map(([file]) => file);
}
