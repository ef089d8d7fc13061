// The status line: connection state, frames per second, time to first preview, frame latency and
// the superseded count, plus a short note about transient trouble the SDK is already handling (a
// refused connection it retries, a request it resends) so that it does not read as a failure.
// Latencies are measured from the moment the input was given (send()), so they include any wait
// behind the request in flight: what the user actually experiences.
import type { ConnectionState, RequestId, StateChange } from '../client/index.js';

/** Frames per second are counted over this trailing window. */
const FPS_WINDOW_MS = 2000;

export class StatusLine {
  private state: ConnectionState = 'idle';
  private retryInMs: number | undefined;
  private delayReason: StateChange['delayReason'];
  private note = '';
  private readonly inputAt = new Map<RequestId, number>();
  private readonly previewed = new Set<RequestId>();
  private readonly frameTimes: number[] = [];
  private firstPreviewMs: number | undefined;
  private frameLatencyMs: number | undefined;
  private superseded = 0;
  private skipped = 0;
  private renderQueued = false;
  private model = '';

  constructor(private readonly element: HTMLElement) {
    // Keep frames/s decaying to 0 when frames stop arriving.
    setInterval(() => this.render(), 500);
  }

  setState({ state, retryInMs, delayReason }: StateChange): void {
    this.state = state;
    this.retryInMs = retryInMs;
    this.delayReason = delayReason;
    if (state === 'open') this.note = '';
    this.render();
  }

  /** Transient trouble the SDK handles by itself; cleared by the next frame or reconnect. */
  setNote(text: string): void {
    this.note = text;
    this.render();
  }

  setModel(description: string): void {
    this.model = description;
    this.render();
  }

  input(id: RequestId): void {
    this.inputAt.set(id, performance.now());
  }

  preview(id: RequestId): void {
    const at = this.inputAt.get(id);
    if (at === undefined || this.previewed.has(id)) return;
    this.previewed.add(id);
    this.firstPreviewMs = performance.now() - at;
    this.render();
  }

  frame(id: RequestId): void {
    const now = performance.now();
    const at = this.inputAt.get(id);
    if (at !== undefined) this.frameLatencyMs = now - at;
    this.frameTimes.push(now);
    this.note = '';
    this.forget(id);
    this.render();
  }

  /** The request ended without a frame of its own: superseded (locally or by the server), skipped, cancelled or failed. */
  ended(id: RequestId, outcome: 'superseded' | 'skipped' | 'other'): void {
    if (outcome === 'superseded') this.superseded++;
    if (outcome === 'skipped') this.skipped++;
    this.forget(id);
    this.render();
  }

  private forget(id: RequestId): void {
    this.inputAt.delete(id);
    this.previewed.delete(id);
  }

  private fps(now: number): number {
    while (this.frameTimes.length > 0 && this.frameTimes[0] < now - FPS_WINDOW_MS) this.frameTimes.shift();
    return this.frameTimes.length / (FPS_WINDOW_MS / 1000);
  }

  /** Coalesces bursts of updates into one DOM write per animation frame. */
  private render(): void {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      const ms = (value: number | undefined) => (value === undefined ? '–' : `${Math.round(value)} ms`);
      const parts = [
        this.describeState(),
        `${this.fps(performance.now()).toFixed(1)} frames/s`,
        `first preview ${ms(this.firstPreviewMs)}`,
        `frame ${ms(this.frameLatencyMs)}`,
        `superseded ${this.superseded}`,
        `skipped ${this.skipped}`,
      ];
      if (this.model) parts.push(this.model);
      if (this.note) parts.push(this.note);
      const dot = document.createElement('span');
      dot.className = 'dot';
      this.element.replaceChildren(dot, parts.join(' · '));
      const data = this.element.dataset;
      data.state = this.state;
      data.superseded = String(this.superseded);
      data.skipped = String(this.skipped);
    });
  }

  private describeState(): string {
    if (this.state === 'idle' && this.model) return 'idle (reconnects on your next input)';
    if (this.state !== 'reconnecting' || this.retryInMs === undefined) return this.state;
    const wait = `${(this.retryInMs / 1000).toFixed(1)} s`;
    if (this.delayReason === 'going_away') return `server restarting, reconnecting in ${wait}`;
    if (this.delayReason === 'retry_after') return `server busy, retrying in ${wait}`;
    return `reconnecting in ${wait}`;
  }
}
