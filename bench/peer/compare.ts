// Peer comparison in one run: the same hub and session logic over uWebSockets.js (this server)
// and over `ws` (bench/peer/ws-server.ts): messages answered without any model work (the transport
// alone), the zero-cost instrument (the whole server path without inference) and the default model
// (what users get), plus idle RSS per connection. Runs alternate transports so
// drift on the machine hits both alike.
import type { IdleResult } from '../idle.js';
import { runIdleBench } from '../idle.js';
import type { Transport } from '../local-server.js';
import { runLoadScenario, type LoadResult, type TargetOptions } from '../run-load.js';
import type { LoadScenario } from '../scenarios.js';

export interface PeerRatios {
  /** uWS frames/s ÷ ws frames/s. */
  framesPerSecond: number;
  /** uWS frames/s per server core ÷ ws frames/s per server core. */
  framesPerSecondPerCore: number;
  /** ws p99 frame latency ÷ uWS p99 (above 1: uWS answers faster). */
  p99LatencyWsOverUws: number;
  /** ws main-thread CPU per message ÷ uWS's: the transport's own cost, whatever bounds throughput. */
  mainThreadPerMessageWsOverUws: number;
}

export interface PeerComparison {
  kind: 'peer';
  /** No model work at all: cancel for an unknown id, answered at once (the transport alone). */
  transportEcho: { uws: LoadResult; ws: LoadResult; ratios: PeerRatios };
  zeroCost: { uws: LoadResult; ws: LoadResult; ratios: PeerRatios };
  defaultModel: { uws: LoadResult; ws: LoadResult; ratios: PeerRatios };
  idle: { uws: IdleResult; ws: IdleResult; rssPerConnectionWsOverUws: number } | null;
}

export interface PeerOptions {
  echoScenario: LoadScenario;
  zeroCostScenario: LoadScenario;
  defaultScenario: LoadScenario;
  target: Omit<TargetOptions, 'transport' | 'url'>;
  /** 0 skips the idle comparison. */
  idleSessions: number;
  idleClients: number;
  log(line: string): void;
}

const ratio = (a: number, b: number) => (b > 0 ? Math.round((a / b) * 1000) / 1000 : 0);

function ratios(uws: LoadResult, ws: LoadResult): PeerRatios {
  return {
    framesPerSecond: ratio(uws.frames.perSecond, ws.frames.perSecond),
    framesPerSecondPerCore: ratio(uws.server?.perCore.framesPerSecond ?? 0, ws.server?.perCore.framesPerSecond ?? 0),
    p99LatencyWsOverUws: ratio(ws.latencyMs.frame.p99, uws.latencyMs.frame.p99),
    mainThreadPerMessageWsOverUws: ratio(ws.server?.mainThreadUsPerMessage ?? 0, uws.server?.mainThreadUsPerMessage ?? 0),
  };
}

export async function runPeerComparison(o: PeerOptions): Promise<PeerComparison> {
  const load = async (scenario: LoadScenario, transport: Transport) => {
    o.log(`  ${scenario.name} over ${transport} ...`);
    const r = await runLoadScenario(scenario, { ...o.target, transport });
    o.log(`    ${r.frames.perSecond} frames/s, server ${r.server?.cpuCores ?? '?'} cores, p99 ${r.latencyMs.frame.p99} ms`);
    return r;
  };
  const echoU = await load(o.echoScenario, 'uws');
  const echoW = await load(o.echoScenario, 'ws');
  const zcU = await load(o.zeroCostScenario, 'uws');
  const zcW = await load(o.zeroCostScenario, 'ws');
  const dmU = await load(o.defaultScenario, 'uws');
  const dmW = await load(o.defaultScenario, 'ws');
  let idle: PeerComparison['idle'] = null;
  if (o.idleSessions > 0) {
    const runIdle = async (transport: Transport) => {
      o.log(`  ${o.idleSessions} idle sessions over ${transport} ...`);
      const r = await runIdleBench({ ...o.target, transport, sessions: o.idleSessions, clients: o.idleClients, batch: 100 });
      o.log(`    ${r.sessions.connected} connected, ${r.server?.rssPerConnectionKB ?? '?'} KB RSS each`);
      return r;
    };
    const uws = await runIdle('uws');
    const ws = await runIdle('ws');
    idle = { uws, ws, rssPerConnectionWsOverUws: ratio(ws.server?.rssPerConnectionKB ?? 0, uws.server?.rssPerConnectionKB ?? 0) };
  }
  return {
    kind: 'peer',
    transportEcho: { uws: echoU, ws: echoW, ratios: ratios(echoU, echoW) },
    zeroCost: { uws: zcU, ws: zcW, ratios: ratios(zcU, zcW) },
    defaultModel: { uws: dmU, ws: dmW, ratios: ratios(dmU, dmW) },
    idle,
  };
}
