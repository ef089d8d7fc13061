// fal's HTTP API as one dispatcher: fal.run and fal.stream (`/{app}` and `/{app}/stream`), the
// queue (`/queue/...`, queue-routes.ts), `POST /tokens/` and result files. Requests arrive either
// at these paths directly or at `/api/fal/proxy` carrying fal's own URL in `x-fal-target-url` (the
// route and header of @fal-ai/server-proxy): the target's host picks fal.run, queue.fal.run or
// rest.fal.ai and its path is served as if it had come directly.
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { RealtimeHub } from '../realtime/hub.js';
import type { Principal } from '../security/authenticator.js';
import type { AppMatch, AppTable } from './apps.js';
import type { ModelHost } from '../realtime/model-host.js';
import { httpStatusFor, readJsonInput, sendError, sendFieldErrors } from './errors.js';
import { falErrorFromNative, mapFalInput, type FalPlan } from './fal-input.js';
import { contentTypeOf, dataUri, falImagesResult, falPreviewResult } from './fal-output.js';
import type { FalRequest, Responder } from './http-exchange.js';
import { resolveImageUrl, type ImageFetchPolicy } from './image-source.js';
import { runOneShot } from './one-shot.js';
import type { QueueRoutes } from './queue-routes.js';
import type { ResultFiles } from './result-files.js';
import { UPLOAD_INITIATE_PATH, UPLOAD_PATH_PREFIX, type FalUploads } from './uploads.js';
import { FIELD_CODES } from './errors.js';
import { WEBHOOK_JWKS_PATH, type WebhookJwk } from '../../shared/webhook-signature.js';

export const PROXY_PATH = '/api/fal/proxy';

const FAL_HOSTS = { 'fal.run': 'run', 'queue.fal.run': 'queue', 'rest.fal.ai': 'rest' } as const;
type FalHost = (typeof FAL_HOSTS)[keyof typeof FAL_HOSTS];

export interface FalHttpDeps {
  hub: RealtimeHub;
  apps: AppTable;
  imageFetch: ImageFetchPolicy;
  queue: QueueRoutes;
  files: ResultFiles;
  uploads: FalUploads;
  /** The JWKS receivers verify webhook signatures with. */
  webhookKeys: { keys: readonly WebhookJwk[] };
  logger: Logger;
}

/** Paths of rest.fal.ai served at the server's root: tokens, storage, files and the webhook keys. */
function isRestPath(path: string): boolean {
  return path === '/tokens/' || path === '/tokens' || path === WEBHOOK_JWKS_PATH || path.startsWith('/storage/') || path.startsWith('/files/');
}

export class FalHttpApi {
  constructor(private readonly deps: FalHttpDeps) {}

  /** Entry for every fal route; `r` answers, whatever happens. */
  async handle(req: FalRequest, r: Responder, onAbort: (cancel: () => void) => void): Promise<void> {
    try {
      if (req.path === PROXY_PATH) {
        const target = this.proxyTarget(req);
        if (!target) {
          sendError(r, 400, 'bad_target', 'x-fal-target-url must be an https URL on fal.run, queue.fal.run or rest.fal.ai');
          return;
        }
        const query = new URLSearchParams(target.url.search);
        for (const [name, value] of req.query) if (!query.has(name)) query.set(name, value);
        await this.serve(target.host, { ...req, path: target.path, query }, r, onAbort);
        return;
      }
      if (req.path.startsWith('/queue/')) await this.serve('queue', { ...req, path: req.path.slice('/queue'.length) }, r, onAbort);
      else if (isRestPath(req.path)) await this.serve('rest', req, r, onAbort);
      else await this.serve('run', req, r, onAbort);
    } catch (err) {
      this.deps.logger.error({ err, path: req.path }, 'fal route failed');
      sendError(r, 500, 'internal', 'internal error');
    }
  }

