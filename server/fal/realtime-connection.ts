// fal's realtime protocol over one socket, as an adapter on a RealtimeSession: fal's input objects
// are translated into native generate messages (fal-input.ts) and handed to the session, which
// validates, admits, queues and runs them exactly as it does for the native protocol; the session's
// replies are translated back into fal's results (fal-output.ts) and `x-fal-error` text frames.
//
// Request ids are the adapter's own (fal apps may reuse or omit `request_id`, which is only echoed).
// Without `max_buffering` the session's latest-wins rule applies as is: one input waits, a newer
// one replaces it. With `max_buffering` N (1..60), up to N inputs wait in arrival order, the oldest
// dropped first, as fal's runtime does: the session is then fed one waiting input at a time.
import { decodeMessage, encodeValue } from '../../shared/codec.js';
import { CloseCode, ErrorCode, type ServerMessage } from '../../shared/protocol.js';
import type { Logger } from '../logger.js';
import type { RealtimeHub } from '../realtime/hub.js';
import type { ModelHost } from '../realtime/model-host.js';
import type { ReplySink } from '../realtime/reply-sink.js';
import type { RealtimeSession } from '../realtime/session.js';
import type { Principal } from '../security/authenticator.js';
import type { FalApp } from './apps.js';
import { falErrorFromNative, mapFalInput, type FalPlan } from './fal-input.js';
import { dataUri, contentTypeOf, falImageResult, falPreviewResult } from './fal-output.js';
import { resolveImageUrl, type ImageFetchPolicy } from './image-source.js';
import { FIELD_CODES } from './errors.js';

/** The socket as the adapter sees it: fal sends results as binary msgpack, control as JSON text. */
export interface FalSocket {
  sendBinary(bytes: Uint8Array): boolean;
  sendText(text: string): boolean;
  bufferedAmount(): number;
  close(code: number, reason: string): void;
}

interface Submitted {
  id: number;
  plan: FalPlan;
}

/** Inputs the session holds at once when fed from the buffer: one running, one pending. */
const SESSION_DEPTH = 2;

