// The jobs one node holds on the Redis queue (redis-store.ts): the lock token BullMQ gave each claim,
// the renewal of those locks every lockMs/3, and the news a holder needs: a cancel asked for on any
// node, or a lock this node lost. Also the store's small event emitter, since those are its events.
import type { Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';

/** What the store tells its node about jobs it holds, and trouble in the background. */
export interface RedisStoreEvents {
  /** A job this node runs was asked to cancel, on any node: stop it, then finishCancelled(). */
  cancelRequested: (id: string) => void;
  /** This node no longer holds a job's lock (Redis was unreachable for lockMs, or the process
   * stalled): another node may run it, and this node's complete/fail/requeue of it are refused. */
  lockLost: (id: string) => void;
  /** A background failure (lock renewal, BullMQ bookkeeping, the connection); the store retries. */
  error: (err: Error) => void;
}

type Listeners = { [E in keyof RedisStoreEvents]: Set<RedisStoreEvents[E]> };

export class StoreEvents {
  private readonly listeners: Listeners = { cancelRequested: new Set(), lockLost: new Set(), error: new Set() };

  on<E extends keyof RedisStoreEvents>(event: E, listener: RedisStoreEvents[E]): void {
    this.listeners[event].add(listener);
  }

  off<E extends keyof RedisStoreEvents>(event: E, listener: RedisStoreEvents[E]): void {
    this.listeners[event].delete(listener);
  }

  /** Unlike an EventEmitter, an 'error' nobody listens to is dropped rather than thrown: the store's
   * background work must not bring the process down. */
  emit<E extends keyof RedisStoreEvents>(event: E, ...args: Parameters<RedisStoreEvents[E]>): void {
    for (const listener of this.listeners[event]) {
      try {
        (listener as (...a: Parameters<RedisStoreEvents[E]>) => void)(...args);
      } catch {
        // A listener's failure is its own; the store's work goes on.
      }
    }
  }

  error(err: unknown): void {
    this.emit('error', err instanceof Error ? err : new Error(String(err)));
  }
}

export interface Held {
  token: string;
  job: Job;
  cancelNotified: boolean;
}

export class HeldJobs {
  private readonly jobs = new Map<string, Held>();
  private readonly timer: NodeJS.Timeout;
  private renewing = false;
  private stopped = false;

  constructor(
    private readonly worker: Worker,
    private readonly redis: Redis,
    private readonly recordKey: (id: string) => string,
    private readonly lockMs: number,
    private readonly events: StoreEvents,
  ) {
    this.timer = setInterval(() => void this.renew(), Math.max(1, Math.floor(lockMs / 3)));
    this.timer.unref();
  }

  get(id: string): Held | undefined {
    return this.jobs.get(id);
  }

  add(id: string, token: string, job: Job): void {
    this.jobs.set(id, { token, job, cancelNotified: false });
  }

  delete(id: string): void {
    this.jobs.delete(id);
  }

  ids(): string[] {
    return [...this.jobs.keys()];
  }

  /** Tells the node once that a job it holds should stop. */
  cancelRequested(id: string): void {
    const held = this.jobs.get(id);
    if (!held || held.cancelNotified) return;
    held.cancelNotified = true;
    this.events.emit('cancelRequested', id);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** Extends the locks of the jobs held here, and looks for cancels asked for on any node. */
  private async renew(): Promise<void> {
    if (this.renewing || this.stopped || this.jobs.size === 0) return;
    this.renewing = true;
    try {
      const entries = [...this.jobs];
      const failed = new Set(await this.worker.extendJobLocks(entries.map(([id]) => id), entries.map(([, h]) => h.token), this.lockMs));
      const watched: [string, Held][] = [];
      for (const [id, h] of entries) {
        // A job finished meanwhile has no lock left to extend; only one still held here was lost.
        if (failed.has(id) && this.jobs.get(id) === h) {
          this.jobs.delete(id);
          this.events.emit('lockLost', id);
        } else if (!h.cancelNotified) watched.push([id, h]);
      }
      if (watched.length === 0) return;
      const flags = await Promise.all(watched.map(([id]) => this.redis.hget(this.recordKey(id), 'cancel')));
      watched.forEach(([id, h], i) => {
        if (flags[i] === '1' && this.jobs.get(id) === h) this.cancelRequested(id);
      });
    } catch (err) {
      this.events.error(err);
    } finally {
      this.renewing = false;
    }
  }
}
