// Reconnect delays: exponential backoff with "full jitter" (a uniformly random delay between 0 and
// the exponential cap), which spreads a crowd of clients reconnecting to a restarted server instead
// of having them retry in lockstep.

export interface BackoffOptions {
  /** First retry's cap in ms (default 250). */
  baseDelayMs?: number;
  /** Largest delay in ms (default 10 000). */
  maxDelayMs?: number;
}

export class Backoff {
  private attempt = 0;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(options: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.baseDelayMs = options.baseDelayMs ?? 250;
    this.maxDelayMs = options.maxDelayMs ?? 10_000;
  }

  /** Failed attempts since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The delay before the next attempt; each call counts one more failure. */
  next(): number {
    // 2 ** attempt overflows to Infinity long after the cap applies, and Math.min handles Infinity.
    const cap = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** this.attempt);
    this.attempt++;
    return Math.floor(this.random() * cap);
  }

  /** After a successful connection, the next drop starts again from the base delay. */
  reset(): void {
    this.attempt = 0;
  }
}
