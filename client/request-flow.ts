// Latest wins, mirroring the server: at most one request is in flight (sent, not yet settled) and
// at most one newer input waits unsent; a newer input replaces the waiting one, which ends as a
// local `superseded`. Inputs therefore never pile up, whatever rate the caller sends them at, and
// the server always renders the newest input next.
//
// An input the server refused for now (a retryable error) goes back to wait and out again after
// the server's pause; a newer input replaces it there like any other. The socket is the
// connection's business: this only asks whether it can send and hands it bytes.
import type { ErrorMessage, Limits, RequestId } from '../shared/protocol.js';
import { encodeCancel, encodeGenerate } from './messages.js';
import { isRetryable, requestRetryDelay } from './retry-policy.js';
import type { ConnectionEvents, GenerateInput } from './types.js';

interface Outgoing {
  id: RequestId;
  input: GenerateInput;
  /** Times the server answered this input with a retryable error. */
  retries: number;
}

export interface FlowHost {
  /** True while the connection is open (hello received) and its socket can take bytes. */
  canSend(): boolean;
  transmit(bytes: Uint8Array): void;
  /** The current server's limits, once known. */
  limits(): Partial<Limits> | undefined;
  emit<K extends keyof ConnectionEvents>(event: K, value: ConnectionEvents[K]): void;
}

export class RequestFlow {
  private inFlight: Outgoing | undefined;
  private queued: Outgoing | undefined;
  /** The server asked for a pause (`retryAfterMs`): nothing goes out on this connection before it. */
  private holdUntil = 0;
  private nextId = 1;
  private lastSentAt = -Infinity;
  private pumpTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly host: FlowHost,
    private readonly minIntervalMs: number,
    private readonly maxRetries: number,
  ) {}

  get pending(): { inFlight?: RequestId; queued?: RequestId } {
    return { inFlight: this.inFlight?.id, queued: this.queued?.id };
  }

  /** Takes a new input, replacing the one waiting; returns its id. */
  add(input: GenerateInput): RequestId {
    const id = this.nextId++;
    const replaced = this.queued;
    this.queued = { id, input, retries: 0 };
    if (replaced) this.host.emit('superseded', { type: 'superseded', id: replaced.id, local: true });
    this.pump();
    return id;
  }

  cancel(id: RequestId): boolean {
    if (this.queued?.id === id) {
      this.queued = undefined;
      this.host.emit('cancelled', { type: 'cancelled', id, local: true });
      return true;
    }
    if (this.inFlight?.id === id && this.host.canSend()) {
      // The server answers `cancelled` (or the frame, if it finished first); either settles it.
      this.host.transmit(encodeCancel(id));
      return true;
    }
    return false;
  }

  /**
   * The connection is gone, and the server forgot everything about it: the newest input (the
   * waiting one, else the one in flight) waits to be sent on the next. Returns its id.
   */
  connectionLost(): RequestId | undefined {
    this.stopTimer();
    const lost = this.inFlight;
    this.inFlight = undefined;
    if (lost) {
      if (this.queued) this.host.emit('superseded', { type: 'superseded', id: lost.id, local: true });
      else this.queued = lost;
    }
    return this.queued?.id;
  }

  /** A new connection is open: a pause the previous server asked for says nothing about this one. */
  connectionOpened(): void {
    this.holdUntil = 0;
    this.pump();
  }

  /** Closed for good: everything still waiting or running ends as a local `cancelled`. */
  abandon(): void {
    this.stopTimer();
    const abandoned = [this.inFlight, this.queued];
    this.inFlight = this.queued = undefined;
    for (const request of abandoned) if (request) this.host.emit('cancelled', { type: 'cancelled', id: request.id, local: true });
  }

  /**
   * A final reply for `id`: it is no longer in flight. Listeners hear about it first (`notify`),
   * so events keep the wire's order (this request's end, then the next one's `sent`); the newest
   * waiting input goes out right after.
   */
  settle(id: RequestId | undefined, notify: () => void): void {
    if (id !== undefined && this.inFlight?.id === id) this.inFlight = undefined;
    notify();
    this.pump();
  }

  /**
   * The server could not take the request in flight now (loading, restarting, overloaded,
   * draining, rate limit): it goes back to wait, and out again after the server's pause, unless
   * a newer input replaced it meanwhile. False when the error is not of that kind or the input
   * used up its retries: then the error ends it.
   */
  retryLater(message: ErrorMessage): boolean {
    const request = this.inFlight;
    if (!request || message.id !== request.id || !isRetryable(message)) return false;
    const delay = requestRetryDelay(message, this.host.limits());
    // The pause applies to whatever goes out next on this connection, this input or a newer one.
    this.holdUntil = Math.max(this.holdUntil, performance.now() + delay);
    if (request.retries >= this.maxRetries) return false;
    this.inFlight = undefined;
    request.retries++;
    if (this.queued) {
      this.host.emit('superseded', { type: 'superseded', id: request.id, local: true });
    } else {
      this.queued = request;
      this.host.emit('retrying', { id: request.id, code: message.code, message: message.message, attempt: request.retries, retryInMs: delay });
    }
    this.pump();
    return true;
  }

  /** Sends the waiting input if the server can take it now (nothing in flight, interval and pause over). */
  pump(): void {
    if (this.inFlight || !this.queued || !this.host.canSend()) return;
    const wait = Math.max(this.lastSentAt + this.minIntervalMs, this.holdUntil) - performance.now();
    if (wait > 0) {
      this.pumpTimer ??= setTimeout(() => {
        this.pumpTimer = undefined;
        this.pump();
      }, wait);
      return;
    }
    const request = this.queued;
    this.queued = undefined;
    this.inFlight = request;
    this.lastSentAt = performance.now();
    this.host.transmit(encodeGenerate(request.id, request.input));
    this.host.emit('sent', { id: request.id, input: request.input });
  }

  stopTimer(): void {
    clearTimeout(this.pumpTimer);
    this.pumpTimer = undefined;
  }
}
