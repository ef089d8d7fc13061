// Everything realtime that does not depend on the transport: the served models (model-host.ts: an
// inference process and a scheduler each), admission, and the session factory. uWebSockets.js (socket.ts)
// wraps it for production; any other WebSocket library can wrap it the same way.
import { PROTOCOL_VERSION, type HelloMessage, type Limits, type ModelInfo } from '../../shared/protocol.js';
import type { ServerConfig } from '../config.js';
import type { InferenceEngine } from '../engine/engine.js';
import type { Logger } from '../logger.js';
import { ServerMetrics } from '../metrics.js';
import { Authenticator, type Principal } from '../security/authenticator.js';
import { OriginPolicy } from '../security/origin-policy.js';
import { TokenIssuer } from '../security/tokens.js';
import { drainSessions, type DrainReport } from './drain.js';
import { ImageBudget } from './image-budget.js';
import type { Scheduler } from './scheduler.js';
import { createModelHost, type ModelHost } from './model-host.js';
import type { ReplySink } from './reply-sink.js';
import { RealtimeSession } from './session.js';

/** Where the server is in its life: what /readyz, /healthz and upgrades answer follows from it. */
export type HubState = 'loading' | 'ready' | 'restarting' | 'draining' | 'failed';

export interface HubHooks {
  /** The inference engine cannot come back: the process should exit non-zero for its supervisor. */
  fatal?(reason: string): void;
}

export interface RealtimeHub {
  /** The default model's (--model) engine and scheduler. */
  readonly engine: InferenceEngine;
  readonly scheduler: Scheduler;
  /** Every served model, the default first. */
  readonly hosts: readonly ModelHost[];
  readonly metrics: ServerMetrics;
  readonly authenticator: Authenticator;
  /** Resolves once the model is loaded and warmed up; rejects if it cannot load. */
  readonly ready: Promise<void>;
  state(): HubState;
  /** False once the engine gave up restarting: /healthz fails. */
  isHealthy(): boolean;
  /** The default model, with the operator's step cap applied; undefined while loading. */
  model(): ModelInfo | undefined;
  limits(): Limits;
  /** Every loaded model, the default first. */
  models(): ModelInfo[];
  /** The host serving a model folder, or the model of that name. */
  hostFor(dirOrName: string): ModelHost | undefined;
  /** Whether another session may open for `principal` (admission control); counts a refusal when not. */
  admit(principal: Principal): { ok: true } | { ok: false; reason: AdmissionRefusal };
  /** A session for a newly opened socket (or an HTTP request, or a queued job), and the `hello`
   * a socket sends it first. */
  openSession(sink: ReplySink, principal: Principal, options?: { background?: boolean; host?: ModelHost }): { session: RealtimeSession; hello: HelloMessage };
  /** The socket of a session closed. */
  closeSession(session: RealtimeSession): void;
  load(): NodeLoad;
  /** load().full, without the rest. */
  isFull(): boolean;
  /** Graceful shutdown: see drain.ts. Stops the engine at the end. */
  drain(timeoutMs: number): Promise<DrainReport>;
  /** Stops the engine now (tests, second signal). */
  close(): Promise<void>;
}

export type AdmissionRefusal = 'loading' | 'draining' | 'full' | 'key_limit';

