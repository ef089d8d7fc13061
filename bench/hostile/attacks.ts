// The attackers that speak WebSocket: the length bomb, the image flood, big requests and idle
// sessions (the partial-message attacker writes raw TCP: partial.ts). Each starts when its phase
// starts and stops, closing every socket it opened, when the phase ends or the RSS guard fires;
// nothing here loops without a clock or a reply to drive it.
import WebSocket from 'ws';
import { decodeMessage, encodeMessage } from '../../shared/codec.js';
import type { GenerateMessage, ServerMessage } from '../../shared/protocol.js';
import { epochNow } from '../load/messages.js';
import type { FloodImage } from './flood-image.js';
import { bump, lifetimeSummary, type AttackReport } from './messages.js';
import { PartialMessageAttack } from './partial.js';
import type { AttackName, HostileScenario } from './scenario.js';

export interface Attack {
  start(): void;
  /** Stops sending and closes every connection; the same report however often it is called. */
  stop(): Promise<AttackReport>;
}

export interface AttackContext {
  url: string;
  headers: Record<string, string>;
  scenario: HostileScenario;
  floodImage?: FloodImage;
}

/**
 * 0x dd 02 00 00 00: a msgpack array32 header declaring 33,554,432 elements, then 16 bytes of
 * them. A decoder that allocates what the header declares reserves a quarter of a gigabyte (and
 * fills it) for a 21-byte message, before it finds the data missing.
 */
export const LENGTH_BOMB = Buffer.concat([Buffer.from([0xdd, 0x02, 0x00, 0x00, 0x00]), Buffer.alloc(16)]);

/** Above this many unsent bytes on an attacker's own socket, it skips a send instead of queueing. */
const CLIENT_BUFFER_LIMIT = 16 * 1024 * 1024;

/** Calls `fire` `ratePerS` times a second; a clock that fell over a second behind skips ahead. */
function rateClock(ratePerS: number, fire: () => void): () => void {
  const started = performance.now();
  let fired = 0;
  const tick = () => {
    const due = Math.floor(((performance.now() - started) / 1000) * ratePerS) + 1;
    if (due - fired > Math.max(1, ratePerS)) fired = due - 1;
    while (fired < due) {
      fired++;
      fire();
    }
  };
  tick();
  const timer = setInterval(tick, Math.max(10, Math.min(250, 1000 / ratePerS)));
  return () => clearInterval(timer);
}

/** Counts how `ws` ended (refused upgrade or close code) unless the attack was stopping, then calls `afterEnd`. */
function countEnds(ws: WebSocket, report: AttackReport, stopping: () => boolean, afterEnd: () => void): void {
  let refused = false;
  ws.on('unexpected-response', (_req, res) => {
    refused = true;
    bump(report.ends, `refused_${res.statusCode ?? 0}`);
    res.resume();
    ws.terminate();
  });
  ws.on('error', () => undefined);
  ws.on('close', (code) => {
    if (stopping()) return;
    if (!refused) bump(report.ends, `closed_${code}`);
    afterEnd();
  });
}

function replyKey(message: ServerMessage): string {
  return message.type === 'error' ? message.code : message.type;
}

/** One client that sends length bombs on a clock and comes back whenever it is closed. */
class LengthBombAttack implements Attack {
  private readonly report: AttackReport = { counts: { connects: 0, sent: 0, notOpen: 0 }, replies: {}, ends: {} };
  private ws: WebSocket | undefined;
  private stopped = false;
  private stopClock: (() => void) | undefined;
  private result: Promise<AttackReport> | undefined;

  constructor(private readonly ctx: AttackContext) {}

  start(): void {
    this.connect();
    this.stopClock = rateClock(this.ctx.scenario.bomb.ratePerS, () => {
      if (this.ws?.readyState === WebSocket.OPEN) {
        this.ws.send(LENGTH_BOMB);
        this.report.counts.sent++;
      } else {
        this.report.counts.notOpen++;
      }
    });
  }

