// Plain HTTP endpoints. All but /metrics answer synchronously from memory, so they need no onAborted handling.
import type { HttpResponse, TemplatedApp } from '../transport/uws.js';
import { PROTOCOL_VERSION, REALTIME_PATH, type Limits, type ModelInfo } from '../../shared/protocol.js';
import { registerStatic } from './static.js';
import type { ServerMetrics } from '../metrics.js';
import type { HubState, NodeLoad } from '../realtime/hub.js';

export interface RouteState {
  state(): HubState;
  load(): NodeLoad;
  isFull(): boolean;
  isHealthy(): boolean;
  model(): ModelInfo | undefined;
  models(): ModelInfo[];
  limits(): Limits;
  metrics: ServerMetrics;
}

export function sendJson(res: HttpResponse, status: string, body: unknown, headers: Record<string, string> = {}): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json').writeHeader('cache-control', 'no-store');
    for (const [name, value] of Object.entries(headers)) res.writeHeader(name, value);
    res.end(JSON.stringify(body));
  });
}

export function registerRoutes(app: TemplatedApp, state: RouteState): void {
  // Liveness: the process and its event loop are up and the engine has not given up restarting.
  app.get('/healthz', (res) => {
    if (state.isHealthy()) sendJson(res, '200 OK', { status: 'ok' });
    else sendJson(res, '503 Service Unavailable', { status: 'failed' });
  });

  // Readiness: 200 only once the model is loaded and warmed up and while the server is not
  // draining, so a load balancer never routes a user to a server that would answer late or not at
  // all. Browsers cannot see why a WebSocket upgrade was refused, so the client SDK asks here for
  // the Retry-After; pages on other origins (allowed to open sockets) must be able to read it, and
  // it says nothing secret.
  const readyzCors = { 'access-control-allow-origin': '*', 'access-control-expose-headers': 'retry-after' };
  app.get('/readyz', (res) => {
    const current = state.state();
    // A full node is alive and serving: it only asks the balancer for no more sessions until
    // room returns.
    const full = current === 'ready' && state.isFull();
    if (current === 'ready' && !full) sendJson(res, '200 OK', { status: 'ready' }, readyzCors);
    else sendJson(res, '503 Service Unavailable', { status: full ? 'full' : current }, { 'retry-after': '1', ...readyzCors });
  });

  // How full this node is, as JSON: for autoscalers and dashboards (the same figures are in /metrics).
  app.get('/v1/load', (res) => sendJson(res, '200 OK', state.load()));

  app.get('/v1/models', (res) => {
    const model = state.model();
    if (!model) {
      sendJson(res, '503 Service Unavailable', { error: 'model loading' }, { 'retry-after': '1' });
      return;
    }
    // The default model first; `/v1/realtime?model=NAME` picks another.
    sendJson(res, '200 OK', { protocol: PROTOCOL_VERSION, endpoint: REALTIME_PATH, models: state.models(), limits: state.limits() });
  });

  // Prometheus scrape endpoint; prom-client renders asynchronously, so the response may be gone.
  app.get('/metrics', (res) => {
    let aborted = false;
    res.onAborted(() => (aborted = true));
    state.metrics.text().then(
      (text) => {
        if (aborted) return;
        res.cork(() => res.writeHeader('content-type', state.metrics.contentType).end(text));
      },
      () => {
        if (!aborted) res.cork(() => res.writeStatus('500 Internal Server Error').end());
      },
    );
  });

  registerStatic(app); // the browser client at `/`; misses fall through to the 404 below
  app.any('/*', (res) => sendJson(res, '404 Not Found', { error: 'not found' }));
}
