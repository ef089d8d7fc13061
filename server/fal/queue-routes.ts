// fal's queue API over the durable job store: submit (`POST /queue/{app}[/sub]`, optional
// `?fal_webhook=`), status (`GET .../requests/{id}/status`), its event stream (`.../status/stream`,
// ended after COMPLETED because fal's client takes the last event), result (`GET .../requests/{id}`)
// and cancel (`PUT .../requests/{id}/cancel`). Input is validated at submit by the same mapping and
// validation every request goes through, so a bad job is refused with 422 now, not failed later.
// A key sees only its own requests: another key's id reads as unknown.
import { ErrorCode } from '../../shared/protocol.js';
import { validateMessage } from '../realtime/validate.js';
import type { RealtimeHub } from '../realtime/hub.js';
import type { Principal } from '../security/authenticator.js';
import type { JobRecord, QueueStore } from '../queue/types.js';
import type { AppTable } from './apps.js';
import { readJsonInput, sendError, sendFieldErrors, START_TIMEOUT } from './errors.js';
import { falErrorFromNative, mapFalInput } from './fal-input.js';
import type { FalRequest, Responder } from './http-exchange.js';
import type { QueueRunner } from './queue-runner.js';
import { queuedJobInput } from './queued-job.js';
import { isAllowedHost, type ImageFetchPolicy } from './image-source.js';

/** How often a status stream looks at its job at the latest: the store, not this process's memory,
 * is the truth, and a job run by another node changes without this one hearing of it. A job run
 * here wakes its streams at once. */
const STATUS_STREAM_POLL_MS = 200;

export class QueueRoutes {
  constructor(
    private readonly hub: RealtimeHub,
    private readonly apps: AppTable,
    private readonly store: QueueStore | undefined,
    private readonly runner: QueueRunner | undefined,
    private readonly storeError: string | undefined,
    private readonly imageFetch: ImageFetchPolicy,
  ) {}

