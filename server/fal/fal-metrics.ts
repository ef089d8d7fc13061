// /metrics series of the fal drop-in, on the server's registry: queued jobs by outcome, the queue's
// depth, and webhook deliveries by outcome.
import { Counter, Gauge } from 'prom-client';
import type { ServerMetrics } from '../metrics.js';

export class FalMetrics {
  readonly queueJobs: Counter<'outcome'>;
  readonly webhooks: Counter<'outcome'>;

  constructor(metrics: ServerMetrics, queueCounts: () => Promise<{ queued: number; running: number }>) {
    const registers = [metrics.registry];
    this.queueJobs = new Counter({
      name: 'fal_queue_jobs_total', help: 'Queued jobs that finished a run, by outcome (completed, failed, cancelled, requeued)', labelNames: ['outcome'], registers,
    });
    this.webhooks = new Counter({
      name: 'fal_webhook_deliveries_total', help: 'Webhook delivery attempts by outcome (delivered, retried, gave_up)', labelNames: ['outcome'], registers,
    });
    new Gauge({
      name: 'fal_queue_jobs', help: 'Jobs in the queue store by state (queued, running)', labelNames: ['state'], registers,
      async collect() {
        const counts = await queueCounts().catch(() => undefined);
        if (!counts) return;
        this.set({ state: 'queued' }, counts.queued);
        this.set({ state: 'running' }, counts.running);
      },
    });
  }
}
