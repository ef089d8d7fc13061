// The one place the server gets uWebSockets.js from. The official package is not on npm; two repacks
// are, and neither covers every platform users run:
//   @btc-vision/uwebsockets.js   Node 20, 22, 24, 25 (ABI 115, 127, 137, 141), glibc >= 2.38
//   @trufflesuite/uws-js-unofficial (installed as "uWebSockets.js")   Node 16, 18, 20 (ABI 93, 108, 115), glibc >= 2.34
// The trufflesuite index silently falls back to a JavaScript implementation when its binary does not
// load; that fallback reports ready and then throws "not implemented" on the first WebSocket upgrade.
// So this module requires the native binaries directly, never a package index, and when none loads
// the process exits with status 1 and one message that says what was found and how to fix it.
// UWS_BUILD=<name> restricts the choice to one build (tests, and pinning a build in production).
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as Uws from 'uWebSockets.js';

// The API both builds share is typed by the trufflesuite declarations the server was written against
// (the btc-vision ones add functions and narrow a few return types to `| undefined`; callers allow for it).
export type * from 'uWebSockets.js';

interface Build {
  name: string;
  /** The package to resolve (its main file is resolved, never loaded). */
  pkg: string;
  /** Folder holding uws_<platform>_<arch>_<abi>.node, from the resolved main file. */
  binaries: (main: string) => string;
  /** package.json, from the resolved main file (btc-vision's exports map hides it from require). */
  manifest: (main: string) => string;
  covers: string;
}

export const BUILDS: readonly Build[] = [
  {
    name: 'btc-vision',
    pkg: '@btc-vision/uwebsockets.js',
    binaries: (main) => path.dirname(main),
    manifest: (main) => path.join(path.dirname(main), 'package.json'),
    covers: 'Node 20, 22, 24, 25 on glibc >= 2.38',
  },
  {
    name: 'trufflesuite',
    pkg: 'uWebSockets.js',
    binaries: (main) => path.join(path.dirname(main), '..', 'binaries'),
    manifest: (main) => path.join(path.dirname(main), '..', 'package.json'),
    covers: 'Node 16, 18, 20 on glibc >= 2.34',
  },
];

export interface LoadedBuild {
  name: string;
  version: string;
  binary: string;
}

export class NoNativeBuildError extends Error {}

const require = createRequire(import.meta.url);

/** The glibc the process runs on, or undefined off glibc (musl, macOS, Windows). */
export function glibcVersion(): string | undefined {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime;
}

function binaryName(): string {
  return `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
}

type Attempt = { ok: true; uws: typeof Uws; build: LoadedBuild } | { ok: false; reason: string };

function tryBuild(build: Build): Attempt {
  let main: string;
  try {
    main = require.resolve(build.pkg);
  } catch {
    return { ok: false, reason: `${build.pkg} is not installed (run npm ci)` };
  }
  let version = '?';
  try {
    version = (JSON.parse(readFileSync(build.manifest(main), 'utf8')) as { version: string }).version;
  } catch {
    // The version only decorates messages.
  }
  const dir = build.binaries(main);
  const binary = path.join(dir, binaryName());
  const label = `${build.pkg} ${version}`;
  if (!existsSync(binary)) {
    const prefix = `uws_${process.platform}_${process.arch}_`;
    const abis = existsSync(dir)
      ? readdirSync(dir)
          .filter((f) => f.startsWith(prefix) && f.endsWith('.node'))
          .map((f) => f.slice(prefix.length, -'.node'.length))
          .sort((a, b) => Number(a) - Number(b))
      : [];
    const has = abis.length ? `it has ABI ${abis.join(', ')} for ${process.platform}-${process.arch}` : `it has nothing for ${process.platform}-${process.arch}`;
    return { ok: false, reason: `${label}: no binary for ABI ${process.versions.modules} (${has})` };
  }
  try {
    const uws = require(binary) as typeof Uws;
    return { ok: true, uws, build: { name: build.name, version, binary } };
  } catch (err) {
    // dlopen errors name the missing symbol version first, e.g. "version `GLIBC_2.38' not found".
    const message = (err as Error).message.split('\n')[0];
    return { ok: false, reason: `${label}: ${binaryName()} does not load: ${message}` };
  }
}

/** The first build whose native binary loads here, or a NoNativeBuildError that explains why none does. */
export function loadUws(env: NodeJS.ProcessEnv = process.env): { uws: typeof Uws; build: LoadedBuild } {
  const wanted = env.UWS_BUILD?.trim();
  const candidates = wanted ? BUILDS.filter((b) => b.name === wanted) : BUILDS;
  const failures: string[] = [];
  if (wanted && candidates.length === 0) failures.push(`UWS_BUILD=${wanted} names no build (known: ${BUILDS.map((b) => b.name).join(', ')})`);
  for (const build of candidates) {
    const attempt = tryBuild(build);
    if (attempt.ok) return attempt;
    failures.push(`${build.name} (${build.covers}): ${attempt.reason}`);
  }
  const glibc = glibcVersion();
  throw new NoNativeBuildError(
    [
      'No native uWebSockets.js build loads here, so the server cannot serve WebSockets and does not start.',
      `  found: Node ${process.version} (ABI ${process.versions.modules}) on ${process.platform}-${process.arch}, ${glibc ? `glibc ${glibc}` : 'no glibc'}`,
      '  tried:',
      ...failures.map((f) => `    ${f}`),
      '  fix: run Node 22 or 24 on glibc 2.38 or newer (Debian 13, Ubuntu 24.04), or Node 20 on glibc 2.34 or newer',
      '       (Debian 12, Ubuntu 22.04), on Linux x64; then npm ci. See docs/platforms.md.',
      ...(wanted ? [`       UWS_BUILD=${wanted} limited the choice to that build: unset it to try them all.`] : []),
    ].join('\n'),
  );
}

function loadOrExit(): { uws: typeof Uws; build: LoadedBuild } {
  try {
    return loadUws();
  } catch (err) {
    if (!(err instanceof NoNativeBuildError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
}

const loaded = loadOrExit();

/** Which build serves this process (logged at start-up). */
export const uwsBuild: LoadedBuild = loaded.build;

const uws: typeof Uws = loaded.uws;
export default uws;
