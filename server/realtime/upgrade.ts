// The WebSocket upgrade every realtime front door goes through: credentials and origin
// (authenticator.ts), then admission (hub.admit), then the upgrade. Refusals carry an HTTP status
// and a Retry-After a balancer or client can act on. Front doors differ only in where credentials
// sit in the request and in what a socket carries (its user data).
import type { HttpRequest, HttpResponse, us_socket_context_t } from '../transport/uws.js';
import type { AuthResult, Principal, UpgradeCredentials } from '../security/authenticator.js';
import type { RealtimeHub } from './hub.js';

export interface UpgradeRequest {
  credentials: UpgradeCredentials;
  url: string;
  query: URLSearchParams;
  remote: string;
}

export interface UpgradeOptions<T> {
  /** Where this front door reads credentials: the native one takes `?token=`, fal's `?fal_jwt_token=`. */
  tokenParam: string;
  /** The socket's user data for an admitted principal. */
  data(principal: Principal, request: UpgradeRequest): T;
  /** A refused credential is answered after the upgrade instead of with an HTTP status (fal's
   * client only learns why from a message on the socket): user data for such a socket. */
  unauthorizedData?(reason: string, request: UpgradeRequest): T;
}

export function handleUpgrade<T>(hub: RealtimeHub, res: HttpResponse, req: HttpRequest, context: us_socket_context_t, options: UpgradeOptions<T>): void {
  // Everything from req must be copied now: it is stack-allocated and gone after this call.
  const key = req.getHeader('sec-websocket-key');
  const protocol = req.getHeader('sec-websocket-protocol');
  const extensions = req.getHeader('sec-websocket-extensions');
  const query = new URLSearchParams(req.getQuery() ?? '');
  const credentials: UpgradeCredentials = {
    authorization: req.getHeader('authorization'),
    token: query.get(options.tokenParam) ?? '',
    origin: req.getHeader('origin'),
    host: req.getHeader('host'),
  };
  const request: UpgradeRequest = { credentials, url: req.getUrl(), query, remote: Buffer.from(res.getRemoteAddressAsText()).toString() };
  let aborted = false;
  res.onAborted(() => (aborted = true));
  const refuse = (status: string, body: string, retryAfter?: string) =>
    res.cork(() => {
      res.writeStatus(status);
      if (retryAfter) res.writeHeader('retry-after', retryAfter);
      res.end(body);
    });
  const upgrade = (data: T) => res.cork(() => res.upgrade<T>(data, key, protocol, extensions, context));

  void hub.authenticator.authenticate(credentials).then((auth: AuthResult) => {
    if (aborted) return;
    if (!auth.ok) {
      hub.metrics.refusedConnections.inc({ reason: auth.status.startsWith('403') ? 'origin' : 'unauthorized' });
      if (options.unauthorizedData && !auth.status.startsWith('403')) upgrade(options.unauthorizedData(auth.reason, request));
      else refuse(auth.status, auth.reason);
      return;
    }
    const admission = hub.admit(auth.principal);
    if (!admission.ok) {
      // Loading ends in seconds; a full server or key frees up as users leave.
      if (admission.reason === 'loading') refuse('503 Service Unavailable', 'model loading', '1');
      // Draining for shutdown: a balancer retries another node, a client reconnects soon.
      else if (admission.reason === 'draining') refuse('503 Service Unavailable', 'server shutting down', '1');
      else if (admission.reason === 'full') refuse('503 Service Unavailable', 'server full', '5');
      else refuse('429 Too Many Requests', 'too many sessions for this key', '5');
      return;
    }
    upgrade(options.data(auth.principal, request));
  });
}
