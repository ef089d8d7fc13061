// The official fal client (@fal-ai/client) in real headless Chromium, from a page on another origin,
// pointed at the real server by falSelfHost(server, { via: 'proxy' }) alone: every HTTP call goes
// to /api/fal/proxy with `x-fal-target-url` (so CORS, its preflight and the proxy route are all
// exercised by the browser itself), and fal.realtime goes through the helper's WebSocket rewrite.
// A realtime input drawn on a canvas comes back as an image the page decodes, a queued request
// (fal.subscribe) ends with a result file the page loads from the server, and so does one whose
// input is a Blob, which the client first uploads (fal's storage API: initiate through the proxy,
// then a cross-origin PUT to the upload URL the server returned), and so does fal.stream in the
// 'client' connection mode (a token through the proxy, then the stream straight from the server).
// The page script is test/fixtures/fal-page.ts, bundled here with esbuild from its compiled copy.
// Without Chromium: fails when CI=true, otherwise skips loudly (see scripts/ensure-chromium.sh).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { chromiumMissing, launchChromium } from './helpers/chromium.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { QUEUED_APP, REALTIME_APP, REALTIME_REQUEST_ID, type FalPageState } from './fixtures/fal-page.js';

/** The compiled page script (dist/test/fixtures/fal-page.js); it imports dist/client/fal.js. */
const PAGE_SCRIPT = fileURLToPath(new URL('./fixtures/fal-page.js', import.meta.url));
const CI = process.env.CI === 'true';
const missing = chromiumMissing();
if (missing && !CI) console.warn(`\n!!! SKIPPING the fal browser test: ${missing}\n`);

if (missing && CI) {
  test('Chromium is installed (required when CI=true)', () => assert.fail(missing));
}

