// Everything realtime that does not depend on the transport: the inference engine, the scheduler,
// the model and limits every session sees, and the session factory. uWebSockets.js (socket.ts)
// wraps it for production; any other WebSocket library can wrap it the same way.
import { encodeMessage } from '../../shared/codec.js';
import { PROTOCOL_VERSION, type Limits, type ModelInfo } from '../../shared/protocol.js';
import type { ServerConfig } from '../config.js';
import { InferenceEngine } from '../engine/engine.js';
import type { Logger } from '../logger.js';
import { Scheduler } from './scheduler.js';
import { RealtimeSession, type SocketSink } from './session.js';

export interface RealtimeHub {
  readonly engine: InferenceEngine;
  readonly scheduler: Scheduler;
  /** Resolves once the model is loaded and warmed up; rejects if it cannot load. */
  readonly ready: Promise<void>;
  isReady(): boolean;
  /** The served model, with the operator's step cap applied; undefined while loading. */
  model(): ModelInfo | undefined;
  limits(): Limits;
  /** A session for a newly opened socket, and the `hello` bytes to send it first. */
  openSession(sink: SocketSink): { session: RealtimeSession; hello: Uint8Array };
  close(): Promise<void>;
}

export function createRealtimeHub(config: ServerConfig, logger: Logger): RealtimeHub {
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

  const ready = engine.whenReady().then(() => {
    const info = model()!;
    logger.info(
      { model: info.name, size: `${info.width}x${info.height}`, scheduler: info.scheduler, previews: info.previews, img2img: info.img2img, warmupMs: Math.round(engine.warmupMs) },
      'model ready',
    );
    scheduler.resume();
  });

  return {
    engine,
    scheduler,
    ready,
    isReady,
    model,
    limits,
    openSession(sink) {
      const info = model();
      if (!info) throw new Error('openSession before the model is ready');
      const sessionLimits = limits();
      const session = new RealtimeSession(sink, scheduler, {
        limits: sessionLimits,
        model: info,
        previewBackpressureBytes: config.previewBackpressureBytes,
        previewJpegQuality: config.previewJpegQuality,
        frameJpegQuality: config.frameJpegQuality,
        isReady,
      }, logger);
      return { session, hello: encodeMessage({ type: 'hello', protocol: PROTOCOL_VERSION, model: info, limits: sessionLimits }) };
    },
    close: () => engine.close(),
  };
}
