// The SDK as an app gets it: `npm pack` in client/, the tarball installed into an empty project
// outside the repository, then used by name from a Node script, type-checked by tsc, and bundled
// by esbuild for a page on its own origin that talks to the real server in headless Chromium.
// Without Chromium the browser part fails when CI=true, otherwise skips loudly.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import ts from 'typescript';
import { webhookSignatureHeaders, webhookSigner } from '../server/fal/webhook-signer.js';
import { chromiumMissing, launchChromium } from './helpers/chromium.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';

const exec = promisify(execFile);
// Under `npm test` the parent npm exports its project root as npm_config_local_prefix; the nested
// npm commands must work on client/ and the empty project, never on this repository.
const { npm_config_local_prefix: _, ...childEnv } = process.env;
const run = (file: string, args: string[], options: { cwd: string; timeout?: number }) =>
  exec(file, args, { ...options, env: childEnv });
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const NAME = '@realtime-diffusion/client';
const CI = process.env.CI === 'true';
const missing = chromiumMissing();
if (missing && !CI) console.warn(`\n!!! SKIPPING the packed SDK's browser test: ${missing}\n`);

const REQUEST = { prompt: 'a red circle on a blue background', seed: 7, steps: 2, width: 64, height: 64 };
/** What a frame's first bytes are for each format the server may answer in. */
const MAGIC: Record<string, number[]> = { jpeg: [0xff, 0xd8, 0xff], png: [0x89, 0x50, 0x4e], webp: [0x52, 0x49, 0x46] };

interface FrameSummary {
  protocol: number;
  format: string;
  width: number;
  height: number;
  seed: number;
  bytes: number;
  magic: number[];
}

function assertFrame(frame: FrameSummary): void {
  assert.equal(frame.protocol, 1);
  assert.deepEqual([frame.width, frame.height, frame.seed], [64, 64, 7]);
  assert.ok(frame.bytes > 100, `a ${frame.bytes}-byte image`);
  assert.deepEqual(frame.magic, MAGIC[frame.format], `${frame.format} bytes start with ${frame.magic}`);
}

// One source for Node and the browser: connect, ask for one frame, report it, close.
const generateOne = (options: string) => `
export function generateOne(url) {
  return new Promise((resolve, reject) => {
    let protocol;
    const connection = connect(url, { ${options} reconnect: false });
    connection.on('hello', (hello) => {
      protocol = hello.protocol;
      connection.send(${JSON.stringify(REQUEST)});
    });
    connection.on('frame', (f) => {
      const summary = { protocol, format: f.format, width: f.width, height: f.height, seed: f.seed,
        bytes: f.image.byteLength, magic: Array.from(f.image.subarray(0, 3)) };
      connection.close().then(() => resolve(summary), reject);
    });
    connection.on('error', (err) => {
      void connection.close();
      reject(new Error(err.code + ': ' + err.message));
    });
  });
}
`;

