// Signing and verifying fal-style webhook deliveries. The server signs with it; receivers verify
// with it, which is why it lives in shared/ and imports nothing but node:crypto.
//
// The scheme, for receivers that do not use this module:
//   x-fal-webhook-request-id:  the queue request id the delivery is about
//   x-fal-webhook-timestamp:   when it was signed, in whole unix seconds
//   x-fal-webhook-signature:   v1=<hex HMAC-SHA256(secret, `${requestId}.${timestamp}.${body}`)>
// `body` is the raw request body exactly as received (verify before parsing the JSON). The request
// id and timestamp are inside the signed string so a captured delivery cannot be replayed for
// another request, nor long after it was sent: receivers refuse timestamps outside a tolerance
// (default 5 minutes), and should dedupe on the request id because a delivery may arrive more than
// once. The `v1=` prefix leaves room for another scheme; a header may list several comma-separated
// signatures (as while a secret is rotated) and verifies when any `v1` one matches.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const WEBHOOK_REQUEST_ID_HEADER = 'x-fal-webhook-request-id';
export const WEBHOOK_TIMESTAMP_HEADER = 'x-fal-webhook-timestamp';
export const WEBHOOK_SIGNATURE_HEADER = 'x-fal-webhook-signature';

export const DEFAULT_WEBHOOK_TOLERANCE_SECONDS = 300;

const SIGNATURE_VERSION = 'v1';
const HEX_SHA256 = /^[0-9a-f]{64}$/i;
const UNIX_SECONDS = /^\d{1,15}$/;

function hmac(secret: string, requestId: string, timestamp: number, body: string): Uint8Array {
  return createHmac('sha256', secret).update(`${requestId}.${timestamp}.${body}`, 'utf8').digest();
}

/** The `x-fal-webhook-signature` value for one delivery: `v1=<hex>`. */
export function signWebhook(secret: string, requestId: string, timestamp: number, body: string): string {
  const digest = hmac(secret, requestId, timestamp, body);
  let hex = '';
  for (const byte of digest) hex += byte.toString(16).padStart(2, '0');
  return `${SIGNATURE_VERSION}=${hex}`;
}

/** The three signature headers for a delivery signed at `now` (milliseconds). */
export function webhookSignatureHeaders(secret: string, requestId: string, body: string, now = Date.now()): Record<string, string> {
  const timestamp = Math.floor(now / 1000);
  return {
    [WEBHOOK_REQUEST_ID_HEADER]: requestId,
    [WEBHOOK_TIMESTAMP_HEADER]: String(timestamp),
    [WEBHOOK_SIGNATURE_HEADER]: signWebhook(secret, requestId, timestamp, body),
  };
}

export interface VerifyWebhookOptions {
  /** How far the timestamp may be from `now`, either way (clock skew), in seconds. Default 300. */
  toleranceSeconds?: number;
  /** The receiver's clock, in milliseconds. */
  now?: number;
}

// Node's IncomingMessage headers are lower-case, but a Headers object copied into a record or a
// framework's own record may not be; a duplicated header (an array) is ambiguous, so it fails.
function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  let value = headers[name];
  if (value === undefined) {
    for (const key of Object.keys(headers)) {
      if (key.toLowerCase() === name) {
        value = headers[key];
        break;
      }
    }
  }
  return typeof value === 'string' ? value : undefined;
}

function hexBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/**
 * True when the headers carry a `v1` signature of `body` by `secret`, for the request id they name,
 * with a timestamp within `toleranceSeconds` of `now`. The comparison is constant-time.
 * Accepts `req.headers` from node:http directly (its only array-valued header is set-cookie).
 */
export function verifyWebhookSignature(
  secret: string,
  headers: Record<string, string | string[] | undefined>,
  body: string,
  { toleranceSeconds = DEFAULT_WEBHOOK_TOLERANCE_SECONDS, now = Date.now() }: VerifyWebhookOptions = {},
): boolean {
  const requestId = header(headers, WEBHOOK_REQUEST_ID_HEADER);
  const timestampText = header(headers, WEBHOOK_TIMESTAMP_HEADER)?.trim();
  const signatures = header(headers, WEBHOOK_SIGNATURE_HEADER);
  if (!secret || requestId === undefined || timestampText === undefined || signatures === undefined) return false;
  if (!UNIX_SECONDS.test(timestampText)) return false;
  const timestamp = Number(timestampText);
  if (!(Math.abs(now / 1000 - timestamp) <= toleranceSeconds)) return false;

  const expected = hmac(secret, requestId, timestamp, body);
  let matched = false;
  for (const entry of signatures.split(',')) {
    const item = entry.trim();
    const eq = item.indexOf('=');
    const hex = item.slice(eq + 1);
    if (eq < 0 || item.slice(0, eq) !== SIGNATURE_VERSION || !HEX_SHA256.test(hex)) continue;
    // No early exit: every candidate is compared, so timing says nothing about which one matched.
    if (timingSafeEqual(hexBytes(hex), expected)) matched = true;
  }
  return matched;
}
