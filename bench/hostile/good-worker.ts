// The well-behaved side of the hostile scenario, in its own thread so that the attackers on the
// main thread do not delay its clocks: camera-like image-to-image sessions in a closed loop, and a
// /healthz poller on a fixed clock. The sessions connect first; the main thread then starts the phase
// clock. Everything is tallied per phase and posted once at the end.
//
// A latency belongs to the attack phase if its request was in flight at any moment of the attack
// (one sent just before and stuck through it shows there, not in the baseline), else to the phase
// it ended in. Frames are counted in the phase they arrive in.
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { decodeMessage, encodeMessage } from '../../shared/codec.js';
import type { GenerateMessage, ServerMessage } from '../../shared/protocol.js';
import { encodeHistogram, newHistogram, recordMs } from '../load/histogram.js';
import { epochNow } from '../load/messages.js';
import { bump, type GoodJob, type GoodReport, type GoodWorkerMessage, type Phase } from './messages.js';

if (!parentPort) throw new Error('bench/hostile/good-worker.js must run as a worker thread');
const port = parentPort;
const job = workerData as GoodJob;

type Tally = ReturnType<typeof newTally>;
const newTally = () => ({
  frames: 0,
  framesPerSession: new Array<number>(job.sessions).fill(0),
  requests: 0,
  frame: newHistogram(),
  healthzHist: newHistogram(),
  errors: {} as Record<string, number>,
  otherReplies: {} as Record<string, number>,
  longestWaitMs: 0,
  healthz: { ok: 0, failed: 0, timedOut: 0, skipped: 0 },
});
// Set when the main thread starts the clock, once every session is connected; until then nothing counts.
let phases: Phase[] = [];
let tallies: Tally[] = [];
const phaseAt = (t: number) => phases.findIndex((p) => t >= p.from && t < p.to);
const tallyAt = (t: number): Tally | undefined => tallies[phaseAt(t)];
function latencyTally(sentAt: number, endedAt: number): Tally | undefined {
  const attack = phases.findIndex((p) => p.kind === 'attack' && sentAt < p.to && endedAt >= p.from);
  return attack >= 0 ? tallies[attack] : tallyAt(endedAt);
}
let reconnects = 0;

class GoodSession {
  private ws: WebSocket | undefined;
  private seq = 0;
  private outstanding: { id: number; sentAt: number } | undefined;
  /** Since when this session has been waiting for its next final reply (undefined before hello). */
  private waitingSince: number | undefined;
  private open = false;
  private stopped = false;
  everConnected = false;
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(private readonly index: number) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  connect(): void {
    if (this.stopped) return this.resolveDone();
    const ws = new WebSocket(job.url, { perMessageDeflate: false, headers: job.headers, handshakeTimeout: 10_000 });
    ws.binaryType = 'nodebuffer';
    this.ws = ws;
    let failed = false;
    const error = (code: string) => {
      const t = tallyAt(epochNow());
      if (t) bump(t.errors, code);
    };
    ws.on('message', (data: Buffer) => this.onMessage(decodeMessage(data) as ServerMessage));
    ws.on('unexpected-response', (_req, res) => {
      failed = true;
      error(`http_${res.statusCode ?? 0}`);
      res.resume();
      ws.terminate();
    });
    ws.on('error', () => {
      if (!failed) error(this.open ? 'socket_error' : 'connect_failed');
      failed = true;
    });
    ws.on('close', (code) => {
      if (!this.stopped && this.open && !failed) error(`closed_${code}`);
      this.open = false;
      this.outstanding = undefined;
      if (this.stopped) return this.resolveDone();
      // A good client comes back; the time away counts as waiting.
      reconnects++;
      setTimeout(() => this.connect(), 250);
    });
  }

  private onMessage(message: ServerMessage): void {
    const now = epochNow();
    if (message.type === 'hello') {
      this.open = true;
      this.everConnected = true;
      this.waitingSince ??= now;
      this.send();
      return;
    }
    const outstanding = this.outstanding;
    if (message.type === 'preview' || !('id' in message) || !outstanding || message.id !== outstanding.id) return;
    const { sentAt } = outstanding;
    this.outstanding = undefined;
    this.noteWait(now);
    const arrived = tallyAt(now);
    const owner = latencyTally(sentAt, now);
    let retryInMs = 0;
    if (message.type === 'frame') {
      if (arrived) {
        arrived.frames++;
        arrived.framesPerSession[this.index]++;
      }
      if (owner) recordMs(owner.frame, now - sentAt);
    } else if (message.type === 'error') {
      if (owner) bump(owner.errors, message.code);
      // A good client waits as asked, and never spins on instant refusals.
      retryInMs = Math.max(message.retryAfterMs ?? 0, 100);
    } else if (owner) {
      bump(owner.otherReplies, message.type);
    }
    this.waitingSince = now;
    if (retryInMs) setTimeout(() => this.send(), retryInMs);
    else this.send();
  }

  /** Records how long this session has waited inside the phase of `now`. */
  noteWait(now: number): void {
    const p = phaseAt(now);
    if (p < 0 || this.waitingSince === undefined) return;
    const wait = now - Math.max(this.waitingSince, phases[p].from);
    tallies[p].longestWaitMs = Math.max(tallies[p].longestWaitMs, wait);
  }

