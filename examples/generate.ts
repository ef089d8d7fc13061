// Connects to a running server, asks for one image, prints each step's preview as it arrives and
// writes the final frame to a file.
//   node dist/examples/generate.js "a red circle on a blue background" [out.jpg] [ws://127.0.0.1:8080/v1/realtime]
import { writeFile } from 'node:fs/promises';
import WebSocket from 'ws';
import { decodeMessage, encodeMessage } from '../shared/codec.js';
import type { ServerMessage } from '../shared/protocol.js';

const [prompt = 'a red circle on a blue background', out = 'frame.jpg', url = 'ws://127.0.0.1:8080/v1/realtime'] = process.argv.slice(2);
const ws = new WebSocket(url);
const sentAt = performance.now();
const ms = () => `${(performance.now() - sentAt).toFixed(0)} ms`;

ws.on('message', async (data: Buffer) => {
  const message = decodeMessage(data) as ServerMessage;
  switch (message.type) {
    case 'hello':
      console.log(`connected: model ${message.model.name}, ${message.model.width}x${message.model.height}`);
      ws.send(encodeMessage({ type: 'generate', id: 1, prompt, steps: 4 }));
      break;
    case 'preview':
      console.log(`preview ${message.step}/${message.steps}: ${message.image.byteLength} bytes JPEG at ${ms()}`);
      break;
    case 'frame':
      await writeFile(out, message.image);
      console.log(`frame: ${message.width}x${message.height} ${message.format}, seed ${message.seed}, at ${ms()} -> ${out}`);
      console.log('server timings (ms):', JSON.stringify(message.timings));
      ws.close();
      break;
    case 'error':
      console.error(`error ${message.code}: ${message.message}`);
      ws.close();
      process.exitCode = 1;
      break;
  }
});
ws.on('error', (err) => {
  console.error(`cannot reach ${url}: ${err.message} (is the server running? npm start)`);
  process.exitCode = 1;
});
