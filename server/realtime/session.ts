// One WebSocket connection's requests: validate -> rate limit -> (decode image, skip if unchanged)
// -> admit -> queue -> run. Latest wins: at most one request running and one pending; a newer
// generate replaces the pending one, which is answered `superseded`. Replies leave through the
// outbox, which owns ordering and backpressure.
//
// Stream batching (--stream-batch) lets the pending request start as soon as the running one has
// started stepping, as a `follower`: the batch runner then advances both in one UNet call at
// different timesteps, and keeps the follower's frame behind the leader's. At most one follower,
// so a session has at most two requests running, and a newer input still replaces the pending one.
import { performance } from 'node:perf_hooks';
import { decodeMessage } from '../../shared/codec.js';
import { CloseCode, ErrorCode, type ErrorMessage, type Limits, type ModelInfo, type RequestId, type ServerMessage } from '../../shared/protocol.js';
import type { JobFailure, JobListener } from '../engine/engine.js';
import type { RgbImage, WorkerTimings } from '../engine/messages.js';
import { decodeInputImage, encodeImage, ImageInputError } from '../imaging.js';
import type { Logger } from '../logger.js';
import type { ServerMetrics } from '../metrics.js';
import type { Principal } from '../security/authenticator.js';
import type { TokenCheck } from '../security/tokens.js';
import type { DrainableSession } from './drain.js';
import { frameSignature, signatureDistance } from './frame-similarity.js';
import type { HubState } from './hub.js';
import { Outbox, type OutboxOptions, type SocketSink } from './outbox.js';
import { TokenBucket } from './rate-limiter.js';
import type { Scheduler, SchedulableSession } from './scheduler.js';
import { SlidingWindowCounter } from './sliding-window.js';
import { validateMessage, type ValidGenerate } from './validate.js';

export type { SocketSink };

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
  /** Start the pending request beside the running one once that one runs (see above). */
  streamBatch?: boolean;
}

interface Admitted {
  request: ValidGenerate;
  arrivedAt: number;
  admittedAt: number;
  imageDecodeMs: number;
  rgb?: Uint8Array;
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

/** The last image-to-image input admitted, to recognise an unchanged camera frame. */
interface LastInput {
  id: RequestId;
  key: string;
  signature: Uint8Array;
}

/** Suggested waits for retryable errors: a restart takes about a second, a drain ends the socket. */
const RETRY_AFTER_RESTART_MS = 1000;
const RECONNECT_AFTER_SHUTDOWN_MS = 100;

export class RealtimeSession implements SchedulableSession, DrainableSession {
  private pending: Admitted | undefined;
  private running: Running | undefined;
  /** Stream batching: the request started beside `running`, whose frame comes after its frame. */
  private follower: Running | undefined;
  /** Requests whose image is still being decoded, by arrival number. */
  private readonly decoding = new Map<number, { id: RequestId; cancelled: boolean }>();
  private arrivals = 0;
  private lastInput: LastInput | undefined;
  private closed = false;
  private readonly outbox: Outbox;
  private readonly rate: TokenBucket;
  private expiryTimer: NodeJS.Timeout | undefined;
  private expiresAt: number | undefined;
  private readonly badMessages = new SlidingWindowCounter(60_000);
  /** Closed for too many bad messages: whatever else arrives before the close lands is ignored. */
  private refusing = false;
  private lastRequestAt = performance.now();

  constructor(
    private readonly sink: SocketSink,
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
    this.scheduleExpiry(options.principal.expiresAt);
  }

  get principal(): Principal {
    return this.options.principal;
  }

  /** Token-based connections close when their token expires, unless an `auth` message renews it. */
  private scheduleExpiry(expiresAt: number | undefined): void {
    if (expiresAt === undefined) return;
    this.expiresAt = expiresAt;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    // setTimeout holds at most ~24.8 days; re-check on wake for anything longer.
    const delay = Math.min(expiresAt - Date.now(), 0x7fffffff);
    this.expiryTimer = setTimeout(() => {
      if (this.closed) return;
      if (Date.now() < (this.expiresAt ?? 0)) this.scheduleExpiry(this.expiresAt);
      else this.sink.close(CloseCode.TokenExpired, 'token expired');
    }, Math.max(0, delay));
    this.expiryTimer.unref();
  }

