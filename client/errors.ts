// Typed errors. Server errors keep the protocol's stable ErrorCode; failures the client detects on
// its own side (the socket, credentials, options) get the ClientErrorCode values below, so one
// `switch (error.code)` covers both.
import type { ErrorCode, ErrorMessage, RequestId } from '../shared/protocol.js';

export const ClientErrorCode = {
  /** The socket dropped; the client reconnects and resends the newest input. `closeCode` says why
   * (4002 and 4004 mean the server blamed this client: the reconnects back off). */
  ConnectionLost: 'connection_lost',
  /** A connection attempt failed (server down, or the upgrade refused: 401, 403, 429, 503); retried with backoff. */
  ConnectionRefused: 'connection_refused',
  /** Reconnecting gave up after `reconnect.maxAttempts` (or reconnecting is off); the connection is closed. */
  ConnectionFailed: 'connection_failed',
  /** `tokenProvider` threw or returned no usable token; retried with backoff. */
  AuthFailed: 'auth_failed',
  /** The server sent something that is not a protocol message. */
  BadServerMessage: 'bad_server_message',
  /** The server speaks another protocol version than this client. */
  ProtocolMismatch: 'protocol_mismatch',
  /** `connect()` options cannot work in this environment (thrown, not emitted). */
  InvalidOptions: 'invalid_options',
  /** `send()` on a connection that was closed with `close()` (thrown, not emitted). */
  Closed: 'closed',
} as const;
export type ClientErrorCode = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

export interface RealtimeErrorDetails {
  /** `duplicate_id`: the id of the refused message (the request holding it goes on). */
  refusedId?: RequestId;
  /** The server's hint: the same input may succeed after this many ms. */
  retryAfterMs?: number;
  /** `connection_lost`: the WebSocket close code. */
  closeCode?: number;
}

export class RealtimeError extends Error {
  override readonly name = 'RealtimeError';
  readonly refusedId?: RequestId;
  readonly retryAfterMs?: number;
  readonly closeCode?: number;

  constructor(
    readonly code: ErrorCode | ClientErrorCode,
    message: string,
    /** The request this error ends, when there is one. */
    readonly requestId?: RequestId,
    /** True when the server sent it (an `error` message), false when the client raised it. */
    readonly fromServer = false,
    details: RealtimeErrorDetails = {},
  ) {
    super(message);
    if (details.refusedId !== undefined) this.refusedId = details.refusedId;
    if (details.retryAfterMs !== undefined) this.retryAfterMs = details.retryAfterMs;
    if (details.closeCode !== undefined) this.closeCode = details.closeCode;
  }

  static fromMessage(message: ErrorMessage): RealtimeError {
    const retryAfterMs = typeof message.retryAfterMs === 'number' ? message.retryAfterMs : undefined;
    if (message.code === 'duplicate_id') {
      // It refuses a message, not a request, so it ends nothing: a server from before `refusedId`
      // put the refused id in `id`, which must not read as the running request's end.
      return new RealtimeError(message.code, message.message, undefined, true, { refusedId: message.refusedId ?? message.id, retryAfterMs });
    }
    return new RealtimeError(message.code, message.message, message.id, true, { retryAfterMs });
  }
}
