// Step-level scheduling inside the inference process. Up to `maxBatch` requests are active at once;
// every iteration admits newcomers (their text encoding batched), runs ONE denoising step for a
// group of active requests in one UNet call (each at its own timestep), sends their previews, and
// decodes the ones that just finished. A 1-step request admitted next to a 4-step one is done
// after one iteration instead of waiting for all four steps.
//
// A request's last step gets no preview: the frame decodes the very latent that preview would show
// and follows at once, so a preview there costs a decode and an encode for an image nobody sees
// for long (a 1-step request would pay two decodes for one picture). `lastPreview` restores it.
//
// Stream batching (the session side is in realtime/session.ts) hands a session's next request in
// while its previous one still runs, so one UNet call advances both at different timesteps. The
// next one's frame waits for the previous one's (`after`), so frames leave in input order.
import type { GenerationState } from '../pipeline/generation.js';
import { isFinished } from '../pipeline/generation.js';
import { yieldToEvents, type DiffusionPipeline } from '../pipeline/pipeline.js';
import type { JobSpec, RgbImage, WorkerTimings } from './messages.js';

export interface RunnerEvents {
  started(jobId: number): void;
  preview(jobId: number, step: number, steps: number, image: RgbImage): void;
  done(jobId: number, image: RgbImage, timings: WorkerTimings): void;
  cancelled(jobId: number): void;
  failed(jobId: number, message: string, invalidInput: boolean): void;
  /** One UNet call: its batch size and duration (for metrics). */
  unetCall(batchSize: number, ms: number): void;
  /** Resolves once what the events above sent has left the process. A busy process moves a pipe's
   * worth (64 KB) of a queued message per event-loop turn, so without this wait a full-size preview
   * reaches the server only after several more steps, and a cancel comes too late to stop anything. */
  flushed?(): Promise<void>;
}

export interface RunnerOptions {
  /** Also preview the last step (the frame's own latent, decoded once more): the old behaviour. */
  lastPreview?: boolean;
}

interface ActiveJob {
  jobId: number;
  state: GenerationState;
  /** Iteration in which this job last ran a step; the group holding the smallest goes next. */
  lastStep: number;
  /** The job whose frame must be done before this one's (stream batching). */
  after?: number;
}

export class BatchRunner {
  private readonly waiting: JobSpec[] = [];
  private active: ActiveJob[] = [];
  private readonly cancelRequests = new Set<number>();
  private iteration = 0;
  private running = false;

  constructor(
    private readonly pipeline: DiffusionPipeline,
    private readonly events: RunnerEvents,
    private readonly maxBatch: number,
    private readonly options: RunnerOptions = {},
  ) {}

  add(job: JobSpec): void {
    this.waiting.push(job);
    if (!this.running) void this.loop();
  }

