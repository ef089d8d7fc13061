// The embedded default model draws what it is asked for: a short run of the model-quality bench
// (held-out captions scored by the scene generator's own rules, drawings in, the fast final frame
// from the preview decoder vs the VAE frame).
// Everything is seeded, so the figures repeat from run to run. The floors are the model's targets
// (the full evaluation, docs/model-quality.json, scores 99% / 77% / 100%); a model that paints only
// the background, or blobs where the shape should be, scores far below them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const BENCH = fileURLToPath(new URL('../bench/model-quality.js', import.meta.url));

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BENCH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('the default model follows held-out captions and drawings (model-quality bench, short run)', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'model-quality-'));
  try {
    const json = path.join(dir, 'quality.json');
    const grid = path.join(dir, 'grid.png');
    const { code, stdout, stderr } = await run(['--captions', '40', '--drawings', '10', '--no-speed', '--json', json, '--grid', grid]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /\| colour, held-out captions, 2 steps \|/);
    const result = JSON.parse(await readFile(json, 'utf8'));
    assert.equal(result.model, 'shapes-sd');

    // The instrument: the checker reads the generator's own renders perfectly.
    for (const k of ['colour', 'shape', 'position', 'background']) assert.equal(result.checkerOnRenders[k], 1, `checker ${k} on renders`);

    const a = result.adherence.heldOut_2step;
    assert.equal(a.n, 40);
    assert.ok(a.colour >= 0.8, `colour ${a.colour}`);
    assert.ok(a.shape >= 0.6, `shape ${a.shape}`);
    assert.ok(a.position >= 0.6, `position ${a.position}`);
    assert.ok(a.background >= 0.8, `background ${a.background}`);

    assert.ok(result.imageToImage.iouMean >= 0.6, `image-to-image IoU ${result.imageToImage.iouMean}`);
    assert.ok(result.preview.psnrMeanDb >= 22, `preview PSNR ${result.preview.psnrMeanDb}`);
    // The preview decoder as the final decoder: close to the VAE's frame on prompts and drawings alike.
    assert.deepEqual(Object.keys(result.fastFinal.heldOut), ['1step', '2step', '3step', '4step']);
    for (const s of [...Object.values(result.fastFinal.heldOut), result.fastFinal.drawings] as { psnrMeanDb: number; psnrMinDb: number }[]) {
      assert.ok(s.psnrMeanDb >= 22 && s.psnrMinDb >= 18, `fast final frame PSNR ${JSON.stringify(s)}`);
    }
    assert.equal(result.fastFinal.drawings.n, 10);

    const meta = await sharp(grid).metadata();
    assert.equal(meta.format, 'png');
    assert.ok(meta.width! > 800 && meta.height! > 2000, `grid ${meta.width}x${meta.height}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
