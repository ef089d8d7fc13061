// One memory budget, shared by every session, for input images: the compressed bytes a request
// holds while it waits to be decoded, the decode's working memory, and the RGB it yields until the
// inference process takes it. Memory is reserved before it is used, and a request that does not fit
// is refused at once rather than queued: however many clients send large images, the bytes held
// for them stay under the limit, and small requests still find room between large ones.

/** Bounds for the retry hint: long enough not to invite a hot loop, short enough to stay realtime. */
const MIN_RETRY_MS = 100;
const MAX_RETRY_MS = 5000;
/** Weight of the newest hold time in the moving average that the retry hint follows. */
const HOLD_EWMA_WEIGHT = 0.2;

export class ImageBudget {
  private reservedBytes = 0;
  /** Moving average of how long reservations are held: about when a refused client will fit. */
  private holdMs = 250;

  constructor(readonly limitBytes: number) {}

  /** Bytes reserved now. */
  get reserved(): number {
    return this.reservedBytes;
  }

  /**
   * Reserves `bytes`, or returns undefined when they do not fit. With `replacing`, that reservation
   * is released as part of the same decision (a newer request taking an older one's place), so the
   * swap can never fail for lack of the room the older one already held.
   */
  reserve(bytes: number, replacing?: Reservation): Reservation | undefined {
    const freed = replacing && !replacing.released ? replacing.bytes : 0;
    if (this.reservedBytes - freed + bytes > this.limitBytes) return undefined;
    replacing?.release();
    this.reservedBytes += bytes;
    return new Reservation(this, bytes);
  }

  /** Suggested wait for a refused request (the `retryAfterMs` of `overloaded`). */
  retryAfterMs(): number {
    return Math.round(Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, this.holdMs)));
  }

  /** @internal Reservation's way to change the total; growth is checked there. */
  adjust(delta: number): boolean {
    if (delta > 0 && this.reservedBytes + delta > this.limitBytes) return false;
    this.reservedBytes += delta;
    return true;
  }

  /** @internal */
  heldFor(ms: number): void {
    this.holdMs += HOLD_EWMA_WEIGHT * (ms - this.holdMs);
  }
}

export class Reservation {
  private readonly since = performance.now();
  private size: number;
  private done = false;

  constructor(
    private readonly budget: ImageBudget,
    bytes: number,
  ) {
    this.size = bytes;
  }

  get bytes(): number {
    return this.done ? 0 : this.size;
  }

  get released(): boolean {
    return this.done;
  }

  /** Changes the reserved size. Shrinking always succeeds; growing fails (nothing changes) when the
   * budget has no room for the difference. */
  resize(bytes: number): boolean {
    if (this.done) return false;
    if (!this.budget.adjust(bytes - this.size)) return false;
    this.size = bytes;
    return true;
  }

  /** Gives the bytes back; later calls do nothing, so every exit path may call it. */
  release(): void {
    if (this.done) return;
    this.done = true;
    this.budget.adjust(-this.size);
    this.budget.heldFor(performance.now() - this.since);
  }
}
