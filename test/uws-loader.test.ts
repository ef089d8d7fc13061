// The uWebSockets.js loader (server/transport/uws.ts): each build loads exactly where its binaries and
// glibc say it should, a server with no loadable build exits 1 with one message naming the fix
// instead of starting, the package's JavaScript fallback is never loaded (not even when its own
// UWS_USE_FALLBACK asks for it), and nothing imports the package around the loader.
// Run on Debian 12 + Node 20 by `npm test`, and on Debian 13 + Node 22/24 by scripts/debian13-node.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const LOADER = path.join(REPO, 'dist', 'server', 'transport', 'uws.js');
const ABI = Number(process.versions.modules);
const GLIBC = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime;

/** What each repack ships for linux-x64 (from their file lists), in the loader's order of preference. */
const EXPECTED = [
  { name: 'btc-vision', abis: [115, 127, 137, 141], glibc: [2, 38] },
  { name: 'trufflesuite', abis: [93, 108, 115], glibc: [2, 34] },
];

function glibcAtLeast([major, minor]: number[]): boolean {
  if (!GLIBC) return false;
  const [a, b] = GLIBC.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

const loadable = (e: (typeof EXPECTED)[number]) => process.platform === 'linux' && process.arch === 'x64' && e.abis.includes(ABI) && glibcAtLeast(e.glibc);

function run(args: string[], env: Record<string, string | undefined>, timeout = 30_000) {
  const result = spawnSync(process.execPath, args, { cwd: REPO, env: { ...process.env, ...env }, encoding: 'utf8', timeout });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** A child that imports the loader and prints which build it got. */
function probe(env: Record<string, string | undefined>) {
  const script = `import { uwsBuild } from ${JSON.stringify(LOADER)}; console.log(JSON.stringify(uwsBuild));`;
  return run(['--input-type=module', '-e', script], env);
}

test(`each build loads exactly where it should (Node ${process.version}, ABI ${ABI}, glibc ${GLIBC ?? 'none'})`, () => {
  for (const build of EXPECTED) {
    const { status, stdout, stderr } = probe({ UWS_BUILD: build.name, UWS_USE_FALLBACK: undefined });
    if (loadable(build)) {
      assert.equal(status, 0, `${build.name} should load here: ${stderr}`);
      const got = JSON.parse(stdout) as { name: string; binary: string };
      assert.equal(got.name, build.name);
      assert.ok(got.binary.endsWith(`uws_linux_x64_${ABI}.node`), got.binary);
    } else {
      assert.equal(status, 1, `${build.name} should not load here: ${stdout}`);
      const reason = build.abis.includes(ABI) ? /GLIBC_2\.\d+' not found/ : new RegExp(`no binary for ABI ${ABI} \\(it has ABI ${build.abis.join(', ')} for linux-x64\\)`);
      assert.match(stderr, new RegExp(`${build.name} \\(`));
      assert.match(stderr, reason);
    }
  }
  // Without UWS_BUILD the first loadable build in order of preference wins.
  const first = EXPECTED.find(loadable);
  const chosen = probe({ UWS_BUILD: undefined });
  if (first) assert.equal((JSON.parse(chosen.stdout) as { name: string }).name, first.name, chosen.stderr);
  else assert.equal(chosen.status, 1);
});

test('with no loadable build the server exits 1 with one message naming what was tried and the fix', () => {
  const started = Date.now();
  const { status, stdout, stderr } = run([path.join(REPO, 'dist', 'server', 'main.js'), '--port', '0'], { UWS_BUILD: 'none-such' });
  assert.equal(status, 1, stderr);
  assert.ok(Date.now() - started < 20_000, 'it fails at start-up, before loading the model');
  assert.doesNotMatch(stdout, /listening|model ready/, 'nothing was served');
  assert.match(stderr, /^No native uWebSockets\.js build loads here, so the server cannot serve WebSockets and does not start\.$/m);
  assert.ok(stderr.includes(`found: Node ${process.version} (ABI ${ABI}) on ${process.platform}-${process.arch}, ${GLIBC ? `glibc ${GLIBC}` : 'no glibc'}`), stderr);
  assert.match(stderr, /UWS_BUILD=none-such names no build \(known: btc-vision, trufflesuite\)/);
  assert.match(stderr, /fix: run Node 22 or 24 on glibc 2\.38 or newer .* Node 20 on glibc 2\.34 or newer/);
  assert.match(stderr, /See docs\/platforms\.md\./);
  assert.match(stderr, /unset it to try them all/);
  assert.doesNotMatch(stderr, /\n\s+at /, 'a message, not a stack trace');
});

test('the JavaScript fallback is never loaded, even with UWS_USE_FALLBACK=1, and WebSockets upgrade', { skip: !EXPECTED.some(loadable) && 'no build loads on this platform' }, () => {
  // A native echo server and a ws client in one child: the fallback dies on exactly this upgrade.
  const script = `
    import { createRequire } from 'node:module';
    import uws, { uwsBuild } from ${JSON.stringify(LOADER)};
    import WebSocket from 'ws';
    const app = uws.App().ws('/*', { message: (ws, m, binary) => ws.send(m, binary) });
    app.listen('127.0.0.1', 0, (listen) => {
      const port = uws.us_socket_local_port(listen);
      const client = new WebSocket('ws://127.0.0.1:' + port + '/echo');
      client.on('open', () => client.send('ping'));
      client.on('message', (data) => {
        const loaded = Object.keys(createRequire(import.meta.url).cache).filter((f) => /uWebSockets\\.js|uwebsockets\\.js/.test(f));
        console.log(JSON.stringify({ echo: data.toString(), native: String(uws.App).includes('[native code]'), loaded, binary: uwsBuild.binary }));
        client.close();
        uws.us_listen_socket_close(listen);
      });
    });`;
  const { status, stdout, stderr } = run(['--input-type=module', '-e', script], { UWS_USE_FALLBACK: '1', UWS_BUILD: undefined });
  assert.equal(status, 0, stderr);
  const result = JSON.parse(stdout) as { echo: string; native: boolean; loaded: string[]; binary: string };
  assert.equal(result.echo, 'ping');
  assert.equal(result.native, true);
  assert.deepEqual(result.loaded, [result.binary], 'only the native binary was loaded from either package');
  assert.doesNotMatch(stdout + stderr, /fall(ing)? ?back/i);
});

test('nothing imports uWebSockets.js except through the loader', () => {
  const offenders: string[] = [];
  const pattern = /(?:from\s*|import\s*\(\s*|require\s*\(\s*)['"](uWebSockets\.js|@btc-vision\/uwebsockets\.js)['"]/;
  const walk = (dir: string, ext: RegExp) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full, ext);
      else if (ext.test(entry.name) && pattern.test(readFileSync(full, 'utf8'))) offenders.push(path.relative(REPO, full));
    }
  };
  for (const dir of ['server', 'shared', 'client', 'bench', 'scripts', 'test', 'examples', 'web']) walk(path.join(REPO, dir), /\.ts$/);
  // The loader's own imports are type-only; compiled output must have no import of either package.
  assert.deepEqual(offenders, ['server/transport/uws.ts']);
  const loaderSource = readFileSync(path.join(REPO, 'server', 'transport', 'uws.ts'), 'utf8');
  for (const line of loaderSource.split('\n').filter((l) => pattern.test(l))) assert.match(line, /^(import|export) type /, line);
  offenders.length = 0;
  walk(path.join(REPO, 'dist'), /\.js$/);
  assert.deepEqual(offenders, []);
});
