// Runs queued fal jobs in the GPU's idle time. It claims jobs from the store only while no
// interactive request waits in the scheduler and a background slot is free, and runs each as a
// background one-shot session (scheduler.ts: interactive sessions go first, and background work
// never holds every slot). A job interrupted by a restart of the inference process or by a drain
// goes back in line (the store does the same for jobs a crash left running); a job whose input
// turns out bad, or that keeps failing, fails with fal's error and its webhook says so.
import type { Logger } from '../logger.js';
import type { RealtimeHub } from '../realtime/hub.js';
import type { JobFile, JobRecord, QueueStore } from '../queue/types.js';
import type { AppTable } from './apps.js';
import { FIELD_CODES, RETRYABLE_CODES, START_TIMEOUT, httpStatusFor } from './errors.js';
import { falErrorFromNative, mapFalInput } from './fal-input.js';
import { contentTypeOf, dataUri, falImagesResult } from './fal-output.js';
import { resolveImageUrl, type ImageFetchPolicy } from './image-source.js';
import { runOneShot, type OneShot } from './one-shot.js';
import { readQueuedJobInput } from './queued-job.js';

export interface QueueRunnerOptions {
  /** Jobs run at once at most. */
  slots: number;
  /** Times a job is claimed before a retryable failure fails it for good. */
  maxAttempts: number;
  pollMs: number;
  /** How often finished results past their lifetime are deleted. */
  expireEveryMs: number;
}

export interface QueueRunnerEvents {
  /** A job finished and its webhook (if any) was stored: deliver it now. */
  webhookQueued(): void;
  /** A job was claimed here, `waitedMs` after its submit. */
  started(waitedMs: number): void;
  finished(outcome: 'completed' | 'failed' | 'requeued' | 'cancelled'): void;
}

interface Failure {
  status: number;
  code: string;
  message: string;
}

export class QueueRunner {
  private readonly running = new Map<string, OneShot | undefined>();
  /** Status streams waiting for a job's state to change on this node. */
  private readonly watchers = new Map<string, Set<() => void>>();
  private timer: NodeJS.Timeout | undefined;
  private expireTimer: NodeJS.Timeout | undefined;
  private claiming = false;
  private stopped = false;