  /** The fal host and path a proxied request is for. Nothing is fetched from the target URL: it only
   * says which of this server's routes serves the request. */
  private proxyTarget(req: FalRequest): { host: FalHost; url: URL; path: string } | undefined {
    try {
      const url = new URL(req.header('x-fal-target-url'));
      const host = FAL_HOSTS[url.hostname as keyof typeof FAL_HOSTS];
      const path = decodeURIComponent(url.pathname);
      return host && (url.protocol === 'https:' || url.protocol === 'http:') ? { host, url, path } : undefined;
    } catch {
      return undefined;
    }
  }

  private async serve(host: FalHost, req: FalRequest, r: Responder, onAbort: (cancel: () => void) => void): Promise<void> {
    r.api = host === 'run' ? (req.path.endsWith('/stream') ? 'stream' : 'run') : host === 'rest' && req.path.startsWith('/files/') ? 'files' : host;
    if (host === 'rest' && req.path.startsWith('/files/')) return this.deps.files.serve(req, r);
    // Public keys, public: a webhook receiver fetches them without a key, as from fal's.
    if (host === 'rest' && req.path === WEBHOOK_JWKS_PATH && req.method === 'get') return r.json(200, this.deps.webhookKeys, { 'cache-control': 'public, max-age=3600' });
    // An upload URL's token is its credential: fal's client PUTs to it without its key.
    if (host === 'rest' && req.path.startsWith(UPLOAD_PATH_PREFIX) && req.method === 'put') return this.deps.uploads.receive(req, r);
    // fal.stream in the client's 'client' connection mode fetches fal.run itself with a short-lived
    // token from POST /tokens/ instead of a key; only fal.run's routes take one, as at fal.
    const principal = await this.authenticate(req, r, host === 'run' ? (req.query.get('fal_jwt_token') ?? '') : '');
    if (!principal || r.gone) return;
    if (host === 'rest') return this.rest(req, r, principal);
    if (host === 'queue') return this.deps.queue.handle(req, r, principal);
    if (req.method !== 'post' && req.method !== 'get') {
      sendError(r, 405, 'method_not_allowed', 'fal.run takes POST (or GET with the input in the query)');
      return;
    }
    return this.run(req, r, principal, onAbort);
  }

  /** `Authorization: Key <key>` (or Bearer), or a token from POST /tokens/ where the route takes
   * one; an open server (no keys) serves everyone as anonymous. Answers the refusal itself. */
  private async authenticate(req: FalRequest, r: Responder, token: string): Promise<Principal | undefined> {
    const auth = await this.deps.hub.authenticator.authenticate({
      authorization: req.header('authorization'),
      token,
      origin: req.header('origin'),
      host: req.header('host'),
    });
    if (auth.ok) return auth.principal;
    if (auth.status === '403 Forbidden') sendError(r, 403, 'origin_not_allowed', auth.reason);
    else sendError(r, 401, 'unauthorized', token ? auth.reason : 'a valid API key is required: Authorization: Key <key>');
    return undefined;
  }

  private async rest(req: FalRequest, r: Responder, principal: Principal): Promise<void> {
    if ((req.path === '/tokens/' || req.path === '/tokens') && req.method === 'post') {
      // fal's client wants the token as a bare JSON string; its lifetime is the server's --token-ttl.
      const { token } = await this.deps.hub.authenticator.tokens.issue(principal.keyId);
      r.json(201, token);
      return;
    }
    if (req.path === UPLOAD_INITIATE_PATH && req.method === 'post') return this.deps.uploads.initiate(req, r, principal);
    sendError(r, 404, 'not_found', `no such route: ${req.method.toUpperCase()} ${req.path}`);
  }

  /** Parses the JSON input and maps it; answers the error itself when it cannot. */
  async planFor(req: FalRequest, r: Responder, appPath: string): Promise<{ plan: FalPlan; app: AppMatch; host: ModelHost } | undefined> {
    const match = this.deps.apps.match(appPath);
    const host = match && this.deps.hub.hostFor(match.app.modelDir);
    if (!match || !host) {
      sendError(r, 404, 'unknown_app', this.deps.apps.unknownAppMessage(appPath));
      return undefined;
    }
    const body = readJsonInput(req.body, r);
    if (!body) return undefined;
    // fal.run with GET carries its input in the query.
    const input = req.method === 'get' && req.body.byteLength === 0 ? Object.fromEntries(req.query) : body.input;
    const model = host.model();
    if (!model) {
      sendError(r, 503, 'not_ready', 'the model is loading; retry shortly', 1000);
      return undefined;
    }
    const mapped = mapFalInput(input, match.app, model, host.limits());
    if (!mapped.ok) {
      sendFieldErrors(r, [mapped.error]);
      return undefined;
    }
    return { plan: mapped.plan, app: match, host };
  }