  private async authenticate(token: string): Promise<void> {
    const check = await this.options.verifyToken(token);
    if (this.closed) return;
    if (!check.ok || check.keyId !== this.principal.keyId) {
      const why = !check.ok ? (check.reason === 'expired' ? 'the token has expired' : 'the token is not valid here') : 'the token belongs to another key';
      this.reply({ type: 'error', code: ErrorCode.InvalidToken, message: why });
      return;
    }
    // Connections opened with an API key never expire; a token only ever extends a lease.
    if (this.expiresAt !== undefined && check.expiresAt > this.expiresAt) this.scheduleExpiry(check.expiresAt);
    this.reply({ type: 'authenticated', expiresAt: this.expiresAt ?? check.expiresAt });
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
    if (!this.running) return true;
    return this.options.streamBatch === true && this.running.started === true && !this.follower;
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
    else if (message.type === 'auth') void this.authenticate(message.token);
    else void this.generate(message);
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
    if (this.running?.request.id === id || this.follower?.request.id === id || this.pending?.request.id === id) return true;
    for (const entry of this.decoding.values()) if (entry.id === id && !entry.cancelled) return true;
    return false;
  }

  private async generate(request: ValidGenerate): Promise<void> {
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
    const arrival = ++this.arrivals;
    let rgb: Uint8Array | undefined;
    let imageDecodeMs = 0;
    if (request.image) {
      const entry = { id, cancelled: false };
      this.decoding.set(arrival, entry);
      try {
        rgb = await decodeInputImage(request.image, request.width, request.height, this.options.limits.maxImagePixels);
        imageDecodeMs = performance.now() - arrivedAt;
      } catch (err) {
        const code = err instanceof ImageInputError && err.reason === 'too_large' ? ErrorCode.ImageTooLarge : ErrorCode.ImageUndecodable;
        this.reply({ type: 'error', id, code, message: (err as Error).message });
        return;
      } finally {
        this.decoding.delete(arrival);
      }
      if (this.closed) return;
      if (entry.cancelled) {
        this.reply({ type: 'cancelled', id });
        return;
      }
      // A newer generate arrived while this image decoded: it wins.
      if (arrival !== this.arrivals) {
        this.reply({ type: 'superseded', id });
        return;
      }
      if (this.skipIfUnchanged(request, rgb)) return;
    }
    this.admit({ request, arrivedAt, admittedAt: performance.now(), imageDecodeMs, rgb });
  }

  /** Answers `skipped` when this image barely differs from the last one admitted with the same settings. */
  private skipIfUnchanged(request: ValidGenerate, rgb: Uint8Array): boolean {
    const threshold = this.options.limits.similarFrameThreshold;
    if (threshold <= 0) return false;
    const seed = request.explicitSeed ? request.seed : 'any';
    const key = [request.prompt, request.steps, request.strength, request.width, request.height, request.format, seed].join('\u0000');
    const signature = frameSignature(rgb, request.width, request.height);
    const last = this.lastInput;
    if (last && last.key === key && signatureDistance(last.signature, signature) < threshold) {
      this.metrics.skippedFrames.inc();
      this.reply({ type: 'skipped', id: request.id, reason: 'similar_frame', sameAs: last.id });
      return true;
    }
    this.lastInput = { id: request.id, key, signature };
    return false;
  }

  private admit(admitted: Admitted): void {
    if (this.closed) return;
    if (this.pending) this.supersede(this.pending.request.id);
    this.pending = admitted;
    if (this.mayStart()) this.scheduler.enqueue(this);
  }

  private supersede(id: RequestId): void {
    this.metrics.superseded.inc();
    this.reply({ type: 'superseded', id });
  }

