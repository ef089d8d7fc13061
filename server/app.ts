// Assembles the server: the realtime hub (engine, scheduler, sessions), and its front doors on one
// uWebSockets.js app: the native socket route, fal's realtime and HTTP routes, and the plain HTTP
// routes.
import uWS, { type TemplatedApp, type us_listen_socket, uwsBuild } from './transport/uws.js';
import type { ServerConfig } from './config.js';
import { registerRoutes } from './http/routes.js';
import { registerTokenRoute } from './http/tokens-route.js';
import { openFalFrontDoor } from './fal/fal-front-door.js';
import type { Logger } from './logger.js';
import type { DrainReport } from './realtime/drain.js';
import { createRealtimeHub, type HubHooks, type RealtimeHub } from './realtime/hub.js';
import { createLiveness, registerRealtime, type RealtimeStats } from './realtime/socket.js';

export interface RunningServer {
  port: number;
  hub: RealtimeHub;
  stats: RealtimeStats;
  /** Resolves once the model is loaded and warmed up. */
  ready: Promise<void>;
  /** Graceful shutdown: answer what was accepted, say going_away, close sockets, stop listening. */
  drain(timeoutMs: number): Promise<DrainReport>;
  /** Immediate shutdown: stop listening and stop the engine. */
  close(): Promise<void>;
}

/** uWS's listen(host, port, options, cb), which its type declarations leave out. */
function listenExclusive(app: TemplatedApp, host: string, port: number, cb: (socket: us_listen_socket | false) => void): void {
  (app.listen as unknown as (h: string, p: number, options: number, c: typeof cb) => void)(host, port, EXCLUSIVE_PORT, cb);
}
const EXCLUSIVE_PORT = 1; // LIBUS_LISTEN_EXCLUSIVE_PORT

export async function startServer(config: ServerConfig, logger: Logger, hooks: HubHooks = {}): Promise<RunningServer> {
  const hub = createRealtimeHub(config, logger, hooks);
  const app = config.tls ? uWS.SSLApp({ cert_file_name: config.tls.certFile, key_file_name: config.tls.keyFile }) : uWS.App();
  const liveness = createLiveness(config, hub);
  const stats = registerRealtime(app, { config, hub, logger, liveness });
  registerTokenRoute(app, hub.authenticator);
  const fal = await openFalFrontDoor(app, hub, config, logger, liveness);
  registerRoutes(app, hub);

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    // Exclusive: without it uWS shares a fixed port (SO_REUSEPORT) with a server already on it, and
    // two servers would split one port's connections instead of the second failing to start.
    listenExclusive(app, config.host, config.port, (socket) => {
      if (socket) resolve(socket);
      else reject(new Error(`cannot listen on ${config.host}:${config.port} (in use or not permitted)`));
    });
  });
  const port = uWS.us_socket_local_port(listenSocket);
  const scheme = config.tls ? 'wss' : 'ws';
  logger.info({ host: config.host, port, url: `${scheme}://${config.host}:${port}/v1/realtime`, auth: hub.authenticator.required, uws: `${uwsBuild.name} ${uwsBuild.version}` }, 'listening');
  if (!hub.authenticator.required) {
    logger.warn(
      { host: config.host, insecure: config.security.insecure },
      config.security.insecure
        ? 'no API keys configured and --insecure given: anyone who can reach this address can use the model'
        : 'no API keys configured: serving loopback only, without authentication',
    );
  }

  let listening = true;
  const stopListening = () => {
    if (listening) uWS.us_listen_socket_close(listenSocket);
    listening = false;
  };
  return {
    port,
    hub,
    stats,
    ready: hub.ready,
    async drain(timeoutMs) {
      // Still listening while draining: /readyz answers 503 and upgrades get 503 + Retry-After, so a
      // balancer sees the node leave instead of a refused connection.
      fal.stopClaiming();
      const report = await hub.drain(timeoutMs);
      stopListening();
      await fal.close();
      return report;
    },
    async close() {
      stopListening();
      fal.stopClaiming();
      await hub.close();
      await fal.close();
    },
  };
}
