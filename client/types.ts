// The SDK's public types: options, inputs, events and the minimal WebSocket shape it needs.
import type {
  CancelledMessage,
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
 * `open` means the server's `hello` has arrived and requests flow.
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
}

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** When `state` is `reconnecting`: the delay before the next attempt. */
  retryInMs?: number;
}

export interface SentRequest {
  id: RequestId;
  input: GenerateInput;
}

/**
 * Every id returned by `send()` ends with exactly one `frame`, `superseded`, `skipped`, `cancelled`
 * or `error` event. `local: true` marks endings decided by the client (an unsent input replaced by
 * a newer one, or cancelled before it was sent or by `close()`).
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
  error: RealtimeError;
}
