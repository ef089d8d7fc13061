// Everything realtime that does not depend on the transport: the inference engine, the scheduler,
// the model and limits every session sees, and the session factory. uWebSockets.js (socket.ts)
// wraps it for production; any other WebSocket library can wrap it the same way.
import { PROTOCOL_VERSION, type HelloMessage, type Limits, type ModelInfo } from '../../shared/protocol.js';
import type { ServerConfig } from '../config.js';
import { InferenceEngine } from '../engine/engine.js';
import type { Logger } from '../logger.js';
import { ServerMetrics } from '../metrics.js';
import { Authenticator, type Principal } from '../security/authenticator.js';
import { OriginPolicy } from '../security/origin-policy.js';
import { TokenIssuer } from '../security/tokens.js';
import { drainSessions, type DrainReport } from './drain.js';
import { ImageBudget } from './image-budget.js';
import { Scheduler } from './scheduler.js';
import type { ReplySink } from './reply-sink.js';
import { RealtimeSession } from './session.js';

/** Where the server is in its life: what /readyz, /healthz and upgrades answer follows from it. */
export type HubState = 'loading' | 'ready' | 'restarting' | 'draining' | 'failed';

export interface HubHooks {
  /** The inference engine cannot come back: the process should exit non-zero for its supervisor. */
  fatal?(reason: string): void;
}

export interface RealtimeHub {
  readonly engine: InferenceEngine;
  readonly scheduler: Scheduler;
  readonly metrics: ServerMetrics;
  readonly authenticator: Authenticator;
  /** Resolves once the model is loaded and warmed up; rejects if it cannot load. */
  readonly ready: Promise<void>;
  state(): HubState;
  /** False once the engine gave up restarting: /healthz fails. */
  isHealthy(): boolean;
  /** The served model, with the operator's step cap applied; undefined while loading. */
  model(): ModelInfo | undefined;
  limits(): Limits;
  /** Whether another session may open for `principal` (admission control); counts a refusal when not. */
  admit(principal: Principal): { ok: true } | { ok: false; reason: AdmissionRefusal };
  /** A session for a newly opened socket (or an HTTP request, or a queued job), and the `hello`
   * a socket sends it first. */
  openSession(sink: ReplySink, principal: Principal, options?: { background?: boolean }): { session: RealtimeSession; hello: HelloMessage };
  /** The socket of a session closed. */
  closeSession(session: RealtimeSession): void;
  /** Graceful shutdown: see drain.ts. Stops the engine at the end. */
  drain(timeoutMs: number): Promise<DrainReport>;
  /** Stops the engine now (tests, second signal). */
  close(): Promise<void>;
}

export type AdmissionRefusal = 'loading' | 'draining' | 'full' | 'key_limit';

