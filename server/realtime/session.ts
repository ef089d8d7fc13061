// One WebSocket connection's requests: validate -> rate limit -> (decode image, skip if unchanged)
// -> admit -> queue -> run. Latest wins: at most one request running and one pending; a newer
// generate replaces the pending one, which is answered `superseded`. Images are decoded one at a
// time within the shared memory budget (input-decoder.ts). Replies leave through the outbox, which
// owns ordering and backpressure.
import { performance } from 'node:perf_hooks';
import { decodeMessage } from '../../shared/codec.js';
import { CloseCode, ErrorCode, type Limits, type ModelInfo, type RequestId, type ServerMessage } from '../../shared/protocol.js';
import type { JobListener } from '../engine/engine.js';
import type { RgbImage, WorkerTimings } from '../engine/messages.js';
import { encodeImage } from '../imaging.js';
import type { Logger } from '../logger.js';
import type { ServerMetrics } from '../metrics.js';
import type { Principal } from '../security/authenticator.js';
import type { TokenCheck } from '../security/tokens.js';
import { frameSignature, signatureDistance } from './frame-similarity.js';
import type { ImageBudget, Reservation } from './image-budget.js';
import { InputDecoder, type DecodedInput } from './input-decoder.js';
import { Outbox, type OutboxOptions, type SocketSink } from './outbox.js';
import { TokenBucket } from './rate-limiter.js';
import type { Scheduler, SchedulableSession } from './scheduler.js';
import { validateMessage, type ValidGenerate } from './validate.js';

export type { SocketSink };

