// The browser client in real headless Chromium against the real server: the page loads, a typed
// prompt and mouse strokes on the canvas produce previews and final frames, undo restores the
// canvas, and the (fake) camera streams frames. Screenshots land in test-artifacts/.
// Without Chromium: fails when CI=true, otherwise skips loudly (see scripts/ensure-chromium.sh).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import { chromiumMissing, launchChromium } from './helpers/chromium.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const BUNDLE = fileURLToPath(new URL('../web/main.js', import.meta.url));
const CI = process.env.CI === 'true';
const missing = chromiumMissing();
if (missing && !CI) console.warn(`\n!!! SKIPPING the browser tests: ${missing}\n`);

test('the browser bundle is under 60 KB gzipped', () => {
  const gzipped = gzipSync(readFileSync(BUNDLE)).length;
  assert.ok(gzipped < 60 * 1024, `dist/web/main.js is ${gzipped} bytes gzipped`);
});

if (missing && CI) {
  test('Chromium is installed (required when CI=true)', () => assert.fail(missing));
}

describe('browser client in headless Chromium', { skip: missing ?? false }, () => {
  let server: ServerProcess;
  let browser: Browser;
  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    // One browser for both runs; the fake-media flags only matter to the camera page.
    [server, browser] = await Promise.all([
      startServerProcess(),
      launchChromium(['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream']),
    ]);
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  async function openPage(): Promise<{ page: Page; problems: string[] }> {
    const context = await browser.newContext({ viewport: { width: 1200, height: 820 } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    await page.goto(`${server.httpUrl}/`);
    await page.waitForSelector('body[data-state="open"]', { timeout: 10_000 });
    return { page, problems };
  }

  const counters = (page: Page) =>
    page.$eval('#output', (img) => ({
      previews: Number((img as HTMLElement).dataset.previews),
      frames: Number((img as HTMLElement).dataset.frames),
      skipped: Number((img as HTMLElement).dataset.skipped),
      lastKind: (img as HTMLElement).dataset.lastKind,
      lastSource: (img as HTMLElement).dataset.lastSource,
    }));

  /** Waits until the output shows a final frame from `source`, after more than `framesBefore` frames. */
  async function waitForFrame(page: Page, source: string, framesBefore: number) {
    await page.waitForFunction(
      ([source, framesBefore]) => {
        const data = (document.getElementById('output') as HTMLElement).dataset;
        return Number(data.frames) > Number(framesBefore) && data.lastKind === 'frame' && data.lastSource === source;
      },
      [source, String(framesBefore)] as const,
      { timeout: 15_000 },
    );
    // The <img> really decoded it (a broken object URL would leave naturalWidth at 0).
    await page.waitForFunction(() => {
      const img = document.getElementById('output') as HTMLImageElement;
      return img.complete && img.naturalWidth > 0;
    });
    return counters(page);
  }

  /** The canvas pixel under a point given in CSS pixels of the canvas box. */
  const pixelAt = (page: Page, x: number, y: number) =>
    page.$eval(
      '#pad',
      (canvas, [x, y]) => {
        const c = canvas as HTMLCanvasElement;
        const rect = c.getBoundingClientRect();
        const px = Math.floor((x / rect.width) * c.width);
        const py = Math.floor((y / rect.height) * c.height);
        return Array.from(c.getContext('2d')!.getImageData(px, py, 1, 1).data.slice(0, 3));
      },
      [x, y] as const,
    );

  test('prompt-as-you-type and drawing strokes stream previews and frames', async () => {
    const { page, problems } = await openPage();
    // The default prompt renders as soon as the page connects.
    let seen = await waitForFrame(page, 'text', 0);
    assert.ok(seen.previews >= 1, 'previews arrive before the first frame');

    const prompt = page.locator('#prompt');
    await prompt.fill('');
    await prompt.pressSequentially('a lighthouse at dusk', { delay: 15 });
    seen = await waitForFrame(page, 'text', seen.frames);

    // Two strokes in two colours; the first one switches the source to the drawing.
    const box = (await page.locator('#pad').boundingBox())!;
    const stroke = async (points: [number, number][]) => {
      await page.mouse.move(box.x + points[0][0], box.y + points[0][1]);
      await page.mouse.down();
      for (const [x, y] of points.slice(1)) await page.mouse.move(box.x + x, box.y + y, { steps: 6 });
      await page.mouse.up();
    };
    // Four steps at the page's strength run two, so the drawing's requests have a preview (the last
    // step's preview is the frame itself).
    await page.locator('#steps').fill('4');
    const before = seen;
    await stroke([[60, 80], [200, 120], [320, 90], [400, 200]]);
    await page.click('.swatch[data-colour="#d83a3a"]');
    await stroke([[100, 300], [200, 380], [300, 300], [200, 220], [100, 300]]);
    seen = await waitForFrame(page, 'drawing', before.frames);
    assert.ok(seen.previews > before.previews, 'the drawing produced previews');
    assert.equal(await page.getAttribute('body', 'data-source'), 'drawing');
    assert.deepEqual(await pixelAt(page, 200, 380), [0xd8, 0x3a, 0x3a], 'the red stroke is on the canvas');

    // Undo takes back the red stroke only; the blue one stays.
    await page.click('#undo');
    assert.deepEqual(await pixelAt(page, 200, 380), [255, 255, 255], 'undo removed the red stroke');
    assert.notDeepEqual(await pixelAt(page, 200, 120), [255, 255, 255], 'the first stroke is still there');
    seen = await waitForFrame(page, 'drawing', seen.frames);

    const status = await page.textContent('#status');
    assert.match(status ?? '', /open · [\d.]+ frames\/s · first preview \d+ ms · frame \d+ ms · superseded \d+/);
    await page.screenshot({ path: `${ARTIFACTS}browser-drawing.png` });
    assert.deepEqual(problems, []);
    await page.context().close();
  });

  test('the camera streams mirrored frames continuously', async () => {
    const { page, problems } = await openPage();
    const start = await waitForFrame(page, 'text', 0);
    await page.click('[data-source="camera"]');
    await page.waitForFunction(() => {
      const video = document.getElementById('camera') as HTMLVideoElement;
      return !video.hidden && video.readyState >= 2 && video.videoWidth > 0;
    });
    // The capture loop keeps sending while the camera is on: more requests settle after the first
    // camera frame (as frames, or as `skipped` where the fake camera's picture barely moved).
    const first = await waitForFrame(page, 'camera', start.frames);
    await page.waitForFunction(
      (before) => {
        const data = (document.getElementById('output') as HTMLElement).dataset;
        return Number(data.frames) + Number(data.skipped) >= before + 3;
      },
      first.frames + first.skipped,
      { timeout: 15_000 },
    );
    assert.equal((await counters(page)).lastSource, 'camera');
    await page.screenshot({ path: `${ARTIFACTS}browser-camera.png` });
    // Back to the drawing: the camera is released.
    await page.click('[data-source="drawing"]');
    assert.equal(await page.$eval('#camera', (v) => (v as HTMLVideoElement).srcObject), null);
    assert.deepEqual(problems, []);
    await page.context().close();
  });
});
