// Prometheus metrics for GET /metrics. One registry per server (not prom-client's global one) so
// several servers in one process, as in tests, never mix their numbers.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

const LATENCY_BUCKETS = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly sessions: Gauge;
  readonly pendingRequests: Gauge;
  readonly batchSize: Histogram;
  readonly unetCallSeconds: Histogram;
  readonly firstPreviewSeconds: Histogram;
  readonly frameLatencySeconds: Histogram;
  readonly frames: Counter;
  readonly droppedPreviews: Counter;
  readonly superseded: Counter;
  readonly skippedFrames: Counter;
  readonly errors: Counter<'code'>;
  readonly refusedConnections: Counter<'reason'>;
  readonly closedSlowReaders: Counter;
  readonly engineRestarts: Counter;
  /** Connections the server closed because of the client: bad_messages (4002), message_deadline (4004), idle (4008). */
  readonly closes: Counter<'reason'>;
  readonly imageMemoryReserved: Gauge;
  readonly imageDecodes: Counter;

  readonly waiting: Gauge;
  readonly full: Gauge;

  constructor(gauges: { sessions(): number; pendingRequests(): number; imageMemoryReserved(): number; waiting?(): number; full?(): boolean; maxSessions?: number }) {
    const registers = [this.registry];
    // Includes nodejs_eventloop_lag_seconds (and its percentiles) for the uWS thread.
    collectDefaultMetrics({ register: this.registry });
    this.sessions = new Gauge({
      name: 'realtime_sessions', help: 'Open realtime WebSocket sessions', registers,
      collect() { this.set(gauges.sessions()); },
    });
    this.pendingRequests = new Gauge({
      name: 'realtime_pending_requests', help: 'Requests admitted and not yet finished (queued or running)', registers,
      collect() { this.set(gauges.pendingRequests()); },
    });
    this.batchSize = new Histogram({
      name: 'realtime_unet_batch_size', help: 'Requests stepped together in one UNet call', registers,
      buckets: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32],
    });
    this.unetCallSeconds = new Histogram({
      name: 'realtime_unet_call_seconds', help: 'Duration of one UNet call (all requests in its batch)', registers,
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1],
    });
    this.firstPreviewSeconds = new Histogram({
      name: 'realtime_time_to_first_preview_seconds', help: 'From a generate message arriving to its first preview being sent', registers,
      buckets: LATENCY_BUCKETS,
    });
    this.frameLatencySeconds = new Histogram({
      name: 'realtime_frame_latency_seconds', help: 'From a generate message arriving to its frame being sent', registers,
      buckets: LATENCY_BUCKETS,
    });
    this.frames = new Counter({ name: 'realtime_frames_total', help: 'Final frames sent', registers });
    this.droppedPreviews = new Counter({ name: 'realtime_dropped_previews_total', help: 'Previews not sent because the reader was behind', registers });
    this.superseded = new Counter({ name: 'realtime_superseded_total', help: 'Requests replaced by a newer one before running', registers });
    this.skippedFrames = new Counter({ name: 'realtime_skipped_frames_total', help: 'Image-to-image requests skipped as nearly identical to the previous input', registers });
    this.errors = new Counter({ name: 'realtime_errors_total', help: 'Error replies by code', labelNames: ['code'], registers });
    this.refusedConnections = new Counter({ name: 'realtime_refused_connections_total', help: 'WebSocket upgrades refused, by reason', labelNames: ['reason'], registers });
    this.engineRestarts = new Counter({ name: 'realtime_engine_restarts_total', help: 'Times the inference process died or failed to reload and was restarted', registers });
    this.closedSlowReaders = new Counter({ name: 'realtime_slow_reader_closes_total', help: 'Sockets closed for staying over the send buffer limit', registers });
    this.closes = new Counter({ name: 'realtime_closes_total', help: 'Sockets the server closed for the client\'s conduct, by reason', labelNames: ['reason'], registers });
    // Refusals for lack of image memory are realtime_errors_total{code="overloaded"}.
    this.imageMemoryReserved = new Gauge({
      name: 'realtime_image_memory_reserved_bytes', help: 'Bytes of input images reserved (waiting, decoding, or decoded and waiting to run), of --image-memory', registers,
      collect() { this.set(gauges.imageMemoryReserved()); },
    });
    // Capacity, for balancers and autoscalers: sessions / max sessions, and the GPU's line.
    const maxSessions = new Gauge({ name: 'realtime_max_sessions', help: 'Sessions this node accepts at most (--max-sessions)', registers });
    if (gauges.maxSessions !== undefined) maxSessions.set(gauges.maxSessions);
    this.waiting = new Gauge({
      name: 'realtime_scheduler_waiting', help: 'Sessions with a request waiting for the GPU, over all models', registers,
      collect() { this.set(gauges.waiting?.() ?? 0); },
    });
    this.full = new Gauge({
      name: 'realtime_full', help: '1 while the node reports itself full on /readyz (at --max-sessions, or more than --full-queue waiting)', registers,
      collect() { this.set(gauges.full?.() ? 1 : 0); },
    });
    this.imageDecodes = new Counter({ name: 'realtime_image_decodes_total', help: 'Input images whose pixel decode started', registers });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
