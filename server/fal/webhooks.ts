// Delivers fal-style `fal_webhook` callbacks: signed POSTs with bounded, backed-off retries.
//
// The durable outbox is the queue. Nothing is held in memory beyond the posts in flight (at most
// `concurrency`), so a restart loses nothing and a receiver that is down for a while costs rows
// in the store, not heap (with the defaults, attempts span about four minutes). Each attempt's outcome is written back before its slot frees up, and the
// store only hands out rows whose nextAttemptAt has come. Delivery is at least once: if recording
// an outcome fails, the row stays due and is posted again, so receivers dedupe on the request id.
// Signatures are described in shared/webhook-signature.ts.
import type { Logger } from '../logger.js';
import { webhookSignatureHeaders, type WebhookSigner } from './webhook-signer.js';

// A delivery's body is posted byte for byte as stored: the signature covers exactly those bytes.
import type { WebhookDelivery, WebhookOutcome } from '../queue/types.js';

export type { WebhookDelivery, WebhookOutcome };

export interface WebhookOutbox {
  /** Up to `limit` deliveries with nextAttemptAt <= now, soonest first. */
  dueWebhooks(now: number, limit: number): Promise<WebhookDelivery[]>;
  webhookAttempted(id: number, outcome: WebhookOutcome): Promise<void>;
}

/** For Prometheus counters. */
export interface WebhookEvents {
  delivered(): void;
  retried(): void;
  gaveUp(): void;
}

export interface WebhookDispatcherOptions {
  /** The Ed25519 key deliveries are signed with (x-fal-webhook-signature). */
  signer: WebhookSigner;
  /** Attempts in all, the first included, before giving up. */
  maxAttempts?: number;
  /** Per attempt, from sending to the response status. */
  timeoutMs?: number;
  /** Wait before the first retry; doubles each retry, with jitter, up to maxDelayMs. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** How often the store is asked for due deliveries when nothing kicks it. */
  pollMs?: number;
  /** Posts in flight at once. */
  concurrency?: number;
}

export const WEBHOOK_DEFAULTS = {
  maxAttempts: 8,
  timeoutMs: 10_000,
  baseDelayMs: 1_000,
  maxDelayMs: 300_000,
  pollMs: 1_000,
  concurrency: 8,
} as const;

type ResolvedOptions = Required<WebhookDispatcherOptions>;

/**
 * Milliseconds to wait after the `attemptsMade`-th failed attempt: baseDelayMs doubled per earlier
 * retry and capped at maxDelayMs, then jittered into its upper half. The jitter keeps the
 * deliveries that failed together (a receiver's outage) from all retrying in the same instant;
 * keeping the lower half means the backoff still at least doubles in expectation.
 */
export function webhookRetryDelay(
  attemptsMade: number,
  options: { baseDelayMs: number; maxDelayMs: number },
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(attemptsMade - 1, 0), 30);
  const capped = Math.min(options.baseDelayMs * 2 ** exponent, options.maxDelayMs);
  return Math.round(capped / 2 + (capped / 2) * random());
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`webhook ${name} must be a positive integer, got ${value}`);
  return value;
}

// Only scheme and host reach the logs: webhook URLs commonly carry a token in the path or query.
function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid url)';
  }
}

function describeError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError') return `timed out after ${timeoutMs} ms`;
    // undici's fetch throws TypeError('fetch failed') with the socket error as its cause.
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as { code?: unknown }).code;
      return typeof code === 'string' ? `${err.message}: ${code}` : `${err.message}: ${cause.message}`;
    }
    return err.message;
  }
  return String(err);
}

type AttemptResult = { ok: true } | { ok: false; error: string; permanent?: boolean };

export class WebhookDispatcher {
  private readonly options: ResolvedOptions;
  private readonly inFlight = new Map<number, Promise<void>>();
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private pumping: Promise<void> | undefined;
  private pumpAgain = false;
  /**
   * Set by a store error, cleared by the next poll. Until then kicks do nothing, so a store that
   * cannot record outcomes sees one read per poll, and its receivers one repeat post per poll,
   * rather than a tight loop of both.
   */
  private storeFailed = false;
  /** Ids whose attempt was recorded while a read of due rows was outstanding; see pump(). */
  private settledDuringRead: Set<number> | undefined;

  constructor(
    private readonly outbox: WebhookOutbox,
    options: WebhookDispatcherOptions,
    private readonly events: WebhookEvents,
    private readonly logger: Logger,
  ) {
    const resolved = { ...WEBHOOK_DEFAULTS, ...options };
    for (const key of ['maxAttempts', 'timeoutMs', 'baseDelayMs', 'maxDelayMs', 'pollMs', 'concurrency'] as const) {
      positiveInteger(key, resolved[key]);
    }
    this.options = resolved;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.kick();
    this.schedulePoll();
  }