export function createRealtimeHub(config: ServerConfig, logger: Logger, hooks: HubHooks = {}): RealtimeHub {
  const sessions = new Set<RealtimeSession>();
  let draining = false;
  const sessionsPerKey = new Map<string, number>();
  // Queued jobs run as sessions too (for the drain and the scheduler) but are not a user's
  // connection: they count toward neither --max-sessions nor a key's session limit.
  let backgroundSessions = 0;
  const { security } = config;
  const authenticator = new Authenticator(
    security.apiKeys,
    new TokenIssuer(security.tokenSecret, security.tokenTtlSeconds),
    new OriginPolicy(security.allowedOrigins),
  );
  const imageBudget = new ImageBudget(config.imageMemoryBytes);
  const metrics = new ServerMetrics({
    sessions: () => sessions.size - backgroundSessions,
    pendingRequests: () => {
      let open = 0;
      for (const session of sessions) open += session.openRequests;
      return open;
    },
    imageMemoryReserved: () => imageBudget.reserved,
  });
  const engine = new InferenceEngine(
    {
      modelDir: config.modelDir, device: config.device, deviceId: config.deviceId, threads: config.threads, spinning: config.spinning,
      maxBatch: config.maxBatch,
      lastPreview: config.lastPreview,
      sizes: { min: config.limits.minSize, max: config.limits.maxSize, multiple: config.limits.sizeMultiple },
    },
    logger,
    {
      unetCall: (batchSize, ms) => {
        metrics.batchSize.observe(batchSize);
        metrics.unetCallSeconds.observe(ms / 1000);
      },
      // After a restart: work that waited for the model goes in.
      ready: () => scheduler.resume(),
      restarting: () => metrics.engineRestarts.inc(),
      fatal: (reason) => hooks.fatal?.(reason),
    },
    { maxRestarts: config.engineMaxRestarts },
  );
  // As many requests in the worker as one UNet batch holds: the rest wait here, in fair order by cost.
  const scheduler = new Scheduler(engine, config.maxBatch, config.heavyShare);

  // The model decides the size multiple, its own step range and the decoders it has; the
  // operator's limits cap the steps and --final-decoder picks the default among those decoders.
  const model = (): ModelInfo | undefined => {
    const info = engine.info;
    if (!info) return undefined;
    const finalDecoder = info.finalDecoders?.includes(config.finalDecoder) ? config.finalDecoder : 'vae';
    return { ...info, maxSteps: Math.min(info.maxSteps, config.limits.maxSteps), finalDecoder };
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
  const state = (): HubState => {
    if (!engine.alive) return 'failed';
    if (draining) return 'draining';
    if (engine.ready) return 'ready';
    return engine.info ? 'restarting' : 'loading';
  };

  const ready = engine.whenReady().then(() => {
    const info = model()!;
    if (info.finalDecoder !== config.finalDecoder) {
      logger.warn({ model: info.name, finalDecoders: info.finalDecoders }, `--final-decoder ${config.finalDecoder}: the model has no such decoder; final frames default to ${info.finalDecoder}`);
    }
    logger.info(
      { model: info.name, size: `${info.width}x${info.height}`, scheduler: info.scheduler, previews: info.previews, img2img: info.img2img, finalDecoder: info.finalDecoder, warmupMs: Math.round(engine.warmupMs) },
      'model ready',
    );
  });

  return {
    engine,
    scheduler,
    metrics,
    authenticator,
    ready,
    state,
    isHealthy: () => engine.alive,
    model,
    limits,
    admit(principal) {
      const refuse = (reason: AdmissionRefusal) => {
        metrics.refusedConnections.inc({ reason });
        return { ok: false as const, reason };
      };
      if (draining) return refuse('draining');
      if (!engine.ready) return refuse('loading');
      if (sessions.size - backgroundSessions >= config.maxSessions) return refuse('full');
      // Per-key limits need keys: an open (keyless, loopback) server is bounded by --max-sessions alone.
      const perKey = sessionsPerKey.get(principal.keyId) ?? 0;
      if (authenticator.required && perKey >= config.limits.maxSessionsPerKey) return refuse('key_limit');
      return { ok: true };
    },
    openSession(sink, principal, options = {}) {
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
        hubState: state,
        principal,
        verifyToken: (token) => authenticator.tokens.verify(token),
        imageBudget,
        streamBatch: config.streamBatch,
        background: options.background,
      }, metrics, logger);
      sessions.add(session);
      if (session.background) backgroundSessions++;
      else sessionsPerKey.set(principal.keyId, (sessionsPerKey.get(principal.keyId) ?? 0) + 1);
      return { session, hello: { type: 'hello', protocol: PROTOCOL_VERSION, model: info, limits: sessionLimits } };
    },
    closeSession(session) {
      if (!sessions.delete(session)) return;
      session.close();
      if (session.background) {
        backgroundSessions--;
        return;
      }
      const { keyId } = session.principal;
      const left = (sessionsPerKey.get(keyId) ?? 1) - 1;
      if (left > 0) sessionsPerKey.set(keyId, left);
      else sessionsPerKey.delete(keyId);
    },
    async drain(timeoutMs) {
      draining = true;
      const report = await drainSessions(sessions, timeoutMs, logger);
      await engine.close();
      return report;
    },
    close: () => engine.close(),
  };
}
