// One WebSocket connection's requests: validate -> rate limit -> (decode image, skip if unchanged)
// -> admit -> queue -> run. Latest wins: at most one request running and one pending; a newer
// generate replaces the pending one, which is answered `superseded`. Images are decoded one at a
// time within the shared memory budget (input-decoder.ts). Replies leave through the outbox, which
// owns ordering and backpressure.
// Stream batching (--stream-batch): the pending request starts once the running one is stepping, as
// its `follower` (at most one), sharing its UNet calls; the batch runner keeps its frame second.
import { performance } from 'node:perf_hooks';
import { decodeMessage } from '../../shared/codec.js';
import { CloseCode, ErrorCode, type ErrorMessage, type Limits, type ModelInfo, type RequestId, type ServerMessage } from '../../shared/protocol.js';
import type { JobFailure, JobListener } from '../engine/engine.js';
import type { RgbImage, WorkerTimings } from '../engine/messages.js';
import type { Logger } from '../logger.js';
import type { ServerMetrics } from '../metrics.js';
import type { Principal } from '../security/authenticator.js';
import type { TokenCheck } from '../security/tokens.js';
import type { DrainableSession } from './drain.js';
import { failureReply, frameMessage, previewMessage } from './frame-replies.js';
import { SimilarFrameFilter } from './frame-similarity.js';
import type { HubState } from './hub.js';
import type { ImageBudget, Reservation } from './image-budget.js';
import { InputDecoder, type DecodedInput } from './input-decoder.js';
import { Outbox, type OutboxOptions } from './outbox.js';
import type { ReplySink } from './reply-sink.js';
import { TokenBucket } from './rate-limiter.js';
import { TokenLease } from './token-lease.js';
import type { Scheduler, SchedulableSession } from './scheduler.js';
import { SlidingWindowCounter } from './sliding-window.js';
import { validateMessage, type ValidGenerate } from './validate.js';

export type { ReplySink };

export interface SessionOptions {
  limits: Limits;
  model: ModelInfo;
  outbox: OutboxOptions;
  previewJpegQuality: number;
  frameJpegQuality: number;
  /** 'restarting' while the inference process restarts; 'draining' once the server shuts down. */
  hubState(): HubState;
  /** Who this connection acts for; a token-based one expires unless refreshed with `auth`. */
  principal: Principal;
  verifyToken(token: string): Promise<TokenCheck>;
  /** Memory for input images, shared by every session. */
  imageBudget: ImageBudget;
  /** Start the pending request beside the running one once that one runs (see above). */
  streamBatch?: boolean;
  /** Queued (not interactive) work: the scheduler runs it only when no interactive session waits. */
  background?: boolean;
}

interface Admitted {
  request: ValidGenerate;
  arrivedAt: number;
  admittedAt: number;
  imageDecodeMs: number;
  rgb?: Uint8Array;
  /** The RGB's share of the image budget, released when the worker takes it or the request ends. */
  reservation?: Reservation;
}

/** Replies that mean the client does not speak the protocol: a correct client never earns one, so
 * a stream of them is an attack or a broken client, and either gets closed. */
const MALFORMED: ReadonlySet<ErrorCode> = new Set([ErrorCode.BadMessage, ErrorCode.UnknownType, ErrorCode.InvalidField]);

interface Running extends Admitted {
  jobId: number;
  startedAt: number;
  previewSent: boolean;
  /** The inference process has taken it in: from now on it is on its steps. */
  started?: boolean;
  /** Answered `shutting_down` by the drain: whatever the job still reports is dropped. */
  abandoned?: boolean;
}

/** Suggested waits for retryable errors: a restart takes about a second, a drain ends the socket. */
const RETRY_AFTER_RESTART_MS = 1000;
const RECONNECT_AFTER_SHUTDOWN_MS = 100;
/** After going_away: reconnect at once. This node refuses the upgrade (503), so a balancer retries
 * another node, and a lone server's refusal says how long to wait (Retry-After). */
const RECONNECT_AFTER_GOING_AWAY_MS = 0;

export class RealtimeSession implements SchedulableSession, DrainableSession {
  private pending: Admitted | undefined;
  private running: Running | undefined;
  /** Stream batching: the request started beside `running`, whose frame comes after its frame. */
  private follower: Running | undefined;
  private readonly decoder: InputDecoder;
  private readonly similarFrames: SimilarFrameFilter;
  private closed = false;
  private readonly outbox: Outbox;
  private readonly rate: TokenBucket;
  private readonly lease: TokenLease;
  private readonly badMessages = new SlidingWindowCounter(60_000);
  /** Closed for too many bad messages: whatever else arrives before the close lands is ignored. */
  private refusing = false;
  private lastRequestAt = performance.now();