/** Bundles the page script as a browser would get it from an app's build. */
async function bundlePage(): Promise<string> {
  const result = await build({
    entryPoints: [PAGE_SCRIPT],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110'],
    write: false,
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}

const pageHtml = (server: string) => `<!doctype html>
<html>
<head><meta charset="utf-8"><link rel="icon" href="data:,"><title>fal client, self-hosted</title></head>
<body>
<canvas id="pad" width="256" height="256"></canvas>
<img id="realtime" alt="realtime result">
<img id="queued" alt="queued result">
<img id="uploaded" alt="result of an uploaded input">
<img id="streamed" alt="streamed result">
<script type="module">
import { runFalPage } from '/page.js';
runFalPage(${JSON.stringify(server)});
</script>
</body>
</html>`;

/** A static server for the page on its own port, i.e. another origin than the image server. */
async function startPageServer(script: string, serverUrl: () => string): Promise<{ origin: string; server: Server }> {
  const server = createServer((req, res) => {
    if (req.url === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(pageHtml(serverUrl()));
    else if (req.url === '/page.js') res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(script);
    else res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

interface SeenRequest {
  method: string;
  url: string;
  resourceType: string;
  target?: string;
}

describe('the fal client in headless Chromium, via the proxy route', { skip: missing ?? false }, () => {
  let server: ServerProcess;
  let pageServer: Server;
  let pageOrigin: string;
  let browser: Browser;

  before(async () => {
    const script = await bundlePage();
    ({ origin: pageOrigin, server: pageServer } = await startPageServer(script, () => server.httpUrl));
    // No API keys: an open loopback server, so the fal client (credentials: undefined) sends none.
    // The page's origin must be allowed for CORS and for the realtime upgrade.
    [server, browser] = await Promise.all([
      startServerProcess(['--allowed-origins', pageOrigin], { env: { API_KEYS: '' } }),
      launchChromium(),
    ]);
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    if (pageServer) await new Promise<void>((resolve) => pageServer.close(() => resolve()));
  });

  test('a realtime frame and a queued result appear on a page on another origin', { timeout: 60_000 }, async () => {
    const context = await browser.newContext();
    const page: Page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    const requests: Promise<SeenRequest>[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(`${server.httpUrl}/`)) return;
      requests.push(
        request.headerValue('x-fal-target-url').then((target) => ({
          method: request.method(),
          url: request.url(),
          resourceType: request.resourceType(),
          ...(target ? { target } : {}),
        })),
      );
    });
    const sockets: string[] = [];
    page.on('websocket', (socket) => sockets.push(socket.url()));

    await page.goto(`${pageOrigin}/`);
    // Both calls settle, or fail with the reason the page caught (a CORS refusal shows up as fal's
    // "Failed to fetch", with Chromium's own explanation among the console errors). A realtime call
    // whose token request failed stays pending: fal's client swallows that error. Either way the
    // assertions below report the page's state and console rather than a bare timeout.
    const settled = await page
      .waitForFunction(
        () => {
          const state = window.falPage;
          return state !== undefined && [state.realtime, state.queued, state.uploaded, state.streamed].every((call) => call.state !== 'pending');
        },
        undefined,
        { timeout: 45_000 },
      )
      .then(() => true, () => false);
    const state = (await page.evaluate(() => window.falPage)) as FalPageState | undefined;
    const detail = `${settled ? '' : 'still pending after 45 s; '}page state ${JSON.stringify(state)}; console ${JSON.stringify(problems)}`;
    assert.ok(state, `the page script never ran: ${detail}`);
    assert.equal(state.realtime.state, 'done', `the realtime call failed: ${detail}`);
    assert.equal(state.queued.state, 'done', `the queued call failed: ${detail}`);
    assert.equal(state.uploaded.state, 'done', `the queued call with a Blob input failed: ${detail}`);
    assert.equal(state.streamed.state, 'done', `the stream in 'client' connection mode failed: ${detail}`);

    // Realtime: the request_id came back, and the <img> decoded the bytes as a 256 x 256 picture.
    assert.equal(state.realtime.requestId, REALTIME_REQUEST_ID);
    assert.equal(state.realtime.contentType, 'image/jpeg');
    assert.ok((state.realtime.bytes ?? 0) > 500, `images[0].content has ${state.realtime.bytes} bytes`);
    const realtimeImg = await page.$eval('#realtime', (img) => {
      const i = img as HTMLImageElement;
      return { complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight, src: i.src };
    });
    assert.deepEqual([realtimeImg.complete, realtimeImg.naturalWidth, realtimeImg.naturalHeight], [true, 256, 256]);
    assert.match(realtimeImg.src, /^blob:/);

    // Queued: the result URL is a file on the server, which the <img> loaded.
    const queuedImg = await page.$eval('#queued', (img) => {
      const i = img as HTMLImageElement;
      return { complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight, src: i.src };
    });
    assert.equal(queuedImg.src, state.queued.url);
    assert.ok(queuedImg.src.startsWith(`${server.httpUrl}/files/`), `the result is a /files/ URL on the server: ${queuedImg.src}`);
    assert.deepEqual([queuedImg.complete, queuedImg.naturalWidth, queuedImg.naturalHeight], [true, 256, 256]);
    assert.ok(state.queued.requestId, 'x-fal-request-id was readable cross-origin (exposed by CORS)');

    assert.deepEqual(state.realtimeErrors, []);
    assert.deepEqual(problems, []);

    // What reached the server: every API call at the proxy route carrying fal's own URL, the
    // realtime socket at the server (rewritten from wss://fal.run), the result file from /files/.
    const seen = await Promise.all(requests);
    const listing = JSON.stringify(seen, null, 1);
    // The upload itself goes where the server's upload URL points, as it goes to fal's storage host.
    const puts = seen.filter((r) => r.method === 'PUT');
    assert.equal(puts.length, 1, `one upload: ${listing}`);
    assert.ok(puts[0]!.url.startsWith(`${server.httpUrl}/storage/upload/`), `the upload went to the server: ${listing}`);
    // fal.stream in 'client' mode fetches the stream past the proxy, with the token it fetched through it.
    const direct = seen.filter((r) => new URL(r.url).pathname === `/${QUEUED_APP}/stream`);
    assert.equal(direct.length, 1, `one direct stream request: ${listing}`);
    assert.ok(new URL(direct[0]!.url).searchParams.get('fal_jwt_token'), `the stream request carries a token: ${listing}`);
    assert.ok((state.streamed.partials ?? 0) >= 1, `previews arrived as partial events: ${JSON.stringify(state.streamed)}`);
    assert.deepEqual([state.streamed.width, state.streamed.height], [256, 256]);
    const api = seen.filter((r) => (r.resourceType === 'fetch' || r.resourceType === 'xhr') && r.method !== 'PUT' && !direct.includes(r));
    assert.ok(api.length >= 4, `token, submit, status, result: ${listing}`);
    for (const r of api) {
      assert.equal(new URL(r.url).pathname, '/api/fal/proxy', `an API call outside the proxy route: ${listing}`);
      assert.match(r.target ?? '', /^https:\/\/(rest\.fal\.ai|queue\.fal\.run|fal\.run)\//, `no x-fal-target-url: ${listing}`);
    }
    const targets = api.map((r) => `${r.method} ${r.target}`);
    const id = state.queued.requestId!;
    assert.ok(targets.includes('POST https://rest.fal.ai/tokens/'), `the realtime token came through the proxy: ${listing}`);
    assert.ok(targets.includes(`POST https://queue.fal.run/${QUEUED_APP}`), `the queue submit: ${listing}`);
    assert.ok(targets.some((t) => t.startsWith(`GET https://queue.fal.run/${QUEUED_APP}/requests/${id}/status`)), `the status polls: ${listing}`);
    assert.ok(targets.includes(`GET https://queue.fal.run/${QUEUED_APP}/requests/${id}`), `the result fetch: ${listing}`);
    assert.ok(seen.some((r) => r.resourceType === 'image' && r.url === state.queued.url), `the <img> fetched the result file: ${listing}`);
    assert.ok(targets.some((t) => t.startsWith('POST https://rest.fal.ai/storage/upload/initiate')), `the upload was initiated through the proxy: ${listing}`);
    assert.ok(targets.includes(`POST https://queue.fal.run/${REALTIME_APP}`), `the submit with the uploaded file: ${listing}`);
    const uploadedImg = await page.$eval('#uploaded', (img) => {
      const i = img as HTMLImageElement;
      return { complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight };
    });
    assert.deepEqual([uploadedImg.complete, uploadedImg.naturalWidth, uploadedImg.naturalHeight], [true, 256, 256]);

    assert.equal(sockets.length, 1, `one realtime socket: ${JSON.stringify(sockets)}`);
    const socket = new URL(sockets[0]!);
    assert.equal(`${socket.protocol}//${socket.host}${socket.pathname}`, `${server.httpUrl.replace(/^http/, 'ws')}/${REALTIME_APP}/realtime`);
    assert.ok(socket.searchParams.get('fal_jwt_token'), 'the socket carries the token fetched through the proxy');

    await context.close();
  });
});
