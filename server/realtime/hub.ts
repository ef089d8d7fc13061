// Everything realtime that does not depend on the transport: the inference engine, the scheduler,
// the model and limits every session sees, and the session factory. uWebSockets.js (socket.ts)
// wraps it for production; any other WebSocket library can wrap it the same way.
import { encodeMessage } from '../../shared/codec.js';
import { PROTOCOL_VERSION, type Limits, type ModelInfo } from '../../shared/protocol.js';
import type { ServerConfig } from '../config.js';
import { InferenceEngine } from '../engine/engine.js';
import type { Logger } from '../logger.js';
import { ServerMetrics } from '../metrics.js';
import { Authenticator, type Principal } from '../security/authenticator.js';
import { OriginPolicy } from '../security/origin-policy.js';
import { TokenIssuer } from '../security/tokens.js';
import { ImageBudget } from './image-budget.js';
import { Scheduler } from './scheduler.js';
import { RealtimeSession, type SocketSink } from './session.js';

export interface RealtimeHub {
  readonly engine: InferenceEngine;
  readonly scheduler: Scheduler;
  readonly metrics: ServerMetrics;
  readonly authenticator: Authenticator;
  /** Resolves once the model is loaded and warmed up; rejects if it cannot load. */
  readonly ready: Promise<void>;
  isReady(): boolean;
  /** The served model, with the operator's step cap applied; undefined while loading. */
  model(): ModelInfo | undefined;
  limits(): Limits;
  /** Whether another session may open for `principal` (admission control); counts a refusal when not. */
  admit(principal: Principal): { ok: true } | { ok: false; reason: 'loading' | 'full' | 'key_limit' };
  /** A session for a newly opened socket, and the `hello` bytes to send it first. */
  openSession(sink: SocketSink, principal: Principal): { session: RealtimeSession; hello: Uint8Array };
  /** The socket of a session closed. */
  closeSession(session: RealtimeSession): void;
  close(): Promise<void>;
}

export function createRealtimeHub(config: ServerConfig, logger: Logger): RealtimeHub {
  const sessions = new Set<RealtimeSession>();
  const sessionsPerKey = new Map<string, number>();
  const { security } = config;
  const authenticator = new Authenticator(
    security.apiKeys,
    new TokenIssuer(security.tokenSecret, security.tokenTtlSeconds),
    new OriginPolicy(security.allowedOrigins),
  );
  const imageBudget = new ImageBudget(config.imageMemoryBytes);
  const metrics = new ServerMetrics({
    sessions: () => sessions.size,
    pendingRequests: () => {
      let open = 0;
      for (const session of sessions) open += session.openRequests;
      return open;
    },
    imageMemoryReserved: () => imageBudget.reserved,
  });
  const engine = new InferenceEngine(
    { modelDir: config.modelDir, device: config.device, deviceId: config.deviceId, threads: config.threads, spinning: config.spinning, maxBatch: config.maxBatch },
    logger,
    (batchSize, ms) => {
      metrics.batchSize.observe(batchSize);
      metrics.unetCallSeconds.observe(ms / 1000);
    },
  );
  // As many requests in the worker as one UNet batch holds: the rest wait, round-robin, here.
  const scheduler = new Scheduler(engine, config.maxBatch);

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
    metrics,
    authenticator,
    ready,
    isReady,
    model,
    limits,
    admit(principal) {
      const refuse = (reason: 'loading' | 'full' | 'key_limit') => {
        metrics.refusedConnections.inc({ reason });
        return { ok: false as const, reason };
      };
      if (!isReady()) return refuse('loading');
      if (sessions.size >= config.maxSessions) return refuse('full');
      // Per-key limits need keys: an open (keyless, loopback) server is bounded by --max-sessions alone.
      const perKey = sessionsPerKey.get(principal.keyId) ?? 0;
      if (authenticator.required && perKey >= config.limits.maxSessionsPerKey) return refuse('key_limit');
      return { ok: true };
    },
    openSession(sink, principal) {
      const info = model();
      if (!info) throw new Error('openSession before the model is ready');
      const sessionLimits = limits();
      const session = new RealtimeSession(sink, scheduler, {
        limits: sessionLimits,
        model: info,
        outbox: {
          previewBytes: config.previewBackpressureBytes,
          frameBytes: config.frameBackpressureBytes,
          slowReaderMs: config.slowReaderMs,
        },
        previewJpegQuality: config.previewJpegQuality,
        frameJpegQuality: config.frameJpegQuality,
        isReady,
        principal,
        verifyToken: (token) => authenticator.tokens.verify(token),
        imageBudget,
      }, metrics, logger);
      sessions.add(session);
      sessionsPerKey.set(principal.keyId, (sessionsPerKey.get(principal.keyId) ?? 0) + 1);
      return { session, hello: encodeMessage({ type: 'hello', protocol: PROTOCOL_VERSION, model: info, limits: sessionLimits }) };
    },
    closeSession(session) {
      if (!sessions.delete(session)) return;
      const { keyId } = session.principal;
      const left = (sessionsPerKey.get(keyId) ?? 1) - 1;
      if (left > 0) sessionsPerKey.set(keyId, left);
      else sessionsPerKey.delete(keyId);
      session.close();
    },
    close: () => engine.close(),
  };
}