  constructor(
    private readonly sink: ReplySink,
    private readonly scheduler: Scheduler,
    private readonly options: SessionOptions,
    private readonly metrics: ServerMetrics,
    private readonly logger: Logger,
  ) {
    this.rate = new TokenBucket(options.limits.maxRequestsPerSecond, options.limits.requestBurst);
    this.outbox = new Outbox(sink, options.outbox, {
      droppedPreview: () => metrics.droppedPreviews.inc(),
      frameReplaced: (id) => this.outbox.control({ type: 'superseded', id }),
      frameSent: (frame) => {
        metrics.frames.inc();
        metrics.frameLatencySeconds.observe(frame.timings.total / 1000);
      },
      slowReaderClosed: () => metrics.closedSlowReaders.inc(),
      encodeFailed: (err) => logger.error({ err }, 'failed to encode a reply'),
    });
    this.similarFrames = new SimilarFrameFilter(options.limits.similarFrameThreshold);
    this.decoder = new InputDecoder(options.imageBudget, options.limits.maxImagePixels, metrics, {
      reply: (message) => this.reply(message),
      superseded: (id) => this.supersede(id),
      decoded: (input) => this.decoded(input),
    });
    this.lease = new TokenLease(options.principal.keyId, options.principal.expiresAt, {
      verifyToken: options.verifyToken,
      reply: (message) => this.reply(message),
      close: (code, reason) => sink.close(code, reason),
      isClosed: () => this.closed,
    });
  }

  get principal(): Principal {
    return this.options.principal;
  }

  get background(): boolean {
    return this.options.background === true;
  }

  /** performance.now() of the last valid generate, cancel or auth (or of opening): what the idle
   * timeout measures. Pongs and bad messages do not count. */
  get lastActivityAt(): number {
    return this.lastRequestAt;
  }

  /** Requests admitted and not finished: the pending one and the running ones. */
  get openRequests(): number {
    return (this.pending ? 1 : 0) + (this.running ? 1 : 0) + (this.follower ? 1 : 0);
  }

  /** Whether the pending request may go to the scheduler now. */
  private mayStart(): boolean {
    return !this.running || (this.options.streamBatch === true && this.running.started === true && !this.follower);
  }

  handleBytes(bytes: Uint8Array, isBinary = true): void {
    if (this.refusing || this.closed) return;
    if (!isBinary) {
      this.refuse({ type: 'error', code: ErrorCode.BadMessage, message: 'send binary frames holding msgpack; text frames are not part of the protocol' });
      return;
    }
    let decoded: unknown;
    try {
      decoded = decodeMessage(bytes);
    } catch (err) {
      this.refuse({ type: 'error', code: ErrorCode.BadMessage, message: `not valid msgpack: ${(err as Error).message}` });
      return;
    }
    this.handleMessage(decoded);
  }

  /** A decoded message, from the native socket or translated by another front door (fal's). */
  handleMessage(decoded: unknown): void {
    if (this.refusing || this.closed) return;
    const result = validateMessage(decoded, this.options.limits, this.options.model);
    if (!result.ok) {
      // An error naming an id in flight would read as that request's end, and it will get its own.
      if (result.id !== undefined && this.isKnownId(result.id)) this.refuse(this.duplicateId(result.id), result.code);
      else this.refuse({ type: 'error', code: result.code, message: result.message, ...(result.id !== undefined ? { id: result.id } : {}) });
      return;
    }
    this.lastRequestAt = performance.now();
    const message = result.message;
    if (message.type === 'cancel') this.cancel(message.id);
    else if (message.type === 'auth') void this.lease.renew(message.token);
    else this.generate(message);
  }

  /** Answers a message that is not run; malformed ones count toward closing the connection. */
  private refuse(error: ErrorMessage, code: ErrorCode = error.code): void {
    this.reply(error);
    if (!MALFORMED.has(code)) return;
    const { maxBadMessagesPerMinute } = this.options.limits;
    if (this.badMessages.add() <= maxBadMessagesPerMinute) return;
    this.refusing = true;
    this.metrics.closes.inc({ reason: 'bad_messages' });
    this.logger.debug({ limit: maxBadMessagesPerMinute }, 'closing a session for too many bad messages');
    this.sink.close(CloseCode.TooManyBadMessages, 'too many bad messages');
  }

