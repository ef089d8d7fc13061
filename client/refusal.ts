// What a failed connection attempt says about when to try again. The server refuses upgrades with
// 503 + Retry-After while its model loads or it is full, and 429 + Retry-After when a key holds too
// many sessions. `ws` (Node) shows that answer; browsers do not (a refused WebSocket just closes,
// status and headers hidden), so there the SDK asks GET /readyz, which answers 503 + Retry-After
// while the model loads and can be read by a page on another origin.
import { REALTIME_PATH } from '../shared/protocol.js';
import type { WebSocketLike } from './types.js';

/** An HTTP answer about a failed attempt. */
export interface Refusal {
  status: number;
  /** The server's Retry-After, in ms. */
  retryAfterMs?: number;
  /** `upgrade`: the refused upgrade itself (`ws`); `readyz`: the readiness endpoint (browsers). */
  source: 'upgrade' | 'readyz';
}

/** /readyz on a server that is up but slow to answer is no better than no answer. */
const PROBE_TIMEOUT_MS = 2000;

/** Retry-After as delay-seconds or an HTTP date, in ms from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: unknown, now = Date.now()): number | undefined {
  if (Array.isArray(value)) value = value[0];
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // Date.parse accepts bare numbers such as "1.5" as years; an HTTP date always names its month.
  if (!/[a-z]/i.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** A 503 or 429 refuses for load, not for the credentials: the token is still good. */
export function refusedForLoad(refusal: Refusal | undefined): boolean {
  return refusal !== undefined && (refusal.status === 503 || refusal.status === 429);
}

export function describeRefusal(refusal: Refusal): string {
  const wait = refusal.retryAfterMs === undefined ? '' : ` (Retry-After ${refusal.retryAfterMs / 1000} s)`;
  return refusal.source === 'upgrade'
    ? `Unexpected server response: ${refusal.status}${wait}`
    : `readiness check answered ${refusal.status}${wait}`;
}

/**
 * Reports the socket's refused upgrade, if it can show one. False when it cannot (browsers): then a
 * close before `open` may have been a refusal or a network failure, and only /readyz can tell.
 */
export function watchRefusal(socket: WebSocketLike, report: (refusal: Refusal) => void): boolean {
  if (typeof socket.on !== 'function') return false;
  socket.on('unexpected-response', (_request, response) => {
    report({ status: response?.statusCode ?? 0, retryAfterMs: parseRetryAfter(response?.headers?.['retry-after']), source: 'upgrade' });
    // With a listener attached `ws` leaves the refused handshake to us; this ends it with a close event.
    socket.close();
  });
  return true;
}

/** `wss://host/prefix/v1/realtime?token=...` -> `https://host/prefix/readyz` (never the token). */
export function defaultReadinessUrl(socketUrl: string): string | undefined {
  let url: URL;
  try {
    url = new URL(socketUrl);
  } catch {
    return undefined;
  }
  if (url.protocol === 'ws:') url.protocol = 'http:';
  else if (url.protocol === 'wss:') url.protocol = 'https:';
  else if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  // A reverse proxy may mount the server under a prefix; /readyz lives beside /v1/realtime.
  const prefix = url.pathname.endsWith(REALTIME_PATH) ? url.pathname.slice(0, -REALTIME_PATH.length) : '';
  url.pathname = `${prefix}/readyz`;
  url.search = '';
  url.hash = '';
  return url.toString();
}

/** GET `url`: its status and Retry-After, or undefined when it cannot be reached or read. */
export async function probeReadiness(url: string): Promise<Refusal | undefined> {
  if (typeof globalThis.fetch !== 'function') return undefined;
  try {
    const response = await globalThis.fetch(url, {
      cache: 'no-store',
      credentials: 'omit',
      ...(typeof AbortSignal.timeout === 'function' ? { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) } : {}),
    });
    // Only the head matters; let the connection go back to the pool.
    void response.body?.cancel().catch(() => undefined);
    return { status: response.status, retryAfterMs: parseRetryAfter(response.headers.get('retry-after')), source: 'readyz' };
  } catch {
    return undefined;
  }
}
