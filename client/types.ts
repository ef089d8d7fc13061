// The SDK's public types: options, inputs, events and the minimal WebSocket shape it needs.
import type {
  CancelledMessage,
  ErrorCode,
  FrameMessage,
  GenerateMessage,
  HelloMessage,
  PreviewMessage,
  RequestId,
  SkippedMessage,
  SupersededMessage,
} from '../shared/protocol.js';
import type { TokenProvider } from './auth.js';
import type { BackoffOptions } from './backoff.js';
import type { RealtimeError } from './errors.js';

/**
 * idle -> connecting -> open -> reconnecting -> connecting -> ... ; any state -> closed.
 * `open` means the server's `hello` has arrived and requests flow. `idle` is also where an open
 * connection goes when the server closes it for inactivity (4008): no reconnect until the next
 * `send()`.
 */
export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** One generation request as the caller describes it; the SDK adds `type` and the id. */
export type GenerateInput = Omit<GenerateMessage, 'type' | 'id'>;

/** The subset of the WHATWG WebSocket that browsers and the `ws` package both implement. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  // Events are typed loosely because browsers and `ws` declare different event classes.
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  /**
   * Present on `ws` (Node), absent in browsers: lets the SDK read a refused upgrade's status and
   * Retry-After. Browsers hide both, so there the SDK asks the server's /readyz instead.
   */
  on?(event: 'unexpected-response', listener: (request: unknown, response: RefusedUpgrade) => void): unknown;
}

/** The parts of `ws`'s refused-upgrade response (a Node IncomingMessage) the SDK reads. */
export interface RefusedUpgrade {
  statusCode?: number;
  headers?: Record<string, string | string[] | undefined>;
}

/** `globalThis.WebSocket` in browsers; `import WebSocket from 'ws'` in Node (which has none built in). */
export type WebSocketConstructor = new (url: string, options?: any) => WebSocketLike;

export interface ReconnectOptions extends BackoffOptions {
  /** Retries in a row (after the first failed attempt) before giving up with `connection_failed` (default: never give up). */
  maxAttempts?: number;
}

export interface ConnectOptions {
  /** WebSocket implementation; defaults to the global one (browsers). Required in Node 20. */
  WebSocket?: WebSocketConstructor;
  /** Server-side only: sent as `Authorization: Key <apiKey>` on the upgrade. Never ship it to browsers. */
  apiKey?: string;
  /** Browsers: returns a short-lived token, sent as the `token` query parameter; refreshed before expiry. */
  tokenProvider?: TokenProvider;
  /** Refresh a token this long before it expires (default 30 000 ms, at most half its lifetime). */
  tokenRefreshMarginMs?: number;
  /** Smallest gap between two requests sent to the server (default 0: send as soon as one settles). */
  minIntervalMs?: number;
  /** Backoff for reconnecting after a drop, or false to close instead (default 250 ms base, 10 s cap). */
  reconnect?: ReconnectOptions | false;
  /**
   * Times one input is resent after a retryable server error (`not_ready`, `shutting_down`,
   * `engine_restarted`, `overloaded`, `rate_limited`) before that error is reported as its end
   * (default 10; 0 reports the first one).
   */
  requestRetries?: number;
  /**
   * Asked after a failed connection attempt whose HTTP answer the WebSocket cannot show (browsers),
   * for the server's Retry-After. Default: the socket URL's host with `/v1/realtime` replaced by
   * `/readyz` (http or https); false never asks.
   */
  readinessUrl?: string | false;
}

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** When `state` is `reconnecting`: the delay before the next attempt. */
  retryInMs?: number;
  /**
   * When `state` is `reconnecting`, who chose the delay: the server's Retry-After (`retry_after`),
   * its `going_away` (or a 1001 close), or the exponential backoff when nothing better is known.
   */
  delayReason?: 'retry_after' | 'going_away' | 'backoff';
}

/** A request the server could not take now; the SDK sends it again after `retryInMs`. */
export interface RetryingRequest {
  id: RequestId;
  code: ErrorCode;
  message: string;
  /** 1 for the first resend of this input. */
  attempt: number;
  retryInMs: number;
}

/** The server is shutting down (deploy, scale-in); the SDK reconnects through the same URL. */
export interface GoingAway {
  /** False when the server (or a proxy) closed with 1001 without a `going_away` message first. */
  announced: boolean;
  /** The server's suggested wait; the SDK adds its own jitter (see the `state` event's retryInMs). */
  reconnectAfterMs: number;
}

export interface SentRequest {
  id: RequestId;
  input: GenerateInput;
}

/**
 * Every id returned by `send()` ends with exactly one `frame`, `superseded`, `skipped`, `cancelled`
 * or `error` event. `local: true` marks endings decided by the client (an unsent input replaced by
 * a newer one, or cancelled before it was sent or by `close()`). `retrying` is not an ending: the
 * same id is sent again (another `sent` event) and still ends exactly once.
 */
export interface ConnectionEvents {
  state: StateChange;
  hello: HelloMessage;
  /** A request left for the server (inputs replaced while waiting never get this). */
  sent: SentRequest;
  preview: PreviewMessage;
  frame: FrameMessage;
  superseded: SupersededMessage & { local: boolean };
  /** The server did not run it: its image barely differs from request `sameAs`, whose frame stands. */
  skipped: SkippedMessage;
  cancelled: CancelledMessage & { local: boolean };
  /** The server refused the request for now (loading, restarting, overloaded, draining, rate limit). */
  retrying: RetryingRequest;
  going_away: GoingAway;
  error: RealtimeError;
}
