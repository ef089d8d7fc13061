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

export class ResultFiles {
  constructor(private readonly store: QueueStore | undefined) {}

  async keep(principal: Principal, appId: string, bytes: Uint8Array, contentType: string, publicBase: string): Promise<string> {
    if (!this.store) return dataUri(bytes, contentType);
    const id = randomUUID();
    const name = `0.${EXTENSIONS[contentType] ?? 'bin'}`;
    await this.store.recordCompleted({ id, appId, keyId: principal.keyId, files: [{ name, contentType, bytes }] });
    return `${publicBase}/files/${id}/${name}`;
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
