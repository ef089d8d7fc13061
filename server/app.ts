// Assembles the server: inference engine, scheduler, HTTP routes and the realtime socket route on
// one uWebSockets.js app.
import uWS from 'uWebSockets.js';
import type { Limits, ModelInfo } from '../shared/protocol.js';
import type { ServerConfig } from './config.js';
import { InferenceEngine } from './engine/engine.js';
import { registerRoutes } from './http/routes.js';
import type { Logger } from './logger.js';
import { registerRealtime, type RealtimeStats } from './realtime/socket.js';
import { Scheduler } from './realtime/scheduler.js';

export interface RunningServer {
  port: number;
  engine: InferenceEngine;
  stats: RealtimeStats;
  /** Resolves once the model is loaded and warmed up. */
  ready: Promise<void>;
  close(): Promise<void>;
}

export async function startServer(config: ServerConfig, logger: Logger): Promise<RunningServer> {
  const engine = new InferenceEngine(
    { modelDir: config.modelDir, device: config.device, threads: config.threads, spinning: config.spinning },
    logger,
  );
  const scheduler = new Scheduler(engine);

  // The model decides the size multiple and its own step range; the operator's limits cap them.
  const model = (): ModelInfo | undefined => {
    const info = engine.info;
    if (!info) return undefined;
    return { ...info, maxSteps: Math.min(info.maxSteps, config.limits.maxSteps) };
  };
  const limits = (): Limits => {
    const info = engine.info;
    if (!info) return config.limits;
    return {
      ...config.limits,
      sizeMultiple: Math.max(config.limits.sizeMultiple, info.sizeMultiple),
      maxSteps: Math.min(info.maxSteps, config.limits.maxSteps),
    };
  };
  const isReady = () => engine.ready;

  const app = uWS.App();
  const stats = registerRealtime(app, { config, scheduler, logger, isReady, model, limits });
  registerRoutes(app, { isReady, model, limits });

  const listenSocket = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    app.listen(config.host, config.port, (socket) => {
      if (socket) resolve(socket);
      else reject(new Error(`cannot listen on ${config.host}:${config.port} (in use or not permitted)`));
    });
  });
  const port = uWS.us_socket_local_port(listenSocket);
  logger.info({ host: config.host, port, url: `ws://${config.host}:${port}/v1/realtime` }, 'listening');

  const ready = engine.whenReady().then(() => {
    const info = model()!;
    logger.info(
      { model: info.name, size: `${info.width}x${info.height}`, scheduler: info.scheduler, previews: info.previews, img2img: info.img2img, warmupMs: Math.round(engine.warmupMs) },
      'model ready',
    );
    scheduler.resume();
  });

  return {
    port,
    engine,
    stats,
    ready,
    async close() {
      uWS.us_listen_socket_close(listenSocket);
      await engine.close();
    },
  };
}
