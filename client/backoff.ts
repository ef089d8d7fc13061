// Reconnect delays. With nothing known about the server, exponential backoff with "full jitter" (a
// uniformly random delay between 0 and the exponential cap) spreads a crowd of clients reconnecting
// to a restarted server instead of having them retry in lockstep. When the server says how long to
// wait (Retry-After, `going_away`, `retryAfterMs`), its word replaces the guess: growing the delay
// further would only keep users waiting after the server is back.

export interface BackoffOptions {
  /** First retry's cap in ms (default 250). */
  baseDelayMs?: number;
  /** Largest delay in ms (default 10 000). */
  maxDelayMs?: number;
}

/** A misconfigured proxy's `Retry-After: 86400` must not stall a realtime client for a day. */
export const MAX_ADVISED_DELAY_MS = 60_000;

/**
 * `ms` plus up to a fifth more (at least `minSpreadMs`): every client the server told the same
 * wait would otherwise come back in the same millisecond.
 */
export function spread(ms: number, random: () => number = Math.random, minSpreadMs = 50): number {
  const base = Math.min(Math.max(0, ms), MAX_ADVISED_DELAY_MS);
  return Math.round(base + random() * Math.max(minSpreadMs, base * 0.2));
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

  /**
   * Counts one more failure (so `maxAttempts` still applies) whose wait the server chose: that
   * wait, spread a little, whatever the exponential schedule has grown to.
   */
  advised(ms: number): number {
    this.attempt++;
    return spread(ms, this.random);
  }

  /** After a successful connection, the next drop starts again from the base delay. */
  reset(): void {
    this.attempt = 0;
  }

  /**
   * Takes back a reset: the connection that caused it turned out not to be a success (the server
   * closed it for the client's own misbehaviour), so a client stuck in that loop keeps backing off.
   */
  restore(attempts: number): void {
    this.attempt = attempts;
  }
}