  private send(): void {
    const ws = this.ws;
    if (this.stopped || !this.open || !ws || ws.readyState !== WebSocket.OPEN || this.outstanding) return;
    const id = this.seq++;
    const message: GenerateMessage = {
      type: 'generate',
      id,
      prompt: job.prompt,
      image: job.images[(this.index * 7 + id) % job.images.length],
      strength: job.strength,
      steps: job.steps,
      seed: id,
      width: job.size,
      height: job.size,
      format: 'jpeg',
      previews: true,
    };
    const now = epochNow();
    this.outstanding = { id, sentAt: now };
    const t = tallyAt(now);
    if (t) t.requests++;
    ws.send(encodeMessage(message));
  }

  /** Stops sending; closes once the outstanding request settles or `graceMs` has passed. */
  stop(graceMs: number): void {
    this.stopped = true;
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return this.resolveDone();
    const close = () => (ws.readyState === WebSocket.OPEN ? ws.close(1000) : ws.terminate());
    const poll = setInterval(() => {
      if (!this.outstanding) {
        clearInterval(poll);
        close();
      }
    }, 20);
    setTimeout(() => {
      clearInterval(poll);
      close();
      setTimeout(() => ws.terminate(), 1000).unref();
    }, graceMs);
  }
}

const healthzUrl = `${job.httpUrl}/healthz`;
// Enough in flight to keep the clock through a full timeout without unbounded sockets.
const maxHealthzInFlight = Math.ceil(job.healthzTimeoutMs / job.healthzIntervalMs) + 1;
let healthzInFlight = 0;

async function pollHealthz(): Promise<void> {
  const sentAt = epochNow();
  if (healthzInFlight >= maxHealthzInFlight) {
    const t = tallyAt(sentAt);
    if (t) t.healthz.skipped++;
    return;
  }
  healthzInFlight++;
  try {
    const res = await fetch(healthzUrl, { signal: AbortSignal.timeout(job.healthzTimeoutMs) });
    await res.arrayBuffer();
    const t = latencyTally(sentAt, epochNow());
    if (!t) return;
    if (res.ok) {
      t.healthz.ok++;
      recordMs(t.healthzHist, epochNow() - sentAt);
    } else {
      t.healthz.failed++;
    }
  } catch (err) {
    const t = latencyTally(sentAt, epochNow());
    if (!t) return;
    if ((err as Error).name === 'TimeoutError') {
      t.healthz.timedOut++;
      // A floor: the poll waited at least this long.
      recordMs(t.healthzHist, job.healthzTimeoutMs);
    } else {
      t.healthz.failed++;
    }
  } finally {
    healthzInFlight--;
  }
}

const elu0 = performance.eventLoopUtilization();
const sessions = Array.from({ length: job.sessions }, (_, i) => new GoodSession(i));
sessions.forEach((s, i) => setTimeout(() => s.connect(), i * 50));
const post = (m: GoodWorkerMessage) => port.postMessage(m);

// Connected (or given up on) before the clock starts: a slow start must not eat the baseline.
const connectDeadline = epochNow() + 15_000;
while (sessions.some((s) => !s.everConnected) && epochNow() < connectDeadline) await new Promise((r) => setTimeout(r, 20));
post({ kind: 'connected', connected: sessions.filter((s) => s.everConnected).length });
phases = await new Promise<Phase[]>((resolve) => port.once('message', resolve));
tallies = phases.map(newTally);
const endAt = phases[phases.length - 1].to;

let healthzTimer: NodeJS.Timeout | undefined;
setTimeout(() => (healthzTimer = setInterval(() => void pollHealthz(), job.healthzIntervalMs)), Math.max(0, phases[0].from - epochNow()));
// A session silent through a whole phase must still show that silence.
for (const phase of phases) setTimeout(() => sessions.forEach((s) => s.noteWait(phase.to - 0.001)), Math.max(0, phase.to - epochNow()));
setTimeout(() => {
  clearInterval(healthzTimer);
  for (const s of sessions) s.stop(job.drainMs);
}, Math.max(0, endAt - epochNow()));

// Hard stop: whatever happens, report shortly after the drain.
const hardStop = new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, endAt + job.drainMs + 3000 - epochNow())));
await Promise.race([Promise.all(sessions.map((s) => s.done)), hardStop]);

const report: GoodReport = {
  phases: tallies.map((t) => ({
    frames: t.frames,
    framesPerSession: t.framesPerSession,
    requests: t.requests,
    frameHistogram: encodeHistogram(t.frame),
    healthzHistogram: encodeHistogram(t.healthzHist),
    errors: t.errors,
    otherReplies: t.otherReplies,
    longestWaitMs: Math.round(t.longestWaitMs),
    healthz: t.healthz,
  })),
  connected: sessions.filter((s) => s.everConnected).length,
  reconnects,
  eventLoopUtilization: performance.eventLoopUtilization(elu0).utilization,
};
post({ kind: 'report', report });
