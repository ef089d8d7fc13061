/**
 * Writes the embedded default model (a tiny untrained SD-Turbo-layout model) into models/default,
 * or into the folder given as the first argument.
 *
 *   node dist/scripts/make-models.js [outDir]
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTinyModel } from './tiny-model.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // <repo>/dist/scripts
const outDir = path.resolve(process.argv[2] ?? path.join(here, '..', '..', 'models', 'default'));

const start = performance.now();
await writeTinyModel(outDir);
console.log(`wrote tiny model to ${outDir} in ${(performance.now() - start).toFixed(0)} ms`);
