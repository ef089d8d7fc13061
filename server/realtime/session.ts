// One WebSocket connection's requests: validate -> (decode image) -> admit -> queue -> run.
// Latest wins: at most one request running and one pending; a newer generate replaces the pending
// one, which is answered `superseded`. Replies go out in order through one promise chain.
import { performance } from 'node:perf_hooks';
import { decodeMessage, encodeMessage } from '../../shared/codec.js';
import { ErrorCode, type Limits, type ModelInfo, type RequestId, type ServerMessage } from '../../shared/protocol.js';
import type { JobListener } from '../engine/engine.js';
import type { RgbImage, WorkerTimings } from '../engine/messages.js';
import { decodeInputImage, encodeImage, ImageInputError } from '../imaging.js';
import type { Logger } from '../logger.js';
import type { Scheduler, SchedulableSession } from './scheduler.js';
import { validateMessage, type ValidGenerate } from './validate.js';

/** The transport as a session sees it. */
export interface SocketSink {
  /** False when the message was not sent (socket closed). */
  send(bytes: Uint8Array): boolean;
  bufferedAmount(): number;
}

export interface SessionOptions {
  limits: Limits;
  model: ModelInfo;
  previewBackpressureBytes: number;
  previewJpegQuality: number;
  frameJpegQuality: number;
  /** False while the inference worker restarts. */
  isReady(): boolean;
}

interface Admitted {
  request: ValidGenerate;
  arrivedAt: number;
  admittedAt: number;
  imageDecodeMs: number;
  rgb?: Uint8Array;
}

interface Running extends Admitted {
  jobId: number;
  startedAt: number;
}

export class RealtimeSession implements SchedulableSession {
  private pending: Admitted | undefined;
  private running: Running | undefined;
  /** Requests whose image is still being decoded, by arrival number. */
  private readonly decoding = new Map<number, { id: RequestId; cancelled: boolean }>();
  private arrivals = 0;
  private outgoing: Promise<void> = Promise.resolve();
  private closed = false;
  droppedPreviews = 0;

  constructor(
    private readonly sink: SocketSink,
    private readonly scheduler: Scheduler,
    private readonly options: SessionOptions,
    private readonly logger: Logger,
  ) {}

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
    if (result.message.type === 'cancel') this.cancel(result.message.id);
    else void this.generate(result.message);
  }

  private isKnownId(id: RequestId): boolean {
    if (this.running?.request.id === id || this.pending?.request.id === id) return true;
    for (const entry of this.decoding.values()) if (entry.id === id && !entry.cancelled) return true;
    return false;
  }

  private async generate(request: ValidGenerate): Promise<void> {
    const arrivedAt = performance.now();
    if (!this.options.isReady()) {
      this.reply({ type: 'error', id: request.id, code: ErrorCode.NotReady, message: 'the model is reloading; retry shortly' });
      return;
    }
    if (this.isKnownId(request.id)) {
      this.reply({ type: 'error', id: request.id, code: ErrorCode.DuplicateId, message: 'a request with this id is already running or pending' });
      return;
    }
    const arrival = ++this.arrivals;
    let rgb: Uint8Array | undefined;
    let imageDecodeMs = 0;
    if (request.image) {
      const entry = { id: request.id, cancelled: false };
      this.decoding.set(arrival, entry);
      try {
        rgb = await decodeInputImage(request.image, request.width, request.height, this.options.limits.maxImagePixels);
        imageDecodeMs = performance.now() - arrivedAt;
      } catch (err) {
        const code = err instanceof ImageInputError && err.reason === 'too_large' ? ErrorCode.ImageTooLarge : ErrorCode.ImageUndecodable;
        this.reply({ type: 'error', id: request.id, code, message: (err as Error).message });
        return;
      } finally {
        this.decoding.delete(arrival);
      }
      if (this.closed) return;
      if (entry.cancelled) {
        this.reply({ type: 'cancelled', id: request.id });
        return;
      }
      // A newer generate arrived while this image decoded: it wins.
      if (arrival !== this.arrivals) {
        this.reply({ type: 'superseded', id: request.id });
        return;
      }
    }
    this.admit({ request, arrivedAt, admittedAt: performance.now(), imageDecodeMs, rgb });
  }

  private admit(admitted: Admitted): void {
    if (this.closed) return;
    if (this.pending) this.reply({ type: 'superseded', id: this.pending.request.id });
    this.pending = admitted;
    if (!this.running) this.scheduler.enqueue(this);
  }

  private cancel(id: RequestId): void {
    if (this.pending?.request.id === id) {
      this.pending = undefined;
      this.scheduler.remove(this);
      this.reply({ type: 'cancelled', id });
      return;
    }
    if (this.running?.request.id === id) {
      this.scheduler.cancel(this.running.jobId);
      return;
    }
    for (const entry of this.decoding.values()) {
      if (entry.id === id && !entry.cancelled) {
        entry.cancelled = true;
        return;
      }
    }
    this.reply({ type: 'error', id, code: ErrorCode.UnknownRequest, message: 'no running or pending request has this id' });
  }

  takePending(jobId: number): ReturnType<SchedulableSession['takePending']> {
    const admitted = this.pending;
    if (!admitted || this.closed) return undefined;
    this.pending = undefined;
    const running: Running = { ...admitted, jobId, startedAt: performance.now() };
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
      onPreview: (step, steps, image) => this.sendPreview(request, step, steps, image),
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

  private sendPreview(request: ValidGenerate, step: number, steps: number, image: RgbImage): void {
    // A slow reader loses previews first; final frames are always queued.
    if (this.closed) return;
    if (this.sink.bufferedAmount() > this.options.previewBackpressureBytes) {
      this.droppedPreviews++;
      return;
    }
    const { width, height } = request;
    this.enqueueSend(async () => ({
      type: 'preview',
      id: request.id,
      step,
      steps,
      image: await encodeImage(image, 'jpeg', this.options.previewJpegQuality, width, height),
      width,
      height,
    }));
  }

  private sendFrame(running: Running, image: RgbImage, timings: WorkerTimings): void {
    const { request } = running;
    this.enqueueSend(async () => {
      const t0 = performance.now();
      const quality = this.options.frameJpegQuality;
      const bytes = await encodeImage(image, request.format, quality, request.width, request.height);
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
          previews: round(timings.previews),
          decode: round(timings.decode),
          encode: round(now - t0),
          total: round(now - running.arrivedAt),
        },
      };
    });
  }

  /** Sends a message after every earlier one, so replies keep their order despite async encoding. */
  private enqueueSend(produce: () => Promise<ServerMessage>): void {
    this.outgoing = this.outgoing
      .then(async () => {
        if (this.closed) return;
        const message = await produce();
        if (!this.closed) this.sink.send(encodeMessage(message));
      })
      .catch((err) => this.logger.error({ err }, 'failed to encode a reply'));
  }

  private reply(message: ServerMessage): void {
    this.enqueueSend(async () => message);
  }

  /** The socket closed: drop what is pending and stop the running job at its next step. */
  close(): void {
    this.closed = true;
    this.pending = undefined;
    this.scheduler.remove(this);
    for (const entry of this.decoding.values()) entry.cancelled = true;
    if (this.running) this.scheduler.cancel(this.running.jobId);
  }

  get hasWork(): boolean {
    return this.running !== undefined || this.pending !== undefined;
  }
}

const round = (ms: number) => Math.round(ms * 100) / 100;
