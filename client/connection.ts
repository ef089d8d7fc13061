// One realtime connection: the socket's state machine and reconnects. What is sent and when (latest
// wins, resends after retryable errors) is RequestFlow's business (request-flow.ts).
//
// When the server says when to come back, that wins over guessing: a refused upgrade's Retry-After
// (or /readyz's, in browsers) replaces the exponential backoff, and `going_away` (or a 1001 close)
// reconnects at once with a little jitter. A 4008 (idle) close reconnects only when there is
// something to send. See docs/client.md.
import { CloseCode, ErrorCode, PROTOCOL_VERSION, type ErrorMessage, type RequestId } from '../shared/protocol.js';
import { apiKeyHeaders, TokenCache, withToken } from './auth.js';
import { Backoff } from './backoff.js';
import { Emitter } from './emitter.js';
import { ClientErrorCode, RealtimeError } from './errors.js';
import { decodeServerMessage, encodeAuth } from './messages.js';
import {
  defaultReadinessUrl,
  describeRefusal,
  probeReadiness,
  refusedForLoad,
  watchRefusal,
  type Refusal,
} from './refusal.js';
import { RequestFlow } from './request-flow.js';
import { afterClose, DEFAULT_REQUEST_RETRIES, goingAwayDelay } from './retry-policy.js';
import type {
  ConnectionEvents,
  ConnectionState,
  ConnectOptions,
  GenerateInput,
  StateChange,
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
  private readonly maxAttempts: number;
  private readonly reconnects: boolean;
  private readonly readinessUrl: string | undefined;
  private readonly flow: RequestFlow;

  /** Backoff failures before the current connection opened, in case it turns out no success. */
  private attemptsAtOpen = 0;
  /** Closed by the server for inactivity: the next `send()` reconnects. */
  private dormant = false;
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
    this.reconnects = options.reconnect !== false;
    const reconnect = options.reconnect || {};
    this.maxAttempts = reconnect.maxAttempts ?? Infinity;
    this.backoff = new Backoff(reconnect);
    this.flow = new RequestFlow({
      canSend: () => this.currentState === 'open' && this.socket?.readyState === OPEN,
      transmit: (bytes) => this.socket!.send(bytes),
      limits: () => this.lastHello?.limits,
      emit: (event, value) => this.emit(event, value),
    }, options.minIntervalMs ?? 0, options.requestRetries ?? DEFAULT_REQUEST_RETRIES);
    this.readinessUrl = options.readinessUrl === false ? undefined : options.readinessUrl ?? defaultReadinessUrl(url);
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
    return this.flow.pending;
  }

  /**
   * Asks for an image. Returns the id its events will carry. Never blocks and never buffers more
   * than one input: if an older input is still waiting to be sent, it is dropped (`superseded`,
   * local) in favour of this one.
   */
  send(input: GenerateInput): RequestId {
    if (this.currentState === 'closed') throw new RealtimeError(ClientErrorCode.Closed, 'the connection was closed');
    const id = this.flow.add(input);
    if (this.dormant) void this.open();
    return id;
  }

  /** Cancels a waiting or running request. False when the id is neither (already settled, unknown). */
  cancel(id: RequestId): boolean {
    return this.flow.cancel(id);
  }

  /** Closes for good: no reconnect; waiting and running requests end as local `cancelled`. */
  close(): Promise<void> {
    if (this.currentState === 'closed') return Promise.resolve();
    clearTimeout(this.reconnectTimer);
    this.tokens?.stop();
    this.attempt++;
    const socket = this.socket;
    this.socket = undefined;
    this.setState('closed');
    this.flow.abandon();
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
    this.dormant = false;
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
    let refusal: Refusal | undefined;
    const seesRefusals = watchRefusal(socket, (refused) => (refusal = refused));
    socket.onerror = (event: { message?: unknown }) => {
      if (typeof event?.message === 'string' && event.message) reason = event.message;
    };
    socket.onmessage = (event: { data: unknown }) => {
      if (this.socket === socket) this.receive(event.data);
    };
    socket.onclose = (event: { code?: number }) => {
      const code = event.code ?? 1006;
      if (this.socket !== socket) return;
      if (refusal) reason = describeRefusal(refusal);
      const failure = reason ?? `closed with code ${code}`;
      if (this.currentState === 'open') this.closedWhileOpen(code);
      else if (refusal || seesRefusals || !this.readinessUrl) this.failedAttempt(failure, refusal);
      else void this.probeThenRetry(failure);
    };
  }

  /** Forgets the socket; returns the id of the input waiting for the next connection, if any. */
  private detach(): RequestId | undefined {
    this.socket = undefined;
    return this.flow.connectionLost();
  }

  /** No `hello` on this attempt: a server that is down, or an upgrade refused (401/403, 429/503). */
  private failedAttempt(failure: string, refusal: Refusal | undefined): void {
    this.detach();
    // 401 for a token a restarted server no longer accepts, say: the next attempt fetches a fresh
    // one. A refusal for load says nothing against the token.
    if (!refusedForLoad(refusal)) this.tokens?.invalidate();
    this.retry(`cannot connect to ${this.url}: ${failure}`, refusal?.retryAfterMs);
  }

  /** Browsers hide why an upgrade failed; the server's /readyz may know when to come back. */
  private async probeThenRetry(failure: string): Promise<void> {
    const attempt = this.attempt;
    const readiness = await probeReadiness(this.readinessUrl!);
    if (attempt !== this.attempt || this.currentState === 'closed') return;
    const known = readiness && readiness.status >= 400 ? readiness : undefined;
    this.failedAttempt(known ? `${failure}; ${describeRefusal(known)}` : failure, known);
  }

  private closedWhileOpen(code: number): void {
    const waiting = this.detach();
    if (code === CloseCode.TokenExpired) this.tokens?.invalidate();
    const plan = afterClose(code);
    if (plan.kind === 'going_away') {
      this.goingAway(0, false);
      return;
    }
    if (plan.kind === 'idle' && waiting === undefined) {
      // Reconnecting now would only be closed again: wait for something to send.
      this.dormant = true;
      this.tokens?.pause();
      this.setState('idle');
      return;
    }
    // The hello's reset was premature: a client the server keeps closing must keep backing off.
    if (plan.kind === 'misbehaved') this.backoff.restore(this.attemptsAtOpen);
    const why = plan.kind === 'misbehaved' ? `: ${plan.why}` : '';
    const resend = waiting !== undefined ? `; request ${String(waiting)} will be resent` : '';
    const message = `connection lost (close code ${code}${why})${resend}`;
    this.emit('error', new RealtimeError(ClientErrorCode.ConnectionLost, message, undefined, false, { closeCode: code }));
    this.retry();
  }

  /**
   * The server is shutting down (deploy, scale-in) having answered what it accepted: reconnect
   * through the same URL right away, where a balancer picks another node. Not a failure, so the
   * backoff starts afresh.
   */
  private goingAway(reconnectAfterMs: number, announced: boolean): void {
    const socket = this.socket;
    this.detach();
    if (socket) {
      socket.onmessage = socket.onclose = null;
      // `ws` throws an 'error' event nobody listens to: keep a listener until the socket is gone.
      socket.onerror = () => undefined;
      socket.close(NORMAL_CLOSURE);
    }
    if (this.currentState === 'closed') return;
    this.backoff.reset();
    this.emit('going_away', { announced, reconnectAfterMs });
    if (!this.reconnects) {
      this.retry(`${this.url} is going away`);
      return;
    }
    this.schedule(goingAwayDelay(reconnectAfterMs), 'going_away');
  }

  /**
   * Schedules the next attempt; `failure` says why the last one failed (reported with the retry),
   * `advisedMs` is the server's Retry-After, which replaces the exponential delay.
   */
  private retry(failure?: string, advisedMs?: number): void {
    if (this.currentState === 'closed') return;
    if (!this.reconnects || this.backoff.attempts >= this.maxAttempts) {
      const why = this.reconnects ? `gave up after ${this.backoff.attempts} reconnect attempts` : 'reconnecting is off';
      const message = `${failure ?? `cannot connect to ${this.url}`} (${why})`;
      this.emit('error', new RealtimeError(ClientErrorCode.ConnectionFailed, message));
      void this.close();
      return;
    }
    if (failure) this.emit('error', new RealtimeError(ClientErrorCode.ConnectionRefused, `${failure}; retrying`));
    if (advisedMs !== undefined) this.schedule(this.backoff.advised(advisedMs), 'retry_after');
    else this.schedule(this.backoff.next(), 'backoff');
  }

  private schedule(delay: number, delayReason: NonNullable<StateChange['delayReason']>): void {
    this.setState('reconnecting', { retryInMs: delay, delayReason });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.open();
    }, delay);
  }

  private setState(state: ConnectionState, wait?: Pick<StateChange, 'retryInMs' | 'delayReason'>): void {
    const previous = this.currentState;
    if (previous === state) return;
    this.currentState = state;
    this.emit('state', { state, previous, ...wait });
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
        this.attemptsAtOpen = this.backoff.attempts;
        this.backoff.reset();
        this.setState('open');
        this.emit('hello', message);
        this.flow.connectionOpened();
        return;
      case 'preview':
        this.emit('preview', message);
        return;
      case 'frame':
        this.flow.settle(message.id, () => this.emit('frame', message));
        return;
      case 'skipped':
        this.flow.settle(message.id, () => this.emit('skipped', message));
        return;
      case 'superseded':
        this.flow.settle(message.id, () => this.emit('superseded', { ...message, local: false }));
        return;
      case 'cancelled':
        this.flow.settle(message.id, () => this.emit('cancelled', { ...message, local: false }));
        return;
      case 'error':
        this.serverError(message);
        return;
      case 'going_away':
        this.goingAway(message.reconnectAfterMs, true);
        return;
      default:
        // `authenticated` (the answer to an in-band token refresh) needs no action; types from a
        // newer server are ignored, as the protocol asks.
        return;
    }
  }

  private serverError(message: ErrorMessage): void {
    // It refuses a message, not a request: the request holding that id goes on and ends on its own.
    if (message.code === ErrorCode.DuplicateId) {
      this.emit('error', RealtimeError.fromMessage(message));
      return;
    }
    if (this.flow.retryLater(message)) return;
    this.flow.settle(message.id, () => this.emit('error', RealtimeError.fromMessage(message)));
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
