// The fal drop-in's settings: which app ids are served, where the queue keeps its jobs, how much it
// holds, how long results stay, where `image_url` may be fetched from, and how webhooks are signed.
import path from 'node:path';
import { parseAppSpecs, type FalApp } from './apps.js';

export interface FalConfig {
  apps: FalApp[];
  /** SQLite queue and result files live here (`--data-dir`, default ./data). */
  dataDir: string;
  /** A queue shared by several servers (`--queue redis://...`); absent: SQLite under dataDir. */
  queueUrl: string | undefined;
  /** Shared queue: a node silent this long loses its running jobs to the other nodes. */
  queueLockMs: number;
  /** Queued (not yet running) jobs at most, in all and per key; more get 429. */
  maxQueued: number;
  maxQueuedPerKey: number;
  /** Finished results (and their images) are kept this long. */
  resultTtlMs: number;
  /** Hosts `image_url` may name (exact, host:port or *.domain); empty: data URIs only. */
  imageHosts: string[];
  imageFetchTimeoutMs: number;
  /** What the webhooks' Ed25519 signing key is derived from (env WEBHOOK_SECRET; else TOKEN_SECRET; else random per process). */
  webhookSecret: string | undefined;
  /** Scheme and host for URLs the server returns, when the Host header is not what clients use. */
  publicUrl: string | undefined;
}

export interface FalFlags {
  app?: string[];
  dataDir?: string;
  queue?: string;
  queueLock?: string;
  queueMax?: string;
  queueMaxPerKey?: string;
  resultTtl?: string;
  imageHosts?: string;
  publicUrl?: string;
}

function queueUrl(raw: string | undefined): string | undefined {
  if (!raw || raw === 'sqlite') return undefined;
  if (!/^rediss?:\/\//.test(raw)) throw new Error(`--queue must be sqlite (the default) or a redis:// or rediss:// URL, got "${raw}"`);
  return raw;
}

type Integer = (name: string, raw: string | undefined, fallback: number, min: number, max: number) => number;

export function loadFalConfig(flags: FalFlags, env: NodeJS.ProcessEnv, modelDir: string, integer: Integer): FalConfig {
  const specs = flags.app ?? (env.APPS ? env.APPS.split(',').map((s) => s.trim()).filter(Boolean) : []);
  const apps = parseAppSpecs(specs, modelDir).map((app) => ({ ...app, modelDir: path.resolve(app.modelDir) }));
  const publicUrl = (flags.publicUrl ?? env.PUBLIC_URL)?.replace(/\/+$/, '') || undefined;
  if (publicUrl !== undefined && !/^https?:\/\/[^/]+/.test(publicUrl)) throw new Error(`--public-url must be an http(s) URL, got "${publicUrl}"`);
  return {
    apps,
    dataDir: path.resolve(flags.dataDir ?? env.DATA_DIR ?? 'data'),
    queueUrl: queueUrl(flags.queue ?? env.QUEUE),
    queueLockMs: 1000 * integer('--queue-lock', flags.queueLock, 30, 1, 3600),
    maxQueued: integer('--queue-max', flags.queueMax, 10_000, 1, 10_000_000),
    maxQueuedPerKey: integer('--queue-max-per-key', flags.queueMaxPerKey, 1000, 1, 10_000_000),
    resultTtlMs: 1000 * integer('--result-ttl', flags.resultTtl, 3600, 1, 30 * 86_400),
    imageHosts: (flags.imageHosts ?? env.IMAGE_HOSTS ?? '').split(',').map((h) => h.trim()).filter(Boolean),
    imageFetchTimeoutMs: 10_000,
    webhookSecret: env.WEBHOOK_SECRET || env.TOKEN_SECRET || undefined,
    publicUrl,
  };
}
