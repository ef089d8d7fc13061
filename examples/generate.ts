// Connects to a running server with the client SDK, asks for one image, prints each step's preview
// as it arrives and writes the final frame to a file.
//   node dist/examples/generate.js "a red circle on a blue background" [out.jpg] [ws://127.0.0.1:8080/v1/realtime]
import { writeFile } from 'node:fs/promises';
import WebSocket from 'ws';
import { connect } from '../client/index.js';

const [prompt = 'a red circle on a blue background', out = 'frame.jpg', url = 'ws://127.0.0.1:8080/v1/realtime'] = process.argv.slice(2);
// Node 20 has no global WebSocket: hand the SDK the `ws` package's. One attempt, no reconnects.
const connection = connect(url, { WebSocket, reconnect: false });
const startedAt = performance.now();
const ms = () => `${(performance.now() - startedAt).toFixed(0)} ms`;

connection.on('hello', ({ model }) => {
  console.log(`connected: model ${model.name}, ${model.width}x${model.height}`);
  connection.send({ prompt, steps: 4 });
});
connection.on('preview', (p) => console.log(`preview ${p.step}/${p.steps}: ${p.image.byteLength} bytes JPEG at ${ms()}`));
connection.on('frame', async (frame) => {
  await writeFile(out, frame.image);
  console.log(`frame: ${frame.width}x${frame.height} ${frame.format}, seed ${frame.seed}, at ${ms()} -> ${out}`);
  console.log('server timings (ms):', JSON.stringify(frame.timings));
  await connection.close();
});
connection.on('error', (err) => {
  const hint = err.code === 'connection_failed' ? ' (is the server running? npm start)' : '';
  console.error(`error ${err.code}: ${err.message}${hint}`);
  process.exitCode = 1;
  void connection.close();
});
