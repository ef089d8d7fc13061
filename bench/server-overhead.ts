// What the server costs on top of the model: frames/s through the server (one WebSocket session,
// closed loop) against frames/s of the same pipeline called in-process, plus per-stage medians.
// The two are measured in alternating rounds in one run, so machine noise hits both alike.
//
//   npm run bench -- [--model DIR] [--rounds 5] [--requests 20] [--steps 2] [--size 256] [--threads 2]
import { cpus } from 'node:os';
import { mkdir, writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import WebSocket from 'ws';
import { decodeMessage, encodeMessage } from '../shared/codec.js';
import type { FrameMessage, ServerMessage, Timings } from '../shared/protocol.js';
import { DEFAULT_MODEL_DIR } from '../server/config.js';
import { encodeImage } from '../server/imaging.js';
import { DiffusionPipeline } from '../server/pipeline/pipeline.js';
import { startServerProcess } from '../test/helpers/server-process.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: DEFAULT_MODEL_DIR },
    rounds: { type: 'string', default: '5' },
    requests: { type: 'string', default: '20' },
    steps: { type: 'string', default: '2' },
    size: { type: 'string', default: '256' },
    threads: { type: 'string', default: '2' },
    out: { type: 'string', default: fileURLToPath(new URL('../../bench/results', import.meta.url)) },
  },
});
const rounds = Number(args.rounds);
const requests = Number(args.requests);
const steps = Number(args.steps);
const size = Number(args.size);
const threads = Number(args.threads);
const prompts = ['a red circle', 'a blue square on the left', 'a green triangle at the top', 'a yellow star'];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** The in-process baseline does the same work the server does: generate, encode previews and frame. */
async function inProcessRound(pipeline: DiffusionPipeline): Promise<{ fps: number; totals: number[] }> {
  const totals: number[] = [];
  const start = performance.now();
  for (let i = 0; i < requests; i++) {
    const t0 = performance.now();
    const encodes: Promise<Uint8Array>[] = [];
    const result = await pipeline.generate(
      { prompt: prompts[i % prompts.length], steps, strength: 1, seed: i, width: size, height: size, previews: true },
      { onPreview: (_s, _n, image) => encodes.push(encodeImage(image, 'jpeg', 70, size, size)) },
    );
    encodes.push(encodeImage(result.image, 'jpeg', 90));
    await Promise.all(encodes);
    totals.push(performance.now() - t0);
  }
  return { fps: requests / ((performance.now() - start) / 1000), totals };
}

/**
 * One session through the server. `window` is how many requests the client keeps outstanding:
 * 1 = send the next only after the frame (closed loop, latency view); 2 = the protocol's running
 * plus pending slot kept full, as a streaming client does (throughput view).
 */
async function serverRound(url: string, window: 1 | 2): Promise<{ fps: number; timings: Timings[]; firstPreview: number[] }> {
  // The message handler is attached before the socket opens: `hello` can arrive in the same
  // packet as the upgrade response and is emitted straight after 'open'.
  const ws = new WebSocket(url);
  ws.once('error', (err) => {
    throw err;
  });
  const timings: Timings[] = [];
  const firstPreview: number[] = [];
  const sentAt = new Map<number, number>();
  let start = 0;
  await new Promise<void>((resolve) => {
    let sent = 0;
    let done = 0;
    const sendNext = () => {
      if (sent >= requests) return;
      sentAt.set(sent, performance.now());
      ws.send(encodeMessage({ type: 'generate', id: sent, prompt: prompts[sent % prompts.length], steps, seed: sent, width: size, height: size }));
      sent++;
    };
    ws.on('message', (data: Buffer) => {
      const message = decodeMessage(data) as ServerMessage;
      if (message.type === 'hello') {
        start = performance.now();
        for (let i = 0; i < window; i++) sendNext();
      } else if (message.type === 'preview' && message.step === 1) {
        firstPreview.push(performance.now() - sentAt.get(message.id as number)!);
      } else if (message.type === 'frame') {
        timings.push((message as FrameMessage).timings);
        if (++done === requests) resolve();
        else sendNext();
      } else if (message.type === 'error' || message.type === 'superseded') {
        throw new Error(`unexpected ${message.type}: ${JSON.stringify(message)}`);
      }
    });
  });
  const fps = requests / ((performance.now() - start) / 1000);
  ws.close();
  return { fps, timings, firstPreview };
}

