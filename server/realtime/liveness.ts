// Two limits on how long a connection may hold server memory without doing its part, checked by one
// timer for all sockets (a timer per socket would cost more than the checks):
//
// Message deadline. uWebSockets.js resets its idle timer on every byte received, so a client that
// trickles one byte a second into a 16 MB frame is never timed out, and the partial frame stays
// buffered. A client in the middle of a frame cannot answer a ping either (control frames cannot go
// inside a data frame), so the server pings every deadline/2 and closes a socket whose ping stays
// unanswered for the deadline. A message that arrives whole within the deadline always passes (its
// ping went out after it started); a stalled one is dropped within 1.5 deadlines and a sweep.
// Browsers and `ws` answer pings on their own.
//
// Session idle. A client that answers pings but sends nothing still holds a session slot. It is
// closed once it has sent no generate, cancel or auth (pongs do not count) for the idle timeout,
// unless a request of its own is still running or pending.
import { CloseCode } from '../../shared/protocol.js';

export interface WatchedSocket {
  ping(payload: Uint8Array): void;
  close(code: number, reason: string): void;
  /** performance.now()-clock time of the client's last generate, cancel or auth. */
  lastActivityAt(): number;
  openRequests(): number;
}

export interface LivenessOptions {
  messageDeadlineMs: number;
  /** 0: never. */
  sessionIdleMs: number;
  /** A socket was closed by this sweep. */
  closed(reason: 'message_deadline' | 'idle'): void;
  now?: () => number;
}

interface Watch {
  /** Payload of the ping awaiting its pong; pongs to anything else (uWS's own pings) do not count. */
  awaiting: Uint8Array | undefined;
  pingSentAt: number;
  /** Last time the session had a request open: work in progress is not idleness. */
  busyAt: number;
}

export class LivenessSweep {
  private readonly sockets = new Map<WatchedSocket, Watch>();
  private readonly now: () => number;
  private sequence = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: LivenessOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  /** Often enough that closes land within a quarter deadline (or a second) of being due. */
  get intervalMs(): number {
    return Math.min(1000, this.options.messageDeadlineMs / 4);
  }

  start(): void {
    this.timer ??= setInterval(() => this.sweep(), this.intervalMs);
    // The process exits on its own terms; this timer never holds it.
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  add(socket: WatchedSocket): void {
    const now = this.now();
    this.sockets.set(socket, { awaiting: undefined, pingSentAt: now, busyAt: now });
  }

  delete(socket: WatchedSocket): void {
    this.sockets.delete(socket);
  }

  pong(socket: WatchedSocket, payload: ArrayBuffer): void {
    const watch = this.sockets.get(socket);
    if (!watch?.awaiting || payload.byteLength !== watch.awaiting.length) return;
    const bytes = new Uint8Array(payload);
    if (bytes.every((b, i) => b === watch.awaiting![i])) watch.awaiting = undefined;
  }

  sweep(): void {
    const now = this.now();
    const { messageDeadlineMs, sessionIdleMs } = this.options;
    for (const [socket, watch] of this.sockets) {
      if (watch.awaiting) {
        if (now - watch.pingSentAt >= messageDeadlineMs) {
          this.close(socket, 'message_deadline', CloseCode.MessageDeadline, `no pong within ${messageDeadlineMs / 1000} s: a message stalled or the client is gone`);
          continue;
        }
      } else if (now - watch.pingSentAt >= messageDeadlineMs / 2) {
        const payload = new Uint8Array(4);
        new DataView(payload.buffer).setUint32(0, ++this.sequence >>> 0);
        watch.awaiting = payload;
        watch.pingSentAt = now;
        socket.ping(payload);
      }
      if (sessionIdleMs <= 0) continue;
      if (socket.openRequests() > 0) watch.busyAt = now;
      if (now - Math.max(socket.lastActivityAt(), watch.busyAt) >= sessionIdleMs) {
        this.close(socket, 'idle', CloseCode.Idle, `idle: no request for ${sessionIdleMs / 1000} s`);
      }
    }
  }

  private close(socket: WatchedSocket, reason: 'message_deadline' | 'idle', code: number, text: string): void {
    this.sockets.delete(socket);
    this.options.closed(reason);
    socket.close(code, text);
  }
}