  cancel(jobId: number): void {
    // Only ids still here: a cancel that crossed its job's completion must not linger.
    if (this.waiting.some((j) => j.jobId === jobId) || this.active.some((a) => a.jobId === jobId)) {
      this.cancelRequests.add(jobId);
    }
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      while (this.waiting.length > 0 || this.active.length > 0) {
        // Lets cancels and new jobs posted by the main thread arrive between steps.
        await yieldToEvents();
        await this.events.flushed?.();
        this.iteration++;
        this.dropCancelled();
        await this.admit();
        await this.stepOneGroup();
        await this.finishCompleted();
      }
    } finally {
      this.running = false;
    }
  }

  private dropCancelled(): void {
    if (this.cancelRequests.size === 0) return;
    const keep = (jobId: number) => {
      if (!this.cancelRequests.delete(jobId)) return true;
      this.events.cancelled(jobId);
      return false;
    };
    for (let i = this.waiting.length - 1; i >= 0; i--) if (!keep(this.waiting[i].jobId)) this.waiting.splice(i, 1);
    this.active = this.active.filter((a) => keep(a.jobId));
  }

  private async admit(): Promise<void> {
    const room = this.maxBatch - this.active.length;
    if (room <= 0 || this.waiting.length === 0) return;
    const admitted: ActiveJob[] = [];
    for (const job of this.waiting.splice(0, room)) {
      try {
        admitted.push({ jobId: job.jobId, state: this.pipeline.createState(job), lastStep: 0, after: job.after });
      } catch (err) {
        // The sampler refuses step/strength combinations it cannot run (RangeError): the client's doing.
        this.events.failed(job.jobId, (err as Error).message, err instanceof RangeError);
      }
    }
    if (admitted.length === 0) return;
    const ok = await this.guard(admitted, async () => {
      await this.pipeline.encodeText(admitted.map((a) => a.state));
      await this.pipeline.prepareLatents(admitted.map((a) => a.state));
    });
    if (!ok) return;
    for (const job of admitted) this.events.started(job.jobId);
    this.active.push(...admitted);
  }

  private async stepOneGroup(): Promise<void> {
    const ready = this.active.filter((a) => !isFinished(a.state));
    if (ready.length === 0) return;
    // Requests of one latent size (and, for scalar-timestep models, one timestep) share a call;
    // the group that has waited longest goes first, so no size can starve another.
    const groups = new Map<string, ActiveJob[]>();
    for (const job of ready) {
      const key = `${job.state.latentW}x${job.state.latentH}/${this.pipeline.stepBatchKey(job.state)}`;
      groups.set(key, [...(groups.get(key) ?? []), job]);
    }
    const group = [...groups.values()].reduce((best, g) =>
      Math.min(...g.map((j) => j.lastStep)) < Math.min(...best.map((j) => j.lastStep)) ? g : best,
    );
    await this.guard(group, async () => {
      const t0 = performance.now();
      const predictions = await this.pipeline.step(group.map((j) => j.state));
      this.events.unetCall(group.length, performance.now() - t0);
      for (const job of group) job.lastStep = this.iteration;
      const wanting = group
        .map((job, i) => ({ job, prediction: predictions[i] }))
        .filter(({ job }) => job.state.request.previews && (this.options.lastPreview || !isFinished(job.state)));
      if (wanting.length === 0) return;
      const previews = await this.pipeline.previews(wanting.map((x) => x.job.state), wanting.map((x) => x.prediction));
      wanting.forEach(({ job }, i) => this.events.preview(job.jobId, job.state.stepIndex, job.state.steps, previews[i]));
    });
  }

  private async finishCompleted(): Promise<void> {
    // A job that follows another one still stepping (or not yet admitted) keeps its frame back.
    const stepping = new Set([...this.waiting.map((j) => j.jobId), ...this.active.filter((a) => !isFinished(a.state)).map((a) => a.jobId)]);
    const finished = this.active.filter((a) => isFinished(a.state) && !(a.after !== undefined && stepping.has(a.after)));
    if (finished.length === 0) return;
    const bySize = new Map<string, ActiveJob[]>();
    for (const job of finished) {
      const key = `${job.state.latentW}x${job.state.latentH}`;
      bySize.set(key, [...(bySize.get(key) ?? []), job]);
    }
    const undecoded = new Set(finished.map((j) => j.jobId));
    for (const sized of bySize.values()) {
      // In one group a follower comes after its leader (admission order) and shares its decode; a
      // leader in a later group (another size) goes first, and its follower waits an iteration.
      const group: ActiveJob[] = [];
      for (const j of sized) if (j.after === undefined || !undecoded.has(j.after) || group.some((g) => g.jobId === j.after)) group.push(j);
      if (group.length === 0) continue;
      await this.guard(group, async () => {
        const images = await this.pipeline.decode(group.map((j) => j.state));
        group.forEach((job, i) => this.events.done(job.jobId, images[i], job.state.timings));
      });
      for (const job of group) undecoded.delete(job.jobId);
      this.active = this.active.filter((a) => !group.includes(a));
    }
  }

  /** Runs a model call for `jobs`; if it throws, those jobs fail and leave, the rest go on. */
  private async guard(jobs: readonly ActiveJob[], work: () => Promise<void>): Promise<boolean> {
    try {
      await work();
      return true;
    } catch (err) {
      for (const job of jobs) this.events.failed(job.jobId, (err as Error).message, false);
      this.active = this.active.filter((a) => !jobs.includes(a));
      return false;
    }
  }
}
