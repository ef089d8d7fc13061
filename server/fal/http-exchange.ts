// One HTTP exchange of fal's API, detached from uWebSockets.js: the request copied out of uWS (its
// HttpRequest is gone once the handler returns), and a responder that writes JSON, server-sent
// events or bytes, corked, and never after the client went away. The proxy route rewrites the
// request's target and hands the same exchange on, so every handler serves both ways in.
import { STATUS_CODES } from 'node:http';
import type { HttpResponse } from '../transport/uws.js';

export interface FalRequest {
  method: string;
  /** Path on fal's host, e.g. `/fal-ai/fast-turbo-diffusion/image-to-image`. */
  path: string;
  query: URLSearchParams;
  /** Lower-case names; absent headers are ''. */
  header(name: string): string;
  body: Buffer;
  /** Scheme and host clients reach this server by: the base of the URLs it returns. */
  publicBase: string;
}

/** Headers a page may send and read: what fal's client sends and reads (FAL-COMPAT-NOTES). */
export const FAL_CORS_ALLOW_HEADERS =
  'authorization, content-type, accept, x-fal-target-url, x-fal-queue-priority, x-fal-runner-hint, x-fal-request-timeout, x-fal-object-lifecycle-preference, x-fal-object-lifecycle';

/** Which of fal's APIs an exchange was for, as /metrics labels it. */
export type FalApiName = 'run' | 'stream' | 'queue' | 'rest' | 'files' | 'other';

/** Told once per exchange, when its response has ended or the client went away first (499). */
export type ExchangeEnded = (api: FalApiName, status: number) => void;

export function statusLine(status: number): string {
  return `${status} ${STATUS_CODES[status] ?? ''}`.trim();
}

export class Responder {
  private done = false;
  private aborted = false;
  private streaming = false;
  private reported = false;
  /** Set by the dispatcher once it knows which API serves the exchange. */
  api: FalApiName = 'other';

  constructor(
    private readonly res: HttpResponse,
    /** CORS headers for the requesting origin, on every response. */
    private readonly cors: Record<string, string>,
    private readonly ended: ExchangeEnded = () => {},
  ) {}

  /** uWS allows one onAborted per response: the route registers it and reports here. */
  abort(): void {
    this.aborted = true;
    // A stream the client closed was answered 200; anything else never got its answer.
    this.report(this.streaming ? 200 : 499);
  }

  private report(status: number): void {
    if (this.reported) return;
    this.reported = true;
    this.ended(this.api, status);
  }

  get gone(): boolean {
    return this.aborted || this.done;
  }

  json(status: number, body: unknown, headers: Record<string, string> = {}): void {
    this.send(status, 'application/json', JSON.stringify(body), headers);
  }

  bytes(status: number, contentType: string, body: Uint8Array, headers: Record<string, string> = {}): void {
    this.send(status, contentType, body, headers);
  }

  /** Starts a server-sent event stream; `event` writes one `data:` line, `end` closes it. */
  events(headers: Record<string, string> = {}): { event(data: unknown): void; end(): void } {
    if (!this.gone) {
      this.streaming = true;
      this.res.cork(() => {
        this.res.writeStatus('200 OK').writeHeader('content-type', 'text/event-stream').writeHeader('cache-control', 'no-store');
        this.writeHeaders(headers);
        // Proxies (nginx) must pass events on as they come.
        this.res.writeHeader('x-accel-buffering', 'no');
        this.res.write('');
      });
    }
    return {
      event: (data) => {
        if (!this.gone) this.res.cork(() => this.res.write(`data: ${JSON.stringify(data)}\n\n`));
      },
      end: () => {
        if (this.gone) return;
        this.done = true;
        this.res.cork(() => this.res.end());
        this.report(200);
      },
    };
  }

  private send(status: number, contentType: string, body: string | Uint8Array, headers: Record<string, string>): void {
    if (this.gone || this.streaming) return;
    this.done = true;
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status)).writeHeader('content-type', contentType);
      if (!('cache-control' in headers)) this.res.writeHeader('cache-control', 'no-store');
      this.writeHeaders(headers);
      this.res.end(body);
    });
    this.report(status);
  }

  private writeHeaders(headers: Record<string, string>): void {
    for (const [name, value] of Object.entries(this.cors)) this.res.writeHeader(name, value);
    for (const [name, value] of Object.entries(headers)) this.res.writeHeader(name, value);
  }
}
