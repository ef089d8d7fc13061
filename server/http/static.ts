// Serves the browser client (dist/web/, built by scripts/build-web.ts) at `/`.
// Every file is read into memory once at startup (the client is a few small files), so a request
// never touches the disk and can only ever be answered with one of those files: a path is looked up
// in a map, never joined onto a directory. Paths are still checked strictly, and refused with 400,
// so that probing (`..`, encoded slashes, NUL) is visible as such rather than as a plain miss.
import { readdirSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { HttpResponse, TemplatedApp } from '../transport/uws.js';

/** dist/server/http/static.js -> dist/web/ */
export const DEFAULT_WEB_ROOT = fileURLToPath(new URL('../../web/', import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.css', '.map', '.json', '.svg', '.txt']);

// The page talks only to its own origin, except a WebSocket server named with ?server=.
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "img-src 'self' blob: data:",
  "media-src 'self' blob: mediastream:",
  "connect-src 'self' ws: wss:",
  "style-src 'self'",
  "script-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

export interface StaticFile {
  body: Buffer;
  /** Present when compressing saved bytes. */
  gzip?: Buffer;
  contentType: string;
  etag: string;
  /** HTML must be revalidated so a new deploy's script names are picked up at once. */
  cacheControl: string;
  isHtml: boolean;
}

/** Reads every regular file under `root` (symlinks and other entries are skipped). Missing root: empty map. */
export function loadStaticFiles(root: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  const walk = (dir: string, prefix: string) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const relative = prefix + entry.name;
      if (entry.isDirectory()) walk(path.join(dir, entry.name), `${relative}/`);
      else if (entry.isFile()) files.set(relative, toStaticFile(relative, readFileSync(path.join(dir, entry.name))));
    }
  };
  walk(root, '');
  return files;
}

function toStaticFile(name: string, body: Buffer): StaticFile {
  const ext = path.extname(name).toLowerCase();
  const gzip = COMPRESSIBLE.has(ext) ? gzipSync(body, { level: 9 }) : undefined;
  return {
    body,
    gzip: gzip && gzip.length < body.length ? gzip : undefined,
    contentType: CONTENT_TYPES[ext] ?? 'application/octet-stream',
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
    // Names are not content-hashed, so every file is revalidated; the ETag makes that a cheap 304.
    cacheControl: 'no-cache',
    isHtml: ext === '.html',
  };
}

/**
 * The file key a request path names, or `undefined` when the path is malformed or tries to leave
 * the root: `..` or `.` segments (raw or percent-encoded), encoded `/` or `\`, backslashes, NUL,
 * control characters or bad percent-encoding. Empty segments (`//`) are ignored; a path ending in
 * `/` names that folder's index.html.
 */
export function resolveStaticPath(rawPath: string): string | undefined {
  if (!rawPath.startsWith('/')) return undefined;
  // Encoded separators would let one segment become several after decoding.
  if (/%(2f|5c|00)/i.test(rawPath)) return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    return undefined;
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(decoded)) return undefined;
  const segments = decoded.split('/').filter((segment) => segment !== '');
  if (segments.some((segment) => segment === '.' || segment === '..')) return undefined;
  if (decoded.endsWith('/')) segments.push('index.html');
  return segments.join('/');
}

/**
 * Adds GET handlers for the files under `root`. Requests for paths that are not files fall
 * through to the routes registered after this (the JSON 404); malformed paths get 400.
 */
export function registerStatic(app: TemplatedApp, root: string = DEFAULT_WEB_ROOT): Map<string, StaticFile> {
  const files = loadStaticFiles(root);
  app.get('/*', (res, req) => {
    const key = resolveStaticPath(req.getUrl());
    if (key === undefined) {
      sendText(res, '400 Bad Request', 'bad path');
      return;
    }
    const file = files.get(key);
    if (!file) {
      req.setYield(true); // not ours: let the next matching route (404) answer
      return;
    }
    // Headers must be read before the handler returns (req is stack-allocated by uWS).
    const ifNoneMatch = req.getHeader('if-none-match');
    const acceptsGzip = /\bgzip\b/.test(req.getHeader('accept-encoding'));
    res.cork(() => {
      const notModified = ifNoneMatch === file.etag;
      res.writeStatus(notModified ? '304 Not Modified' : '200 OK');
      res.writeHeader('content-type', file.contentType);
      res.writeHeader('cache-control', file.cacheControl);
      res.writeHeader('etag', file.etag);
      res.writeHeader('x-content-type-options', 'nosniff');
      if (file.isHtml) res.writeHeader('content-security-policy', CONTENT_SECURITY_POLICY);
      if (file.gzip) res.writeHeader('vary', 'accept-encoding');
      if (notModified) {
        res.endWithoutBody();
        return;
      }
      if (file.gzip && acceptsGzip) {
        res.writeHeader('content-encoding', 'gzip');
        res.end(file.gzip);
      } else {
        res.end(file.body);
      }
    });
  });
  return files;
}

function sendText(res: HttpResponse, status: string, text: string): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'text/plain; charset=utf-8').writeHeader('cache-control', 'no-store').end(text);
  });
}
