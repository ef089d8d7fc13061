/**
 * Writes the generated SD-Turbo-layout model (random weights, every signature detail of a real
 * export, about 0.5 MB) into a folder. The test suite builds its variants the same way; as a
 * server model it streams noise at a fraction of a millisecond per step, which makes it a handy
 * instrument for protocol and load work. The embedded default model (models/default) is the
 * trained one from training/ and is never overwritten here.
 *
 *   node dist/scripts/make-models.js OUT_DIR
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTinyModel } from './tiny-model.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // <repo>/dist/scripts
const defaultModel = path.resolve(here, '..', '..', 'models', 'default');
const outArg = process.argv[2];
if (!outArg) {
  console.error('usage: npm run make-models -- OUT_DIR   (writes the generated, untrained model)');
  process.exit(2);
}
const outDir = path.resolve(outArg);
if (outDir === defaultModel) {
  console.error(`refusing to overwrite ${defaultModel}: it holds the trained default model (see training/README.md)`);
  process.exit(2);
}

const start = performance.now();
await writeTinyModel(outDir);
console.log(`wrote the generated model to ${outDir} in ${(performance.now() - start).toFixed(0)} ms`);
