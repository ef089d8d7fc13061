// Queue stage: sessions with admitted work wait here and are handed to the inference worker, up to
// `concurrency` jobs at once (one UNet batch). Costs come from cost.ts: pixels x steps that will run,
// in units of the model's default request. Two rules keep small requests flowing beside big ones:
//
// - Fair shares by cost (fair queueing by virtual finish time). Each session carries a virtual finish
//   tag that grows by the cost of every job it is given. A waiting session's start tag is max(its
//   finish tag, the virtual time); the request with the smallest start tag plus cost goes next,
//   equal ones in arrival order (plain
//   round-robin when all requests cost the same). A session sending 1024x1024 8-step requests
//   (64 units on the default model) gets one turn per 64 default requests served, not every turn.
//   The virtual time is the start tag of the last job handed out, so an idle session banks no credit.
// - Room for light requests. A job is heavy when it costs more than a full batch of default requests
//   (`concurrency` units); heavy jobs together hold at most `heavySlots` slots, the rest stay for
//   light ones. Without this, four 1024x1024 requests fill a 4-slot worker and every other session
//   waits seconds for one of them to finish. A heavy session skipped for this keeps its tag and goes
//   first once a heavy slot frees. Fewer heavy jobs at once also means shorter heavy UNet and decoder
//   calls, which is what a light request admitted beside them waits for: the batch runner alternates
//   groups of different latent sizes, so it waits about one heavy step per step of its own (and any
//   heavy decode that falls in between). Measured on 2 CPU cores, one heavy slot of four gave light
//   requests a third of the latency of two, and no fewer heavy frames (docs/performance.md);
//   batching heavy jobs pays more on a GPU, where --heavy-share gives them more slots.
//
// Latest wins is untouched: the tag belongs to the session, not to its pending request, which a
// newer one may replace while it waits; the cost is charged for the request actually handed over.
// Bounded: one entry per waiting session; finish tags live in a WeakMap and go with their session.
// Picking the next session scans the waiting ones (a few hundred at --max-sessions' default).
import type { InferenceEngine, JobListener } from '../engine/engine.js';
import type { JobSpec } from '../engine/messages.js';
import { requestCost, type JobShape } from './cost.js';

/** What the scheduler needs from a session. */
export interface SchedulableSession {
  /** Size, steps and strength of the pending request, or undefined if there is none. */
  peekPending(): JobShape | undefined;
  /** Hands over the pending request as a job, or undefined if it went away (superseded, cancelled). */
  takePending(jobId: number): { job: Omit<JobSpec, 'jobId'>; listener: JobListener } | undefined;
  /** Queued work (fal's queue API): runs only when no interactive session is waiting, and never
   * takes the last free slot, so a realtime request arriving mid-batch joins at the next step. */
  readonly background?: boolean;
}

/** What the scheduler needs from the engine. */
export type SchedulerEngine = Pick<InferenceEngine, 'ready' | 'info' | 'run' | 'cancel'>;

/** Slots heavy jobs may hold together: `share` of them, rounded down, and always at least one, so
 * heavy requests always progress (with concurrency 1, the one slot is shared by all in fair order). */
export function heavySlotsFor(concurrency: number, share: number): number {
  return Math.max(1, Math.min(concurrency, Math.floor(concurrency * share)));
}

export class Scheduler {
  /** Waiting sessions and their start tags, in arrival order. */
  private readonly waiting = new Map<SchedulableSession, number>();
  private readonly finishTags = new WeakMap<SchedulableSession, number>();
  private virtualTime = 0;
  private running = 0;
  private heavyRunning = 0;
  private backgroundRunning = 0;
  private nextJobId = 1;
  private readonly heavySlots: number;
  private readonly backgroundSlots: number;

  constructor(
    private readonly engine: SchedulerEngine,
    /** Jobs in the worker at once: 1 keeps per-request latency lowest for whole-request runs. */
    private readonly concurrency = 1,
    /** Share of the slots that heavy jobs may hold together (1: no slots kept for light ones). */
    heavyShare = 0.25,
  ) {
    this.heavySlots = heavySlotsFor(concurrency, heavyShare);
    this.backgroundSlots = Math.max(1, concurrency - 1);
  }

