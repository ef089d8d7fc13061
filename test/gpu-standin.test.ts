// The SD-Turbo-scale benchmark stand-in (gpu/standin): its full-size parameter counts match
// SD-Turbo's UNet, SD VAE decoder and TAESD decoder exactly (counted on torch's meta device, no
// weights allocated), and the same generator at 1/16 width, float16, loads in the real server and
// generates, reported everywhere as a random-weight stand-in. Needs Python with torch and onnx
// (Debian: apt-get install python3-torch python3-onnx); skipped with a reason otherwise.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FrameMessage, PreviewMessage } from '../shared/protocol.js';
import { startServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPT = path.join(REPO, 'gpu', 'standin', 'make_standin.py');

/** Debian's torch belongs to /usr/bin/python3; the python3 first on PATH may not see it. */
function findPython(): string | undefined {
  for (const candidate of [process.env.STANDIN_PYTHON, '/usr/bin/python3', 'python3']) {
    if (!candidate) continue;
    const probe = spawnSync(candidate, ['-c', 'import torch, onnx'], { timeout: 60_000 });
    if (probe.status === 0) return candidate;
  }
  return undefined;
}

const python = findPython();
const skip = python ? false : 'no Python with torch and onnx (apt-get install python3-torch python3-onnx)';
const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

function run(args: string[]): string {
  const result = spawnSync(python!, [SCRIPT, ...args], { encoding: 'utf8', timeout: 180_000 });
  assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

describe('SD-Turbo stand-in', { skip }, () => {
  test('full size: exactly the parameter counts of SD-Turbo UNet, SD VAE decoder, TAESD decoder', () => {
    const out = run(['--count-only']);
    assert.match(out, /unet: 865,910,724 parameters \(SD-Turbo: 865,910,724\)/);
    assert.match(out, /vae_decoder: 49,490,199 parameters/);
    assert.match(out, /preview_decoder: 1,222,531 parameters/);
  });

  test('scaled, float16: the real server loads it and generates; it is named a stand-in', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'standin-'));
    dirs.push(dir);
    const model = path.join(dir, 'sd-turbo-standin');
    run(['--out', model, '--scale', '16', '--sample-size', '16', '--fp16']);
    for (const file of ['unet/model.onnx', 'unet/model.onnx_data', 'vae_decoder/model.onnx', 'preview_decoder/model.onnx', 'text_encoder/model.onnx', 'tokenizer/vocab.json']) {
      assert.ok(existsSync(path.join(model, file)), file);
    }
    const index = JSON.parse(readFileSync(path.join(model, 'model_index.json'), 'utf8')) as { _name_or_path: string };
    assert.equal(index._name_or_path, 'sd-turbo-standin (random weights, benchmark only)');
    const meta = JSON.parse(readFileSync(path.join(model, 'standin.json'), 'utf8')) as { standin: boolean; scale: number; dtype: string };
    assert.deepEqual([meta.standin, meta.scale, meta.dtype], [true, 16, 'float16']);
    // Refuses to overwrite a folder that is not a stand-in.
    const refused = spawnSync(python!, [SCRIPT, '--out', REPO, '--scale', '16'], { encoding: 'utf8' });
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /not a stand-in folder/);

    const server = await startServerProcess(['--model', model]);
    try {
      const { client, hello } = await TestClient.connect(server.wsUrl);
      assert.match(hello.model.name, /standin \(random weights, benchmark only\)/);
      assert.equal(hello.model.dtype, 'float16');
      assert.equal(hello.model.previews, 'decoder');
      assert.deepEqual([hello.model.width, hello.model.height], [128, 128]);
      client.send({ type: 'generate', id: 1, prompt: 'a cat', steps: 2, seed: 7 });
      const preview = (await client.next((m) => m.type === 'preview')) as PreviewMessage;
      assert.equal(preview.steps, 2);
      const frame = (await client.next((m) => m.type === 'frame' || m.type === 'error', 60_000)) as FrameMessage;
      assert.equal(frame.type, 'frame', JSON.stringify(frame));
      assert.deepEqual([frame.width, frame.height], [128, 128]);
      assert.ok(frame.image.byteLength > 100);
      client.ws.close();
    } finally {
      await server.stop();
    }
  });
});
