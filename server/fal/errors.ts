// How the native error codes read in fal's API: over HTTP as a status with fal's error body (422
// with pydantic-style `detail` for bad fields), over the realtime socket as `x-fal-error` frames.
import { ErrorCode } from '../../shared/protocol.js';
import type { FalFieldError } from './fal-input.js';
import type { Responder } from './http-exchange.js';

/** Native codes whose message names a field of the request. */
export const FIELD_CODES: ReadonlySet<string> = new Set([
  ErrorCode.InvalidField, ErrorCode.InvalidSteps, ErrorCode.InvalidStrength, ErrorCode.InvalidSize, ErrorCode.InvalidSeed,
  ErrorCode.InvalidFormat, ErrorCode.PromptTooLong, ErrorCode.ImageTooLarge, ErrorCode.ImageUndecodable,
  ErrorCode.Img2ImgUnsupported, ErrorCode.InvalidFinalDecoder, ErrorCode.FinalDecoderUnavailable,
]);

/** Failures a later try may not meet: a queued job goes back in line instead of failing. */
export const RETRYABLE_CODES: ReadonlySet<string> = new Set([
  ErrorCode.NotReady, ErrorCode.ShuttingDown, ErrorCode.EngineRestarted, ErrorCode.Overloaded, ErrorCode.RateLimited,
]);

/** A queued request that did not start within its x-fal-request-timeout: 504, and its result says the
 * timeout was the client's (`x-fal-request-timeout-type: user`), which fal's client does not retry. */
export const START_TIMEOUT = { status: 504, code: 'request_timeout', timeoutType: 'user' } as const;

export function httpStatusFor(code: string): number {
  if (FIELD_CODES.has(code) || code.startsWith('image_')) return 422;
  if (code === ErrorCode.RateLimited || code === ErrorCode.Overloaded) return 429;
  if (code === ErrorCode.NotReady || code === ErrorCode.ShuttingDown || code === ErrorCode.EngineRestarted) return 503;
  return 500;
}

/** fal's error body: `detail` for its Python clients, `message` for ApiError in its JS client. */
export function sendError(r: Responder, status: number, code: string, message: string, retryAfterMs?: number, headers: Record<string, string> = {}): void {
  const retry: Record<string, string> = retryAfterMs !== undefined ? { 'retry-after': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) } : {};
  r.json(status, { detail: message, message, code }, { ...retry, ...headers });
}

/** The JSON input of a request ({} when it has no body), or undefined after answering 400. */
export function readJsonInput(body: Buffer, r: Responder): { input: unknown } | undefined {
  if (body.byteLength === 0) return { input: {} };
  try {
    return { input: JSON.parse(body.toString('utf8')) };
  } catch {
    sendError(r, 400, 'bad_json', 'the request body is not valid JSON');
    return undefined;
  }
}

export function sendFieldErrors(r: Responder, errors: FalFieldError[], headers: Record<string, string> = {}): void {
  const detail = errors.map((e) => ({ loc: e.loc, msg: e.message, type: e.type }));
  r.json(422, { detail, message: errors.map((e) => `${e.loc.slice(1).join('.')}: ${e.message}`).join('; '), code: errors[0]?.code }, headers);
}