/** How full the node is, for balancers (/readyz), autoscalers (/v1/load, /metrics) and people. */
export interface NodeLoad {
  state: HubState;
  /** Open user sessions (sockets and HTTP runs; queued jobs are not sessions of anyone's). */
  sessions: number;
  maxSessions: number;
  /** Sessions waiting in the schedulers for the GPU, over all models. */
  waiting: number;
  /** Past this many waiting, the node reports itself full (--full-queue). */
  fullQueue: number;
  /** Requests admitted and not finished, queued jobs' included. */
  pendingRequests: number;
  /** Queued jobs running here. */
  backgroundJobs: number;
  /** No room for another session: at --max-sessions, or the GPU queue past --full-queue. */
  full: boolean;
}

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
  // Read at scrape time, when everything below exists.
  const metrics = new ServerMetrics({
    sessions: () => sessions.size - backgroundSessions,
    pendingRequests: () => pendingRequests(),
    imageMemoryReserved: () => imageBudget.reserved,
    waiting: () => waiting(),
    full: () => isFull(),
    maxSessions: config.maxSessions,
  });
  // The default model first (--model), then any other folder an --app names, each in its own
  // inference process.
  const dirs = [...new Set([config.modelDir, ...config.fal.apps.map((app) => app.modelDir)])];
  const hosts = dirs.map((dir) => createModelHost(dir, config, logger, metrics, (reason) => hooks.fatal?.(reason)));
  const main = hosts[0];
  const { engine, scheduler } = main;

  const state = (): HubState => {
    if (hosts.some((h) => !h.engine.alive)) return 'failed';
    if (draining) return 'draining';
    if (hosts.every((h) => h.engine.ready)) return 'ready';
    return hosts.every((h) => h.engine.info) ? 'restarting' : 'loading';
  };

  const pendingRequests = () => {
    let open = 0;
    for (const session of sessions) open += session.openRequests;
    return open;
  };
  const waiting = (): number => hosts.reduce((sum, h) => sum + h.scheduler.queued, 0);
  // Asked on every /readyz: counts only, no walk over the sessions.
  const isFull = (): boolean => sessions.size - backgroundSessions >= config.maxSessions || waiting() > config.fullQueue;
  const load = (): NodeLoad => ({
    state: state(),
    sessions: sessions.size - backgroundSessions,
    maxSessions: config.maxSessions,
    waiting: waiting(),
    fullQueue: config.fullQueue,
    pendingRequests: pendingRequests(),
    backgroundJobs: backgroundSessions,
    full: isFull(),
  });

  const ready = Promise.all(hosts.map((h) => h.ready)).then(() => {
    if (hosts.length > 1) logger.info({ models: hosts.map((h) => h.model()!.name) }, 'all models ready');
  });

  return {
    engine,
    scheduler,
    hosts,
    metrics,
    authenticator,
    ready,
    state,
    isHealthy: () => hosts.every((h) => h.engine.alive),
    model: () => main.model(),
    limits: () => main.limits(),
    models: () => hosts.map((h) => h.model()).filter((m): m is ModelInfo => m !== undefined),
    hostFor: (dirOrName) => hosts.find((h) => h.dir === dirOrName || h.model()?.name === dirOrName),
    admit(principal) {
      const refuse = (reason: AdmissionRefusal) => {
        metrics.refusedConnections.inc({ reason });
        return { ok: false as const, reason };
      };
      if (draining) return refuse('draining');
      if (!hosts.every((h) => h.engine.ready)) return refuse('loading');
      if (sessions.size - backgroundSessions >= config.maxSessions) return refuse('full');
      // Per-key limits need keys: an open (keyless, loopback) server is bounded by --max-sessions alone.
      const perKey = sessionsPerKey.get(principal.keyId) ?? 0;
      if (authenticator.required && perKey >= config.limits.maxSessionsPerKey) return refuse('key_limit');
      return { ok: true };
    },
    openSession(sink, principal, options = {}) {
      const host = options.host ?? main;
      const info = host.model();
      if (!info) throw new Error('openSession before the model is ready');
      const sessionLimits = host.limits();
      const session = new RealtimeSession(sink, host.scheduler, {
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
        streamBatch: host.streamBatch(),
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
    load,
    isFull,
    async drain(timeoutMs) {
      draining = true;
      const report = await drainSessions(sessions, timeoutMs, logger);
      await Promise.all(hosts.map((h) => h.engine.close()));
      return report;
    },
    close: async () => {
      await Promise.all(hosts.map((h) => h.engine.close()));
    },
  };
}