  private connect(): void {
    if (this.stopped) return;
    this.report.counts.connects++;
    const ws = new WebSocket(this.ctx.url, { perMessageDeflate: false, headers: this.ctx.headers, handshakeTimeout: 10_000 });
    this.ws = ws;
    ws.on('message', (data: Buffer) => bump(this.report.replies, replyKey(decodeMessage(data) as ServerMessage)));
    countEnds(ws, this.report, () => this.stopped, () => {
      // Straight back, as an attacker would; the pause only keeps a refusing server from a busy loop.
      setTimeout(() => this.connect(), 100);
    });
  }

  stop(): Promise<AttackReport> {
    this.result ??= (async () => {
      this.stopped = true;
      this.stopClock?.();
      if (this.ws?.readyState === WebSocket.OPEN) bump(this.report.ends, 'open_at_end');
      this.ws?.terminate();
      return this.report;
    })();
    return this.result;
  }
}

interface GenerateSpec {
  sessions: number;
  /** Requests kept outstanding per session (closed loop). */
  window: number;
  /** Open loop: requests per second per session, whatever the replies; 0 = closed loop. */
  ratePerS: number;
  message(id: number): GenerateMessage;
}

/** Sessions sending generates as fast as the server's rate limit allows (flood, big requests). */
class GenerateAttack implements Attack {
  private readonly report: AttackReport = { counts: { connects: 0, sent: 0, bytesSent: 0, clientBufferFull: 0 }, replies: {}, ends: {} };
  private readonly sockets = new Set<WebSocket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly clocks: (() => void)[] = [];
  private stopped = false;
  private seq = 0;
  private result: Promise<AttackReport> | undefined;

  constructor(
    private readonly ctx: AttackContext,
    private readonly spec: GenerateSpec,
  ) {}

  start(): void {
    for (let i = 0; i < this.spec.sessions; i++) this.connect();
  }

  private later(fn: () => void, ms: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped) fn();
    }, ms);
    this.timers.add(timer);
  }

  private connect(): void {
    if (this.stopped) return;
    this.report.counts.connects++;
    const ws = new WebSocket(this.ctx.url, { perMessageDeflate: false, headers: this.ctx.headers, handshakeTimeout: 10_000 });
    this.sockets.add(ws);
    let outstanding = 0;
    let minIntervalMs = 0;
    let lastSendAt = 0;
    const send = () => {
      if (this.stopped || ws.readyState !== WebSocket.OPEN) return;
      if (ws.bufferedAmount > CLIENT_BUFFER_LIMIT) {
        this.report.counts.clientBufferFull++;
        return;
      }
      const bytes = encodeMessage(this.spec.message(this.seq++));
      outstanding++;
      lastSendAt = epochNow();
      this.report.counts.sent++;
      this.report.counts.bytesSent += bytes.byteLength;
      ws.send(bytes);
    };
    // Never faster than the server's per-session rate limit: past it every request is refused at once.
    const sendSoon = () => this.later(send, Math.max(0, lastSendAt + minIntervalMs - epochNow()));
    ws.on('message', (data: Buffer) => {
      const message = decodeMessage(data) as ServerMessage;
      if (message.type === 'hello') {
        minIntervalMs = 1000 / message.limits.maxRequestsPerSecond;
        if (this.spec.ratePerS > 0) this.clocks.push(rateClock(this.spec.ratePerS, send));
        else for (let i = 0; i < this.spec.window; i++) this.later(send, i * minIntervalMs);
        return;
      }
      bump(this.report.replies, replyKey(message));
      const final = message.type !== 'preview' && 'id' in message && message.id !== undefined;
      if (!final) return;
      outstanding = Math.max(0, outstanding - 1);
      if (this.spec.ratePerS === 0 && outstanding < this.spec.window) sendSoon();
    });
    ws.on('close', () => this.sockets.delete(ws));
    countEnds(ws, this.report, () => this.stopped, () => this.later(() => this.connect(), 250));
  }

  stop(): Promise<AttackReport> {
    this.result ??= (async () => {
      this.stopped = true;
      for (const stopClock of this.clocks) stopClock();
      for (const timer of this.timers) clearTimeout(timer);
      for (const ws of this.sockets) {
        if (ws.readyState === WebSocket.OPEN) bump(this.report.ends, 'open_at_end');
        ws.terminate();
      }
      return this.report;
    })();
    return this.result;
  }
}

