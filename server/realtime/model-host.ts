// One served model: its inference process (engine), the scheduler in front of it, and the model
// info and limits its sessions see. A server runs one host per model folder (--model, and every
// other folder an --app names), each in its own inference process; sessions are bound to one.
import type { Limits, ModelInfo } from '../../shared/protocol.js';
import type { ServerConfig, StreamBatchMode } from '../config.js';
import { InferenceEngine } from '../engine/engine.js';
import type { Logger } from '../logger.js';
import type { ServerMetrics } from '../metrics.js';
import { Scheduler } from './scheduler.js';

export interface ModelHost {
  /** The model folder, as configured (resolved). */
  readonly dir: string;
  readonly engine: InferenceEngine;
  readonly scheduler: Scheduler;
  /** Resolves once the model is loaded and warmed up; rejects if it cannot load. */
  readonly ready: Promise<void>;
  /** The served model, with the operator's step cap applied; undefined while loading. */
  model(): ModelInfo | undefined;
  limits(): Limits;
  /** Whether its sessions stream-batch (--stream-batch, decided for auto at each warm-up). */
  streamBatch(): boolean;
}

/**
 * Stream batching pays where pairing is nearly free: the running request's remaining steps then
 * slow down little while the next one starts a step sooner. On the CPU here a step of two costs
 * 1.6-1.9x a step of one and stream batching raised frame latency 1.4-1.6x (docs/performance.md);
 * a GPU's batched kernels are expected to cost far less than double, which warm-up measures.
 */
export const STREAM_BATCH_MAX_PAIR_COST = 1.25;

export function streamBatchFor(mode: StreamBatchMode, pairCost: number | undefined): boolean {
  if (mode !== 'auto') return mode === 'on';
  return pairCost !== undefined && pairCost <= STREAM_BATCH_MAX_PAIR_COST;
}

export function createModelHost(dir: string, config: ServerConfig, logger: Logger, metrics: ServerMetrics, fatal: (reason: string) => void): ModelHost {
  const engine = new InferenceEngine(
    {
      modelDir: dir, device: config.device, deviceId: config.deviceId, threads: config.threads, spinning: config.spinning,
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
      fatal,
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

  const streamBatch = () => streamBatchFor(config.streamBatch, engine.pairCost);
  const ready = engine.whenReady().then(() => {
    const info = model()!;
    if (info.finalDecoder !== config.finalDecoder) {
      logger.warn({ model: info.name, finalDecoders: info.finalDecoders }, `--final-decoder ${config.finalDecoder}: the model has no such decoder; final frames default to ${info.finalDecoder}`);
    }
    logger.info(
      {
        model: info.name, dir, size: `${info.width}x${info.height}`, scheduler: info.scheduler, previews: info.previews, img2img: info.img2img, finalDecoder: info.finalDecoder,
        streamBatch: streamBatch(), ...(engine.pairCost !== undefined ? { pairCost: Math.round(engine.pairCost * 100) / 100 } : {}),
        warmupMs: Math.round(engine.warmupMs),
      },
      'model ready',
    );
  });

  return { dir, engine, scheduler, ready, model, limits, streamBatch };
}
