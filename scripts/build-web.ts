// Bundles the browser client (web/) into static files under dist/web/, which the server serves at
// `/` (server/http/static.ts). Run by `npm run build` after tsc; type-checking web/ is
// `tsc -p web/tsconfig.json`, since esbuild strips types without checking them.
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

/** dist/scripts/build-web.js -> the repository root. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const WEB_OUT_DIR = path.join(ROOT, 'dist', 'web');

export async function buildWeb(): Promise<void> {
  // Start empty so files deleted from web/ do not linger and get served.
  await rm(WEB_OUT_DIR, { recursive: true, force: true });
  await mkdir(WEB_OUT_DIR, { recursive: true });
  await build({
    absWorkingDir: ROOT,
    entryPoints: { main: 'web/main.ts', style: 'web/style.css' },
    outdir: WEB_OUT_DIR,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    // Current Chromium and Firefox (and Safari 16+), which all run ES2022 natively.
    target: ['chrome110', 'firefox115', 'safari16'],
    minify: true,
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'warning',
  });
  await copyFile(path.join(ROOT, 'web', 'index.html'), path.join(WEB_OUT_DIR, 'index.html'));
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  await buildWeb();
  const js = await readFile(path.join(WEB_OUT_DIR, 'main.js'));
  const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
  console.log(`web client: dist/web/main.js ${kb(js.length)} (${kb(gzipSync(js).length)} gzipped)`);
}
