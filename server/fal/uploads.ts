// fal's storage API, so an app that hands fal's client a Blob or a File keeps working: the client
// asks `POST /storage/upload/initiate` (with its key) for an upload URL and the file's URL, PUTs
// the bytes to the first without credentials, then sends the second as `image_url`.
// The upload URL carries a token signed with the server's token secret (TOKEN_SECRET, so whichever
// node of a pool the PUT reaches takes it) naming the one file it may create, for a few minutes.
// Files live in the queue store beside result images and expire with them (--result-ttl); an
// input naming one is read from the store (result-files.ts), never fetched over the network.
import { randomUUID } from 'node:crypto';
import { ErrorCode } from '../../shared/protocol.js';
import type { QueueStore } from '../queue/types.js';
import type { Principal } from '../security/authenticator.js';
import type { TokenIssuer } from '../security/tokens.js';
import { TokenBucket } from '../realtime/rate-limiter.js';
import { sendError, sendFieldErrors } from './errors.js';
import type { FalRequest, Responder } from './http-exchange.js';

export const UPLOAD_INITIATE_PATH = '/storage/upload/initiate';
/** `PUT {UPLOAD_PATH_PREFIX}{id}/{name}?token=...` */
export const UPLOAD_PATH_PREFIX = '/storage/upload/put/';
/** Files the pipeline decodes: the extension a file of each type is named with. */
const UPLOAD_TYPES: ReadonlyMap<string, string> = new Map([['image/jpeg', 'jpg'], ['image/png', 'png'], ['image/webp', 'webp']]);
const UPLOAD_AUDIENCE = 'fal:storage-upload';
/** Long enough for a slow link to send the largest accepted image; a client uploads at once. */
const UPLOAD_URL_TTL_SECONDS = 600;
/** Who owns uploaded files in the store: uploads are no queue request of any app. */
const UPLOAD_APP_ID = 'storage';
/**
 * Uploads cost no GPU time, so nothing else bounds how fast a key fills the store: per key and
 * node, a burst of UPLOAD_BURST, then UPLOADS_PER_SECOND (an app uploads an input now and then;
 * realtime frames travel in the socket, not through here).
 */
const UPLOADS_PER_SECOND = 1;
const UPLOAD_BURST = 10;
const RETRY_UPLOAD_AFTER_MS = 1000;

export class FalUploads {
  private readonly rates = new Map<string, TokenBucket>();

  constructor(
    private readonly store: QueueStore | undefined,
    private readonly tokens: TokenIssuer,
    /** Largest file accepted: the image limit of the models served. */
    private readonly maxBytes: number,
  ) {}

  /** `POST /storage/upload/initiate` `{content_type, file_name}` -> `{upload_url, file_url}`. */
  async initiate(req: FalRequest, r: Responder, principal: Principal): Promise<void> {
    if (!this.store) {
      sendError(r, 503, 'storage_unavailable', 'uploads are kept in the queue store, which is not available; send images as data URIs');
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(req.body.toString('utf8'));
    } catch {
      sendError(r, 400, 'invalid_json', 'the request body is not JSON');
      return;
    }
    const given = typeof body === 'object' && body !== null ? (body as { content_type?: unknown }).content_type : undefined;
    const contentType = typeof given === 'string' ? given.toLowerCase() : '';
    const extension = UPLOAD_TYPES.get(contentType);
    if (!extension) {
      const message = `content_type must be one of ${[...UPLOAD_TYPES.keys()].join(', ')}: only images this server decodes are stored`;
      sendFieldErrors(r, [{ code: ErrorCode.InvalidField, message, loc: ['body', 'content_type'], type: 'value_error' }]);
      return;
    }
    let rate = this.rates.get(principal.keyId);
    if (!rate) this.rates.set(principal.keyId, (rate = new TokenBucket(UPLOADS_PER_SECOND, UPLOAD_BURST)));
    if (!rate.take()) {
      sendError(r, 429, 'rate_limited', `more than ${UPLOADS_PER_SECOND} upload per second (burst ${UPLOAD_BURST}) for this key`, RETRY_UPLOAD_AFTER_MS);
      return;
    }
    const id = randomUUID();
    const name = `upload.${extension}`;
    const token = await this.tokens.issueFor(UPLOAD_AUDIENCE, principal.keyId, { id, name, contentType }, UPLOAD_URL_TTL_SECONDS);
    r.json(200, {
      upload_url: `${req.publicBase}${UPLOAD_PATH_PREFIX}${id}/${name}?token=${token}`,
      file_url: `${req.publicBase}/files/${id}/${name}`,
    });
  }

  /** `PUT` to an upload URL: the token is the credential, and it names the one file it creates. */
  async receive(req: FalRequest, r: Responder): Promise<void> {
    const [id, name, extra] = req.path.slice(UPLOAD_PATH_PREFIX.length).split('/');
    const check = await this.tokens.verifyFor(UPLOAD_AUDIENCE, req.query.get('token') ?? '');
    if (!check.ok || check.claims.id !== id || check.claims.name !== name || extra !== undefined) {
      const expired = check.ok ? false : check.reason === 'expired';
      sendError(r, 403, 'upload_refused', expired ? 'this upload URL has expired: initiate another upload' : 'not a valid upload URL');
      return;
    }
    if (!this.store) {
      sendError(r, 503, 'storage_unavailable', 'the queue store is not available');
      return;
    }
    if (req.body.byteLength === 0) {
      sendError(r, 400, 'empty_upload', 'the upload has no bytes');
      return;
    }
    if (req.body.byteLength > this.maxBytes) {
      sendError(r, 413, 'image_too_large', `the file is larger than ${this.maxBytes} bytes`);
      return;
    }
    if (await this.store.file(id, name)) {
      sendError(r, 409, 'already_uploaded', 'this upload URL has been used: initiate another upload');
      return;
    }
    await this.store.recordCompleted({ id, appId: UPLOAD_APP_ID, keyId: check.subject, files: [{ name, contentType: String(check.claims.contentType), bytes: new Uint8Array(req.body) }] });
    r.json(200, {});
  }
}
