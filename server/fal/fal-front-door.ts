// Assembles fal's front door over the hub: its realtime route, its HTTP routes, the durable queue
// (job store, runner, webhooks) and their metrics. Everything it runs goes through the hub's
// sessions, scheduler and engine; nothing here validates, schedules or batches on its own.
import { randomBytes } from 'node:crypto';
import type { TemplatedApp } from '../transport/uws.js';
import type { ServerConfig } from '../config.js';
import type { Logger } from '../logger.js';
import type { RealtimeHub } from '../realtime/hub.js';
import type { LivenessSweep } from '../realtime/liveness.js';
import { JobStore } from '../queue/job-store.js';
import type { QueueStore } from '../queue/types.js';
import { redactRedisUrl } from '../queue/redis-url.js';
import type { FalConfig } from './fal-config.js';
import { AppTable } from './apps.js';
import { FalMetrics } from './fal-metrics.js';
import { FalHttpApi } from './http-api.js';
import { registerFalHttp } from './http-routes.js';
import { QueueRoutes } from './queue-routes.js';
import { QueueRunner } from './queue-runner.js';
import { registerFalRealtime } from './realtime-route.js';
import { ResultFiles } from './result-files.js';
import { FalUploads } from './uploads.js';
import type { ImageFetchPolicy } from './image-source.js';
import { WebhookDispatcher } from './webhooks.js';
import { webhookSigner } from './webhook-signer.js';

/** What a shared queue tells the node running a job: another node took its cancel request, or
 * the job's lock was lost (it may now run elsewhere). */
interface SharedQueueEvents {
  cancelled(id: string): void;
  error(err: Error): void;
}

/** SQLite for one server; Redis (loaded only when asked for) for a queue several servers share. */
async function openQueueStore(fal: FalConfig, events: SharedQueueEvents): Promise<QueueStore> {
  const limits = { maxQueued: fal.maxQueued, maxQueuedPerKey: fal.maxQueuedPerKey, resultTtlMs: fal.resultTtlMs };
  if (!fal.queueUrl) return JobStore.open(fal.dataDir, limits);
  const { RedisQueueStore } = await import('../queue/redis-store.js');
  const store = await RedisQueueStore.open(fal.queueUrl, limits, { lockMs: fal.queueLockMs });
  store.on('cancelRequested', (id: string) => events.cancelled(id));
  store.on('lockLost', (id: string) => events.cancelled(id));
  store.on('error', (err: Error) => events.error(err));
  return store;
}

export interface FalFrontDoor {
  /** Whether jobs survive restarts here: false when no SQLite driver could be loaded. */
  readonly queueAvailable: boolean;
  /** Draining: stop claiming queued jobs (those running finish with the drain). */
  stopClaiming(): void;
  /** After the drain: stop webhooks and close the store. */
  close(): Promise<void>;
}

export async function openFalFrontDoor(app: TemplatedApp, hub: RealtimeHub, config: ServerConfig, logger: Logger, liveness: LivenessSweep): Promise<FalFrontDoor> {
  const { fal } = config;
  const apps = new AppTable(fal.apps);

  let webhooks: WebhookDispatcher | undefined;
  // Derived from the secret, so every node given it signs alike and serves the same public key.
  const webhookSigning = webhookSigner(fal.webhookSecret ?? randomBytes(32).toString('hex'));
  let runner: QueueRunner | undefined;
  let store: QueueStore | undefined;
  let storeError: string | undefined;
  try {
    store = await openQueueStore(fal, {
      cancelled: (id) => runner?.cancel(id),
      error: (err) => logger.warn({ err: err.message }, 'shared queue error'),
    });
    if (store.recovered > 0) logger.warn({ jobs: store.recovered }, 'queued jobs that were running when the server stopped are queued again');
  } catch (err) {
    storeError = (err as Error).message;
    logger.error({ queue: fal.queueUrl ? redactRedisUrl(fal.queueUrl) : fal.dataDir, err: storeError }, "fal's queue API is unavailable: its store cannot open");
  }
  const files = new ResultFiles(store);
  const imageFetch: ImageFetchPolicy = { allowedHosts: fal.imageHosts, timeoutMs: fal.imageFetchTimeoutMs, ownFile: (url) => files.lookup(url) };
  const metrics = new FalMetrics(hub.metrics, () => store ? store.counts() : Promise.resolve({ queued: 0, running: 0 }));

  if (store) {
    if (!fal.webhookSecret) {
      // A keyless server is a loopback one, for trying things out: there it is worth knowing, not a warning.
      const level = hub.authenticator.required ? 'warn' : 'info';
      logger[level]('no WEBHOOK_SECRET or TOKEN_SECRET: webhooks are signed with a key of this process alone, which changes on every restart and differs between nodes');
    }
    webhooks = new WebhookDispatcher(store, { signer: webhookSigning }, {
      delivered: () => metrics.webhooks.inc({ outcome: 'delivered' }),
      retried: () => metrics.webhooks.inc({ outcome: 'retried' }),
      gaveUp: () => metrics.webhooks.inc({ outcome: 'gave_up' }),
    }, logger);
    webhooks.start();
    const dispatcher = webhooks;
    runner = new QueueRunner(hub, store, apps, imageFetch, {
      // Never every slot of a batch: scheduler.ts keeps one for interactive work anyway.
      slots: Math.max(1, config.maxBatch - 1),
      maxAttempts: 5,
      pollMs: 250,
      expireEveryMs: 60_000,
    }, {
      webhookQueued: () => dispatcher.kick(),
      started: (waitedMs) => metrics.queueWait.observe(waitedMs / 1000),
      finished: (outcome) => metrics.queueJobs.inc({ outcome }),
    }, logger);
    const started = runner;
    void hub.ready.then(() => started.start(), () => {});
  }

  const uploads = new FalUploads(store, hub.authenticator.tokens, config.limits.maxImageBytes);
  const queue = new QueueRoutes(hub, apps, store, runner, storeError, imageFetch);
  const api = new FalHttpApi({ hub, apps, imageFetch, queue, files, uploads, webhookKeys: { keys: [webhookSigning.jwk] }, logger });
  registerFalRealtime(app, { config, hub, logger, liveness, apps, imageFetch });
  registerFalHttp(app, api, hub.authenticator, {
    maxBodyBytes: Math.ceil((config.limits.maxImageBytes * 4) / 3) + 64 * 1024,
    publicUrl: fal.publicUrl,
    tls: config.tls !== undefined,
    observe: (api, status, seconds) => metrics.httpExchange(api, status, seconds),
  });
  logger.info({ apps: apps.list().map((a) => a.id), queue: store ? store.location : `unavailable: ${storeError}` }, 'fal API ready to serve');

  return {
    queueAvailable: store !== undefined,
    stopClaiming: () => runner?.stop(),
    async close() {
      runner?.stop();
      await webhooks?.stop();
      await store?.close();
    },
  };
}
