// The client SDK's public entry: `connect(url, options)` and the types it uses. Runs in browsers
// (global WebSocket) and in Node 20 (pass `WebSocket` from the `ws` package). See docs/client.md.
// Apps written against fal's own client use the separate entry '@realtime-diffusion/client/fal'
// instead (client/fal.ts): it patches a global when called, so it stays out of this one.
import { RealtimeConnection } from './connection.js';
import type { ConnectOptions } from './types.js';

export function connect(url: string, options: ConnectOptions = {}): RealtimeConnection {
  return new RealtimeConnection(url, options);
}

export { RealtimeConnection } from './connection.js';
export { ClientErrorCode, RealtimeError } from './errors.js';
export { TOKEN_QUERY_PARAM, type AuthToken, type TokenProvider } from './auth.js';
export type { BackoffOptions } from './backoff.js';
export type * from './types.js';
export { ErrorCode, PROTOCOL_VERSION, REALTIME_PATH } from '../shared/protocol.js';
export type {
  FrameMessage,
  HelloMessage,
  ImageFormat,
  Limits,
  ModelInfo,
  PreviewMessage,
  RequestId,
  SkippedMessage,
  Timings,
} from '../shared/protocol.js';