export class FalRealtimeConnection {
  private readonly session: RealtimeSession;
  private nextId = 1;
  private readonly inFlight = new Map<number, Submitted>();
  private readonly buffered: Submitted[] = [];
  /** Inputs whose image_url is being resolved go in order, so the newest still wins. */
  private resolving: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly socket: FalSocket,
    private readonly hub: RealtimeHub,
    private readonly host: ModelHost,
    private readonly app: FalApp,
    principal: Principal,
    private readonly maxBuffering: number | undefined,
    private readonly imageFetch: ImageFetchPolicy,
    private readonly logger: Logger,
    private readonly idleSeconds: number,
  ) {
    this.session = hub.openSession(this.sink(), principal, { host }).session;
  }

  get realtimeSession(): RealtimeSession {
    return this.session;
  }

  handleBytes(bytes: Uint8Array, isBinary: boolean): void {
    if (this.closed) return;
    // Malformed frames go to the session as they are: it refuses them and counts them toward
    // closing a connection that sends nothing but garbage.
    if (!isBinary) {
      this.session.handleBytes(bytes, false);
      return;
    }
    let decoded: unknown;
    try {
      decoded = decodeMessage(bytes);
    } catch {
      this.session.handleBytes(bytes, true);
      return;
    }
    const model = this.host.model();
    if (!model) {
      this.error(ErrorCode.NotReady, 'the model is loading; retry shortly');
      return;
    }
    const mapped = mapFalInput(decoded, this.app, model, this.host.limits(), { maxImages: 1 });
    if (!mapped.ok) {
      this.error(mapped.error.code, `${mapped.error.loc.slice(1).join('.') || 'input'}: ${mapped.error.message}`);
      return;
    }
    const { plan } = mapped;
    if (plan.imageUrl === undefined) {
      this.submit(plan);
      return;
    }
    const imageUrl = plan.imageUrl;
    this.resolving = this.resolving.then(async () => {
      const image = await resolveImageUrl(imageUrl, { ...this.imageFetch, maxBytes: this.host.limits().maxImageBytes });
      if (this.closed) return;
      if (!image.ok) this.error(image.code, image.message);
      else this.submit({ ...plan, generate: { ...plan.generate, image: image.bytes } });
    });
  }

  /** Every server-side close (limits, drain, idle) passes here. fal's runtime says TIMEOUT before
   * an idle close and closes normally: its client ignores both and reconnects on the next send. */
  closeFromServer(code: number, reason: string): void {
    if (code === CloseCode.Idle) {
      this.error('TIMEOUT', `no input for ${this.idleSeconds} seconds`);
      this.socket.close(CloseCode.Normal, 'idle timeout');
      return;
    }
    this.socket.close(code, reason);
  }

  drained(): void {
    this.session.drained();
  }

  close(): void {
    this.closed = true;
    this.buffered.length = 0;
    this.hub.closeSession(this.session);
  }

  private submit(plan: FalPlan): void {
    const entry = { id: this.nextId++, plan };
    // Unbuffered (or a buffer of one): straight to the session, whose pending input it replaces.
    if (this.maxBuffering === undefined || this.maxBuffering <= 1 || this.inFlight.size < SESSION_DEPTH) {
      this.forward(entry);
      return;
    }
    this.buffered.push(entry);
    // The session's pending input is one of the N waiting.
    while (this.buffered.length > this.maxBuffering - 1) {
      this.buffered.shift();
      this.hub.metrics.superseded.inc();
    }
  }

  private forward(entry: Submitted): void {
    this.inFlight.set(entry.id, entry);
    this.session.handleMessage({ type: 'generate', id: entry.id, ...entry.plan.generate });
  }

  /** A request got its one final reply: the next buffered input may go. */
  private finish(id: unknown): Submitted | undefined {
    if (typeof id !== 'number') return undefined;
    const entry = this.inFlight.get(id);
    this.inFlight.delete(id);
    while (this.buffered.length > 0 && this.inFlight.size < SESSION_DEPTH) this.forward(this.buffered.shift()!);
    return entry;
  }

  private error(code: string, reason: string): void {
    this.socket.sendText(JSON.stringify({ type: 'x-fal-error', error: code, reason }));
  }

  private sink(): ReplySink {
    return {
      deliver: (message) => this.deliver(message),
      bufferedAmount: () => this.socket.bufferedAmount(),
      close: (code, reason) => this.closeFromServer(code, reason),
    };
  }

  private deliver(message: ServerMessage): boolean {
    switch (message.type) {
      case 'preview': {
        const entry = this.inFlight.get(message.id as number);
        if (!entry?.plan.streamPreviews) return true;
        const result = falPreviewResult(message, { plan: entry.plan, image: { content: message.image } });
        return this.socket.sendBinary(encodeValue(result));
      }
      case 'frame': {
        const entry = this.finish(message.id);
        if (!entry) return true;
        const contentType = contentTypeOf(message.format);
        const image = { content: message.image, ...(entry.plan.syncMode ? { url: dataUri(message.image, contentType) } : {}) };
        const prompt = typeof entry.plan.generate.prompt === 'string' ? entry.plan.generate.prompt : '';
        return this.socket.sendBinary(encodeValue(falImageResult(message, { plan: entry.plan, prompt, image })));
      }
      case 'error': {
        const entry = this.finish(message.id);
        if (FIELD_CODES.has(message.code)) {
          const field = falErrorFromNative(message.code, message.message, entry?.plan);
          this.error(field.code, `${field.loc.slice(1).join('.')}: ${field.message}`);
        } else {
          this.error(message.code, message.message);
        }
        if (message.code === ErrorCode.Internal) this.logger.debug({ app: this.app.id }, 'fal realtime request failed');
        return true;
      }
      case 'superseded':
      case 'skipped':
      case 'cancelled':
        this.finish(message.id);
        return true;
      default:
        // hello, authenticated, going_away: the native protocol's own; fal's client has no use for them.
        return true;
    }
  }
}