export interface SessionOptions {
  limits: Limits;
  model: ModelInfo;
  outbox: OutboxOptions;
  previewJpegQuality: number;
  frameJpegQuality: number;
  /** False while the inference worker restarts. */
  isReady(): boolean;
  /** Who this connection acts for; a token-based one expires unless refreshed with `auth`. */
  principal: Principal;
  verifyToken(token: string): Promise<TokenCheck>;
  /** Memory for input images, shared by every session. */
  imageBudget: ImageBudget;
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

interface Running extends Admitted {
  jobId: number;
  startedAt: number;
  previewSent: boolean;
}

/** The last image-to-image input admitted, to recognise an unchanged camera frame. */
interface LastInput {
  id: RequestId;
  key: string;
  signature: Uint8Array;
}

export class RealtimeSession implements SchedulableSession {
  private pending: Admitted | undefined;
  private running: Running | undefined;
  private readonly decoder: InputDecoder;
  private lastInput: LastInput | undefined;
  private closed = false;
  private readonly outbox: Outbox;
  private readonly rate: TokenBucket;
  private expiryTimer: NodeJS.Timeout | undefined;
  private expiresAt: number | undefined;

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
    this.decoder = new InputDecoder(options.imageBudget, options.limits.maxImagePixels, metrics, {
      reply: (message) => this.reply(message),
      superseded: (id) => this.supersede(id),
      decoded: (input) => this.decoded(input),
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

  /** Requests admitted and not finished: the pending one and the running one. */
  get openRequests(): number {
    return (this.pending ? 1 : 0) + (this.running ? 1 : 0);
  }

  handleBytes(bytes: Uint8Array, isBinary = true): void {
    if (!isBinary) {
      this.reply({ type: 'error', code: ErrorCode.BadMessage, message: 'send binary frames holding msgpack; text frames are not part of the protocol' });
      return;
    }
    let decoded: unknown;
    try {
      decoded = decodeMessage(bytes);
    } catch (err) {
      this.reply({ type: 'error', code: ErrorCode.BadMessage, message: `not valid msgpack: ${(err as Error).message}` });
      return;
    }
    const result = validateMessage(decoded, this.options.limits, this.options.model);
    if (!result.ok) {
      this.reply({ type: 'error', code: result.code, message: result.message, ...(result.id !== undefined ? { id: result.id } : {}) });
      return;
    }
    const message = result.message;
    if (message.type === 'cancel') this.cancel(message.id);
    else if (message.type === 'auth') void this.authenticate(message.token);
    else this.generate(message);
  }

  /** The socket drained: held frames may go out now. */
  drained(): void {
    this.outbox.drained();
  }

  private isKnownId(id: RequestId): boolean {
    return this.running?.request.id === id || this.pending?.request.id === id || this.decoder.has(id);
  }

  private generate(request: ValidGenerate): void {
    const arrivedAt = performance.now();
    const { id } = request;
    if (!this.options.isReady()) {
      this.reply({ type: 'error', id, code: ErrorCode.NotReady, message: 'the model is reloading; retry shortly' });
      return;
    }
    if (!this.rate.take()) {
      const { maxRequestsPerSecond, requestBurst } = this.options.limits;
      this.reply({ type: 'error', id, code: ErrorCode.RateLimited, message: `more than ${maxRequestsPerSecond} requests per second (burst ${requestBurst})` });
      return;
    }
    if (this.isKnownId(id)) {
      this.reply({ type: 'error', id, code: ErrorCode.DuplicateId, message: 'a request with this id is already running or pending' });
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
    if (this.closed) {
      admitted.reservation?.release();
      return;
    }
    if (this.pending) {
      this.pending.reservation?.release();
      this.supersede(this.pending.request.id);
    }
    this.pending = admitted;
    if (!this.running) this.scheduler.enqueue(this);
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
    if (this.running?.request.id === id) {
      this.scheduler.cancel(this.running.jobId);
      return;
    }
    if (this.decoder.cancel(id)) return;
    this.reply({ type: 'error', id, code: ErrorCode.UnknownRequest, message: 'no running or pending request has this id' });
  }

  takePending(jobId: number): ReturnType<SchedulableSession['takePending']> {
    const admitted = this.pending;
    if (!admitted || this.closed) return undefined;
    this.pending = undefined;
    // The RGB's buffer is transferred to the worker with the job: it leaves this thread's memory.
    admitted.reservation?.release();
    const running: Running = { ...admitted, jobId, startedAt: performance.now(), previewSent: false };
    this.running = running;
    const { request } = admitted;
    const job = {
      prompt: request.prompt,
      steps: request.steps,
      strength: request.strength,
      seed: request.seed,
      width: request.width,
      height: request.height,
      previews: request.previews,
      ...(admitted.rgb ? { image: admitted.rgb } : {}),
    };
    return { job, listener: this.listenerFor(running) };
  }

  private listenerFor(running: Running): JobListener {
    const { request } = running;
    const finish = () => {
      if (this.running === running) this.running = undefined;
      if (this.pending && !this.closed) this.scheduler.enqueue(this);
    };
    return {
      onStarted: () => {
        running.startedAt = performance.now();
      },
      onPreview: (step, steps, image) => this.sendPreview(running, step, steps, image),
      onDone: (image, timings) => {
        finish();
        this.sendFrame(running, image, timings);
      },
      onCancelled: () => {
        finish();
        this.reply({ type: 'cancelled', id: request.id });
      },
      onFailed: (message, invalidInput) => {
        finish();
        if (invalidInput) {
          this.reply({ type: 'error', id: request.id, code: ErrorCode.InvalidStrength, message });
          return;
        }
        this.logger.error({ id: request.id, message }, 'generation failed');
        this.reply({ type: 'error', id: request.id, code: ErrorCode.Internal, message: `generation failed: ${message}` });
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
        timings: {
          queue: round(running.startedAt - running.admittedAt),
          imageDecode: round(running.imageDecodeMs),
          textEncoder: round(timings.textEncoder),
          vaeEncoder: round(timings.vaeEncoder),
          steps: timings.steps.map(round),
          batchSizes: timings.batchSizes,
          previews: round(timings.previews),
          decode: round(timings.decode),
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

  /** The socket closed: drop what is pending and stop the running job at its next step. */
  close(): void {
    this.closed = true;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.outbox.close();
    this.pending?.reservation?.release();
    this.pending = undefined;
    this.scheduler.remove(this);
    this.decoder.close();
    if (this.running) this.scheduler.cancel(this.running.jobId);
  }
}

const round = (ms: number) => Math.round(ms * 100) / 100;