  constructor(
    private readonly hub: RealtimeHub,
    private readonly store: QueueStore,
    private readonly apps: AppTable,
    private readonly imageFetch: ImageFetchPolicy,
    private readonly options: QueueRunnerOptions,
    private readonly events: QueueRunnerEvents,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => this.kick(), this.options.pollMs);
    this.timer.unref();
    this.expireTimer ??= setInterval(() => {
      void this.store.expire().catch((err) => this.logger.warn({ err }, 'expiring queue results failed'));
    }, this.options.expireEveryMs);
    this.expireTimer.unref();
    this.kick();
  }

  /** Stops claiming (a draining node leaves queued jobs to the others, or to its next start); jobs
   * already running finish through the drain like any other session's request. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.expireTimer) clearInterval(this.expireTimer);
    this.timer = this.expireTimer = undefined;
  }

  get active(): number {
    return this.running.size;
  }

  /** Resolves when the job's state changes on this node, or after `timeoutMs` (a job run by another
   * node of a shared queue changes without this node hearing of it). */
  changed(id: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const watchers = this.watchers.get(id) ?? new Set<() => void>();
      this.watchers.set(id, watchers);
      const done = () => {
        clearTimeout(timer);
        watchers.delete(done);
        if (watchers.size === 0 && this.watchers.get(id) === watchers) this.watchers.delete(id);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      watchers.add(done);
    });
  }

  private notify(id: string): void {
    for (const wake of [...(this.watchers.get(id) ?? [])]) wake();
  }

  /** A cancel request for a job this node runs: stop it at its next step. */
  cancel(id: string): void {
    this.running.get(id)?.cancel();
  }

  /** Look for work now (a job was submitted, one finished, or the poll ticked). */
  kick(): void {
    if (this.stopped || this.claiming || this.hub.state() !== 'ready' || !this.hub.hosts.some((h) => h.scheduler.idleForBackground)) return;
    const free = this.options.slots - this.running.size;
    if (free <= 0) return;
    this.claiming = true;
    this.store
      .claim(free)
      .then((jobs) => {
        for (const job of jobs) {
          this.events.started(Math.max(0, (job.startedAt ?? Date.now()) - job.createdAt));
          void this.run(job);
        }
      })
      .catch((err) => this.logger.error({ err }, 'claiming queued jobs failed'))
      .finally(() => {
        this.claiming = false;
      });
  }

  private async run(job: JobRecord): Promise<void> {
    this.running.set(job.id, undefined);
    this.notify(job.id);
    try {
      await this.execute(job);
    } catch (err) {
      this.logger.error({ err, requestId: job.id }, 'queued job failed unexpectedly');
      await this.fail(job, { status: 500, code: 'internal', message: 'internal error' }).catch(() => {});
    } finally {
      this.running.delete(job.id);
      this.notify(job.id);
      this.kick();
    }
  }

  private async execute(job: JobRecord): Promise<void> {
    const { input, publicBase, startBy } = readQueuedJobInput(job.input);
    if (startBy !== undefined && Date.now() > startBy) {
      await this.fail(job, { status: START_TIMEOUT.status, code: START_TIMEOUT.code, message: 'the request did not start within its x-fal-request-timeout' });
      return;
    }
    const app = this.apps.list().find((a) => a.id === job.appId);
    const host = app && this.hub.hostFor(app.modelDir);
    const model = host?.model();
    if (!app || !host || !model) {
      await this.retryOrFail(job, { status: 503, code: 'not_ready', message: app ? 'the model is not loaded' : `app ${job.appId} is no longer served` });
      return;
    }
    const mapped = mapFalInput(input, app, model, host.limits());
    if (!mapped.ok) {
      await this.fail(job, { status: 422, code: mapped.error.code, message: mapped.error.message });
      return;
    }
    let { plan } = mapped;
    if (plan.imageUrl !== undefined) {
      const image = await resolveImageUrl(plan.imageUrl, { ...this.imageFetch, maxBytes: host.limits().maxImageBytes });
      if (!image.ok) {
        await this.fail(job, { status: 422, code: image.code, message: image.message });
        return;
      }
      plan = { ...plan, generate: { ...plan.generate, image: image.bytes } };
    }
    const shot = runOneShot(this.hub, { keyId: job.keyId }, plan.generate, { background: true, host, images: plan.numImages });
    this.running.set(job.id, shot);
    if (job.cancelRequested) shot.cancel();
    const outcome = await shot.done;
    if (outcome.ok) {
      const files: JobFile[] = [];
      const images = outcome.frames.map((frame, i) => {
        const contentType = contentTypeOf(frame.format);
        if (plan.syncMode) return { url: dataUri(frame.image, contentType) };
        const name = `${i}.${frame.format === 'jpeg' ? 'jpg' : frame.format}`;
        files.push({ name, contentType, bytes: frame.image });
        return { url: `${publicBase}/files/${job.id}/${name}` };
      });
      const prompt = typeof plan.generate.prompt === 'string' ? plan.generate.prompt : '';
      const result = falImagesResult(outcome.frames, { plan, prompt, images });
      await this.store.complete(job.id, result, files, job.webhookUrl ? webhookBody(job.id, 'OK', result, null) : undefined);
      this.finished(job, 'completed');
      return;
    }
    if ('cancelled' in outcome) {
      await this.store.finishCancelled(job.id, job.webhookUrl ? webhookBody(job.id, 'ERROR', { detail: 'cancelled' }, 'the request was cancelled') : undefined);
      this.finished(job, 'cancelled');
      return;
    }
    const { error } = outcome;
    const failure = FIELD_CODES.has(error.code)
      ? { status: 422, code: error.code, message: falErrorFromNative(error.code, error.message, plan).message }
      : { status: httpStatusFor(error.code), code: error.code, message: error.message };
    if (RETRYABLE_CODES.has(error.code)) await this.retryOrFail(job, failure);
    else await this.fail(job, failure);
  }

  private async retryOrFail(job: JobRecord, failure: Failure): Promise<void> {
    if (job.attempts >= this.options.maxAttempts) {
      await this.fail(job, { ...failure, message: `${failure.message} (after ${job.attempts} attempts)` });
      return;
    }
    // A job whose cancel was asked for meanwhile ends cancelled instead.
    const now = await this.store.requeue(job.id);
    this.events.finished(now === 'queued' ? 'requeued' : 'cancelled');
  }

  private async fail(job: JobRecord, failure: Failure): Promise<void> {
    const body = job.webhookUrl ? webhookBody(job.id, 'ERROR', { detail: failure.message }, failure.message) : undefined;
    await this.store.fail(job.id, failure, body);
    this.finished(job, 'failed');
  }

  private finished(job: JobRecord, outcome: 'completed' | 'failed' | 'cancelled'): void {
    this.events.finished(outcome);
    if (job.webhookUrl) this.events.webhookQueued();
  }
}

/** fal's webhook payload. */
function webhookBody(requestId: string, status: 'OK' | 'ERROR', payload: unknown, error: string | null): string {
  return JSON.stringify({ request_id: requestId, gateway_request_id: requestId, status, payload, error });
}
