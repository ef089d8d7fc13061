// The static file server for the browser client: content types, caching, gzip, and path traversal
// attempts sent as raw request paths (no client-side normalisation), against an in-process uWS app
// whose root sits next to a secret file and contains a symlink pointing out of it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import uWS, { type us_listen_socket } from '../server/transport/uws.js';
import { DEFAULT_WEB_ROOT, loadStaticFiles, registerStatic, resolveStaticPath } from '../server/http/static.js';

const SECRET = 'top-secret-do-not-serve';

/** base/secret.txt (outside the root), base/root/{index.html, app.js, sub/page.txt, link -> ../secret.txt} */
function makeRoot(): string {
  const base = mkdtempSync(path.join(tmpdir(), 'static-test-'));
  writeFileSync(path.join(base, 'secret.txt'), SECRET);
  const root = path.join(base, 'root');
  mkdirSync(path.join(root, 'sub'), { recursive: true });
  writeFileSync(path.join(root, 'index.html'), '<!doctype html><title>t</title>');
  writeFileSync(path.join(root, 'app.js'), `console.log(${JSON.stringify('x'.repeat(2000))});`);
  writeFileSync(path.join(root, 'sub', 'page.txt'), 'nested');
  writeFileSync(path.join(root, 'sub', 'index.html'), 'sub index');
  symlinkSync(path.join(base, 'secret.txt'), path.join(root, 'link.txt'));
  return root;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A GET with the path sent exactly as given (http.request does not normalise it, unlike fetch). */
function get(port: number, rawPath: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    // agent: false, so no keep-alive socket outlives the test and holds the process open.
    const req = http.request({ host: '127.0.0.1', port, path: rawPath, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function listen(root: string) {
  const app = uWS.App();
  registerStatic(app, root);
  app.any('/*', (res) => {
    res.writeStatus('404 Not Found').end('fallback 404');
  });
  const socket = await new Promise<us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('listen failed')))),
  );
  return { port: uWS.us_socket_local_port(socket), close: () => uWS.us_listen_socket_close(socket) };
}

describe('resolveStaticPath', () => {
  test('maps request paths to file keys', () => {
    assert.equal(resolveStaticPath('/'), 'index.html');
    assert.equal(resolveStaticPath('/main.js'), 'main.js');
    assert.equal(resolveStaticPath('/sub/'), 'sub/index.html');
    assert.equal(resolveStaticPath('//main.js'), 'main.js');
    assert.equal(resolveStaticPath('/a//b.txt'), 'a/b.txt');
    assert.equal(resolveStaticPath('/with%20space.txt'), 'with space.txt');
  });

  test('refuses traversal, encoded separators, NUL and malformed encoding', () => {
    for (const bad of [
      '/../package.json', '/a/../../x', '/./index.html', '/%2e%2e/package.json', '/%2E%2E/x', '/.%2e/x',
      '/..%2fpackage.json', '/%2f%2fetc/passwd', '/..%5cpackage.json', '/a\\..\\b', '/index.html%00.js',
      '/%00', '/bad%zz', '/%c0%ae%c0%ae/x', 'relative.js', '',
    ]) {
      assert.equal(resolveStaticPath(bad), undefined, bad);
    }
  });
});

describe('serving files over HTTP', () => {
  let server: Awaited<ReturnType<typeof listen>>;
  let root: string;
  before(async () => {
    root = makeRoot();
    server = await listen(root);
  });
  after(() => server?.close());

  test('index, content types, ETag revalidation and gzip', async () => {
    const index = await get(server.port, '/');
    assert.equal(index.status, 200);
    assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(index.headers['cache-control'], 'no-cache');
    assert.equal(index.headers['x-content-type-options'], 'nosniff');
    assert.match(String(index.headers['content-security-policy']), /default-src 'self'/);
    assert.equal(index.body.toString(), '<!doctype html><title>t</title>');

    const js = await get(server.port, '/app.js');
    assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(js.headers['content-encoding'], undefined);
    const gz = await get(server.port, '/app.js', { 'accept-encoding': 'gzip, deflate' });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal(gz.headers.vary, 'accept-encoding');
    assert.ok(gz.body.length < js.body.length / 10);
    assert.deepEqual(gunzipSync(gz.body), js.body);

    const etag = String(js.headers.etag);
    const revalidated = await get(server.port, '/app.js', { 'if-none-match': etag });
    assert.equal(revalidated.status, 304);
    assert.equal(revalidated.body.length, 0);

    assert.equal((await get(server.port, '/sub/page.txt')).body.toString(), 'nested');
    assert.equal((await get(server.port, '/sub/')).body.toString(), 'sub index');
    assert.equal((await get(server.port, '//app.js')).status, 200, 'double slashes stay inside the root');
  });

  test('a file that is not there falls through to the next route', async () => {
    const miss = await get(server.port, '/nope.js');
    assert.equal(miss.status, 404);
    assert.equal(miss.body.toString(), 'fallback 404');
  });

  test('traversal attempts never leave the root', async () => {
    const attempts = [
      '/../secret.txt', '/../../secret.txt', '/sub/../../secret.txt', '/%2e%2e/secret.txt', '/%2E%2E/secret.txt',
      '/..%2fsecret.txt', '/sub%2f..%2f..%2fsecret.txt', '/..%5csecret.txt', '/..\\secret.txt', '/%252e%252e/secret.txt',
      '//../secret.txt', '/.%2e/secret.txt', '/secret.txt%00', '/%00../secret.txt', '/link.txt', '/./link.txt',
      `/${root}/../secret.txt`, '/etc/passwd', '//etc/passwd',
    ];
    for (const attempt of attempts) {
      const reply = await get(server.port, attempt);
      assert.ok([400, 404].includes(reply.status), `${attempt} -> ${reply.status}`);
      assert.ok(!reply.body.toString().includes(SECRET), `${attempt} leaked the secret`);
      assert.ok(!reply.body.toString().includes('root:'), `${attempt} leaked /etc/passwd`);
    }
  });

  test('only regular files under the root are loaded (symlinks are skipped)', () => {
    assert.deepEqual([...loadStaticFiles(root).keys()].sort(), ['app.js', 'index.html', 'sub/index.html', 'sub/page.txt']);
    assert.equal(loadStaticFiles(path.join(root, 'missing')).size, 0);
  });
});

test('the built browser client (dist/web) is what the server serves', async () => {
  const server = await listen(DEFAULT_WEB_ROOT);
  try {
    const index = await get(server.port, '/');
    assert.equal(index.status, 200);
    assert.match(index.body.toString(), /<script type="module" src="main.js"><\/script>/);
    const js = await get(server.port, '/main.js');
    assert.equal(js.status, 200);
    assert.deepEqual(js.body, readFileSync(path.join(DEFAULT_WEB_ROOT, 'main.js')));
    assert.equal((await get(server.port, '/style.css')).headers['content-type'], 'text/css; charset=utf-8');
  } finally {
    server.close();
  }
});
