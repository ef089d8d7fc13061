// One simulated user: connects, waits for `hello`, then sends generate messages as its scenario
// says (on a clock, or whenever a reply frees a slot) and records what comes back into the
// worker's shared tallies. All sends stop at `endAt`; the socket closes once every request has
// settled or the drain time is over.
import WebSocket from 'ws';
import { decodeMessage, encodeMessage } from '../../shared/codec.js';
import type { GenerateMessage, ServerMessage } from '../../shared/protocol.js';
import type { Histogram } from 'hdr-histogram-js';
import { recordMs } from './histogram.js';
import { epochNow, type LoadCounts, type LoadJob } from './messages.js';

/** Shared by every session of a worker. */
export interface Tally {
  counts: LoadCounts;
  errors: Record<string, number>;
  frame: Histogram;
  firstPreview: Histogram;
  connect: Histogram;
  timeline: { frames: number[]; messages: number[] };
  lastFrameAt: number;
}

interface Outstanding {
  sentAt: number;
  previews: number;
  steps: number;
}

/** Above this many unsent bytes on the generator's own socket, it skips a send instead of queueing. */
const CLIENT_BUFFER_LIMIT = 1 << 20;

export class SimulatedClient {
  private ws: WebSocket | undefined;
  private readonly outstanding = new Map<number, Outstanding>();
  private seq = 0;
  private connectStartedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private closing = false;
  private transportFailed = false;
  framesInWindow = 0;
  connected = false;
  /** Resolves when the socket is closed (by us, the server, or a failure). */
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    private readonly job: LoadJob,
    /** Global session index: spreads ramp offsets and send phases. */
    private readonly index: number,
    private readonly tally: Tally,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  /** Every request this session will make is made (and settled). */
  get finished(): boolean {
    const limit = this.job.scenario.requestsPerSession;
    return limit > 0 && this.seq >= limit && this.outstanding.size === 0;
  }

  start(): void {
    const { scenario, startAt, totalSessions } = this.job;
    const offset = scenario.rampS > 0 ? (scenario.rampS * 1000 * this.index) / totalSessions : 0;
    setTimeout(() => this.connect(), Math.max(0, startAt + offset - epochNow()));
  }

  private connect(): void {
    const { job } = this;
    if (this.closing) return;
    this.connectStartedAt = epochNow();
    const ws = new WebSocket(job.url, { perMessageDeflate: false, headers: job.headers, handshakeTimeout: job.connectTimeoutMs });
    ws.binaryType = 'nodebuffer';
    this.ws = ws;
    // Attached before 'open': hello can arrive in the same packet as the upgrade response.
    ws.on('message', (data: Buffer) => this.onMessage(data));
    ws.on('unexpected-response', (_req, res) => {
      this.transportFailed = true;
      this.error(`http_${res.statusCode ?? 0}`);
      res.resume();
      ws.terminate();
    });
    ws.on('error', () => {
      // An refused upgrade was counted already (as http_<status>).
      if (!this.transportFailed) this.error(this.connected ? 'socket_error' : 'connect_failed');
      this.transportFailed = true;
    });
    ws.on('close', (code) => {
      if (!this.closing && this.connected && !this.transportFailed) this.error(`closed_${code}`);
      this.connected = false;
      this.stopSending();
      this.tally.counts.unanswered += this.outstanding.size;
      this.outstanding.clear();
      this.resolveDone();
    });
  }

  private error(code: string): void {
    this.tally.errors[code] = (this.tally.errors[code] ?? 0) + 1;
  }

  private bucket(at: number): number {
    return Math.floor((at - this.job.startAt) / this.job.bucketMs);
  }

  private inWindow(at: number): boolean {
    return at >= this.job.measureFrom && at <= this.job.endAt;
  }

  private onMessage(data: Buffer): void {
    const now = epochNow();
    const { counts, timeline } = this.tally;
    counts.messagesReceived++;
    counts.bytesReceived += data.byteLength;
    if (this.inWindow(now)) counts.messagesReceivedInWindow++;
    const b = this.bucket(now);
    if (b >= 0 && b < timeline.messages.length) timeline.messages[b]++;

    const message = decodeMessage(data) as ServerMessage;
    switch (message.type) {
      case 'hello':
        this.connected = true;
        recordMs(this.tally.connect, now - this.connectStartedAt);
        this.beginSending();
        return;
      case 'preview': {
        counts.previews++;
        const request = this.outstanding.get(message.id as number);
        if (!request) return;
        if (request.previews++ === 0) recordMs(this.tally.firstPreview, now - request.sentAt);
        request.steps = message.steps;
        return;
      }
      case 'frame': {
        const request = this.outstanding.get(message.id as number);
        this.countFrame(now, b);
        if (request) {
          recordMs(this.tally.frame, now - request.sentAt);
          if (this.job.scenario.previews) counts.droppedPreviews += Math.max(0, request.steps - request.previews);
        }
        this.settle(message.id as number);
        return;
      }
      case 'superseded':
        counts.superseded++;
        this.settle(message.id as number);
        return;
      case 'skipped':
        counts.skipped++;
        this.settle(message.id as number);
        return;
      case 'cancelled':
        counts.cancelled++;
        this.settle(message.id as number);
        return;
      case 'error': {
        // Echo scenario: the expected answer to a cancel is the reply being measured.
        const request = this.job.inputs.kind === 'cancel' && message.code === 'unknown_request' ? this.outstanding.get(message.id as number) : undefined;
        if (request) {
          this.countFrame(now, b);
          recordMs(this.tally.frame, now - request.sentAt);
          this.settle(message.id as number);
          return;
        }
        this.error(message.code);
        if (message.id !== undefined) {
          counts.failed++;
          this.settle(message.id as number);
        }
        return;
      }
      default:
        return;
    }
  }

