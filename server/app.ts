// Assembles the server: the realtime hub (engine, scheduler, sessions), HTTP routes and the socket
// route on one uWebSockets.js app.
import uWS from 'uWebSockets.js';
import type { ServerConfig } from './config.js';
import { registerRoutes } from './http/routes.js';
import type { Logger } from './logger.js';
import { createRealtimeHub, type RealtimeHub } from './realtime/hub.js';
import { registerRealtime, type RealtimeStats } from './realtime/socket.js';

export interface RunningServer {
  port: number;
  hub: RealtimeHub;
  stats: RealtimeStats;
  /** Resolves once the model is loaded and warmed up. */
  ready: Promise<void>;
  close(): Promise<void>;
}

export async function startServer(config: ServerConfig, logger: Logger): Promise<RunningServer> {
  const hub = createRealtimeHub(config, logger);
  const app = uWS.App();
  const stats = registerRealtime(app, { config, hub, logger });
  registerRoutes(app, hub);

  const listenSocket = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    app.listen(config.host, config.port, (socket) => {
      if (socket) resolve(socket);
      else reject(new Error(`cannot listen on ${config.host}:${config.port} (in use or not permitted)`));
    });
  });
  const port = uWS.us_socket_local_port(listenSocket);
  logger.info({ host: config.host, port, url: `ws://${config.host}:${port}/v1/realtime` }, 'listening');

  return {
    port,
    hub,
    stats,
    ready: hub.ready,
    async close() {
      uWS.us_listen_socket_close(listenSocket);
      await hub.close();
    },
  };
}
