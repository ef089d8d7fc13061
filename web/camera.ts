// The camera as an input source: getUserMedia into a mirrored <video>, and a capture loop that
// encodes the current frame (mirrored too, so the output matches what the user sees) to JPEG at
// the model's size and hands it on. The loop encodes one frame at a time and at most `fps` per
// second; the SDK's latest-wins throttling decides which of them reach the server.

export class CameraSource {
  private stream: MediaStream | undefined;
  private readonly canvas = document.createElement('canvas');
  private running = false;
  private lastCapture = 0;

  constructor(
    private readonly video: HTMLVideoElement,
    private readonly onFrame: (jpeg: Blob) => void,
    private readonly fps = 24,
  ) {}

  get active(): boolean {
    return this.running;
  }

  /** Asks for the camera (the browser may prompt) and starts capturing at width x height. */
  async start(width: number, height: number): Promise<void> {
    if (this.running) return;
    this.canvas.width = width;
    this.canvas.height = height;
    this.stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: 'user', width: { ideal: 640 }, height: { ideal: 480 } },
      audio: false,
    });
    this.video.srcObject = this.stream;
    await this.video.play();
    this.running = true;
    this.schedule();
  }

  stop(): void {
    this.running = false;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = undefined;
    this.video.srcObject = null;
  }

  private schedule(): void {
    if (this.running) requestAnimationFrame(() => void this.tick());
  }

  private async tick(): Promise<void> {
    const now = performance.now();
    if (!this.running) return;
    if (now - this.lastCapture < 1000 / this.fps || this.video.readyState < HTMLMediaElement.HAVE_CURRENT_DATA) {
      this.schedule();
      return;
    }
    this.lastCapture = now;
    try {
      const jpeg = await this.capture();
      if (this.running) this.onFrame(jpeg);
    } catch (err) {
      console.warn('camera frame skipped:', err);
    } finally {
      this.schedule();
    }
  }

  /** The current video frame, cropped to fill the target size (like CSS object-fit: cover) and mirrored. */
  private capture(): Promise<Blob> {
    const { width, height } = this.canvas;
    const ctx = this.canvas.getContext('2d')!;
    const vw = this.video.videoWidth;
    const vh = this.video.videoHeight;
    const scale = Math.max(width / vw, height / vh);
    const sw = width / scale;
    const sh = height / scale;
    ctx.setTransform(-1, 0, 0, 1, width, 0);
    ctx.drawImage(this.video, (vw - sw) / 2, (vh - sh) / 2, sw, sh, 0, 0, width, height);
    return new Promise((resolve, reject) =>
      this.canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('frame encoding failed'))), 'image/jpeg', 0.8),
    );
  }
}
