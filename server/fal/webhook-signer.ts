// The signing side of webhook deliveries (the scheme: shared/webhook-signature.ts). The key is
// derived from the server's webhook secret (HKDF-SHA256 to an Ed25519 seed), so every node given
// the same secret signs with the same key and serves the same JWKS; receivers hold no secret.
import { createHash, createPrivateKey, createPublicKey, hkdfSync, sign, type KeyObject } from 'node:crypto';
import {
  WEBHOOK_REQUEST_ID_HEADER,
  WEBHOOK_SIGNATURE_HEADER,
  WEBHOOK_TIMESTAMP_HEADER,
  WEBHOOK_USER_ID_HEADER,
  webhookSignedText,
  type WebhookJwk,
} from '../../shared/webhook-signature.js';

export interface WebhookSigner {
  privateKey: KeyObject;
  jwk: WebhookJwk;
}

// An Ed25519 private key is a 32-byte seed; PKCS#8 wraps it in this fixed DER prefix (RFC 8410).
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

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

/** The four signature headers for a delivery signed at `now` (milliseconds). */
export function webhookSignatureHeaders(signer: WebhookSigner, requestId: string, userId: string, body: string, now = Date.now()): Record<string, string> {
  const timestamp = String(Math.floor(now / 1000));
  const digest = createHash('sha256').update(body, 'utf8').digest('hex');
  const text = Buffer.from(webhookSignedText(requestId, userId, timestamp, digest), 'utf8');
  return {
    [WEBHOOK_REQUEST_ID_HEADER]: requestId,
    [WEBHOOK_USER_ID_HEADER]: userId,
    [WEBHOOK_TIMESTAMP_HEADER]: timestamp,
    [WEBHOOK_SIGNATURE_HEADER]: sign(null, text, signer.privateKey).toString('hex'),
  };
}
