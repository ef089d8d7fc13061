// Result images served by this server, as fal serves them from its CDN: `GET /files/{id}/{name}`,
// kept in the job store for --result-ttl. Queued jobs store theirs when they complete; fal.run and
// fal.stream outputs are stored here. Ids are random UUIDs, so a URL is the capability to read it,
// as fal's CDN URLs are. Without a store (no SQLite driver), images come back as data URIs.
import { randomUUID } from 'node:crypto';
import type { QueueStore } from '../queue/types.js';
import type { Principal } from '../security/authenticator.js';
import { sendError } from './errors.js';
import { dataUri } from './fal-output.js';
import type { FalRequest, Responder } from './http-exchange.js';

const EXTENSIONS: Record<string, string> = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp' };
/** `/files/{id}/{name}` with the random UUID ids this server gives them. */
const FILE_PATH = /^\/files\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/([^/]+)$/;

export class ResultFiles {
  constructor(private readonly store: QueueStore | undefined) {}

  /** The URLs of a result's images (`0.jpg`, `1.jpg`, ... under one id); data: URIs without a store. */
  async keep(principal: Principal, appId: string, images: readonly { bytes: Uint8Array; contentType: string }[], publicBase: string): Promise<string[]> {
    if (!this.store) return images.map(({ bytes, contentType }) => dataUri(bytes, contentType));
    const id = randomUUID();
    const files = images.map(({ bytes, contentType }, i) => ({ name: `${i}.${EXTENSIONS[contentType] ?? 'bin'}`, contentType, bytes }));
    await this.store.recordCompleted({ id, appId, keyId: principal.keyId, files });
    return files.map(({ name }) => `${publicBase}/files/${id}/${name}`);
  }

  /**
   * The file a URL names when it is one this server keeps (an upload, a result), on whatever host
   * name clients reach it by: the random id is the capability, as in `serve`. Undefined otherwise,
   * and the URL is then an ordinary one that --image-hosts governs.
   */
  async lookup(url: URL): Promise<{ bytes: Uint8Array; contentType: string } | undefined> {
    const match = FILE_PATH.exec(url.pathname);
    if (!match || !this.store || (url.protocol !== 'http:' && url.protocol !== 'https:')) return undefined;
    let name: string;
    try {
      name = decodeURIComponent(match[2]);
    } catch {
      return undefined; // a malformed escape: no name this server gave out
    }
    return this.store.file(match[1], name);
  }

  async serve(req: FalRequest, r: Responder): Promise<void> {
    const [, , id, name, extra] = req.path.split('/');
    const file = this.store && id && name && extra === undefined ? await this.store.file(id, name) : undefined;
    if (!file) {
      sendError(r, 404, 'not_found', 'no such file (results are kept for a limited time)');
      return;
    }
    r.bytes(200, file.contentType, file.bytes, { 'cache-control': 'private, max-age=3600' });
  }
}
