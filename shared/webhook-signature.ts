// Webhook signatures as fal makes them, which this server makes too, so a receiver written for
// fal's webhooks verifies this server's with one change: where it fetches the public keys. This
// module is the receiving side, on WebCrypto alone (Node 20+, browsers, edge runtimes), and ships
// in the client SDK as '@realtime-diffusion/client/webhooks'; the server signs in
// server/fal/webhook-signer.ts.
//
// The scheme (fal's, as its webhook documentation describes it):
//   x-fal-webhook-request-id:  the queue request id the delivery is about
//   x-fal-webhook-user-id:     who submitted it (here: the id of the API key)
//   x-fal-webhook-timestamp:   when it was signed, in whole unix seconds
//   x-fal-webhook-signature:   hex Ed25519 signature of the UTF-8 text
//                              `${requestId}\n${userId}\n${timestamp}\n${hex SHA-256 of the body}`
// The public keys are a JWKS at `<server>/.well-known/jwks.json` (fal's: rest.fal.ai's, the same
// path). `body` is the raw request body exactly as received: verify before parsing the JSON.
// Receivers refuse timestamps outside a tolerance (5 minutes) and dedupe on the request id, since
// a delivery may arrive more than once.

export const WEBHOOK_REQUEST_ID_HEADER = 'x-fal-webhook-request-id';
export const WEBHOOK_USER_ID_HEADER = 'x-fal-webhook-user-id';
export const WEBHOOK_TIMESTAMP_HEADER = 'x-fal-webhook-timestamp';
export const WEBHOOK_SIGNATURE_HEADER = 'x-fal-webhook-signature';
/** Where the server publishes its webhook keys (fal: https://rest.fal.ai/.well-known/jwks.json). */
export const WEBHOOK_JWKS_PATH = '/.well-known/jwks.json';

export const DEFAULT_WEBHOOK_TOLERANCE_SECONDS = 300;

/** One public key of the JWKS. */
export interface WebhookJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  /** The raw public key, base64url. */
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
}

/** What is signed, given the hex SHA-256 of the body. */
export function webhookSignedText(requestId: string, userId: string, timestamp: string, bodySha256Hex: string): string {
  return `${requestId}\n${userId}\n${timestamp}\n${bodySha256Hex}`;
}

export interface VerifyWebhookOptions {
  /** How far the timestamp may be from `now`, either way (clock skew), in seconds. Default 300. */
  toleranceSeconds?: number;
  /** The receiver's clock, in milliseconds. */
  now?: number;
}

/** Header values from a fetch `Headers` or a plain record (node:http's `req.headers`). */
export type WebhookHeaders = { get(name: string): string | null } | Record<string, string | string[] | undefined>;

const HEX_SIGNATURE = /^[0-9a-f]{128}$/i;
const UNIX_SECONDS = /^\d{1,15}$/;

// Records may not be lower-case (a framework's copy); a duplicated header (an array) is ambiguous,
// so it fails.
function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof headers.get === 'function') return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  const record = headers as Record<string, string | string[] | undefined>;
  let value = record[name];
  if (value === undefined) {
    const key = Object.keys(record).find((k) => k.toLowerCase() === name);
    if (key !== undefined) value = record[key];
  }
  return typeof value === 'string' ? value : undefined;
}

function hex(bytes: ArrayBuffer): string {
  let out = '';
  for (const byte of new Uint8Array(bytes)) out += byte.toString(16).padStart(2, '0');
  return out;
}

function fromHex(text: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/**
 * True when the headers carry an Ed25519 signature, by one of `keys` (the server's JWKS, or its
 * `keys`), of `body` for the request and user they name, with a timestamp within
 * `toleranceSeconds` of `now`. `body` is the raw body: a string (UTF-8) or its bytes.
 */
export async function verifyWebhookSignature(
  keys: readonly { x?: unknown }[] | { keys: readonly { x?: unknown }[] },
  headers: WebhookHeaders,
  body: string | Uint8Array,
  { toleranceSeconds = DEFAULT_WEBHOOK_TOLERANCE_SECONDS, now = Date.now() }: VerifyWebhookOptions = {},
): Promise<boolean> {
  const requestId = header(headers, WEBHOOK_REQUEST_ID_HEADER);
  const userId = header(headers, WEBHOOK_USER_ID_HEADER);
  const timestamp = header(headers, WEBHOOK_TIMESTAMP_HEADER)?.trim();
  const signature = header(headers, WEBHOOK_SIGNATURE_HEADER)?.trim();
  if (requestId === undefined || userId === undefined || timestamp === undefined || signature === undefined) return false;
  if (!UNIX_SECONDS.test(timestamp) || !HEX_SIGNATURE.test(signature)) return false;
  if (!(Math.abs(now / 1000 - Number(timestamp)) <= toleranceSeconds)) return false;
  const encoder = new TextEncoder();
  const bytes = typeof body === 'string' ? encoder.encode(body) : new Uint8Array(body);
  const message = encoder.encode(webhookSignedText(requestId, userId, timestamp, hex(await crypto.subtle.digest('SHA-256', bytes))));
  const signatureBytes = fromHex(signature);
  const list: readonly { x?: unknown }[] = Array.isArray(keys) ? keys : (keys as { keys: readonly { x?: unknown }[] }).keys;
  for (const candidate of list) {
    if (typeof candidate.x !== 'string') continue;
    try {
      const key = await crypto.subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: candidate.x }, { name: 'Ed25519' }, false, ['verify']);
      if (await crypto.subtle.verify({ name: 'Ed25519' }, key, signatureBytes, message)) return true;
    } catch {
      // not an Ed25519 public key: try the next
    }
  }
  return false;
}
