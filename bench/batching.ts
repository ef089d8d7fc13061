// Step-level batching on vs off: aggregate frames/s and p50/p99 time to first preview and frame
// latency for 1, 4, 16 and 64 concurrent sessions, every configuration measured in one run, the
// configurations alternating for each session count so machine noise hits all alike.
// Each session keeps one request outstanding (send the next when the frame arrives).
//
//   node dist/bench/batching.js [--sessions 1,4,16,64] [--batches 1,4,8] [--duration 4] [--steps 2] [--size 256]
import { cpus } from 'node:os';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { decodeMessage, encodeMessage } from '../shared/codec.js';
import type { ServerMessage } from '../shared/protocol.js';
import { startServerProcess, type ServerProcess } from '../test/helpers/server-process.js';

const { values: args } = parseArgs({
  options: {
    sessions: { type: 'string', default: '1,4,16,64' },
    batches: { type: 'string', default: '1,4,8' },
    duration: { type: 'string', default: '4' },
    steps: { type: 'string', default: '2' },
    size: { type: 'string', default: '256' },
    out: { type: 'string', default: fileURLToPath(new URL('../../bench/results', import.meta.url)) },
  },
});
const sessionCounts = args.sessions.split(',').map(Number);
const batchSizes = args.batches.split(',').map(Number);
const durationMs = Number(args.duration) * 1000;
const steps = Number(args.steps);
const size = Number(args.size);

const percentile = (xs: number[], p: number) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

interface Result {
  maxBatch: number;
  sessions: number;
  framesPerSecond: number;
  ttfpP50: number;
  ttfpP99: number;
  latencyP50: number;
  latencyP99: number;
  errors: number;
  clientCpuPercent: number;
}

/** `sessions` closed-loop clients for `durationMs`; stops sending at the deadline and drains. */
async function run(server: ServerProcess, maxBatch: number, sessions: number): Promise<Result> {
  const ttfp: number[] = [];
  const latency: number[] = [];
  let frames = 0;
  let errors = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const deadline = start + durationMs;
  await Promise.all(
    Array.from({ length: sessions }, (_, s) =>
      new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(server.wsUrl);
        let id = 0;
        let sentAt = 0;
        let previewSeen = false;
        const send = () => {
          previewSeen = false;
          sentAt = performance.now();
          ws.send(encodeMessage({ type: 'generate', id: id++, prompt: `shape ${s % 8}`, steps, width: size, height: size }));
        };
        ws.on('message', (data: Buffer) => {
          const m = decodeMessage(data) as ServerMessage;
          if (m.type === 'hello') send();
          else if (m.type === 'preview' && !previewSeen) {
            previewSeen = true;
            ttfp.push(performance.now() - sentAt);
          } else if (m.type === 'frame' || m.type === 'error') {
            if (m.type === 'frame') {
              frames++;
              latency.push(performance.now() - sentAt);
            } else errors++;
            if (performance.now() < deadline) send();
            else ws.close();
          }
        });
        ws.on('close', () => resolve());
        ws.on('error', reject);
      }),
    ),
  );
  const elapsed = performance.now() - start;
  const cpu = process.cpuUsage(cpu0);
  return {
    maxBatch,
    sessions,
    framesPerSecond: frames / (elapsed / 1000),
    ttfpP50: percentile(ttfp, 50),
    ttfpP99: percentile(ttfp, 99),
    latencyP50: percentile(latency, 50),
    latencyP99: percentile(latency, 99),
    errors,
    clientCpuPercent: ((cpu.user + cpu.system) / 1000 / elapsed) * 100,
  };
}

async function main(): Promise<void> {
  console.log(`default model, ${size}x${size}, ${steps} steps, ${args.duration} s per configuration, max batch ${batchSizes.join(' vs ')}`);
  const servers = new Map<number, ServerProcess>();
  for (const b of batchSizes) {
    servers.set(b, await startServerProcess(['--max-batch', String(b), '--max-sessions', '1000', '--rate-limit', '10000']));
  }
  const results: Result[] = [];
  try {
    for (const sessions of sessionCounts) {
      for (const b of batchSizes) {
        const r = await run(servers.get(b)!, b, sessions);
        results.push(r);
        console.log(`sessions ${sessions}, max batch ${b}: ${r.framesPerSecond.toFixed(1)} frames/s`);
      }
    }
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop()));
  }
  console.log('\n| sessions | max batch | frames/s (all sessions) | first preview p50 / p99 ms | frame latency p50 / p99 ms | errors | load generator CPU |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(
      `| ${r.sessions} | ${r.maxBatch} | ${r.framesPerSecond.toFixed(1)} | ${r.ttfpP50.toFixed(1)} / ${r.ttfpP99.toFixed(1)} | ${r.latencyP50.toFixed(1)} / ${r.latencyP99.toFixed(1)} | ${r.errors} | ${r.clientCpuPercent.toFixed(0)}% |`,
    );
  }
  const report = {
    bench: 'batching',
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model, cores: cpus().length, node: process.version },
    config: { size, steps, durationSeconds: durationMs / 1000, sessionCounts, batchSizes },
    results,
  };
  await mkdir(args.out, { recursive: true });
  const file = path.join(args.out, `batching-${report.date.replace(/[:.]/g, '-')}.json`);
  await writeFile(file, JSON.stringify(report, null, 2));
  console.log(`\nwrote ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