  /** Whether queued (background) work could start now: nothing interactive waits and a slot is free. */
  get idleForBackground(): boolean {
    if (this.running >= this.concurrency || this.backgroundRunning >= this.backgroundSlots) return false;
    for (const session of this.waiting.keys()) if (session.background !== true) return false;
    return true;
  }

  get queued(): number {
    return this.waiting.size;
  }

  /** A session has a pending request; it joins the line unless already in it. */
  enqueue(session: SchedulableSession): void {
    if (this.waiting.has(session)) return;
    this.waiting.set(session, Math.max(this.virtualTime, this.finishTags.get(session) ?? 0));
    this.pump();
  }

  remove(session: SchedulableSession): void {
    this.waiting.delete(session);
  }

  cancel(jobId: number): void {
    this.engine.cancel(jobId);
  }

  /** More work than a full batch of the model's default requests. */
  private isHeavy(cost: number): boolean {
    return cost > this.concurrency;
  }

  private cost(shape: JobShape): number {
    // Before the model is known nothing runs (pump waits for ready); 1 keeps the arithmetic sane.
    return this.engine.info ? requestCost(shape, this.engine.info) : 1;
  }

  /** The waiting session whose request would finish first in virtual time (its start tag plus its
   * cost) and may run now. Ordering by finish rather than start tag matters when many sessions
   * arrive at once: sixteen newcomers sending 1024x1024 requests all start at the same virtual
   * time as a camera stream, and by start tag each would run once before the stream ran again. */
  private next(): { session: SchedulableSession; tag: number } | undefined {
    return this.best(false) ?? (this.backgroundRunning < this.backgroundSlots ? this.best(true) : undefined);
  }

  private best(background: boolean): { session: SchedulableSession; tag: number } | undefined {
    const heavyFull = this.heavyRunning >= this.heavySlots;
    let best: { session: SchedulableSession; tag: number; finish: number } | undefined;
    for (const [session, tag] of this.waiting) {
      if ((session.background === true) !== background) continue;
      if (best && tag >= best.finish) continue;
      const shape = session.peekPending();
      const cost = shape ? this.cost(shape) : 0;
      // Nothing pending any more: picking it lets takePending drop it from the line.
      if (shape && heavyFull && this.isHeavy(cost)) continue;
      const finish = tag + cost;
      if (best && finish >= best.finish) continue;
      best = { session, tag, finish };
    }
    return best;
  }

  private pump(): void {
    while (this.running < this.concurrency && this.waiting.size > 0 && this.engine.ready) {
      const picked = this.next();
      if (!picked) return;
      const { session, tag } = picked;
      this.waiting.delete(session);
      const jobId = this.nextJobId++;
      const taken = session.takePending(jobId);
      if (!taken) continue;
      const cost = this.cost({ ...taken.job, image: taken.job.image !== undefined });
      const heavy = this.isHeavy(cost);
      this.virtualTime = Math.max(this.virtualTime, tag);
      this.finishTags.set(session, tag + cost);
      this.running++;
      if (heavy) this.heavyRunning++;
      const background = session.background === true;
      if (background) this.backgroundRunning++;
      // The session hears first, so that its next request is back in line, with its new tag, when
      // the freed slot is handed out: otherwise whoever else waits would get it whatever the tags.
      const { listener } = taken;
      const finish = (tell: () => void) => {
        try {
          tell();
        } finally {
          this.running--;
          if (heavy) this.heavyRunning--;
          if (background) this.backgroundRunning--;
          this.pump();
        }
      };
      this.engine.run({ ...taken.job, jobId }, {
        onStarted: () => listener.onStarted(),
        onPreview: (step, steps, image) => listener.onPreview(step, steps, image),
        onDone: (image, timings) => finish(() => listener.onDone(image, timings)),
        onCancelled: () => finish(() => listener.onCancelled()),
        onFailed: (failure) => finish(() => listener.onFailed(failure)),
      });
    }
  }

  /** Called when the engine becomes ready again after a restart. */
  resume(): void {
    this.pump();
  }
}
