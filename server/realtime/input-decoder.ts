// One session's image decoding: at most one decode at a time, and one input waiting to be decoded
// next (latest wins: a newer one replaces it unseen). A decode that finishes while a newer image
// waits is still admitted, where the session's own latest-wins rule applies to it: a client that
// sends faster than its images decode gets frames rather than a stream of `superseded`.
// Every input reserves memory in the shared ImageBudget before it holds any: its compressed bytes
// on arrival, the decode's working memory (estimated from the header) before libvips starts. What
// does not fit is refused with `overloaded` at once. Without this, each message started its own
// decode and a few clients sending large images could grow the process by hundreds of megabytes a
// second.
import { performance } from 'node:perf_hooks';
import { ErrorCode, type RequestId, type ServerMessage } from '../../shared/protocol.js';
import { decodeInputImage, decodeMemoryBytes, ImageInputError, readInputHeader } from '../imaging.js';
import type { ServerMetrics } from '../metrics.js';
import type { ImageBudget, Reservation } from './image-budget.js';
import type { ValidGenerate } from './validate.js';

/** A decoded input, ready for admission. Its reservation now covers the RGB alone; whoever holds
 * the input releases it (at the hand-off to the worker, or when the request ends before). */
export interface DecodedInput {
  /** The request without its compressed image, which is no longer needed or counted. */
  request: ValidGenerate;
  arrivedAt: number;
  imageDecodeMs: number;
  rgb: Uint8Array;
  reservation: Reservation;
}

export interface InputDecoderHooks {
  reply(message: ServerMessage): void;
  /** An input was replaced by a newer request before it could run. */
  superseded(id: RequestId): void;
  decoded(input: DecodedInput): void;
}

interface Waiting {
  request: ValidGenerate;
  image: Uint8Array;
  arrivedAt: number;
  reservation: Reservation;
}

interface InFlight {
  id: RequestId;
  cancelled: boolean;
  /** A newer request was admitted: this one's result is stale and must not replace it. */
  overtaken: boolean;
}

export class InputDecoder {
  private current: InFlight | undefined;
  private next: Waiting | undefined;
  private closed = false;

  constructor(
    private readonly budget: ImageBudget,
    private readonly maxImagePixels: number,
    private readonly metrics: ServerMetrics,
    private readonly hooks: InputDecoderHooks,
  ) {}

  /** Whether `id` is being decoded (and not cancelled) or waiting to be. */
  has(id: RequestId): boolean {
    return (this.current?.id === id && !this.current.cancelled) || this.next?.request.id === id;
  }

  /** A newer request without an image arrived: the waiting input and the one decoding lose to it. */
  overtake(): void {
    if (this.next) {
      this.next.reservation.release();
      this.hooks.superseded(this.next.request.id);
      this.next = undefined;
    }
    if (this.current) this.current.overtaken = true;
  }

  /** A request with an image arrived; it is refused, decoded now, or waits as the next one. */
  submit(request: ValidGenerate & { image: Uint8Array }, arrivedAt: number): void {
    const replaced = this.next;
    const reservation = this.budget.reserve(request.image.byteLength, replaced?.reservation);
    if (!reservation) {
      this.refuse(request.id, `the server's memory for input images is full; retry in ${this.budget.retryAfterMs()} ms`);
      return;
    }
    if (replaced) this.hooks.superseded(replaced.request.id);
    const { image, ...withoutImage } = request;
    this.next = { request: withoutImage, image, arrivedAt, reservation };
    this.startNext();
  }

  /** Cancels the waiting input at once, or the one decoding when it finishes; false if neither is `id`. */
  cancel(id: RequestId): boolean {
    if (this.next?.request.id === id) {
      this.next.reservation.release();
      this.next = undefined;
      this.hooks.reply({ type: 'cancelled', id });
      return true;
    }
    if (this.current?.id === id && !this.current.cancelled) {
      this.current.cancelled = true;
      return true;
    }
    return false;
  }