async function main(): Promise<void> {
  console.log(`model ${args.model}, ${size}x${size}, ${steps} steps, ${rounds} rounds x ${requests} requests, ${threads} threads`);
  const pipeline = await DiffusionPipeline.load(args.model, 'cpu', { executionProviders: ['cpu'], threads });
  await pipeline.warmup();
  const server = await startServerProcess(['--model', args.model, '--threads', String(threads)]);
  try {
    const inProcess: number[] = [];
    const closedLoop: number[] = [];
    const streaming: number[] = [];
    const inProcessTotals: number[] = [];
    const timings: Timings[] = [];
    const firstPreview: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const a = await inProcessRound(pipeline);
      const b = await serverRound(server.wsUrl, 1);
      const c = await serverRound(server.wsUrl, 2);
      inProcess.push(a.fps);
      closedLoop.push(b.fps);
      streaming.push(c.fps);
      inProcessTotals.push(...a.totals);
      timings.push(...b.timings);
      firstPreview.push(...b.firstPreview);
      console.log(
        `round ${r + 1}: in-process ${a.fps.toFixed(1)}, server closed loop ${b.fps.toFixed(1)}, server streaming ${c.fps.toFixed(1)} frames/s`,
      );
    }
    const ratio = (xs: number[]) => median(xs.map((x, i) => x / inProcess[i]));
    // Stage times come from the closed-loop rounds, where requests never wait behind each other.
    const stages: Record<string, number> = {
      'queue': median(timings.map((t) => t.queue)),
      'text encoder': median(timings.map((t) => t.textEncoder)),
      'step (each)': median(timings.flatMap((t) => t.steps)),
      'previews (all steps)': median(timings.map((t) => t.previews)),
      'VAE decode': median(timings.map((t) => t.decode)),
      'frame encode': median(timings.map((t) => t.encode)),
      'total, server side': median(timings.map((t) => t.total)),
      'time to first preview, client side': median(firstPreview),
      'in-process request, incl. encodes': median(inProcessTotals),
    };
    console.log('\n| stage (closed loop) | median ms |\n|---|---|');
    for (const [name, ms] of Object.entries(stages)) console.log(`| ${name} | ${ms.toFixed(2)} |`);
    console.log('\n| frames/s, 1 session | median of rounds | ratio to in-process (median of per-round ratios) |\n|---|---|---|');
    console.log(`| in-process pipeline | ${median(inProcess).toFixed(1)} | 1 |`);
    console.log(`| server, closed loop (1 request outstanding) | ${median(closedLoop).toFixed(1)} | ${ratio(closedLoop).toFixed(3)} |`);
    console.log(`| server, streaming (running + pending, as the protocol allows) | ${median(streaming).toFixed(1)} | ${ratio(streaming).toFixed(3)} |`);

    const report = {
      bench: 'server-overhead',
      date: new Date().toISOString(),
      machine: { cpu: cpus()[0]?.model, cores: cpus().length, node: process.version },
      config: { model: path.basename(args.model), size, steps, rounds, requests, threads },
      framesPerSecond: {
        inProcess,
        serverClosedLoop: closedLoop,
        serverStreaming: streaming,
        ratioClosedLoop: ratio(closedLoop),
        ratioStreaming: ratio(streaming),
      },
      stagesMedianMs: stages,
    };
    await mkdir(args.out, { recursive: true });
    const file = path.join(args.out, `server-overhead-${report.date.replace(/[:.]/g, '-')}.json`);
    await writeFile(file, JSON.stringify(report, null, 2));
    console.log(`\nwrote ${file}`);
  } finally {
    await server.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
