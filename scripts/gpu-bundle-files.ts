// Stages the files of the offline GPU bundle (scripts/pack-gpu-bundle.sh): the built server and GPU
// bench, the embedded model, gpu/ (stand-in generator, PyTorch ceiling, measure.sh), and a pruned
// production node_modules: only what the server and bench/gpu.js load on linux-x64 with Node 20.
// Pruning is what keeps the archive under 60 MB: onnxruntime-node ships binaries for six
// platforms, uWebSockets.js for 18 platform/ABI pairs plus a JS fallback, sharp its C++ sources.
//
//   node dist/scripts/gpu-bundle-files.js STAGE_DIR
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MODULES = path.join(REPO, 'node_modules');

/** What dist/server and dist/bench/gpu.js import at run time (ws: the bench's client). The bundle's
 * Node 20 loads the trufflesuite uWebSockets.js build (ABI 115, glibc >= 2.34); the btc-vision build
 * (glibc >= 2.38) is left out to stay under the size limit, and server/transport/uws.ts skips it as
 * not installed. */
const ROOTS = ['jose', 'msgpackr', 'onnxruntime-node', 'pino', 'pino-pretty', 'prom-client', 'sharp', 'uWebSockets.js', 'ws'];
/** Dependencies never loaded at run time: onnxruntime-node's download-on-install helpers, and the
 * modules of uWebSockets.js's pure-JS fallback (used only with UWS_USE_FALLBACK or a missing binary). */
const SKIP = new Set([
  'onnxruntime-node>adm-zip',
  'onnxruntime-node>global-agent',
  'uWebSockets.js>ws',
  'uWebSockets.js>bufferutil',
  'uWebSockets.js>utf-8-validate',
]);

/** Per-package pruning: paths (relative to the package) to delete after copying. */
const PRUNE: Record<string, (file: string) => boolean> = {
  // Only the linux-x64 binding and runtime; no TypeScript sources or install scripts.
  'onnxruntime-node': (f) => (f.startsWith('bin/') && !f.startsWith('bin/napi-v6/linux/x64')) || f.startsWith('lib/') || f.startsWith('script/'),
  // Node 20 is ABI 115: one binary of 18; the JS fallback (dist/) and its ws copy are never used.
  'uWebSockets.js': (f) => (f.startsWith('binaries/') && f !== 'binaries/uws_linux_x64_115.node') || f.startsWith('dist/') || f.startsWith('docs/') || f.startsWith('node_modules/'),
  sharp: (f) => f.startsWith('src/') || f.startsWith('install/'),
};
const DROP_ANYWHERE = (f: string) =>
  /\.(map|d\.ts|d\.mts|d\.cts|ts|mts|cts|md|markdown)$/i.test(f) && !/^licen[cs]e/i.test(path.basename(f))
    ? true
    : /(^|\/)(test|tests|__tests__|example|examples|docs|\.github|benchmark|benchmarks)\//.test(f);

interface Pkg {
  name: string;
  dir: string;
}

/** Node's resolution from a package dir: its own node_modules, then each parent's, then the top. */
function resolve(name: string, fromDir: string): string | undefined {
  let dir = fromDir;
  while (dir.startsWith(MODULES)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return candidate;
    dir = path.dirname(dir);
  }
  const top = path.join(MODULES, name);
  return existsSync(path.join(top, 'package.json')) ? top : undefined;
}

function collect(): Pkg[] {
  const seen = new Map<string, Pkg>();
  const visit = (name: string, dir: string) => {
    if (seen.has(dir)) return;
    seen.set(dir, { name, dir });
    const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
    const deps = { ...pkg.dependencies, ...pkg.optionalDependencies };
    for (const dep of Object.keys(deps)) {
      if (SKIP.has(`${name}>${dep}`)) continue;
      const found = resolve(dep, dir);
      if (found) visit(dep, found); // optional dependencies for other platforms are simply absent
    }
  };
  for (const root of ROOTS) {
    const dir = resolve(root, REPO);
    if (!dir) throw new Error(`node_modules/${root} is missing: run npm install first`);
    visit(root, dir);
  }
  return [...seen.values()];
}

function files(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...files(full, base));
    else out.push(path.relative(base, full));
  }
  return out;
}

function copyPackage(pkg: Pkg, stage: string): number {
  const target = path.join(stage, path.relative(REPO, pkg.dir));
  const prune = PRUNE[pkg.name];
  let bytes = 0;
  for (const file of files(pkg.dir)) {
    // Nested node_modules are packages of their own: copied only if the walk reached them.
    if (file.startsWith('node_modules/')) continue;
    if (DROP_ANYWHERE(file) || prune?.(file)) continue;
    const to = path.join(target, file);
    mkdirSync(path.dirname(to), { recursive: true });
    cpSync(path.join(pkg.dir, file), to);
    bytes += statSync(to).size;
  }
  return bytes;
}

function copyTree(from: string, to: string, keep: (file: string) => boolean = () => true): void {
  for (const file of files(from)) {
    if (!keep(file)) continue;
    mkdirSync(path.dirname(path.join(to, file)), { recursive: true });
    cpSync(path.join(from, file), path.join(to, file));
  }
}

function main(): void {
  const stage = process.argv[2];
  if (!stage) throw new Error('usage: node dist/scripts/gpu-bundle-files.js STAGE_DIR');
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });

  const packages = collect();
  let bytes = 0;
  for (const pkg of packages) bytes += copyPackage(pkg, stage);
  console.log(`node_modules: ${packages.length} packages, ${(bytes / 1e6).toFixed(1)} MB`);

  const dist = path.join(REPO, 'dist');
  const noMaps = (f: string) => !f.endsWith('.map');
  for (const sub of ['server', 'shared', 'web']) copyTree(path.join(dist, sub), path.join(stage, 'dist', sub), noMaps);
  copyTree(path.join(dist, 'bench'), path.join(stage, 'dist', 'bench'), (f) => /^gpu[-.].*\.js$/.test(f) || f === 'gpu.js');
  copyTree(path.join(REPO, 'models', 'default'), path.join(stage, 'models', 'default'));
  copyTree(path.join(REPO, 'gpu'), path.join(stage, 'gpu'), (f) => !f.includes('__pycache__'));
  // "type": "module" makes Node read dist/**/*.js as ES modules, as in the repository.
  const root = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { name: string; version: string };
  writeFileSync(path.join(stage, 'package.json'), JSON.stringify({ name: `${root.name}-gpu-bundle`, version: root.version, private: true, type: 'module' }, null, 2) + '\n');
}

main();
