// The real server with API keys, and the official fal client pointed at it by falSelfHost() only:
// what an app written against fal changes to run on this server.
import { createHash, createPublicKey, verify } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { WebSocket as NodeWebSocket } from 'ws';
import { createFalClient } from '@fal-ai/client';
import { falSelfHost, type FalSelfHostOptions } from '../../client/fal.js';

export const FAL_KEY = 'sk-fal-e2e-key-0001';
export const OTHER_KEY = 'sk-fal-e2e-key-0002';
export const WEBHOOK_SECRET = 'webhook-secret-for-tests';
export const FAL_ENV = { API_KEYS: `${FAL_KEY},${OTHER_KEY}`, TOKEN_SECRET: 'token-secret-for-fal-tests-0123456789', WEBHOOK_SECRET };

export type FalClient = ReturnType<typeof createFalClient>;

/** Node 20 has no global WebSocket and fal's realtime needs one. */
export function ensureGlobalWebSocket(): void {
  if (!('WebSocket' in globalThis)) (globalThis as { WebSocket?: unknown }).WebSocket = NodeWebSocket;
}

export function falClientFor(baseUrl: string, options: FalSelfHostOptions = {}): { fal: FalClient; uninstall(): void } {
  ensureGlobalWebSocket();
  const setup = falSelfHost(baseUrl, { credentials: FAL_KEY, ...options });
  return { fal: createFalClient(setup.config), uninstall: setup.uninstall };
}

/** A camera-like frame: a disc on a background, moved by `shift`. */
export async function cameraFrame(shift = 0, format: 'jpeg' | 'png' = 'jpeg'): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256">
    <rect width="100%" height="100%" fill="#d8e0ea"/><circle cx="${90 + shift}" cy="128" r="52" fill="#c03030"/></svg>`;
  const image = sharp(Buffer.from(svg));
  return format === 'png' ? image.png().toBuffer() : image.jpeg({ quality: 85 }).toBuffer();
}

export interface ReceivedHook {
  headers: IncomingMessage['headers'];
  body: string;
}

/** A webhook receiver on loopback; `failFirst` answers 500 to that many first deliveries of each request. */
export async function startHookReceiver(failFirst = 0): Promise<{ url: string; hooks: ReceivedHook[]; attempts: Map<string, number>; close(): Promise<void> }> {
  const hooks: ReceivedHook[] = [];
  const attempts = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const id = String(req.headers['x-fal-webhook-request-id'] ?? '');
      const seen = (attempts.get(id) ?? 0) + 1;
      attempts.set(id, seen);
      if (seen <= failFirst) {
        res.writeHead(500).end('try again');
        return;
      }
      hooks.push({ headers: req.headers, body });
      res.writeHead(200).end('ok');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/hook`, hooks, attempts, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

export async function waitFor<T>(check: () => T | undefined | Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * A webhook check as fal's documentation tells receivers to write it, kept apart from the server's
 * own shared/webhook-signature.ts: hex Ed25519 over "request id, user id, timestamp, hex SHA-256 of
 * the raw body" joined by newlines, by any key of the JWKS, within 5 minutes. An app's existing
 * fal receiver verifies this server's deliveries if this does.
 */
export function falReceiverVerifies(jwks: { keys: readonly { x?: unknown }[] }, headers: IncomingHttpHeaders | Record<string, string | undefined>, rawBody: string): boolean {
  const get = (name: string) => String(headers[name] ?? '');
  const [requestId, userId, timestamp, signature] = ['request-id', 'user-id', 'timestamp', 'signature'].map((n) => get(`x-fal-webhook-${n}`));
  if (!requestId || !timestamp || !signature || Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const message = Buffer.from([requestId, userId, timestamp, createHash('sha256').update(rawBody).digest('hex')].join('\n'));
  return jwks.keys.some((key) => typeof key.x === 'string' && verify(null, message, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: key.x }, format: 'jwk' }), Buffer.from(signature, 'hex')));
}

/** The server's webhook keys, from where a receiver fetches them. */
export async function fetchWebhookKeys(serverUrl: string): Promise<{ keys: { x: string; kid: string }[] }> {
  const response = await fetch(`${serverUrl}/.well-known/jwks.json`);
  if (!response.ok) throw new Error(`GET /.well-known/jwks.json: ${response.status}`);
  return (await response.json()) as { keys: { x: string; kid: string }[] };
}
