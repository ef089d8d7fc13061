// Checking webhook deliveries where they arrive: '@realtime-diffusion/client/webhooks'. The scheme
// is fal's own (shared/webhook-signature.ts), so this verifies this server's deliveries and fal's
// alike; only the key set differs. WebCrypto only: Node 20+, browsers, edge runtimes.
//
//   const keys = await (await fetch('https://gpu.example.com/.well-known/jwks.json')).json(); // cache it
//   if (!(await verifyWebhookSignature(keys, request.headers, rawBody))) return new Response(null, { status: 401 });
export {
  DEFAULT_WEBHOOK_TOLERANCE_SECONDS,
  WEBHOOK_JWKS_PATH,
  WEBHOOK_REQUEST_ID_HEADER,
  WEBHOOK_SIGNATURE_HEADER,
  WEBHOOK_TIMESTAMP_HEADER,
  WEBHOOK_USER_ID_HEADER,
  verifyWebhookSignature,
  type VerifyWebhookOptions,
  type WebhookHeaders,
  type WebhookJwk,
} from '../shared/webhook-signature.js';
