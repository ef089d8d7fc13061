// The output image: every preview and then the final frame replace the picture as they arrive.
// Images are shown through object URLs; each one is revoked as soon as the next replaces it (a
// loaded <img> keeps its decoded pixels), so memory stays flat however long the session runs.
// Counters are mirrored into data- attributes for the browser tests and for anyone debugging.
import type { RequestId } from '../client/index.js';

export type OutputKind = 'preview' | 'frame';

export class OutputView {
  private url: string | undefined;
  private previews = 0;
  private frames = 0;
  private skipped = 0;

  constructor(private readonly img: HTMLImageElement) {}

  show(image: Uint8Array, mime: string, kind: OutputKind, id: RequestId, source: string): void {
    const previous = this.url;
    // Decoded msgpack bins are backed by plain ArrayBuffers (never shared), which Blob requires.
    this.url = URL.createObjectURL(new Blob([image as Uint8Array<ArrayBuffer>], { type: mime }));
    this.img.src = this.url;
    if (previous) URL.revokeObjectURL(previous);
    if (kind === 'preview') this.previews++;
    else this.frames++;
    const data = this.img.dataset;
    data.previews = String(this.previews);
    data.frames = String(this.frames);
    data.lastKind = kind;
    data.lastId = String(id);
    data.lastSource = source;
  }

  /** The server skipped a request as nearly identical to an earlier one: the picture stays. */
  skip(): void {
    this.img.dataset.skipped = String(++this.skipped);
  }
}