  /** Whether the job may read `image_url` when it runs: a file this server keeps, or an allowed host. */
  private async imageUrlAllowed(value: string): Promise<boolean> {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return false;
    }
    return isAllowedHost(url, this.imageFetch.allowedHosts) || (await this.imageFetch.ownFile?.(url)) !== undefined;
  }

  async handle(req: FalRequest, r: Responder, principal: Principal): Promise<void> {
    const store = this.store;
    if (!store) {
      sendError(r, 503, 'queue_unavailable', `the queue is not available: ${this.storeError ?? 'no store'}`);
      return;
    }
    const match = this.apps.match(req.path);
    if (!match) {
      sendError(r, 404, 'unknown_app', this.apps.unknownAppMessage(req.path));
      return;
    }
    const { rest } = match;
    if (rest[0] !== 'requests') {
      if (req.method === 'post') await this.submit(store, req, r, principal, match.app.id, match.subpath);
      else sendError(r, 405, 'method_not_allowed', 'submit with POST');
      return;
    }
    const [, id, action, sub] = rest;
    const job = id ? await store.get(id, principal.keyId) : undefined;
    if (!job) {
      sendError(r, 404, 'unknown_request', `no request ${id ?? ''} for this key`);
      return;
    }
    const base = `${req.publicBase}/queue/${match.app.id}/requests/${job.id}`;
    if (req.method === 'get' && action === undefined) return this.result(job, r);
    if (req.method === 'get' && action === 'status' && sub === undefined) {
      r.json(200, statusObject(job, base, req.query.get('logs') === '1'));
      return;
    }
    if (req.method === 'get' && action === 'status' && sub === 'stream') return this.statusStream(store, job, base, req, r, principal);
    if (req.method === 'put' && action === 'cancel') {
      const outcome = await store.cancel(job.id, principal.keyId);
      if (outcome === 'running') this.runner?.cancel(job.id);
      // A running job stops at its next step; either way fal's answer is the same.
      if (outcome === 'finished') r.json(400, { status: 'ALREADY_COMPLETED', detail: 'the request has already completed', message: 'the request has already completed' });
      else r.json(202, { status: 'CANCELLATION_REQUESTED' });
      return;
    }
    sendError(r, 404, 'not_found', `no such route: ${req.method.toUpperCase()} ${req.path}`);
  }

  private async submit(store: QueueStore, req: FalRequest, r: Responder, principal: Principal, appId: string, subpath: string): Promise<void> {
    const body = readJsonInput(req.body, r);
    if (!body) return;
    const { input } = body;
    const app = this.apps.list().find((a) => a.id === appId)!;
    const host = this.hub.hostFor(app.modelDir);
    const model = host?.model();
    if (!host || !model) {
      sendError(r, 503, ErrorCode.NotReady, 'the model is loading; retry shortly', 1000);
      return;
    }
    const mapped = mapFalInput(input, app, model, host.limits());
    if (!mapped.ok) {
      sendFieldErrors(r, [mapped.error]);
      return;
    }
    // The image itself is fetched and decoded when the job runs; everything else is checked now.
    const checked = validateMessage({ type: 'generate', id: 1, ...mapped.plan.generate }, host.limits(), model);
    if (!checked.ok) {
      sendFieldErrors(r, [falErrorFromNative(checked.code, checked.message, mapped.plan)]);
      return;
    }
    const { imageUrl } = mapped.plan;
    if (imageUrl !== undefined && !imageUrl.startsWith('data:') && !(await this.imageUrlAllowed(imageUrl))) {
      sendFieldErrors(r, [{ code: 'image_url_forbidden', message: 'image_url names a host this server may not fetch from (--image-hosts); send a data URI, or upload the file first (fal.storage.upload)', loc: ['body', 'image_url'], type: 'value_error' }]);
      return;
    }
    const webhookUrl = req.query.get('fal_webhook') ?? undefined;
    if (webhookUrl !== undefined && !/^https?:\/\//.test(webhookUrl)) {
      sendFieldErrors(r, [{ code: ErrorCode.InvalidField, message: 'fal_webhook must be an http(s) URL', loc: ['query', 'fal_webhook'], type: 'value_error' }]);
      return;
    }
    const priority = req.header('x-fal-queue-priority') === 'low' ? 'low' : 'normal';
    // fal's startTimeout: seconds the request may wait before it starts, retries included.
    const startTimeout = req.header('x-fal-request-timeout');
    const startWithinS = startTimeout === '' ? undefined : Number(startTimeout);
    if (startWithinS !== undefined && !(Number.isFinite(startWithinS) && startWithinS >= 1)) {
      sendFieldErrors(r, [{ code: ErrorCode.InvalidField, message: 'x-fal-request-timeout must be a number of seconds, at least 1', loc: ['header', 'x-fal-request-timeout'], type: 'value_error' }]);
      return;
    }
    const startBy = startWithinS === undefined ? undefined : Date.now() + startWithinS * 1000;
    const submitted = await store.submit({ appId, keyId: principal.keyId, input: queuedJobInput(input, subpath, req.publicBase, startBy), webhookUrl, priority });
    if (!submitted.ok) {
      const message = submitted.reason === 'key_full' ? 'too many queued requests for this key' : 'the queue is full';
      sendError(r, 429, 'queue_full', message, 5000);
      return;
    }
    this.runner?.kick();
    const base = `${req.publicBase}/queue/${appId}/requests/${submitted.id}`;
    r.json(200, {
      status: 'IN_QUEUE',
      request_id: submitted.id,
      response_url: base,
      status_url: `${base}/status`,
      cancel_url: `${base}/cancel`,
      queue_position: submitted.position,
    }, { 'x-fal-request-id': submitted.id });
  }

  private result(job: JobRecord, r: Responder): void {
    const headers: Record<string, string> = { 'x-fal-request-id': job.id };
    if (job.status === 'completed') r.json(200, job.result, headers);
    else if (job.status === 'failed' && job.error) {
      const { status, code, message } = job.error;
      if (code === START_TIMEOUT.code) headers['x-fal-request-timeout-type'] = START_TIMEOUT.timeoutType;
      if (status === 422) sendFieldErrors(r, [{ code, message, loc: ['body'], type: 'value_error' }], headers);
      else sendError(r, status, code, message, undefined, headers);
    } else if (job.status === 'cancelled') sendError(r, 400, 'cancelled', 'the request was cancelled', undefined, headers);
    else sendError(r, 400, 'in_progress', 'the request is still in progress', undefined, headers);
  }

  private async statusStream(store: QueueStore, first: JobRecord, base: string, req: FalRequest, r: Responder, principal: Principal): Promise<void> {
    const logs = req.query.get('logs') === '1';
    const events = r.events({ 'x-fal-request-id': first.id });
    let job: JobRecord | undefined = first;
    let last = '';
    while (job && !r.gone) {
      const status = statusObject(job, base, logs);
      const text = JSON.stringify(status);
      if (text !== last) events.event(status);
      last = text;
      if (status.status === 'COMPLETED') break;
      if (this.runner) await this.runner.changed(first.id, STATUS_STREAM_POLL_MS);
      else await new Promise((resolve) => setTimeout(resolve, STATUS_STREAM_POLL_MS));
      job = await store.get(first.id, principal.keyId);
    }
    events.end();
  }
}

/** fal's status object. Failed and cancelled requests are COMPLETED too, with `error`. */
export function statusObject(job: JobRecord, base: string, logs: boolean): Record<string, unknown> & { status: string } {
  const urls = { request_id: job.id, response_url: base, status_url: `${base}/status`, cancel_url: `${base}/cancel` };
  if (job.status === 'queued') return { status: 'IN_QUEUE', queue_position: job.position ?? 0, ...urls };
  if (job.status === 'running') return { status: 'IN_PROGRESS', logs: logs ? [] : null, ...urls };
  const inference = job.startedAt !== undefined && job.finishedAt !== undefined ? (job.finishedAt - job.startedAt) / 1000 : null;
  const error = job.status === 'failed' ? { error: job.error?.message, error_type: job.error?.code } : job.status === 'cancelled' ? { error: 'cancelled', error_type: 'cancelled' } : {};
  return { status: 'COMPLETED', logs: logs ? [] : null, metrics: { inference_time: inference }, ...error, ...urls };
}
