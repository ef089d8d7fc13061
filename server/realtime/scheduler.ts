// Queue stage: sessions with admitted work wait here in arrival order and are served round-robin,
// one job at a time in the inference worker. Each session holds at most one pending request, so the
// queue is bounded by the number of sessions.
import type { InferenceEngine, JobListener } from '../engine/engine.js';
import type { JobSpec } from '../engine/messages.js';

/** What the scheduler needs from a session. */
export interface SchedulableSession {
  /** Hands over the pending request as a job, or undefined if it went away (superseded, cancelled). */
  takePending(jobId: number): { job: Omit<JobSpec, 'jobId'>; listener: JobListener } | undefined;
}

export class Scheduler {
  private readonly waiting = new Set<SchedulableSession>();
  private running = 0;
  private nextJobId = 1;

  constructor(
    private readonly engine: InferenceEngine,
    /** Jobs in the worker at once: 1 keeps per-request latency lowest for whole-request runs. */
    private readonly concurrency = 1,
  ) {}

  get queued(): number {
    return this.waiting.size;
  }

  /** A session has a pending request; it joins the back of the line unless already in it. */
  enqueue(session: SchedulableSession): void {
    this.waiting.add(session);
    this.pump();
  }

  remove(session: SchedulableSession): void {
    this.waiting.delete(session);
  }

  cancel(jobId: number): void {
    this.engine.cancel(jobId);
  }

  private pump(): void {
    while (this.running < this.concurrency && this.waiting.size > 0 && this.engine.ready) {
      const session: SchedulableSession = this.waiting.values().next().value!;
      this.waiting.delete(session);
      const jobId = this.nextJobId++;
      const taken = session.takePending(jobId);
      if (!taken) continue;
      this.running++;
      const finished = () => {
        this.running--;
        this.pump();
      };
      const { listener } = taken;
      this.engine.run({ ...taken.job, jobId }, {
        onStarted: () => listener.onStarted(),
        onPreview: (step, steps, image) => listener.onPreview(step, steps, image),
        onDone: (image, timings) => {
          finished();
          listener.onDone(image, timings);
        },
        onCancelled: () => {
          finished();
          listener.onCancelled();
        },
        onFailed: (failure) => {
          finished();
          listener.onFailed(failure);
        },
      });
    }
  }

  /** Called when the engine becomes ready again after a restart. */
  resume(): void {
    this.pump();
  }
}
