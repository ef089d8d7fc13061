// Typed errors. Server errors keep the protocol's stable ErrorCode; failures the client detects on
// its own side (the socket, credentials, options) get the ClientErrorCode values below, so one
// `switch (error.code)` covers both.
import type { ErrorCode, ErrorMessage, RequestId } from '../shared/protocol.js';

export const ClientErrorCode = {
  /** The socket dropped; the client reconnects and resends the newest input. */
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

export class RealtimeError extends Error {
  override readonly name = 'RealtimeError';

  constructor(
    readonly code: ErrorCode | ClientErrorCode,
    message: string,
    /** The request this error is about, when there is one. */
    readonly requestId?: RequestId,
    /** True when the server sent it (an `error` message), false when the client raised it. */
    readonly fromServer = false,
  ) {
    super(message);
  }

  static fromMessage(message: ErrorMessage): RealtimeError {
    return new RealtimeError(message.code, message.message, message.id, true);
  }
}
