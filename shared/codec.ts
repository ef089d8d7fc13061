// One msgpack configuration for both directions. Plain maps (no msgpackr records or shared
// structures) so that any msgpack library in any language can speak the protocol; binary fields
// travel as msgpack `bin`.
import { Packr } from 'msgpackr';
import { MsgpackRejectedError, scanMsgpack } from './msgpack-guard.js';
import type { ClientMessage, ServerMessage } from './protocol.js';

const packr = new Packr({
  useRecords: false,
  // Decoded `bin` fields must outlive the transport's buffer (uWebSockets.js neuters it).
  copyBuffers: true,
  // Keep every integer a plain number, and refuse nothing on decode that a client might send.
  int64AsType: 'number',
  mapsAsObjects: true,
});

export function encodeMessage(message: ClientMessage | ServerMessage): Uint8Array {
  return packr.pack(message);
}

/** Any other plain value (fal's results), with the same conventions. */
export function encodeValue(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Decodes bytes into an untrusted value: validate it before use. Throws on malformed msgpack
 * (a MsgpackRejectedError when the structural check refuses it before msgpackr runs). */
export function decodeMessage(bytes: Uint8Array): unknown {
  const scan = scanMsgpack(bytes);
  if (!scan.ok) throw new MsgpackRejectedError(scan.reason, scan.offset, scan.message);
  return packr.unpack(bytes);
}