  private countFrame(now: number, bucket: number): void {
    const { counts, timeline } = this.tally;
    counts.frames++;
    this.tally.lastFrameAt = now;
    if (bucket >= 0 && bucket < timeline.frames.length) timeline.frames[bucket]++;
    if (this.inWindow(now)) {
      counts.framesInWindow++;
      this.framesInWindow++;
    }
  }

  private settle(id: number): void {
    if (!this.outstanding.delete(id)) return;
    const { scenario } = this.job;
    if (this.stopped || this.closing) {
      if (this.outstanding.size === 0) this.close();
      return;
    }
    // Closed loop: a reply frees a slot.
    if (scenario.rateHz === 0) this.send();
    if (this.finished) this.close();
  }

  private beginSending(): void {
    const { scenario, endAt } = this.job;
    this.timer = setTimeout(() => this.stopSending(), Math.max(0, endAt - epochNow()));
    if (scenario.rateHz === 0) {
      for (let i = 0; i < scenario.window; i++) this.send();
      return;
    }
    // Open loop: a clock per session, phases spread so sessions do not all send at the same instant.
    const interval = 1000 / scenario.rateHz;
    const phase = (interval * (this.index % 16)) / 16;
    let tick = 0;
    const origin = epochNow() + phase;
    const next = () => {
      if (this.stopped) return;
      const now = epochNow();
      const due = origin + tick * interval;
      if (now - due > interval) {
        // Behind by more than a tick: skip the missed ticks rather than burst to catch up.
        this.tally.counts.lateTicks++;
        tick = Math.floor((now - origin) / interval);
      }
      this.send();
      tick++;
      if (this.finishedSending()) return;
      this.timer = setTimeout(next, Math.max(0, origin + tick * interval - epochNow()));
    };
    this.timer = setTimeout(next, phase);
  }

  private finishedSending(): boolean {
    const limit = this.job.scenario.requestsPerSession;
    return limit > 0 && this.seq >= limit;
  }

  private send(): void {
    const ws = this.ws;
    if (!ws || this.stopped || this.finishedSending() || ws.readyState !== WebSocket.OPEN) return;
    const { scenario, inputs } = this.job;
    const counts = this.tally.counts;
    if (ws.bufferedAmount > CLIENT_BUFFER_LIMIT) {
      counts.clientSkippedSends++;
      return;
    }
    const id = this.seq++;
    if (inputs.kind === 'cancel') {
      this.transmit(id, encodeMessage({ type: 'cancel', id }), 0);
      return;
    }
    const message: GenerateMessage = {
      type: 'generate',
      id,
      prompt: inputs.prompts[(this.index + id) % inputs.prompts.length],
      steps: scenario.steps,
      seed: id,
      width: scenario.size,
      height: scenario.size,
      format: scenario.format,
      previews: scenario.previews,
    };
    if (inputs.images.length > 0) {
      message.image = inputs.images[(this.index + id) % inputs.images.length];
      message.strength = scenario.strength;
    }
    const expectedSteps = message.image ? Math.max(1, Math.floor(scenario.steps * scenario.strength)) : scenario.steps;
    this.transmit(id, encodeMessage(message), expectedSteps);
  }

  private transmit(id: number, bytes: Uint8Array, expectedSteps: number): void {
    const counts = this.tally.counts;
    const now = epochNow();
    this.outstanding.set(id, { sentAt: now, previews: 0, steps: expectedSteps });
    counts.sent++;
    counts.bytesSent += bytes.byteLength;
    if (this.inWindow(now)) counts.messagesSentInWindow++;
    this.ws!.send(bytes);
  }

  private stopSending(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.outstanding.size === 0) this.close();
  }

  /** Closes the socket (normally), or terminates it when it never opened or will not close. */
  close(): void {
    const ws = this.ws;
    if (this.closing) return;
    this.closing = true;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (!ws) {
      this.resolveDone();
      return;
    }
    if (ws.readyState === WebSocket.OPEN) {
      ws.close(1000);
      // A server that does not answer the close handshake must not hold the run open.
      setTimeout(() => ws.terminate(), 2000).unref();
    } else {
      ws.terminate();
    }
  }
}
