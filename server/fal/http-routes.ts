// uWebSockets.js routes for fal's HTTP API: each copies the request out of uWS, reads the body
// within the limit, and hands the exchange to FalHttpApi. Routes sit beside the native ones
// (/v1/*, /healthz, /readyz, /metrics and the page at /), which uWS matches first as the more
// specific patterns.
import type { HttpRequest, HttpResponse, TemplatedApp } from '../transport/uws.js';
import type { Authenticator } from '../security/authenticator.js';
import { readBody } from '../http/body.js';
import { sendError } from './errors.js';
import { FAL_CORS_ALLOW_HEADERS, Responder, type FalApiName, type FalRequest } from './http-exchange.js';
import { PROXY_PATH, type FalHttpApi } from './http-api.js';
import { WEBHOOK_JWKS_PATH } from '../../shared/webhook-signature.js';

export interface FalRouteOptions {
  /** Largest request body: an image as a base64 data URI plus the rest of the input. */
  maxBodyBytes: number;
  /** Overrides the scheme and host of returned URLs (`--public-url`); else taken from the request. */
  publicUrl?: string;
  tls: boolean;
  /** Each exchange once it has ended: which API, the status (499: the client left first), seconds. */
  observe?(api: FalApiName, status: number, seconds: number): void;
}

function corsFor(auth: Authenticator, origin: string, host: string): Record<string, string> {
  if (!origin || !auth.originAllowed(origin, host)) return {};
  return { 'access-control-allow-origin': origin, vary: 'Origin', 'access-control-expose-headers': 'x-fal-request-id, x-fal-request-timeout-type' };
}

export function registerFalHttp(app: TemplatedApp, api: FalHttpApi, auth: Authenticator, options: FalRouteOptions): void {
  const handler = (method: string) => (res: HttpResponse, req: HttpRequest) => {
    const headers = new Map<string, string>();
    req.forEach((name, value) => headers.set(name, value));
    const header = (name: string) => headers.get(name) ?? '';
    const started = performance.now();
    const r = new Responder(res, corsFor(auth, header('origin'), header('host')), (api, status) => options.observe?.(api, status, (performance.now() - started) / 1000));
    let cancel: (() => void) | undefined;
    const aborted = { value: false };
    res.onAborted(() => {
      aborted.value = true;
      r.abort();
      cancel?.();
    });
    const url = req.getUrl();
    const query = new URLSearchParams(req.getQuery() ?? '');
    const scheme = header('x-forwarded-proto') || (options.tls ? 'https' : 'http');
    const publicBase = options.publicUrl ?? `${scheme}://${header('x-forwarded-host') || header('host')}`;
    void readBody(res, header('content-length'), options.maxBodyBytes, aborted).then((body) => {
      if (!body.ok) {
        if (body.reason === 'too_large') sendError(r, 413, 'body_too_large', `the request body is larger than ${options.maxBodyBytes} bytes`);
        return;
      }
      const request: FalRequest = { method, path: url, query, header, body: body.body, publicBase };
      void api.handle(request, r, (onAbort) => (cancel = onAbort));
    });
  };

  const preflight = (res: HttpResponse, req: HttpRequest) => {
    const origin = req.getHeader('origin');
    const cors = corsFor(auth, origin, req.getHeader('host'));
    res.cork(() => {
      res.writeStatus(cors['access-control-allow-origin'] ? '204 No Content' : '403 Forbidden');
      for (const [name, value] of Object.entries(cors)) res.writeHeader(name, value);
      res
        .writeHeader('access-control-allow-methods', 'GET, POST, PUT, OPTIONS')
        .writeHeader('access-control-allow-headers', FAL_CORS_ALLOW_HEADERS)
        .writeHeader('access-control-max-age', '600')
        .end();
    });
  };

  app.options('/*', preflight);
  app.post('/*', handler('post'));
  app.put('/*', handler('put'));
  // GETs of the page at / are the static handler's; these are the GETs fal's API has.
  for (const pattern of [PROXY_PATH, '/queue/*', '/files/*', WEBHOOK_JWKS_PATH]) app.get(pattern, handler('get'));
}
