// Reading a request body from uWebSockets.js: chunks arrive through onData and are only valid during
// the callback, so each is copied; a body over the limit is never buffered. It is refused once it
// has been read past (without keeping it) when it is at most DRAIN_FACTOR times the limit, so a
// proxy in front sees a whole exchange with a 413 instead of a connection reset mid-upload (nginx
// would count that as a failed node); a body larger still is refused at once.
import type { HttpResponse } from '../transport/uws.js';

export type BodyResult = { ok: true; body: Buffer } | { ok: false; reason: 'too_large' | 'aborted' };

const DRAIN_FACTOR = 4;

/** Must be called synchronously in the route handler, which must also have registered onAborted
 * and report it through `aborted` (uWS allows one handler). */
export function readBody(res: HttpResponse, contentLength: string, maxBytes: number, aborted: { value: boolean }): Promise<BodyResult> {
  return new Promise((resolve) => {
    const declared = contentLength === '' ? undefined : Number(contentLength);
    const drainLimit = maxBytes * DRAIN_FACTOR;
    if (declared !== undefined && Number.isFinite(declared) && declared > drainLimit) {
      resolve({ ok: false, reason: 'too_large' });
      res.onData(() => {});
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (result: BodyResult) => {
      if (!settled) resolve(result);
      settled = true;
    };
    res.onData((chunk, isLast) => {
      if (aborted.value || settled) return;
      size += chunk.byteLength;
      if (size > drainLimit) {
        chunks.length = 0;
        settle({ ok: false, reason: 'too_large' });
        return;
      }
      if (size <= maxBytes) chunks.push(Buffer.from(chunk.slice(0)));
      else chunks.length = 0;
      if (isLast) settle(size <= maxBytes ? { ok: true, body: Buffer.concat(chunks, size) } : { ok: false, reason: 'too_large' });
    });
  });
}
