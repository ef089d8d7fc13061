// Bytes <-> protocol messages on the client side: what goes out is built from the caller's input
// with only the fields it set; what comes in is checked to be a message before anyone trusts it.
import { decodeMessage, encodeMessage } from '../shared/codec.js';
import type { GenerateMessage, RequestId, ServerMessage } from '../shared/protocol.js';
import type { GenerateInput } from './types.js';

export function encodeGenerate(id: RequestId, input: GenerateInput): Uint8Array {
  const message: Record<string, unknown> = { type: 'generate', id };
  // msgpack has no "absent": an `undefined` field would travel as a value the server rejects.
  for (const [key, value] of Object.entries(input)) {
    if (value !== undefined && key !== 'type' && key !== 'id') message[key] = value;
  }
  return encodeMessage(message as unknown as GenerateMessage);
}

export function encodeCancel(id: RequestId): Uint8Array {
  return encodeMessage({ type: 'cancel', id });
}

/** Hands the open connection a fresh token before the one it was opened with expires. */
export function encodeAuth(token: string): Uint8Array {
  return encodeMessage({ type: 'auth', token });
}

/** Browsers give an ArrayBuffer (binaryType 'arraybuffer'); `ws` does too with that setting. */
function toBytes(data: unknown): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new Error(typeof data === 'string' ? 'text frame (the protocol is binary msgpack)' : 'unexpected frame data');
}

/** A decoded server message, or an Error saying why the bytes are not one. Unknown types pass (newer servers). */
export function decodeServerMessage(data: unknown): ServerMessage | Error {
  let value: unknown;
  try {
    value = decodeMessage(toBytes(data));
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
  if (typeof value !== 'object' || value === null || typeof (value as { type?: unknown }).type !== 'string') {
    return new Error('not a protocol message (a msgpack map with a string `type`)');
  }
  return value as ServerMessage;
}