  /** No `id`: the request already holding it goes on and gets the one final reply for that id. */
  private duplicateId(id: RequestId): ErrorMessage {
    return { type: 'error', code: ErrorCode.DuplicateId, message: 'a request with this id is already running or pending', refusedId: id };
  }

  /** The socket drained: held frames may go out now. */
  drained(): void {
    this.outbox.drained();
  }

  private isKnownId(id: RequestId): boolean {
    return this.running?.request.id === id || this.follower?.request.id === id || this.pending?.request.id === id || this.decoder.has(id);
  }

  private generate(request: ValidGenerate): void {
    const arrivedAt = performance.now();
    const { id } = request;
    // Before anything that answers with `id`: that reply would look like the first request's end.
    if (this.isKnownId(id)) {
      this.reply(this.duplicateId(id));
      return;
    }
    const state = this.options.hubState();
    if (state === 'draining' || state === 'failed') {
      this.reply({ type: 'error', id, code: ErrorCode.ShuttingDown, message: 'the server is shutting down; reconnect to continue', retryAfterMs: RECONNECT_AFTER_SHUTDOWN_MS });
      return;
    }
    if (state !== 'ready') {
      this.reply({ type: 'error', id, code: ErrorCode.NotReady, message: 'the model is reloading; retry shortly', retryAfterMs: RETRY_AFTER_RESTART_MS });
      return;
    }
    if (!this.rate.take()) {
      const { maxRequestsPerSecond, requestBurst } = this.options.limits;
      this.reply({ type: 'error', id, code: ErrorCode.RateLimited, message: `more than ${maxRequestsPerSecond} requests per second (burst ${requestBurst})` });
      return;
    }
    const { image } = request;
    if (image) {
      this.decoder.submit({ ...request, image }, arrivedAt);
      return;
    }
    // A newer request wins over an image still waiting or decoding, as it would over a pending one.
    this.decoder.overtake();
    this.admit({ request, arrivedAt, admittedAt: performance.now(), imageDecodeMs: 0 });
  }

  private decoded(input: DecodedInput): void {
    if (this.skipIfUnchanged(input.request, input.rgb)) {
      input.reservation.release();
      return;
    }
    this.admit({ ...input, admittedAt: performance.now() });
  }

  /** Answers `skipped` when this image barely differs from the last one admitted with the same settings. */
  private skipIfUnchanged(request: ValidGenerate, rgb: Uint8Array): boolean {
    const sameAs = this.similarFrames.sameAs(request.id, request, rgb);
    if (sameAs === undefined) return false;
    this.metrics.skippedFrames.inc();
    this.reply({ type: 'skipped', id: request.id, reason: 'similar_frame', sameAs });
    return true;
  }

  private admit(admitted: Admitted): void {
    if (this.closed) {
      admitted.reservation?.release();
      return;
    }
    if (this.pending) {
      this.pending.reservation?.release();
      this.supersede(this.pending.request.id);
    }
    this.pending = admitted;
    if (this.mayStart()) this.scheduler.enqueue(this);
  }

  private supersede(id: RequestId): void {
    this.metrics.superseded.inc();
    this.reply({ type: 'superseded', id });
  }

  private cancel(id: RequestId): void {
    if (this.pending?.request.id === id) {
      this.pending.reservation?.release();
      this.pending = undefined;
      this.scheduler.remove(this);
      this.reply({ type: 'cancelled', id });
      return;
    }
    for (const running of [this.running, this.follower]) {
      if (running?.request.id === id) {
        this.scheduler.cancel(running.jobId);
        return;
      }
    }
    if (this.decoder.cancel(id)) return;
    this.reply({ type: 'error', id, code: ErrorCode.UnknownRequest, message: 'no running or pending request has this id' });
  }

  peekPending(): ReturnType<SchedulableSession['peekPending']> {
    const { request, rgb } = this.pending ?? {};
    if (!request || this.closed) return undefined;
    return { width: request.width, height: request.height, steps: request.steps, strength: request.strength, image: rgb !== undefined };
  }

