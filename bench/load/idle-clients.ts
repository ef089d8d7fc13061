// A child process holding idle realtime sessions for the idle-capacity bench: opens `count`
// sockets, `batch` handshakes at a time, waits for each `hello`, reports, then just holds them
// (answering the server's pings) until told to close. A child process rather than a thread so its
// open-file limit can be raised on its own (see idle.ts).
import WebSocket from 'ws';
import { newHistogram, encodeHistogram, recordMs } from './histogram.js';

export interface IdleClientsJob {
  url: string;
  headers: Record<string, string>;
  count: number;
  batch: number;
  connectTimeoutMs: number;
}

export type IdleClientsReport =
  | { kind: 'connected'; connected: number; errors: Record<string, number>; connectHistogram: string; seconds: number }
  | { kind: 'closed' };

if (!process.send) throw new Error('bench/load/idle-clients.js must run with an IPC channel');
const send = (m: IdleClientsReport) => process.send!(m);
const sockets: WebSocket[] = [];

function open(job: IdleClientsJob, errors: Record<string, number>, histogram: ReturnType<typeof newHistogram>): Promise<void> {
  return new Promise((resolve) => {
    const started = performance.now();
    const ws = new WebSocket(job.url, { perMessageDeflate: false, headers: job.headers, handshakeTimeout: job.connectTimeoutMs });
    let settled = false;
    const done = (error?: string) => {
      if (settled) return;
      settled = true;
      if (error) {
        errors[error] = (errors[error] ?? 0) + 1;
        ws.terminate();
      } else {
        sockets.push(ws);
      }
      resolve();
    };
    // Attached before 'open': hello can arrive with the upgrade response.
    ws.once('message', () => {
      recordMs(histogram, performance.now() - started);
      done();
    });
    ws.on('unexpected-response', (_req, res) => {
      res.resume();
      done(`http_${res.statusCode ?? 0}`);
    });
    ws.on('error', () => done('connect_failed'));
    ws.on('close', (code) => done(`closed_${code}`));
    setTimeout(() => done('hello_timeout'), job.connectTimeoutMs).unref();
  });
}

process.once('message', async (job: IdleClientsJob) => {
  const errors: Record<string, number> = {};
  const histogram = newHistogram();
  const started = performance.now();
  let next = 0;
  // `batch` handshakes in flight at a time: a listen backlog is finite.
  const lane = async () => {
    while (next < job.count) {
      next++;
      await open(job, errors, histogram);
    }
  };
  await Promise.all(Array.from({ length: Math.min(job.batch, job.count) }, lane));
  send({ kind: 'connected', connected: sockets.length, errors, connectHistogram: encodeHistogram(histogram), seconds: (performance.now() - started) / 1000 });
  process.once('message', () => {
    for (const ws of sockets) ws.terminate();
    send({ kind: 'closed' });
    process.disconnect();
  });
});
