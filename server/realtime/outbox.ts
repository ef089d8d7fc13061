// Everything one connection sends, in order, with backpressure handled here:
//  - replies are produced asynchronously (image encoding) but leave in the order they were queued;
//  - above `previewBytes` of unsent data, previews are dropped (and never encoded);
//  - above `frameBytes`, a final frame is held back instead of sent, the newest replacing an older
//    held one (which is answered `superseded`); it goes out when the socket drains;
//  - a reader that stays above `frameBytes` for `slowReaderMs` is closed with CloseCode.SlowReader.
// A slow reader costs only its own buffer: nothing here waits, so other sessions never notice.
import { CloseCode, type FrameMessage, type RequestId, type ServerMessage } from '../../shared/protocol.js';
import type { ReplySink } from './reply-sink.js';

export interface OutboxOptions {
  previewBytes: number;
  frameBytes: number;
  slowReaderMs: number;
}

export interface OutboxEvents {
  droppedPreview(): void;
  /** A held frame was replaced by a newer one before it could be sent. */
  frameReplaced(id: RequestId): void;
  frameSent(message: FrameMessage): void;
  slowReaderClosed(): void;
  encodeFailed(err: unknown): void;
}

export class Outbox {
  private chain: Promise<void> = Promise.resolve();
  private heldFrame: FrameMessage | undefined;
  private slowTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly sink: ReplySink,
    private readonly options: OutboxOptions,
    private readonly events: OutboxEvents,
  ) {}

  /** Small control replies (errors, superseded, cancelled...): always sent, in order. */
  control(message: ServerMessage): void {
    this.enqueue(async () => message);
  }

  /** A preview, unless the reader is behind: then it is dropped before any encoding work. */
  preview(produce: () => Promise<ServerMessage>): void {
    if (this.closed) return;
    if (this.sink.bufferedAmount() > this.options.previewBytes) {
      this.events.droppedPreview();
      return;
    }
    this.enqueue(async () => {
      // The buffer may have grown while earlier replies were encoded.
      if (this.sink.bufferedAmount() > this.options.previewBytes) {
        this.events.droppedPreview();
        return undefined;
      }
      return produce();
    });
  }

  /** A final frame: sent in order, or held (latest wins) while the reader is over the limit. */
  frame(produce: () => Promise<FrameMessage>): void {
    this.enqueue(async () => {
      const message = await produce();
      if (this.sink.bufferedAmount() <= this.options.frameBytes) return message;
      if (this.heldFrame) this.events.frameReplaced(this.heldFrame.id);
      this.heldFrame = message;
      this.watchSlowReader();
      return undefined;
    });
  }

  /** The socket drained some of its buffer: release a held frame if there is room now. */
  drained(): void {
    if (this.closed) return;
    if (this.sink.bufferedAmount() > this.options.frameBytes) return;
    this.stopWatching();
    const held = this.heldFrame;
    if (!held) return;
    this.heldFrame = undefined;
    this.enqueue(async () => held);
  }

  /** A final frame is held back for a slow reader. */
  get holding(): boolean {
    return this.heldFrame !== undefined;
  }

  /** Resolves once everything queued so far has been written to the socket (or dropped). */
  flushed(): Promise<void> {
    return this.chain;
  }

  close(): void {
    this.closed = true;
    this.heldFrame = undefined;
    this.stopWatching();
  }

  private enqueue(produce: () => Promise<ServerMessage | undefined>): void {
    if (this.closed) return;
    this.chain = this.chain
      .then(async () => {
        if (this.closed) return;
        const message = await produce();
        if (!message || this.closed) return;
        this.sink.deliver(message);
        if (message.type === 'frame') this.events.frameSent(message);
        if (this.sink.bufferedAmount() > this.options.frameBytes) this.watchSlowReader();
      })
      .catch((err) => this.events.encodeFailed(err));
  }

  private watchSlowReader(): void {
    if (this.slowTimer || this.closed) return;
    this.slowTimer = setTimeout(() => {
      this.slowTimer = undefined;
      if (this.closed || this.sink.bufferedAmount() <= this.options.frameBytes) return;
      this.events.slowReaderClosed();
      this.sink.close(CloseCode.SlowReader, 'slow reader: send buffer over its limit too long');
    }, this.options.slowReaderMs);
    this.slowTimer.unref();
  }

  private stopWatching(): void {
    if (this.slowTimer) clearTimeout(this.slowTimer);
    this.slowTimer = undefined;
  }
}