  takePending(jobId: number): ReturnType<SchedulableSession['takePending']> {
    const admitted = this.pending;
    if (!admitted || this.closed || !this.mayStart()) return undefined;
    this.pending = undefined;
    // The RGB's buffer is transferred to the worker with the job: it leaves this thread's memory.
    admitted.reservation?.release();
    const running: Running = { ...admitted, jobId, startedAt: performance.now(), previewSent: false };
    const leader = this.running;
    if (leader) this.follower = running;
    else this.running = running;
    const { request } = admitted;
    const job = {
      prompt: request.prompt,
      steps: request.steps,
      strength: request.strength,
      seed: request.seed,
      width: request.width,
      height: request.height,
      previews: request.previews,
      finalDecoder: request.finalDecoder,
      ...(leader ? { after: leader.jobId } : {}),
      ...(admitted.rgb ? { image: admitted.rgb } : {}),
    };
    return { job, listener: this.listenerFor(running) };
  }

  private listenerFor(running: Running): JobListener {
    const { request } = running;
    // Returns false for a job whose request was already answered (abandoned by the drain).
    const finish = () => {
      if (this.running === running) [this.running, this.follower] = [this.follower, undefined];
      if (this.follower === running) this.follower = undefined;
      if (this.pending && !this.closed && this.mayStart()) this.scheduler.enqueue(this);
      return !running.abandoned;
    };
    return {
      onStarted: () => {
        running.startedAt = performance.now();
        running.started = true;
        if (this.pending && !this.closed && this.mayStart()) this.scheduler.enqueue(this);
      },
      onPreview: (step, steps, image) => {
        if (!running.abandoned) this.sendPreview(running, step, steps, image);
      },
      onDone: (image, timings) => {
        if (finish()) this.sendFrame(running, image, timings);
      },
      onCancelled: () => {
        if (finish()) this.reply({ type: 'cancelled', id: request.id });
      },
      onFailed: (failure: JobFailure) => {
        if (!finish()) return;
        if (failure.reason === 'internal') this.logger.error({ id: request.id, message: failure.message }, 'generation failed');
        this.reply(failureReply(request.id, failure, RETRY_AFTER_RESTART_MS));
      },
    };
  }

  private sendPreview(running: Running, step: number, steps: number, image: RgbImage): void {
    this.outbox.preview(async () => {
      const message = await previewMessage(running.request, step, steps, image, this.options.previewJpegQuality);
      if (!running.previewSent) {
        running.previewSent = true;
        this.metrics.firstPreviewSeconds.observe((performance.now() - running.arrivedAt) / 1000);
      }
      return message;
    });
  }

  private sendFrame(running: Running, image: RgbImage, timings: WorkerTimings): void {
    this.outbox.frame(() => frameMessage(running.request, running, image, timings, this.options.frameJpegQuality));
  }

  private reply(message: ServerMessage): void {
    if (message.type === 'error') this.metrics.errors.inc({ code: message.code });
    this.outbox.control(message);
  }

  get busy(): boolean {
    return this.openRequests > 0 || this.decoder.busy || this.outbox.holding;
  }

  goAway(): void {
    if (this.closed) return;
    this.outbox.control({ type: 'going_away', reason: 'shutdown', reconnectAfterMs: RECONNECT_AFTER_GOING_AWAY_MS });
    void this.outbox.flushed().then(() => this.sink.close(CloseCode.GoingAway, 'server shutting down'));
  }

  abandonRequests(): void {
    const shuttingDown = (id: RequestId) =>
      this.reply({ type: 'error', id, code: ErrorCode.ShuttingDown, message: 'the server shut down before this request finished', retryAfterMs: RECONNECT_AFTER_SHUTDOWN_MS });
    if (this.pending) shuttingDown(this.pending.request.id);
    this.pending?.reservation?.release();
    this.pending = undefined;
    this.scheduler.remove(this);
    this.decoder.shutDown(shuttingDown);
    for (const running of [this.running, this.follower]) {
      if (!running) continue;
      // Its job may still report; the id's one final reply is this one.
      running.abandoned = true;
      this.scheduler.cancel(running.jobId);
      shuttingDown(running.request.id);
    }
    this.running = this.follower = undefined;
  }

  /** The socket closed: drop what is pending and stop the running job at its next step. */
  close(): void {
    this.closed = true;
    this.lease.stop();
    this.outbox.close();
    this.pending?.reservation?.release();
    this.pending = undefined;
    this.scheduler.remove(this);
    this.decoder.close();
    if (this.running) this.scheduler.cancel(this.running.jobId);
    if (this.follower) this.scheduler.cancel(this.follower.jobId);
  }
}

