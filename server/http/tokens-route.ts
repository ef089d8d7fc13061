// POST /v1/tokens: a holder of an API key (sent as `Authorization: Key <key>` or `Bearer <key>`)
// gets a short-lived token for browsers, which cannot set headers on a WebSocket. CORS answers
// only the origins the origin policy allows, so a page elsewhere cannot mint tokens with a key
// it somehow holds.
import type { HttpResponse, TemplatedApp } from '../transport/uws.js';
import type { Authenticator } from '../security/authenticator.js';
import { sendJson } from './routes.js';

function corsHeaders(origin: string): Record<string, string> {
  return origin ? { 'access-control-allow-origin': origin, vary: 'Origin' } : {};
}

export function registerTokenRoute(app: TemplatedApp, auth: Authenticator): void {
  app.options('/v1/tokens', (res, req) => {
    const origin = req.getHeader('origin');
    const host = req.getHeader('host');
    if (!auth.originAllowed(origin, host)) {
      sendJson(res, '403 Forbidden', { error: 'origin not allowed' });
      return;
    }
    res.cork(() => {
      res.writeStatus('204 No Content');
      for (const [name, value] of Object.entries(corsHeaders(origin))) res.writeHeader(name, value);
      res
        .writeHeader('access-control-allow-methods', 'POST')
        .writeHeader('access-control-allow-headers', 'authorization, content-type')
        .writeHeader('access-control-max-age', '600')
        .end();
    });
  });

  app.post('/v1/tokens', (res: HttpResponse, req) => {
    const origin = req.getHeader('origin');
    const host = req.getHeader('host');
    const authorization = req.getHeader('authorization');
    if (!auth.required) {
      sendJson(res, '404 Not Found', { error: 'tokens are disabled: the server runs without API keys' });
      return;
    }
    if (!auth.originAllowed(origin, host)) {
      sendJson(res, '403 Forbidden', { error: 'origin not allowed' });
      return;
    }
    const keyId = auth.keyFromHeader(authorization);
    if (!keyId) {
      sendJson(res, '401 Unauthorized', { error: 'a valid API key is required: Authorization: Key <key>' }, corsHeaders(origin));
      return;
    }
    let aborted = false;
    res.onAborted(() => (aborted = true));
    // The request body, if any, carries nothing we need; draining it keeps the connection reusable.
    res.onData(() => {});
    void auth.tokens.issue(keyId).then(({ token, expiresAt }) => {
      if (!aborted) sendJson(res, '200 OK', { token, expires_at: expiresAt }, corsHeaders(origin));
    });
  });
}
