// /metrics series of the fal drop-in, on the server's registry: HTTP exchanges by API and status
// with their durations, queued jobs by outcome, how long they waited to start, the queue's depth,
// and webhook deliveries by outcome.
import { Counter, Gauge, Histogram } from 'prom-client';
import type { ServerMetrics } from '../metrics.js';
import type { FalApiName } from './http-exchange.js';

export class FalMetrics {
  readonly queueJobs: Counter<'outcome'>;
  readonly webhooks: Counter<'outcome'>;
  /** From a job's submit to each start of it (a requeued job is counted again, from the same submit). */
  readonly queueWait: Histogram<never>;
  private readonly httpRequests: Counter<'api' | 'status'>;
  private readonly httpSeconds: Histogram<'api'>;

  constructor(metrics: ServerMetrics, queueCounts: () => Promise<{ queued: number; running: number }>) {
    const registers = [metrics.registry];
    this.httpRequests = new Counter({
      name: 'fal_http_requests_total', help: "fal API exchanges by API (run, stream, queue, rest, files, other) and HTTP status (499: the client left first)", labelNames: ['api', 'status'], registers,
    });
    this.httpSeconds = new Histogram({
      name: 'fal_http_request_duration_seconds', help: 'From a fal API request arriving to its response ending (server-sent event streams: to their last event)', labelNames: ['api'], registers,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    });
    this.queueWait = new Histogram({
      name: 'fal_queue_wait_seconds', help: 'From a queued job\'s submit to its start on this node (again from the submit for a job put back in line)', registers,
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
    });
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

  httpExchange(api: FalApiName, status: number, seconds: number): void {
    this.httpRequests.inc({ api, status: String(status) });
    this.httpSeconds.observe({ api }, seconds);
  }
}
