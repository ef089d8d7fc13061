// The drawing canvas: pointer strokes with a round brush, an eraser (paints the background, since
// the image travels as JPEG, which has no transparency), clear, and a bounded undo stack.
// `onChange` fires on every stroke segment, so the image follows the pen while it moves.

const BACKGROUND = '#ffffff';
/** Snapshots kept for undo; each is width x height x 4 bytes (1 MiB at 512x512). */
const UNDO_LIMIT = 30;

export class DrawingPad {
  colour = '#1f4fd8';
  /** Brush diameter in canvas pixels. */
  size = 18;
  erasing = false;
  private readonly ctx: CanvasRenderingContext2D;
  private readonly undoStack: ImageData[] = [];
  private last: { x: number; y: number } | undefined;
  private pointerId: number | undefined;

  constructor(
    readonly canvas: HTMLCanvasElement,
    private readonly onChange: () => void,
  ) {
    // willReadFrequently: undo snapshots read pixels back on every stroke start.
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    if (!ctx) throw new Error('2D canvas unavailable');
    this.ctx = ctx;
    this.fill();
    canvas.addEventListener('pointerdown', (e) => this.down(e));
    canvas.addEventListener('pointermove', (e) => this.move(e));
    canvas.addEventListener('pointerup', (e) => this.up(e));
    canvas.addEventListener('pointercancel', (e) => this.up(e));
  }

  get canUndo(): boolean {
    return this.undoStack.length > 0;
  }

  /** New pixel size (e.g. the model's aspect ratio); the drawing is lost, as is the undo history. */
  resize(width: number, height: number): void {
    if (this.canvas.width === width && this.canvas.height === height) return;
    this.canvas.width = width;
    this.canvas.height = height;
    this.undoStack.length = 0;
    this.fill();
  }

  clear(): void {
    this.snapshot();
    this.fill();
    this.onChange();
  }

  undo(): void {
    const previous = this.undoStack.pop();
    if (!previous) return;
    this.ctx.putImageData(previous, 0, 0);
    this.onChange();
  }

  toBlob(type = 'image/jpeg', quality = 0.85): Promise<Blob> {
    return new Promise((resolve, reject) =>
      this.canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('canvas encoding failed'))), type, quality),
    );
  }

  private fill(): void {
    this.ctx.fillStyle = BACKGROUND;
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  private snapshot(): void {
    this.undoStack.push(this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height));
    if (this.undoStack.length > UNDO_LIMIT) this.undoStack.shift();
  }

  /** Pointer position in canvas pixels (the canvas is scaled by CSS). */
  private point(e: PointerEvent): { x: number; y: number } {
    const rect = this.canvas.getBoundingClientRect();
    return {
      x: ((e.clientX - rect.left) / rect.width) * this.canvas.width,
      y: ((e.clientY - rect.top) / rect.height) * this.canvas.height,
    };
  }

  private down(e: PointerEvent): void {
    if (this.pointerId !== undefined || e.button !== 0) return;
    e.preventDefault();
    this.pointerId = e.pointerId;
    this.canvas.setPointerCapture(e.pointerId);
    this.snapshot();
    const p = this.point(e);
    this.segment(p, p);
    this.last = p;
    this.onChange();
  }

  private move(e: PointerEvent): void {
    if (e.pointerId !== this.pointerId || !this.last) return;
    // Coalesced events keep fast strokes smooth when the browser batches pointer moves per frame.
    const events = e.getCoalescedEvents?.() ?? [];
    for (const event of events.length > 0 ? events : [e]) {
      const p = this.point(event);
      this.segment(this.last, p);
      this.last = p;
    }
    this.onChange();
  }

  private up(e: PointerEvent): void {
    if (e.pointerId !== this.pointerId) return;
    this.pointerId = undefined;
    this.last = undefined;
  }

  private segment(from: { x: number; y: number }, to: { x: number; y: number }): void {
    const ctx = this.ctx;
    ctx.strokeStyle = this.erasing ? BACKGROUND : this.colour;
    ctx.lineWidth = this.size;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
  }
}
