// Signing and verifying webhook deliveries the way fal signs its own, so a receiver written for
// fal's webhooks verifies this server's with one change: where it fetches the public keys. The
// server signs with it; receivers may verify with it, which is why it lives in shared/ and imports
// nothing but node:crypto.
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
//
// The signing key is derived from the server's webhook secret (HKDF-SHA256), so every node given
// the same secret signs with the same key and serves the same JWKS; receivers hold no secret.
import { createHash, createPrivateKey, createPublicKey, hkdfSync, sign, verify, type KeyObject } from 'node:crypto';

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

export interface WebhookSigner {
  privateKey: KeyObject;
  jwk: WebhookJwk;
}

// An Ed25519 private key is a 32-byte seed; PKCS#8 wraps it in this fixed DER prefix (RFC 8410).
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const HEX_SIGNATURE = /^[0-9a-f]{128}$/i;
const UNIX_SECONDS = /^\d{1,15}$/;

/** The signing key for `secret`: the same secret gives the same key on every node. */
export function webhookSigner(secret: string): WebhookSigner {
  if (!secret) throw new RangeError('the webhook secret must not be empty');
  const seed = Buffer.from(hkdfSync('sha256', secret, 'realtime-diffusion', 'webhook signing key, ed25519', 32));
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const { x } = createPublicKey(privateKey).export({ format: 'jwk' });
  if (typeof x !== 'string') throw new Error('Ed25519 public key export gave no x');
  const kid = createHash('sha256').update(x).digest('hex').slice(0, 16);
  return { privateKey, jwk: { kty: 'OKP', crv: 'Ed25519', x, kid, alg: 'EdDSA', use: 'sig' } };
}

function signedText(requestId: string, userId: string, timestamp: string, body: string): Buffer {
  const digest = createHash('sha256').update(body, 'utf8').digest('hex');
  return Buffer.from(`${requestId}\n${userId}\n${timestamp}\n${digest}`, 'utf8');
}

/** The four signature headers for a delivery signed at `now` (milliseconds). */
export function webhookSignatureHeaders(signer: WebhookSigner, requestId: string, userId: string, body: string, now = Date.now()): Record<string, string> {
  const timestamp = String(Math.floor(now / 1000));
  return {
    [WEBHOOK_REQUEST_ID_HEADER]: requestId,
    [WEBHOOK_USER_ID_HEADER]: userId,
    [WEBHOOK_TIMESTAMP_HEADER]: timestamp,
    [WEBHOOK_SIGNATURE_HEADER]: sign(null, signedText(requestId, userId, timestamp, body), signer.privateKey).toString('hex'),
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

/**
 * True when the headers carry an Ed25519 signature, by one of `keys` (the `keys` of the server's
 * JWKS, or the JWKS itself), of `body` for the request and user they name, with a timestamp within
 * `toleranceSeconds` of `now`. Accepts `req.headers` from node:http directly.
 */
export function verifyWebhookSignature(
  keys: readonly { x?: unknown }[] | { keys: readonly { x?: unknown }[] },
  headers: Record<string, string | string[] | undefined>,
  body: string,
  { toleranceSeconds = DEFAULT_WEBHOOK_TOLERANCE_SECONDS, now = Date.now() }: VerifyWebhookOptions = {},
): boolean {
  const requestId = header(headers, WEBHOOK_REQUEST_ID_HEADER);
  const userId = header(headers, WEBHOOK_USER_ID_HEADER);
  const timestamp = header(headers, WEBHOOK_TIMESTAMP_HEADER)?.trim();
  const signature = header(headers, WEBHOOK_SIGNATURE_HEADER)?.trim();
  if (requestId === undefined || userId === undefined || timestamp === undefined || signature === undefined) return false;
  if (!UNIX_SECONDS.test(timestamp) || !HEX_SIGNATURE.test(signature)) return false;
  if (!(Math.abs(now / 1000 - Number(timestamp)) <= toleranceSeconds)) return false;
  const message = signedText(requestId, userId, timestamp, body);
  const signatureBytes = Buffer.from(signature, 'hex');
  const list: readonly { x?: unknown }[] = Array.isArray(keys) ? keys : (keys as { keys: readonly { x?: unknown }[] }).keys;
  return list.some((key) => {
    if (typeof key.x !== 'string') return false;
    try {
      return verify(null, message, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: key.x }, format: 'jwk' }), signatureBytes);
    } catch {
      return false; // not an Ed25519 key
    }
  });
}
