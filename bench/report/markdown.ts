// Markdown tables of a run, for the terminal and for docs/performance.md.
import { hostileMarkdown } from '../hostile/report.js';
import type { HttpResult } from '../http.js';
import type { IdleResult } from '../idle.js';
import type { PeerComparison } from '../peer/compare.js';
import type { LoadResult } from '../run-load.js';
import { describeMachine } from './machine.js';
import type { BenchRun } from './run.js';

const table = (head: string[], rows: (string | number)[][]): string =>
  [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

const n = (x: number | null | undefined, digits = 1) => (x === null || x === undefined ? 'n/a' : x.toFixed(digits));
const errorsText = (errors: Record<string, number>) =>
  Object.keys(errors).length ? Object.entries(errors).map(([code, count]) => `${code}: ${count}`).join(', ') : '0';
const transportName = (t: string) => (t === 'uws' ? 'uWS' : t);

export function loadTables(results: readonly LoadResult[]): string {
  const rows = results.map((r) => [
    r.scenario.name,
    transportName(r.target.transport),
    r.target.model,
    `${r.sessions.connected}/${r.sessions.planned}`,
    r.scenario.rateHz ? `${r.scenario.rateHz}/s` : `closed, ${r.scenario.window}`,
    n(r.frames.perSecond),
    `${n(r.frames.perSessionPerSecond.mean)} (${n(r.frames.perSessionPerSecond.min)}-${n(r.frames.perSessionPerSecond.max)})`,
    r.latencyMs.firstPreview.count ? `${n(r.latencyMs.firstPreview.p50)} / ${n(r.latencyMs.firstPreview.p99)}` : 'no previews',
    `${n(r.latencyMs.frame.p50)} / ${n(r.latencyMs.frame.p90)} / ${n(r.latencyMs.frame.p99)}`,
    `${n(r.latencyMs.connect.p50)} / ${n(r.latencyMs.connect.p99)}`,
  ]);
  const counts = results.map((r) => [
    r.scenario.name,
    transportName(r.target.transport),
    r.counts.sent,
    r.counts.frames,
    r.counts.superseded,
    r.counts.skipped,
    r.counts.droppedPreviews,
    r.counts.unanswered,
    errorsText(r.errors),
  ]);
  const resources = results.map((r) => [
    r.scenario.name,
    transportName(r.target.transport),
    `${n(r.server?.cpuCores, 2)} (main thread ${n(r.server?.mainThreadCores, 2)}, ${n(r.server?.mainThreadUsPerMessage)} us/message)`,
    n(r.server?.rssPeakMB),
    n(r.server?.perCore.framesPerSecond),
    n(r.messages.receivedPerSecond),
    n(r.server?.perCore.messagesOutPerSecond),
    `${n(r.generator.cpuCores, 2)} (${r.generator.workers} workers, ELU max ${n(r.generator.maxEventLoopUtilization * 100, 0)} %)`,
    n(r.otherCpuCores, 2),
  ]);
  return [
    table(
      ['scenario', 'server', 'model', 'sessions', 'sends', 'frames/s', 'frames/s per session, mean (min-max)', 'first preview p50 / p99 ms', 'frame latency p50 / p90 / p99 ms', 'connect p50 / p99 ms'],
      rows,
    ),
    table(['scenario', 'server', 'requests', 'frames', 'superseded', 'skipped', 'dropped previews', 'unanswered', 'errors'], counts),
    table(
      ['scenario', 'server', 'server CPU (cores)', 'server RSS peak MB', 'frames/s per server core', 'server messages/s', 'messages/s per server core', 'load generator CPU (cores)', 'other processes CPU (cores)'],
      resources,
    ),
  ].join('\n\n');
}

export function httpTable(r: HttpResult): string {
  const rows = r.endpoints.map((e) => [
    `${e.method} ${e.path}`,
    e.requestsPerSecond,
    `${e.latencyMs.p50} / ${e.latencyMs.p90} / ${e.latencyMs.p99}`,
    e.non2xx,
    e.errors + e.timeouts,
    n(e.serverCpuCores, 2),
    n(e.generatorCpuCores, 2),
  ]);
  const skipped = r.skipped.length ? `\n\nNot measured: ${r.skipped.join('; ')}.` : '';
  return `${r.connections} connections, ${r.durationS} s per endpoint.\n\n${table(['endpoint', 'requests/s', 'latency p50 / p90 / p99 ms', 'non-2xx', 'errors', 'server CPU (cores)', 'autocannon CPU (cores)'], rows)}${skipped}`;
}

export function idleTable(results: readonly IdleResult[]): string {
  const rows = results.map((r) => [
    transportName(r.target.transport),
    `${r.sessions.connected}/${r.sessions.planned}`,
    `${r.connect.perSecond}/s`,
    `${n(r.connect.latencyMs.p50)} / ${n(r.connect.latencyMs.p99)}`,
    n(r.server?.rssBeforeMB),
    n(r.server?.rssConnectedMB),
    n(r.server?.rssPerConnectionKB, 2),
    n(r.server?.cpuCoresWhileIdle, 3),
    errorsText(r.errors),
  ]);
  return table(['server', 'sessions', 'connect rate', 'connect p50 / p99 ms', 'RSS before MB', 'RSS connected MB', 'RSS per connection KB', 'server CPU while idle (cores)', 'errors'], rows);
}

export function peerTable(p: PeerComparison): string {
  const rows: (string | number)[][] = [];
  const pairs = [['transport echo (replies)', p.transportEcho], ['zero-cost instrument', p.zeroCost], ['default model', p.defaultModel]] as const;
  for (const [label, pair] of pairs) {
    const { uws, ws, ratios } = pair;
    rows.push([`${label}: frames/s`, n(uws.frames.perSecond), n(ws.frames.perSecond), n(ratios.framesPerSecond, 2)]);
    rows.push([`${label}: server CPU (cores)`, n(uws.server?.cpuCores, 2), n(ws.server?.cpuCores, 2), '']);
    rows.push([`${label}: server main thread (cores)`, n(uws.server?.mainThreadCores, 2), n(ws.server?.mainThreadCores, 2), '']);
    rows.push([
      `${label}: main-thread CPU per message, us`,
      n(uws.server?.mainThreadUsPerMessage),
      n(ws.server?.mainThreadUsPerMessage),
      `ws is ${n(ratios.mainThreadPerMessageWsOverUws, 2)}x`,
    ]);
    rows.push([`${label}: frames/s per server core`, n(uws.server?.perCore.framesPerSecond), n(ws.server?.perCore.framesPerSecond), n(ratios.framesPerSecondPerCore, 2)]);
    rows.push([`${label}: frame latency p99 ms`, n(uws.latencyMs.frame.p99), n(ws.latencyMs.frame.p99), `ws is ${n(ratios.p99LatencyWsOverUws, 2)}x`]);
  }
  if (p.idle) {
    rows.push([
      `idle: RSS per connection KB (${p.idle.uws.sessions.connected} sessions)`,
      n(p.idle.uws.server?.rssPerConnectionKB, 2),
      n(p.idle.ws.server?.rssPerConnectionKB, 2),
      `ws is ${n(p.idle.rssPerConnectionWsOverUws, 2)}x`,
    ]);
  }
  return table(['', 'uWebSockets.js', 'ws', 'uWS ÷ ws'], rows);
}

export const peerResults = (p: PeerComparison): LoadResult[] => [
  p.transportEcho.uws, p.transportEcho.ws, p.zeroCost.uws, p.zeroCost.ws, p.defaultModel.uws, p.defaultModel.ws,
];

export function runMarkdown(run: BenchRun): string {
  const out = [`# Bench run \`${run.name}\`, ${run.date}`, '', `Machine: ${describeMachine(run.machine)}.`, '', `Command: \`${run.command}\``];
  const load = run.results.filter((r): r is LoadResult => r.kind === 'load');
  if (load.length) out.push('', '## Realtime load', '', loadTables(load));
  for (const r of run.results) if (r.kind === 'http') out.push('', '## HTTP endpoints', '', httpTable(r));
  for (const r of run.results) if (r.kind === 'hostile') out.push('', '## Hostile clients', '', hostileMarkdown(r));
  const idle = run.results.filter((r): r is IdleResult => r.kind === 'idle');
  if (idle.length) out.push('', '## Idle sessions', '', idleTable(idle));
  if (run.peer) {
    out.push('', '## uWebSockets.js against ws (same hub)', '', peerTable(run.peer), '', loadTables(peerResults(run.peer)));
    if (run.peer.idle) out.push('', idleTable([run.peer.idle.uws, run.peer.idle.ws]));
  }
  const warnings = [...load, ...(run.peer ? peerResults(run.peer) : [])].flatMap((r) =>
    r.warnings.map((w) => `- ${r.scenario.name} (${transportName(r.target.transport)}): ${w}`),
  );
  if (warnings.length) out.push('', '## Warnings', '', ...warnings);
  return out.join('\n') + '\n';
}
