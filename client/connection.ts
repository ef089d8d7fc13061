// One realtime connection: the socket's state machine, latest-wins request flow and reconnects.
//
// Latest wins, mirroring the server: at most one request is in flight (sent, not yet settled) and
// at most one newer input waits unsent; a newer input replaces the waiting one, which ends as a
// local `superseded`. Inputs therefore never pile up, whatever rate the caller sends them at, and
// the server always renders the newest input next. After a drop the newest input (the waiting one,
// else the one that was in flight) is resent once the connection is open again.
import { CloseCode, PROTOCOL_VERSION, type RequestId, type ServerMessage } from '../shared/protocol.js';
import { apiKeyHeaders, TokenCache, withToken } from './auth.js';
import { Backoff } from './backoff.js';
import { Emitter } from './emitter.js';
import { ClientErrorCode, RealtimeError } from './errors.js';
import { decodeServerMessage, encodeAuth, encodeCancel, encodeGenerate } from './messages.js';
import type {
  ConnectionEvents,
  ConnectionState,
  ConnectOptions,
  GenerateInput,
  SentRequest,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';

const OPEN = 1;
const CLOSED = 3;
const NORMAL_CLOSURE = 1000;

export class RealtimeConnection extends Emitter<ConnectionEvents> {
  private currentState: ConnectionState = 'idle';
  private socket: WebSocketLike | undefined;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly backoff: Backoff;
  private readonly tokens: TokenCache | undefined;
  private readonly minIntervalMs: number;
  private readonly maxAttempts: number;
  private readonly reconnects: boolean;

  private inFlight: SentRequest | undefined;
  private queued: SentRequest | undefined;
  private nextId = 1;
  private lastSentAt = -Infinity;
  private pumpTimer: ReturnType<typeof setTimeout> | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Bumped on every connection attempt so a stale attempt's async steps do nothing. */
  private attempt = 0;
  private lastHello: ConnectionEvents['hello'] | undefined;

  constructor(
    readonly url: string,
    private readonly options: ConnectOptions = {},
  ) {
    super();
    const Impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Impl) {
      throw new RealtimeError(
        ClientErrorCode.InvalidOptions,
        'no global WebSocket here (Node 20): pass options.WebSocket, e.g. `import WebSocket from "ws"`',
      );
    }
    if (options.apiKey !== undefined && !options.WebSocket) {
      throw new RealtimeError(
        ClientErrorCode.InvalidOptions,
        'apiKey needs a WebSocket implementation that can send headers (e.g. `ws`); browsers use tokenProvider',
      );
    }
    this.WebSocketImpl = Impl;
    this.minIntervalMs = options.minIntervalMs ?? 0;
    this.reconnects = options.reconnect !== false;
    const reconnect = options.reconnect || {};
    this.maxAttempts = reconnect.maxAttempts ?? Infinity;
    this.backoff = new Backoff(reconnect);
    if (options.tokenProvider) {
      this.tokens = new TokenCache(options.tokenProvider, options.tokenRefreshMarginMs ?? 30_000, {
        // The open connection gets the new token in-band, so the server extends its lease.
        refreshed: (token) => {
          if (this.currentState === 'open' && this.socket?.readyState === OPEN) this.socket.send(encodeAuth(token));
        },
        refreshFailed: (err) =>
          this.emit('error', new RealtimeError(ClientErrorCode.AuthFailed, `token refresh failed: ${describe(err)}`)),
      });
    }
    // Connect on the next microtask so listeners added right after connect() see every event.
    queueMicrotask(() => {
      if (this.currentState === 'idle') void this.open();
    });
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  /** The latest `hello` (model and limits), once connected. */
  get hello(): ConnectionEvents['hello'] | undefined {
    return this.lastHello;
  }

  /** The request the server is working on, and the newer input waiting to be sent. */
  get pending(): { inFlight?: RequestId; queued?: RequestId } {
    return { inFlight: this.inFlight?.id, queued: this.queued?.id };
  }

  /**
   * Asks for an image. Returns the id its events will carry. Never blocks and never buffers more
   * than one input: if an older input is still waiting to be sent, it is dropped (`superseded`,
   * local) in favour of this one.
   */
  send(input: GenerateInput): RequestId {
    if (this.currentState === 'closed') throw new RealtimeError(ClientErrorCode.Closed, 'the connection was closed');
    const id = this.nextId++;
    const replaced = this.queued;
    this.queued = { id, input };
    if (replaced) this.emit('superseded', { type: 'superseded', id: replaced.id, local: true });
    this.pump();
    return id;
  }

  /** Cancels a waiting or running request. False when the id is neither (already settled, unknown). */
  cancel(id: RequestId): boolean {
    if (this.queued?.id === id) {
      this.queued = undefined;
      this.emit('cancelled', { type: 'cancelled', id, local: true });
      return true;
    }
    if (this.inFlight?.id === id && this.socket?.readyState === OPEN) {
      // The server answers `cancelled` (or the frame, if it finished first); either settles it.
      this.socket.send(encodeCancel(id));
      return true;
    }
    return false;
  }

  /** Closes for good: no reconnect; waiting and running requests end as local `cancelled`. */
  close(): Promise<void> {
    if (this.currentState === 'closed') return Promise.resolve();
    clearTimeout(this.pumpTimer);
    clearTimeout(this.reconnectTimer);
    this.tokens?.stop();
    this.attempt++;
    const socket = this.socket;
    this.socket = undefined;
    const abandoned = [this.inFlight, this.queued];
    this.inFlight = this.queued = undefined;
    this.setState('closed');
    for (const request of abandoned) if (request) this.emit('cancelled', { type: 'cancelled', id: request.id, local: true });
    if (!socket || socket.readyState === CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      socket.onclose = () => resolve();
      socket.onmessage = null;
      socket.close(NORMAL_CLOSURE);
    });
  }

  // ------------------------------------------------------------------ socket lifecycle

  private async open(): Promise<void> {
    const attempt = ++this.attempt;
    this.setState('connecting');
    let url = this.url;
    if (this.tokens) {
      try {
        url = withToken(url, await this.tokens.get());
      } catch (err) {
        if (attempt !== this.attempt) return;
        this.emit('error', new RealtimeError(ClientErrorCode.AuthFailed, `tokenProvider failed: ${describe(err)}`));
        this.retry();
        return;
      }
      if (attempt !== this.attempt) return; // closed while the token was fetched
    }
    let socket: WebSocketLike;
    try {
      socket = this.options.apiKey !== undefined
        ? new this.WebSocketImpl(url, { headers: apiKeyHeaders(this.options.apiKey) })
        : new this.WebSocketImpl(url);
    } catch (err) {
      // A malformed URL: retrying cannot help.
      this.emit('error', new RealtimeError(ClientErrorCode.ConnectionFailed, `cannot open ${this.url}: ${describe(err)}`));
      void this.close();
      return;
    }
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    // Every error is followed by a close event, which is where the connection reacts. `ws` says
    // why (e.g. "Unexpected server response: 401"); browsers hide it behind a bare event.
    let reason: string | undefined;
    socket.onerror = (event: { message?: unknown }) => {
      if (typeof event?.message === 'string' && event.message) reason = event.message;
    };
    socket.onmessage = (event: { data: unknown }) => {
      if (this.socket === socket) this.receive(event.data);
    };
    socket.onclose = (event: { code?: number }) => {
      const code = event.code ?? 1006;
      if (this.socket === socket) this.dropped(code, reason ?? `closed with code ${code}`);
    };
  }

  private dropped(code: number, reason: string): void {
    const wasOpen = this.currentState === 'open';
    this.socket = undefined;
    // Refused before `hello` (401 for a token a restarted server no longer accepts, say) or closed
    // because the token expired: the next attempt must present a fresh token.
    if (!wasOpen || code === CloseCode.TokenExpired) this.tokens?.invalidate();
    clearTimeout(this.pumpTimer);
    this.pumpTimer = undefined;
    // The server forgot everything about this connection: the newest input must be sent again.
    const lost = this.inFlight;
    this.inFlight = undefined;
    if (lost) {
      if (this.queued) this.emit('superseded', { type: 'superseded', id: lost.id, local: true });
      else this.queued = lost;
    }
    if (wasOpen) {
      const resend = this.queued ? `; request ${String(this.queued.id)} will be resent` : '';
      this.emit('error', new RealtimeError(ClientErrorCode.ConnectionLost, `connection lost (close code ${code})${resend}`));
      this.retry();
    } else {
      // A server that is down, or an upgrade refused: 401/403 credentials or origin, 429/503 busy or loading.
      this.retry(`cannot connect to ${this.url}: ${reason}`);
    }
  }

  /** Schedules the next attempt; `failure` says why the last one failed (reported with the retry). */
  private retry(failure?: string): void {
    if (this.currentState === 'closed') return;
    if (!this.reconnects || this.backoff.attempts >= this.maxAttempts) {
      const why = this.reconnects ? `gave up after ${this.backoff.attempts} reconnect attempts` : 'reconnecting is off';
      const message = `${failure ?? `cannot connect to ${this.url}`} (${why})`;
      this.emit('error', new RealtimeError(ClientErrorCode.ConnectionFailed, message));
      void this.close();
      return;
    }
    if (failure) this.emit('error', new RealtimeError(ClientErrorCode.ConnectionRefused, `${failure}; retrying`));
    const delay = this.backoff.next();
    this.setState('reconnecting', delay);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.open();
    }, delay);
  }

  private setState(state: ConnectionState, retryInMs?: number): void {
    const previous = this.currentState;
    if (previous === state) return;
    this.currentState = state;
    this.emit('state', retryInMs === undefined ? { state, previous } : { state, previous, retryInMs });
  }

  // ------------------------------------------------------------------ messages

  private receive(data: unknown): void {
    const message = decodeServerMessage(data);
    if (message instanceof Error) {
      this.emit('error', new RealtimeError(ClientErrorCode.BadServerMessage, `bad message from the server: ${message.message}`));
      return;
    }
    switch (message.type) {
      case 'hello':
        if (message.protocol !== PROTOCOL_VERSION) {
          this.emit('error', new RealtimeError(
            ClientErrorCode.ProtocolMismatch,
            `the server speaks protocol ${message.protocol}, this client ${PROTOCOL_VERSION}`,
          ));
          void this.close();
          return;
        }
        this.lastHello = message;
        this.backoff.reset();
        this.setState('open');
        this.emit('hello', message);
        this.pump();
        return;
      case 'preview':
        this.emit('preview', message);
        return;
      case 'frame':
        this.settle(message, () => this.emit('frame', message));
        return;
      case 'skipped':
        this.settle(message, () => this.emit('skipped', message));
        return;
      case 'superseded':
        this.settle(message, () => this.emit('superseded', { ...message, local: false }));
        return;
      case 'cancelled':
        this.settle(message, () => this.emit('cancelled', { ...message, local: false }));
        return;
      case 'error':
        this.settle(message, () => this.emit('error', RealtimeError.fromMessage(message)));
        return;
      default:
        // `authenticated` (the answer to an in-band token refresh) needs no action; types from a
        // newer server are ignored, as the protocol asks.
        return;
    }
  }

  /**
   * A final reply: the request it names is no longer in flight. Listeners hear about it first, so
   * events keep the wire's order (this request's end, then the next one's `sent`); the newest
   * waiting input goes out right after.
   */
  private settle(message: ServerMessage, notify: () => void): void {
    if ('id' in message && message.id !== undefined && this.inFlight?.id === message.id) this.inFlight = undefined;
    notify();
    this.pump();
  }

  /** Sends the waiting input if the server can take it now (nothing in flight, interval elapsed). */
  private pump(): void {
    if (this.currentState !== 'open' || this.inFlight || !this.queued || this.socket?.readyState !== OPEN) return;
    const wait = this.lastSentAt + this.minIntervalMs - performance.now();
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
    this.socket.send(encodeGenerate(request.id, request.input));
    this.emit('sent', request);
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