describe('the packed SDK in an empty project', () => {
  let tmp: string;
  let app: string;
  let server: ServerProcess;
  let starting: Promise<ServerProcess> | undefined;
  let site: http.Server;
  let origin: string;
  let script = Buffer.alloc(0);
  const pkgDir = () => path.join(app, 'node_modules', ...NAME.split('/'));

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'sdk-package-'));
    // The browser app's own site; its bundle is built by the browser test.
    const page = '<!doctype html><script type="module">import { generateOne } from "./app.js"; window.generateOne = generateOne;</script>';
    site = http.createServer((req, res) => {
      const js = req.url === '/app.js';
      res.writeHead(200, { 'content-type': js ? 'text/javascript' : 'text/html' }).end(js ? script : page);
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    // A page elsewhere may open sockets only when the server allows its origin, as an app's would.
    starting = startServerProcess(['--allowed-origins', origin]);
    starting.catch(() => {}); // awaited below; a failed pack must not leave it unhandled meanwhile
    app = path.join(tmp, 'app');
    await mkdir(app);
    // The package's prepack builds it, so the tarball always matches client/ and shared/.
    const packed = await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: path.join(ROOT, 'client') });
    const tarball = path.join(tmp, (JSON.parse(packed.stdout) as { filename: string }[])[0].filename);
    await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'sdk-app', private: true, type: 'module' }));
    // The cache usually has both from the repository's own install; the registry fills any gap.
    await run('npm', ['install', tarball, 'ws@8', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: app });
    server = await starting;
  });
  after(async () => {
    // Stops the server even when the pack or install failed before it was awaited.
    await starting?.then((s) => s.stop(), () => {});
    site?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  test('the tarball is self-contained: every import resolves inside it or to a declared dependency', async () => {
    const manifest = JSON.parse(await readFile(path.join(pkgDir(), 'package.json'), 'utf8'));
    assert.deepEqual(Object.keys(manifest.dependencies), ['msgpackr']);
    const files = (await readdir(pkgDir(), { recursive: true })).filter((f) => /\.(js|d\.ts)$/.test(f));
    assert.ok(files.includes(path.join('dist', 'shared', 'protocol.js')), 'the protocol travels with the SDK');
    let imports = 0;
    for (const file of files) {
      const source = await readFile(path.join(pkgDir(), file), 'utf8');
      // TypeScript's own scanner: static imports, re-exports and the .d.ts files' import("...")
      // types, never text inside comments or strings.
      for (const { fileName: spec } of ts.preProcessFile(source, true, true).importedFiles) {
        imports++;
        if (spec.startsWith('.')) {
          const target = path.resolve(path.dirname(path.join(pkgDir(), file)), spec);
          assert.ok(target.startsWith(pkgDir() + path.sep), `${file} reaches outside the package: ${spec}`);
          assert.ok(existsSync(target.replace(/\.js$/, file.endsWith('.d.ts') ? '.d.ts' : '.js')), `${file}: ${spec} is missing`);
        } else {
          assert.equal(spec, 'msgpackr', `${file} imports ${spec}, which the package does not depend on`);
        }
      }
    }
    assert.ok(imports > 20, `only ${imports} imports found: the scan is not reading the files`);
  });

  test('its type declarations compile in a strict project without Node types', async () => {
    await writeFile(
      path.join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM'], types: [], strict: true, noEmit: true, skipLibCheck: false },
        files: ['check.ts'],
      }),
    );
    await writeFile(
      path.join(app, 'check.ts'),
      `import { connect, ErrorCode, RealtimeError, type ConnectOptions, type FrameMessage } from '${NAME}';
import { verifyWebhookSignature } from '${NAME}/webhooks';
const options: ConnectOptions = { reconnect: { baseDelayMs: 100 }, minIntervalMs: 10 };
const connection = connect('ws://127.0.0.1:1/v1/realtime', options);
connection.on('frame', (frame: FrameMessage) => console.log(frame.width * frame.height, frame.image.byteLength));
connection.on('error', (err) => console.log(err instanceof RealtimeError, err.code === ErrorCode.Overloaded));
// @ts-expect-error: a prompt is a string; an untyped (any) package would let this through
connection.send({ prompt: 42 });
const valid: Promise<boolean> = verifyWebhookSignature({ keys: [] }, new Headers(), new Uint8Array(0));
void valid;
`,
    );
    await run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: app }).catch((err) => {
      assert.fail(`tsc rejected the package's types:\n${err.stdout}${err.stderr}`);
    });
  });

  test('Node: imported by name, it gets a frame from the real server', async () => {
    await writeFile(
      path.join(app, 'node-client.js'),
      `import WebSocket from 'ws';\nimport { connect } from '${NAME}';\n${generateOne('WebSocket,')}
console.log(JSON.stringify(await generateOne(process.argv[2])));\n`,
    );
    // The script must also end by itself: a closed connection leaves nothing keeping Node alive.
    const { stdout } = await run(process.execPath, ['node-client.js', server.wsUrl], { cwd: app, timeout: 30_000 });
    assertFrame(JSON.parse(stdout));
  });

  test("Node: a webhook receiver checks deliveries with '/webhooks' by name", async () => {
    const signer = webhookSigner('a secret the receiver never sees');
    const body = JSON.stringify({ request_id: 'r-1', status: 'OK', payload: { images: [] } });
    const headers = webhookSignatureHeaders(signer, 'r-1', 'key-1', body);
    await writeFile(
      path.join(app, 'receiver.js'),
      `import { verifyWebhookSignature } from '${NAME}/webhooks';
const [keys, headers, body] = JSON.parse(process.argv[2]);
const results = [
  await verifyWebhookSignature(keys, headers, body),
  await verifyWebhookSignature(keys, new Headers(headers), new TextEncoder().encode(body)),
  await verifyWebhookSignature(keys, headers, body.replace('OK', 'ERROR')),
];
console.log(JSON.stringify(results));\n`,
    );
    const { stdout } = await run(process.execPath, ['receiver.js', JSON.stringify([{ keys: [signer.jwk] }, headers, body])], { cwd: app, timeout: 30_000 });
    assert.deepEqual(JSON.parse(stdout), [true, true, false]);
  });

  test('browser: an esbuild bundle on its own origin gets a frame in Chromium', { skip: missing ?? false }, async () => {
    await writeFile(path.join(app, 'browser.js'), `import { connect } from '${NAME}';\n${generateOne('')}`);
    const bundled = await build({
      absWorkingDir: app,
      entryPoints: ['browser.js'],
      outfile: path.join(app, 'public', 'app.js'),
      bundle: true,
      format: 'esm',
      platform: 'browser',
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(bundled.metafile.inputs);
    assert.ok(inputs.some((i) => i.startsWith(`node_modules/${NAME}/dist/shared/`)), inputs.join('\n'));
    assert.deepEqual(inputs.filter((i) => !i.startsWith('node_modules/') && i !== 'browser.js'), [], 'the bundle took files from outside the app');
    script = await readFile(path.join(app, 'public', 'app.js'));
    const browser = await launchChromium();
    try {
      const tab = await browser.newPage();
      const problems: string[] = [];
      tab.on('pageerror', (err) => problems.push(err.message));
      await tab.goto(`${origin}/`);
      await tab.waitForFunction(() => 'generateOne' in window, undefined, { timeout: 10_000 });
      const frame = await tab.evaluate(
        (url) => (window as unknown as { generateOne(u: string): Promise<FrameSummary> }).generateOne(url),
        server.wsUrl,
      );
      assertFrame(frame);
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
    }
  });

  if (missing && CI) {
    test('Chromium is installed (required when CI=true)', () => assert.fail(missing));
  }
});
