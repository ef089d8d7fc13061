// One msgpack configuration for both directions. Plain maps (no msgpackr records or shared
// structures) so that any msgpack library in any language can speak the protocol; binary fields
// travel as msgpack `bin`.
import { Packr } from 'msgpackr';
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

/** Decodes bytes into an untrusted value: validate it before use. Throws on malformed msgpack. */
export function decodeMessage(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}