  private cancel(id: RequestId): void {
    if (this.pending?.request.id === id) {
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
    for (const entry of this.decoding.values()) {
      if (entry.id === id && !entry.cancelled) {
        entry.cancelled = true;
        return;
      }
    }
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
        const { message } = failure;
        switch (failure.reason) {
          case 'invalid_input':
            this.reply({ type: 'error', id: request.id, code: ErrorCode.InvalidStrength, message });
            return;
          case 'engine_restarted':
            this.reply({ type: 'error', id: request.id, code: ErrorCode.EngineRestarted, message, retryAfterMs: RETRY_AFTER_RESTART_MS });
            return;
          case 'internal':
            this.logger.error({ id: request.id, message }, 'generation failed');
            this.reply({ type: 'error', id: request.id, code: ErrorCode.Internal, message: `generation failed: ${message}` });
        }
      },
    };
  }

  private sendPreview(running: Running, step: number, steps: number, image: RgbImage): void {
    const { request } = running;
    const { width, height } = request;
    this.outbox.preview(async () => {
      const bytes = await encodeImage(image, 'jpeg', this.options.previewJpegQuality, width, height);
      if (!running.previewSent) {
        running.previewSent = true;
        this.metrics.firstPreviewSeconds.observe((performance.now() - running.arrivedAt) / 1000);
      }
      return { type: 'preview', id: request.id, step, steps, image: bytes, width, height };
    });
  }

  private sendFrame(running: Running, image: RgbImage, timings: WorkerTimings): void {
    const { request } = running;
    this.outbox.frame(async () => {
      const t0 = performance.now();
      const bytes = await encodeImage(image, request.format, this.options.frameJpegQuality, request.width, request.height);
      const now = performance.now();
      return {
        type: 'frame',
        id: request.id,
        image: bytes,
        format: request.format,
        width: request.width,
        height: request.height,
        seed: request.seed,
        decoder: timings.decoder,
        timings: {
          queue: round(running.startedAt - running.admittedAt),
          imageDecode: round(running.imageDecodeMs),
          textEncoder: round(timings.textEncoder),
          vaeEncoder: round(timings.vaeEncoder),
          steps: timings.steps.map(round),
          batchSizes: timings.batchSizes,
          previews: round(timings.previews),
          decode: round(timings.decode),
          decodes: timings.decodes,
          encode: round(now - t0),
          total: round(now - running.arrivedAt),
        },
      };
    });
  }

  private reply(message: ServerMessage): void {
    if (message.type === 'error') this.metrics.errors.inc({ code: message.code });
    this.outbox.control(message);
  }

  get busy(): boolean {
    return this.openRequests > 0 || this.decoding.size > 0 || this.outbox.holding;
  }

  goAway(): void {
    if (this.closed) return;
    this.outbox.control({ type: 'going_away', reason: 'shutdown', reconnectAfterMs: RECONNECT_AFTER_SHUTDOWN_MS });
    void this.outbox.flushed().then(() => this.sink.close(CloseCode.GoingAway, 'server shutting down'));
  }

  abandonRequests(): void {
    const shuttingDown = (id: RequestId) =>
      this.reply({ type: 'error', id, code: ErrorCode.ShuttingDown, message: 'the server shut down before this request finished', retryAfterMs: RECONNECT_AFTER_SHUTDOWN_MS });
    if (this.pending) shuttingDown(this.pending.request.id);
    this.pending = undefined;
    this.scheduler.remove(this);
    for (const entry of this.decoding.values()) entry.cancelled = true;
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
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.outbox.close();
    this.pending = undefined;
    this.scheduler.remove(this);
    for (const entry of this.decoding.values()) entry.cancelled = true;
    if (this.running) this.scheduler.cancel(this.running.jobId);
    if (this.follower) this.scheduler.cancel(this.follower.jobId);
  }
}

const round = (ms: number) => Math.round(ms * 100) / 100;