  /** The plan's image_url fetched into the generate request; false after answering an error. */
  async resolveImage(plan: FalPlan, host: ModelHost, r: Responder): Promise<FalPlan | undefined> {
    if (plan.imageUrl === undefined) return plan;
    const image = await resolveImageUrl(plan.imageUrl, { ...this.deps.imageFetch, maxBytes: host.limits().maxImageBytes });
    if (image.ok) return { ...plan, generate: { ...plan.generate, image: image.bytes } };
    const status = image.code === 'image_url_forbidden' ? 422 : image.code === 'image_too_large' ? 413 : 422;
    if (status === 422) sendFieldErrors(r, [{ code: image.code, message: image.message, loc: ['body', 'image_url'], type: 'value_error' }]);
    else sendError(r, status, image.code, image.message);
    return undefined;
  }

  /** fal.run (JSON output) and fal.stream (`/stream`: server-sent events, one per step's preview,
   * then the output). Runs as interactive work, beside the realtime sessions. */
  private async run(req: FalRequest, r: Responder, principal: Principal, onAbort: (cancel: () => void) => void): Promise<void> {
    const stream = req.path.endsWith('/stream');
    const planned = await this.planFor(req, r, stream ? req.path.slice(0, -'/stream'.length) : req.path);
    if (!planned) return;
    const plan = await this.resolveImage(planned.plan, planned.host, r);
    if (!plan || r.gone) return;
    const admission = this.deps.hub.admit(principal);
    if (!admission.ok) {
      const status = admission.reason === 'key_limit' ? 429 : 503;
      sendError(r, status, admission.reason === 'draining' ? 'shutting_down' : admission.reason === 'loading' ? 'not_ready' : 'overloaded', `not accepted now: ${admission.reason}`, 1000);
      return;
    }
    const requestId = randomUUID();
    const headers = { 'x-fal-request-id': requestId };
    const events = stream ? r.events(headers) : undefined;
    const shot = runOneShot(this.deps.hub, principal, { ...plan.generate, previews: stream ? true : plan.generate.previews }, {
      host: planned.host,
      images: plan.numImages,
      onPreview: (preview, imageIndex) => {
        const url = dataUri(preview.image, 'image/jpeg');
        events?.event(falPreviewResult(preview, { plan, image: { url }, imageIndex }));
      },
    });
    onAbort(() => shot.cancel());
    const outcome = await shot.done;
    if (!outcome.ok) {
      const error = 'error' in outcome ? outcome.error : undefined;
      const code = error?.code ?? 'cancelled';
      const message = error?.message ?? 'the request was cancelled';
      if (events) {
        events.event({ error: { code, message }, request_id: requestId });
        events.end();
      } else if (error && FIELD_CODES.has(error.code)) {
        sendFieldErrors(r, [falErrorFromNative(error.code, error.message, plan)], headers);
      } else {
        sendError(r, error ? httpStatusFor(error.code) : 499, code, message, error?.retryAfterMs, headers);
      }
      return;
    }
    const made = outcome.frames.map((frame) => ({ bytes: frame.image, contentType: contentTypeOf(frame.format) }));
    const urls = plan.syncMode
      ? made.map(({ bytes, contentType }) => dataUri(bytes, contentType))
      : await this.deps.files.keep(principal, planned.app.app.id, made, req.publicBase);
    const images = urls.map((url) => ({ url }));
    const prompt = typeof plan.generate.prompt === 'string' ? plan.generate.prompt : '';
    const result = falImagesResult(outcome.frames, { plan, prompt, images });
    if (events) {
      events.event(result);
      events.end();
    } else {
      r.json(200, result, headers);
    }
  }
}
