// The browser client: wires the input sources (prompt, drawing, camera) and the controls to one
// SDK connection, and its events to the output image and the status line. Every change sends a
// request at once; the SDK's latest-wins throttling keeps only the newest, so nothing lags behind.
import { ClientErrorCode, connect, REALTIME_PATH, type GenerateInput, type ModelInfo, type RequestId } from '../client/index.js';
import { CameraSource } from './camera.js';
import { Controls } from './controls.js';
import { byId } from './dom.js';
import { DrawingPad } from './drawing.js';
import { OutputView } from './output.js';
import { StatusLine } from './status.js';
import { DrawingTools } from './tools.js';

type Source = 'text' | 'drawing' | 'camera';

/** Same origin by default; `?server=ws://host:port/v1/realtime` points the page at another server. */
function serverUrl(): string {
  const override = new URLSearchParams(location.search).get('server');
  if (override) return override;
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${REALTIME_PATH}`;
}

const connection = connect(serverUrl());
const status = new StatusLine(byId('status'));
const output = new OutputView(byId<HTMLImageElement>('output'));
const errorLine = byId('error');
const controls = new Controls(() => generate());
const pad = new DrawingPad(byId<HTMLCanvasElement>('pad'), () => {
  // Drawing is how a user says "use my sketch": switch to it without a click.
  if (source !== 'drawing') selectSource('drawing');
  else generate();
});
new DrawingTools(pad);
const video = byId<HTMLVideoElement>('camera');
const camera = new CameraSource(video, (jpeg) => void submit('camera', jpeg));

let source: Source = 'text';
let model: ModelInfo | undefined;
/** Which source each request came from, for the output's data-last-source. */
const sources = new Map<RequestId, Source>();

// ------------------------------------------------------------------ inputs

function selectSource(next: Source): void {
  if (next !== 'camera' && camera.active) camera.stop();
  source = next;
  document.body.dataset.source = next;
  for (const tab of document.querySelectorAll<HTMLButtonElement>('[data-source]')) {
    tab.setAttribute('aria-checked', String(tab.dataset.source === next));
  }
  pad.canvas.hidden = next === 'camera';
  video.hidden = next !== 'camera';
  byId('draw-tools').hidden = next === 'camera';
  if (next === 'camera') void startCamera();
  else generate();
}

async function startCamera(): Promise<void> {
  if (!model) return; // started from the hello handler once the size is known
  try {
    await camera.start(model.width, model.height);
  } catch (err) {
    showError(`camera unavailable: ${(err as Error).message}`);
    selectSource('text');
  }
}

for (const tab of document.querySelectorAll<HTMLButtonElement>('[data-source]')) {
  tab.addEventListener('click', () => selectSource(tab.dataset.source as Source));
}

/** Drawing strokes arrive far faster than JPEG encodes; encode one at a time, the newest last. */
let encoding = false;
let dirty = false;
async function sendDrawing(): Promise<void> {
  if (encoding) {
    dirty = true;
    return;
  }
  encoding = true;
  try {
    do {
      dirty = false;
      await submit('drawing', await pad.toBlob());
    } while (dirty);
  } finally {
    encoding = false;
  }
}

/** Sends the current input of the selected source (the camera sends on its own clock). */
function generate(): void {
  if (source === 'drawing') void sendDrawing();
  else if (source === 'text') void submit('text');
}

async function submit(from: Source, jpeg?: Blob): Promise<void> {
  if (!model || connection.state === 'closed') return;
  const settings = controls.read();
  const input: GenerateInput = { prompt: settings.prompt, steps: settings.steps, seed: settings.seed, width: model.width, height: model.height };
  if (jpeg) {
    input.image = new Uint8Array(await jpeg.arrayBuffer());
    input.strength = Controls.strengthFor(settings, model);
  }
  const id = connection.send(input);
  sources.set(id, from);
  status.input(id);
}

// ------------------------------------------------------------------ connection events

connection.on('state', (change) => {
  document.body.dataset.state = change.state;
  status.setState(change);
});

// The SDK resends by itself: worth a word in the status line, not an error.
connection.on('retrying', ({ code, attempt }) => status.setNote(`${code}, resending (${attempt})`));
connection.on('going_away', () => status.setNote('server going away'));

connection.on('hello', (hello) => {
  const first = model === undefined;
  model = hello.model;
  controls.applyModel(hello.model, first);
  // A canvas of the model's aspect ratio, at least 512 px on its long side so strokes look crisp.
  const scale = Math.max(1, Math.round(512 / Math.max(model.width, model.height)));
  pad.resize(model.width * scale, model.height * scale);
  byId('model-info').textContent = `${model.name} · ${model.width}×${model.height} · ${model.scheduler} · ${model.device}`;
  status.setModel(`${model.width}×${model.height}`);
  // On reconnects the SDK resends the newest input itself.
  if (first) {
    if (source === 'camera') void startCamera();
    else generate();
  }
});

connection.on('preview', (preview) => {
  status.preview(preview.id);
  output.show(preview.image, 'image/jpeg', 'preview', preview.id, sources.get(preview.id) ?? 'text');
});

connection.on('frame', (frame) => {
  status.frame(frame.id);
  output.show(frame.image, `image/${frame.format}`, 'frame', frame.id, sources.get(frame.id) ?? 'text');
  sources.delete(frame.id);
  errorLine.hidden = true;
});

connection.on('superseded', ({ id }) => ended(id, 'superseded'));
connection.on('skipped', ({ id }) => {
  output.skip();
  ended(id, 'skipped');
});
connection.on('cancelled', ({ id }) => ended(id, 'other'));
/** Connection trouble the SDK is already retrying: the state in the status line tells the story. */
const RETRIED_BY_THE_SDK = new Set<string>([ClientErrorCode.ConnectionRefused, ClientErrorCode.ConnectionLost]);

connection.on('error', (error) => {
  if (error.requestId !== undefined) ended(error.requestId, 'other');
  if (RETRIED_BY_THE_SDK.has(error.code)) status.setNote(error.code.replace('_', ' '));
  else showError(`${error.code}: ${error.message}`);
});

function ended(id: RequestId, outcome: 'superseded' | 'skipped' | 'other'): void {
  status.ended(id, outcome);
  sources.delete(id);
}

function showError(text: string): void {
  errorLine.textContent = text;
  errorLine.hidden = false;
}

document.body.dataset.source = source;
