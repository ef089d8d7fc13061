// A client-SDK session streaming camera frames through the cluster, either at a camera's fixed
// rate (the SDK keeps only the newest input while one is in flight) or closed loop (the next frame
// goes out when the previous request ends, as an app that shows each frame before sending the
// next does: the most load a session can put on a node). It records what the tests and the bench judge a cluster by: when each frame arrived,
// when the session was told to go away or lost its socket, and how every request it sent ended,
// so that a request lost in a drain or a crash cannot hide behind the SDK's retries.
import WebSocket from 'ws';
import { connect, type ConnectionEvents, type GenerateInput, type RealtimeConnection, type RequestId } from '../../client/index.js';

export type Ending = 'frame' | 'superseded' | 'skipped' | 'cancelled' | 'error';
const ENDINGS: readonly Ending[] = ['frame', 'superseded', 'skipped', 'cancelled', 'error'];

export interface StreamRequest extends Omit<GenerateInput, 'image'> {
  /** Sent in turn; two or more that differ, or the server may skip a frame as a repeat. */
  images: readonly Uint8Array[];
}

export interface StreamPace {
  /** Inputs per second, paced by the clock; 0 (default) for closed loop. */
  rate?: number;
}

export interface TimedEvent {
  at: number;
  name: keyof ConnectionEvents;
  value: unknown;
}

export class CameraStream {
  readonly connection: RealtimeConnection;
  /** performance.now() at each frame's arrival. */
  readonly frames: number[] = [];
  /** Per frame: its arrival, and the ms since its request first left (a resend keeps the first time). */
  readonly latencies: { at: number; ms: number }[] = [];
  /** going_away, state changes, hellos, retries and errors, in order. */
  readonly events: TimedEvent[] = [];
  /** How each request sent ended; a request still open has no entry. */
  readonly endings = new Map<RequestId, Ending>();
  readonly sent: RequestId[] = [];
  /** Requests the SDK sent again (after `retrying`, or on a new connection). */
  readonly resent = new Set<RequestId>();
  private streaming = false;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private next = 0;
  private latest: RequestId | undefined;
  private settled: (() => void) | undefined;

  constructor(url: string, apiKey: string, private readonly request: StreamRequest, private readonly pace: StreamPace = {}) {
    this.connection = connect(url, { WebSocket, apiKey });
    const c = this.connection;
    const log = (name: keyof ConnectionEvents) => (value: unknown) => this.events.push({ at: performance.now(), name, value });
    for (const name of ['state', 'hello', 'going_away', 'retrying', 'error'] as const) c.on(name, log(name));
    const firstSent = new Map<RequestId, number>();
    c.on('sent', ({ id }) => (firstSent.has(id) ? this.resent.add(id) : firstSent.set(id, performance.now())));
    for (const ending of ENDINGS) {
      c.on(ending, (value: { id?: RequestId; requestId?: RequestId }) => {
        const id = ending === 'error' ? value.requestId : value.id;
        if (id === undefined) return; // a connection error ends no request
        if (ending === 'frame') {
          const now = performance.now();
          this.frames.push(now);
          const sentAt = firstSent.get(id);
          if (sentAt !== undefined) this.latencies.push({ at: now, ms: now - sentAt });
        }
        firstSent.delete(id);
        this.endings.set(id, ending);
        if (id === this.latest) this.onLatestEnded();
      });
    }
  }

  /** Resolves once the server said hello. */
  opened(timeoutMs = 20_000): Promise<void> {
    if (this.connection.state === 'open') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no hello in ${timeoutMs} ms`)), timeoutMs);
      const off = this.connection.on('hello', () => {
        clearTimeout(timer);
        off();
        resolve();
      });
    });
  }

  start(): void {
    this.streaming = true;
    const rate = this.pace.rate ?? 0;
    if (rate > 0) {
      // A random phase, as independent cameras have: inputs in lockstep would arrive as bursts.
      const period = 1000 / rate;
      setTimeout(() => {
        if (!this.streaming) return;
        this.sendNext();
        this.ticker = setInterval(() => this.sendNext(), period);
      }, Math.random() * period);
    } else if (this.latest === undefined || this.endings.has(this.latest)) {
      this.sendNext();
    }
  }

  /** Stops sending and waits (at most `timeoutMs`) for the request in flight to end. */
  async stop(timeoutMs = 20_000): Promise<void> {
    this.streaming = false;
    clearInterval(this.ticker);
    if (this.latest === undefined || this.endings.has(this.latest)) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.settled = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  close(): Promise<void> {
    this.streaming = false;
    clearInterval(this.ticker);
    return this.connection.close();
  }

  /** Requests that ended without their frame or a newer input's (error, cancelled) or not at all. */
  lost(): { id: RequestId; ending: Ending | 'open' }[] {
    const lost: { id: RequestId; ending: Ending | 'open' }[] = [];
    for (const id of this.sent) {
      const ending = this.endings.get(id);
      if (ending === 'frame' || ending === 'superseded' || ending === 'skipped') continue;
      lost.push({ id, ending: ending ?? 'open' });
    }
    return lost;
  }

  /** Times of the named event at or after `from`. */
  times(name: keyof ConnectionEvents, from = 0, match: (value: any) => boolean = () => true): number[] {
    return this.events.filter((e) => e.name === name && e.at >= from && match(e.value)).map((e) => e.at);
  }

  private onLatestEnded(): void {
    if (!this.streaming) this.settled?.();
    else if (!this.pace.rate) this.sendNext();
  }

  private sendNext(): void {
    const { images, ...input } = this.request;
    const image = images[this.next++ % images.length];
    this.latest = this.connection.send({ ...input, image });
    this.sent.push(this.latest);
  }
}

/** Gaps between consecutive frames that both arrived within [from, to). */
export function frameGaps(frames: readonly number[], from: number, to: number): number[] {
  const gaps: number[] = [];
  for (let i = 1; i < frames.length; i++) if (frames[i - 1] >= from && frames[i] < to) gaps.push(frames[i] - frames[i - 1]);
  return gaps;
}

/** The wait across `at`: from the last frame before it to the first frame after it. */
export function gapAcross(frames: readonly number[], at: number): { before: number; after: number; ms: number } | undefined {
  const i = frames.findIndex((t) => t > at);
  if (i <= 0) return undefined;
  return { before: frames[i - 1], after: frames[i], ms: frames[i] - frames[i - 1] };
}

/** The first frame after `at`, as ms after `at`. */
export function firstFrameAfter(frames: readonly number[], at: number): number | undefined {
  const t = frames.find((f) => f > at);
  return t === undefined ? undefined : t - at;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
