// Reading a request body from uWebSockets.js: chunks arrive through onData and are only valid during
// the callback, so each is copied; a body over the limit is refused as soon as it passes the limit
// (its Content-Length is checked first), never buffered whole.
import type { HttpResponse } from '../transport/uws.js';

export type BodyResult = { ok: true; body: Buffer } | { ok: false; reason: 'too_large' | 'aborted' };

/** Must be called synchronously in the route handler, which must also have registered onAborted
 * through `onAborted` here (uWS allows one handler). */
export function readBody(res: HttpResponse, contentLength: string, maxBytes: number, aborted: { value: boolean }): Promise<BodyResult> {
  return new Promise((resolve) => {
    const declared = Number(contentLength);
    if (contentLength !== '' && Number.isFinite(declared) && declared > maxBytes) {
      resolve({ ok: false, reason: 'too_large' });
      // Still drain what arrives so the response can be written; nothing is kept.
      res.onData(() => {});
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    res.onData((chunk, isLast) => {
      if (aborted.value) return;
      if (!over) {
        size += chunk.byteLength;
        if (size > maxBytes) {
          over = true;
          chunks.length = 0;
          resolve({ ok: false, reason: 'too_large' });
        } else {
          chunks.push(Buffer.from(chunk.slice(0)));
        }
      }
      if (isLast && !over) resolve({ ok: true, body: Buffer.concat(chunks, size) });
    });
  });
}