/** Sessions that connect and then only answer pings (ws answers them by itself). */
class IdleAttack implements Attack {
  private readonly report: AttackReport = { counts: { connected: 0 }, replies: {}, ends: {} };
  private readonly open = new Map<WebSocket, number>();
  /** Every socket, handshaking or open, so that stop() leaves none behind. */
  private readonly sockets = new Set<WebSocket>();
  private readonly lifetimes: number[] = [];
  private stopped = false;
  private result: Promise<AttackReport> | undefined;

  constructor(private readonly ctx: AttackContext) {}

  start(): void {
    let next = 0;
    // 50 handshakes in flight at a time: a listen backlog is finite.
    const lane = async () => {
      while (!this.stopped && next < this.ctx.scenario.idle.sessions) {
        next++;
        await this.openOne();
      }
    };
    for (let i = 0; i < 50; i++) void lane();
  }

  private openOne(): Promise<void> {
    return new Promise((resolve) => {
      const ws = new WebSocket(this.ctx.url, { perMessageDeflate: false, headers: this.ctx.headers, handshakeTimeout: 10_000 });
      this.sockets.add(ws);
      let openedAt = 0;
      ws.on('message', (data: Buffer) => {
        const message = decodeMessage(data) as ServerMessage;
        if (message.type === 'hello' && !openedAt) {
          openedAt = epochNow();
          this.open.set(ws, openedAt);
          this.report.counts.connected++;
          resolve();
        } else {
          bump(this.report.replies, replyKey(message));
        }
      });
      ws.on('unexpected-response', (_req, res) => {
        bump(this.report.ends, `refused_${res.statusCode ?? 0}`);
        res.resume();
        ws.terminate();
      });
      ws.on('error', () => undefined);
      ws.on('close', (code) => {
        this.sockets.delete(ws);
        resolve();
        if (this.stopped || !openedAt) return;
        this.open.delete(ws);
        bump(this.report.ends, `closed_${code}`);
        this.lifetimes.push(epochNow() - openedAt);
      });
    });
  }

  stop(): Promise<AttackReport> {
    this.result ??= (async () => {
      this.stopped = true;
      const now = epochNow();
      for (const [ws, openedAt] of this.open) {
        bump(this.report.ends, 'open_at_end');
        this.lifetimes.push(now - openedAt);
      }
      for (const ws of this.sockets) ws.terminate();
      this.report.lifetimeMs = lifetimeSummary(this.lifetimes);
      return this.report;
    })();
    return this.result;
  }
}

export function createAttack(name: AttackName, ctx: AttackContext): Attack {
  const { scenario: s } = ctx;
  switch (name) {
    case 'bomb':
      return new LengthBombAttack(ctx);
    case 'flood': {
      const image = ctx.floodImage;
      if (!image) throw new Error('the image flood needs its image');
      return new GenerateAttack(ctx, {
        sessions: s.flood.sessions,
        window: 1,
        ratePerS: s.flood.ratePerS,
        // Two prompts in turn: the same input with the same settings would be answered `skipped`.
        message: (id) => ({
          type: 'generate', id, prompt: `flood ${id % 2}`, image: image.bytes, strength: s.flood.strength, steps: s.flood.steps,
          seed: id, width: s.flood.size, height: s.flood.size, format: 'jpeg', previews: false,
        }),
      });
    }
    case 'big':
      return new GenerateAttack(ctx, {
        sessions: s.big.sessions,
        window: s.big.window,
        ratePerS: 0,
        message: (id) => ({
          type: 'generate', id, prompt: `a large detailed scene ${id % 2}`, steps: s.big.steps, seed: id,
          width: s.big.size, height: s.big.size, format: 'jpeg', previews: true,
        }),
      });
    case 'idle':
      return new IdleAttack(ctx);
    case 'partial':
      return new PartialMessageAttack(ctx.url, ctx.headers, s.partial);
  }
}
