// fal's image_url input: data: URIs decode locally within the byte limit; URLs are fetched only
// from listed hosts, with redirects, sizes and time all bounded, against a real loopback server.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isAllowedHost, resolveImageUrl, type ImageUrlPolicy, type ResolvedImage } from '../server/fal/image-source.js';

const PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0xff, 0x00, 0x7f]);
const DATA_ONLY: ImageUrlPolicy = { allowedHosts: [], maxBytes: 1024, timeoutMs: 1_000 };
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

function expectOk(result: ResolvedImage): { bytes: Uint8Array; contentType?: string } {
  assert.ok(result.ok, result.ok ? '' : `${result.code}: ${result.message}`);
  return result;
}

function expectError(result: ResolvedImage, code: string, message?: RegExp): void {
  assert.ok(!result.ok, 'expected a refusal');
  assert.equal(result.code, code, result.message);
  if (message) assert.match(result.message, message);
}

describe('data: URIs', () => {
  test('base64, with or without a media type, whitespace and missing padding tolerated', async () => {
    const png = expectOk(await resolveImageUrl(`data:image/png;base64,${b64(PNG)}`, DATA_ONLY));
    assert.deepEqual(png.bytes, PNG);
    assert.equal(png.contentType, 'image/png');

    const wrapped = b64(PNG).replace(/(.{8})/g, '$1\r\n ');
    assert.deepEqual(expectOk(await resolveImageUrl(`DATA:Image/WebP;base64,${wrapped}`, DATA_ONLY)).bytes, PNG);
    const bare = expectOk(await resolveImageUrl(`data:;base64,${b64(PNG).replace(/=+$/, '')}`, DATA_ONLY));
    assert.deepEqual(bare.bytes, PNG);
    assert.equal(bare.contentType, undefined);
    for (let n = 1; n <= 6; n++) {
      const bytes = PNG.subarray(0, n);
      assert.deepEqual(expectOk(await resolveImageUrl(`data:image/png;base64,${b64(bytes)}`, DATA_ONLY)).bytes, bytes, `${n} bytes`);
    }
    // Percent-escaped base64 characters, as a URL-encoding client may send them.
    const escaped = b64(Uint8Array.from([0xfb, 0xff, 0xbf])).replace(/\+/g, '%2B').replace(/\//g, '%2F');
    assert.deepEqual(expectOk(await resolveImageUrl(`data:image/png;base64,${escaped}`, DATA_ONLY)).bytes, Uint8Array.from([0xfb, 0xff, 0xbf]));
  });

  test('percent-encoded', async () => {
    const svg = expectOk(await resolveImageUrl('data:image/svg+xml;charset=utf-8,%3Csvg%20xmlns%3D%22x%22%2F%3E', DATA_ONLY));
    assert.equal(Buffer.from(svg.bytes).toString('utf8'), '<svg xmlns="x"/>');
    assert.equal(svg.contentType, 'image/svg+xml');
    const raw = expectOk(await resolveImageUrl('data:,ab%00%FFc', DATA_ONLY));
    assert.deepEqual(raw.bytes, Uint8Array.from([0x61, 0x62, 0x00, 0xff, 0x63]));
  });

  test('too large, measured before decoding', async () => {
    const policy = { ...DATA_ONLY, maxBytes: 18 };
    expectOk(await resolveImageUrl(`data:image/png;base64,${b64(PNG.subarray(0, 18))}`, policy));
    expectError(await resolveImageUrl(`data:image/png;base64,${b64(PNG)}`, policy), 'image_too_large', /more than 18 bytes/);
    expectError(await resolveImageUrl(`data:image/png,${'%FF'.repeat(19)}`, policy), 'image_too_large');
    // 48 MB of base64 against a 1 KiB limit: refused after counting past the limit, without reading
    // the rest or allocating anything of the decoded size.
    const huge = `data:image/png;base64,${'A'.repeat(48 << 20)}`;
    const before = process.memoryUsage().arrayBuffers;
    const started = performance.now();
    expectError(await resolveImageUrl(huge, DATA_ONLY), 'image_too_large');
    assert.ok(process.memoryUsage().arrayBuffers - before < 8 << 20, 'no buffer of the decoded size');
    assert.ok(performance.now() - started < 500);
  });

  test('malformed', async () => {
    const cases: [string, RegExp][] = [
      ['data:image/png;base64', /no comma/],
      ['data:image/png;base64,', /empty/],
      ['data:image/png;base64,iVBO@w0K', /invalid character "@"/],
      ['data:image/png;base64,iVBORw0KG', /length or padding/],
      ['data:image/png;base64,iVBORw=', /length or padding/],
      ['data:image/png;base64,iV==BO', /length or padding/],
      ['data:image/png;base64,iVBO%ZZ', /percent-escape/],
      ['data:image/png,abc%4', /percent-escape/],
      ['data:image/png,caf\u00e9', /non-ASCII/],
      ['data:text/html;base64,PHNjcmlwdD4=', /not image/],
      ['data:application/octet-stream,abc', /not image/],
    ];
    for (const [value, message] of cases) expectError(await resolveImageUrl(value, DATA_ONLY), 'image_url_invalid', message);
    expectError(await resolveImageUrl('not a url', DATA_ONLY), 'image_url_invalid');
  });
});

describe('schemes and hosts', () => {
  test('anything but data: is refused by default, naming --image-hosts', async () => {
    for (const value of ['file:///etc/passwd', 'ftp://example.com/a.png', 'javascript:alert(1)', 'http://169.254.169.254/latest/meta-data/', 'https://example.com/a.png']) {
      expectError(await resolveImageUrl(value, DATA_ONLY), 'image_url_forbidden', /--image-hosts/);
    }
  });

  test('only listed hosts are fetched, and non-http schemes never', async () => {
    const policy = { ...DATA_ONLY, allowedHosts: ['cdn.example.com', '*.images.example.org'] };
    for (const value of ['https://evil.example.com/a.png', 'http://cdn.example.com.evil.net/a.png', 'https://cdn.example.com:8443/a.png', 'https://images.example.org/a.png', 'file://cdn.example.com/etc/passwd']) {
      expectError(await resolveImageUrl(value, policy), 'image_url_forbidden', /--image-hosts/);
    }
    expectError(await resolveImageUrl('https://user:pw@cdn.example.com/a.png', policy), 'image_url_invalid', /credentials/);
  });

  test("a file the server keeps is read, not fetched, whatever the host; within the byte limit; others fall through to the host rules", async () => {
    const kept = new Map([['/files/kept/a.png', PNG], ['/files/big/a.png', new Uint8Array(2048)]]);
    const asked: string[] = [];
    const policy: ImageUrlPolicy = {
      ...DATA_ONLY,
      ownFile: async (url) => {
        asked.push(url.href);
        const bytes = kept.get(url.pathname);
        return bytes && { bytes, contentType: 'image/png' };
      },
    };
    const own = expectOk(await resolveImageUrl('http://169.254.169.254/files/kept/a.png', policy));
    assert.deepEqual([own.bytes, own.contentType], [PNG, 'image/png']);
    expectError(await resolveImageUrl('https://gpu.example.com/files/big/a.png', policy), 'image_too_large', /1024/);
    expectError(await resolveImageUrl('https://gpu.example.com/files/gone/a.png', policy), 'image_url_forbidden', /--image-hosts/);
    expectOk(await resolveImageUrl(`data:image/png;base64,${b64(PNG)}`, policy));
    assert.equal(asked.length, 3, 'data: URIs never ask the store');
  });

  test('host rules: exact, host:port, wildcard subdomains', () => {
    const allowed = (url: string, hosts: string[]) => isAllowedHost(new URL(url), hosts);
    assert.ok(allowed('https://cdn.example.com/a', ['cdn.example.com']));
    assert.ok(allowed('https://CDN.Example.com:443/a', ['cdn.example.com']));
    assert.ok(allowed('http://cdn.example.com/a', ['CDN.example.com']));
    assert.ok(!allowed('https://cdn.example.com:8443/a', ['cdn.example.com']), 'a bare host means the default port');
    assert.ok(allowed('https://cdn.example.com:8443/a', ['cdn.example.com:8443']));
    assert.ok(!allowed('https://cdn.example.com/a', ['cdn.example.com:8443']));
    assert.ok(allowed('http://cdn.example.com/a', ['cdn.example.com:80']));
    assert.ok(allowed('https://a.b.example.com/a', ['*.example.com']));
    assert.ok(!allowed('https://example.com/a', ['*.example.com']), 'the wildcard is for subdomains');
    assert.ok(!allowed('https://badexample.com/a', ['*.example.com']));
    assert.ok(allowed('http://127.0.0.1:8080/a', ['127.0.0.1:8080']));
    assert.ok(allowed('http://[::1]:8080/a', ['[::1]:8080']));
    assert.ok(!allowed('http://127.0.0.1/a', ['localhost']));
    assert.ok(!allowed('http://cdn.example.com/a', ['http://cdn.example.com/', 'cdn.example.com/path', '']));
  });
});

describe('fetching from an allowed host', () => {
  let base = '';
  let policy: ImageUrlPolicy;
  let streamedClosedEarly: Promise<boolean>;
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    switch (req.url) {
      case '/ok.png':
        res.writeHead(200, { 'content-type': 'image/png; charset=binary', 'content-length': PNG.length }).end(PNG);
        return;
      case '/big-declared':
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': 4096 }).end(Buffer.alloc(4096));
        return;
      case '/big-streamed': {
        // No Content-Length: an endless body that only the reader's limit stops.
        res.writeHead(200, { 'content-type': 'image/png' });
        let written = 0;
        streamedClosedEarly = new Promise((resolve) => res.on('close', () => resolve(written < 64 << 20)));
        const pump = () => {
          while (!res.destroyed && written < 64 << 20) {
            written += 16 << 10;
            if (!res.write(Buffer.alloc(16 << 10))) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      case '/redirect-ok':
        res.writeHead(302, { location: '/ok.png' }).end();
        return;
      case '/redirect-forbidden':
        res.writeHead(301, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
        return;
      case '/redirect-file':
        res.writeHead(307, { location: 'file:///etc/passwd' }).end();
        return;
      case '/loop':
        res.writeHead(302, { location: '/loop' }).end();
        return;
      case '/slow-body':
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': 100 });
        res.write(Buffer.alloc(10));
        held.push(res);
        return;
      case '/no-answer':
        held.push(res);
        return;
      default:
        res.writeHead(404).end('not found');
    }
  });

  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    base = `http://127.0.0.1:${port}`;
    policy = { allowedHosts: ['cdn.example.com', `127.0.0.1:${port}`], maxBytes: 1024, timeoutMs: 1_000 };
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  test('ok, with its content type', async () => {
    const image = expectOk(await resolveImageUrl(`${base}/ok.png`, policy));
    assert.deepEqual(image.bytes, PNG);
    assert.equal(image.contentType, 'image/png');
  });

  test('follows a redirect within the allowed hosts', async () => {
    assert.deepEqual(expectOk(await resolveImageUrl(`${base}/redirect-ok`, policy)).bytes, PNG);
  });

  test('too large by Content-Length', async () => {
    expectError(await resolveImageUrl(`${base}/big-declared`, policy), 'image_too_large', /4096 bytes/);
  });

  test('too large while streaming, and the connection is dropped', async () => {
    expectError(await resolveImageUrl(`${base}/big-streamed`, policy), 'image_too_large');
    assert.equal(await streamedClosedEarly, true, 'the server saw the reader go away long before 64 MB');
  });

  test('a redirect to a host not listed is refused', async () => {
    expectError(await resolveImageUrl(`${base}/redirect-forbidden`, policy), 'image_url_forbidden', /169\.254\.169\.254 is not listed in --image-hosts/);
    expectError(await resolveImageUrl(`${base}/redirect-file`, policy), 'image_url_forbidden', /file:/);
  });

  test('at most 3 redirects', async () => {
    expectError(await resolveImageUrl(`${base}/loop`, policy), 'image_fetch_failed', /more than 3/);
  });

  test('404', async () => {
    expectError(await resolveImageUrl(`${base}/missing.png`, policy), 'image_fetch_failed', /HTTP 404/);
  });

  test('the timeout covers the body as well as the headers', async () => {
    const quick = { ...policy, timeoutMs: 150 };
    for (const path of ['/no-answer', '/slow-body']) {
      const started = performance.now();
      expectError(await resolveImageUrl(`${base}${path}`, quick), 'image_fetch_failed', /timed out after 150 ms/);
      assert.ok(performance.now() - started < 1_000, path);
    }
  });

  test('a refused connection', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const refused = { ...policy, allowedHosts: [`127.0.0.1:${port}`] };
    expectError(await resolveImageUrl(`http://127.0.0.1:${port}/a.png`, refused), 'image_fetch_failed', /ECONNREFUSED/);
  });
});
