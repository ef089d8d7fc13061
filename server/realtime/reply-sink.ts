// Where a session's replies go. A session speaks in protocol messages; each front door decides how
// they leave: the native socket encodes them as msgpack, fal's realtime socket translates them into
// fal's results and error frames, an HTTP request collects them into one response.
import { encodeMessage } from '../../shared/codec.js';
import type { ServerMessage } from '../../shared/protocol.js';

export interface ReplySink {
  /** False when the message was not delivered (the peer is gone). */
  deliver(message: ServerMessage): boolean;
  /** Bytes written and not yet taken by the peer: what backpressure is measured on. */
  bufferedAmount(): number;
  close(code: number, reason: string): void;
}

/** A byte transport, as a WebSocket is. */
export interface ByteSink {
  send(bytes: Uint8Array): boolean;
  bufferedAmount(): number;
  close(code: number, reason: string): void;
}

/** The native protocol: every message is one binary msgpack frame. */
export function msgpackSink(transport: ByteSink): ReplySink {
  return {
    deliver: (message) => transport.send(encodeMessage(message)),
    bufferedAmount: () => transport.bufferedAmount(),
    close: (code, reason) => transport.close(code, reason),
  };
}