  /** An input is decoding or waiting to be. */
  get busy(): boolean {
    return this.current !== undefined || this.next !== undefined;
  }

  /** The server shuts down and cannot wait for these inputs: each gets its final reply now (the
   * decode still running stays reserved until libvips returns, and then replies nothing). */
  shutDown(ended: (id: RequestId) => void): void {
    const waiting = this.next;
    const current = this.current;
    const cancelled = current?.cancelled ?? false;
    this.close();
    if (waiting) ended(waiting.request.id);
    if (current && !current.overtaken) {
      if (cancelled) this.hooks.reply({ type: 'cancelled', id: current.id });
      else ended(current.id);
    } else if (current) {
      this.hooks.superseded(current.id);
    }
  }

  /** The session closed: the waiting input is dropped; a running decode is dropped when libvips
   * returns (its memory stays reserved until then, because it is in use until then). */
  close(): void {
    this.closed = true;
    this.next?.reservation.release();
    this.next = undefined;
    if (this.current) this.current.cancelled = true;
  }

  private startNext(): void {
    if (this.current || !this.next || this.closed) return;
    const waiting = this.next;
    this.next = undefined;
    const inFlight: InFlight = { id: waiting.request.id, cancelled: false, overtaken: false };
    this.current = inFlight;
    void this.decode(waiting, inFlight).finally(() => {
      this.current = undefined;
      this.startNext();
    });
  }

  private async decode(waiting: Waiting, inFlight: InFlight): Promise<void> {
    const { request, image, arrivedAt, reservation } = waiting;
    const { id, width, height } = request;
    const abandoned = () => this.closed || inFlight.cancelled || inFlight.overtaken;
    let rgb: Uint8Array;
    try {
      const header = await readInputHeader(image, this.maxImagePixels);
      // Overtaken or cancelled while the header was read: no pixel is decoded for it.
      if (abandoned()) return this.settle(inFlight, reservation);
      const need = decodeMemoryBytes(header, image.byteLength, width, height);
      if (need > this.budget.limitBytes) {
        reservation.release();
        const mb = (n: number) => Math.ceil(n / (1024 * 1024));
        this.hooks.reply({
          type: 'error', id, code: ErrorCode.ImageTooLarge,
          message: `decoding this ${header.width}x${header.height} ${header.format} needs about ${mb(need)} MB; the server allows ${mb(this.budget.limitBytes)} MB for input images`,
        });
        return;
      }
      if (!reservation.resize(need)) {
        reservation.release();
        this.refuse(id, `the server's memory for input images is full; retry in ${this.budget.retryAfterMs()} ms`);
        return;
      }
      this.metrics.imageDecodes.inc();
      rgb = await decodeInputImage(image, width, height, this.maxImagePixels);
    } catch (err) {
      reservation.release();
      if (this.closed) return;
      const code = err instanceof ImageInputError && err.reason === 'too_large' ? ErrorCode.ImageTooLarge : ErrorCode.ImageUndecodable;
      this.hooks.reply({ type: 'error', id, code, message: (err as Error).message });
      return;
    }
    if (abandoned()) return this.settle(inFlight, reservation);
    reservation.resize(rgb.byteLength);
    this.hooks.decoded({ request, arrivedAt, imageDecodeMs: performance.now() - arrivedAt, rgb, reservation });
  }

  /** The final reply of an input whose decode will not be used: none once the session closed. */
  private settle(inFlight: InFlight, reservation: Reservation): void {
    reservation.release();
    if (this.closed) return;
    if (inFlight.cancelled) this.hooks.reply({ type: 'cancelled', id: inFlight.id });
    else this.hooks.superseded(inFlight.id);
  }

  private refuse(id: RequestId, message: string): void {
    this.hooks.reply({ type: 'error', id, code: ErrorCode.Overloaded, message, retryAfterMs: this.budget.retryAfterMs() });
  }
}