  /** A delivery was just added: look now instead of waiting for the next poll. */
  kick(): void {
    if (!this.running || this.storeFailed) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      // A kick that landed after the pump's last look but before this callback would be lost.
      if (this.pumpAgain) this.kick();
    });
  }

  /** Stops taking deliveries and resolves once the posts in flight have finished and been recorded. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    // A pump already past dueWebhooks may still start posts, so wait for it before the posts.
    while (this.pumping || this.inFlight.size > 0) {
      await this.pumping;
      await Promise.all(this.inFlight.values());
    }
  }

  private schedulePoll(): void {
    // unref: a pending poll alone must not keep a process alive that is otherwise done.
    this.timer = setTimeout(() => {
      this.storeFailed = false;
      this.kick();
      if (this.running) this.schedulePoll();
    }, this.options.pollMs).unref();
  }

  private async pump(): Promise<void> {
    do {
      this.pumpAgain = false;
      const free = this.options.concurrency - this.inFlight.size;
      if (free <= 0) return; // each post that finishes kicks again
      // The answer may predate an attempt recorded while it was on its way: such a row is no longer
      // in flight yet may still be listed as due, and posting it again would be a duplicate (or an
      // early retry). Those ids are skipped; the kick from their settling looks again.
      const settledDuringRead = new Set<number>();
      this.settledDuringRead = settledDuringRead;
      let due: WebhookDelivery[];
      try {
        // The rows in flight are still due in the store until recorded; ask for enough to skip them.
        due = await this.outbox.dueWebhooks(Date.now(), free + this.inFlight.size);
      } catch (err) {
        this.storeFailed = true;
        this.logger.error({ err }, 'webhook outbox: reading due deliveries failed; retrying at the next poll');
        return;
      } finally {
        this.settledDuringRead = undefined;
      }
      if (!this.running) return;
      let started = 0;
      for (const delivery of due) {
        if (started === free) break;
        if (this.inFlight.has(delivery.id) || settledDuringRead.has(delivery.id)) continue;
        started++;
        const settled = this.deliver(delivery).catch((err: unknown) => {
          // Only an events callback or the logger can throw here; never let it reject stop().
          this.logger.error({ err, deliveryId: delivery.id }, 'webhook delivery bookkeeping failed');
        }).finally(() => {
          this.inFlight.delete(delivery.id);
          this.settledDuringRead?.add(delivery.id);
          this.kick();
        });
        this.inFlight.set(delivery.id, settled);
      }
    } while (this.pumpAgain && this.running);
  }

  private async deliver(delivery: WebhookDelivery): Promise<void> {
    const result = await this.post(delivery);
    const attempt = delivery.attempts + 1;
    const log = { deliveryId: delivery.id, requestId: delivery.requestId, to: origin(delivery.url), attempt };
    let outcome: WebhookOutcome;
    if (result.ok) {
      outcome = { delivered: true };
    } else if (result.permanent || attempt >= this.options.maxAttempts) {
      outcome = { delivered: false, gaveUp: true, error: result.error };
    } else {
      outcome = { delivered: false, nextAttemptAt: Date.now() + webhookRetryDelay(attempt, this.options) };
    }
    try {
      await this.outbox.webhookAttempted(delivery.id, outcome);
    } catch (err) {
      this.storeFailed = true;
      this.logger.error({ err, ...log }, 'webhook outbox: recording an attempt failed; the delivery stays due');
      return;
    }
    if (outcome.delivered) {
      this.events.delivered();
      this.logger.debug(log, 'webhook delivered');
    } else if ('gaveUp' in outcome) {
      this.events.gaveUp();
      this.logger.warn({ ...log, error: outcome.error }, 'webhook delivery gave up');
    } else {
      this.events.retried();
      this.logger.info({ ...log, error: result.ok ? undefined : result.error, retryAt: new Date(outcome.nextAttemptAt).toISOString() }, 'webhook delivery failed; will retry');
    }
  }

  private async post(delivery: WebhookDelivery): Promise<AttemptResult> {
    // A URL that cannot be posted to never will be; retrying it for hours only hides the mistake.
    let url: URL;
    try {
      url = new URL(delivery.url);
    } catch {
      return { ok: false, error: 'invalid webhook url', permanent: true };
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return { ok: false, error: `webhook url scheme ${url.protocol} is not http or https`, permanent: true };
    }
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...webhookSignatureHeaders(this.options.signer, delivery.requestId, delivery.keyId, delivery.body),
        },
        body: delivery.body,
        // A redirect would re-send (or, for 301-303, drop) a signed body somewhere the submitter did
        // not name; the receiver should be given the final URL instead.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      // Only the status matters; dropping the body frees the connection without reading it.
      await response.body?.cancel().catch(() => {});
      if (response.status >= 200 && response.status < 300) return { ok: true };
      // Every other status is retried, 4xx too: a receiver answering 401 or 404 is usually
      // mid-deploy or misconfigured, and is fixed well within the retry window.
      return { ok: false, error: `HTTP ${response.status}` };
    } catch (err) {
      return { ok: false, error: describeError(err, this.options.timeoutMs) };
    }
  }
}
