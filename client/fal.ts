// Points an app written against the official fal JavaScript client (`@fal-ai/client`) at this
// server, so it keeps its `fal.run` / `fal.queue` / `fal.stream` / `fal.realtime` calls unchanged.
// The fal client has no base-URL option: its hosts are fixed (https://fal.run, https://queue.fal.run,
// https://rest.fal.ai, wss://fal.run). HTTP can be redirected by configuration alone (a request
// middleware, or fal's own `proxyUrl`), but realtime cannot: it calls `new WebSocket(url)` on the
// global WebSocket at call time, so the only hook is to install a subclass as that global.
//
// This module imports nothing, not even fal's types: the SDK's package must stay free of a
// dependency on `@fal-ai/client`, so the few config fields are declared here with the same shapes
// (the tests check that the result is assignable to fal's own `Config`).

/** fal's `RequestConfig`: what a request middleware receives and returns. */
export interface FalRequestConfig {
  url: string;
  method: string;
  headers?: Record<string, string | string[]>;
}

/** fal's `RequestMiddleware`. */
export type FalRequestMiddleware = (request: FalRequestConfig) => Promise<FalRequestConfig>;

/** fal's `fetch` option: the fetch its requests go through. */
export type FalFetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** fal's `ProxyUrlConfig` (fal >= 1.10.0). */
export interface FalProxyUrlConfig {
  url: string;
  when?: 'browser' | 'always' | ((env: { isBrowser: boolean }) => boolean);
}

/** The part of fal's `Config` this helper sets; pass it to `fal.config()` or `createFalClient()`. */
export interface FalSelfHostConfig {
  /**
   * Always present, even when undefined: an explicit `undefined` overrides fal's default of reading
   * FAL_KEY from the environment, so a fal.ai key is never sent to this server by accident.
   */
  credentials: string | undefined;
  requestMiddleware?: FalRequestMiddleware;
  proxyUrl?: FalProxyUrlConfig;
  /**
   * fal's `fetch`, rewriting fal's URLs to the server. Most requests arrive already rewritten (or
   * addressed to the proxy route); this catches the one call that skips the middleware and the
   * proxy: `fal.stream(..., { connectionMode: 'client' })`, which fetches fal.run itself with a
   * short-lived token in `fal_jwt_token`.
   */
  fetch: FalFetch;
}

export interface FalSelfHostOptions {
  /** This server's API key, sent by fal as `Authorization: Key <credentials>`. */
  credentials?: string;
  /**
   * How HTTP requests reach the server. 'middleware' (default) rewrites each fal URL to the
   * matching route here. 'proxy' sends every request to `<server>/api/fal/proxy` with the fal URL
   * in `x-fal-target-url`, the same contract as `@fal-ai/server-proxy`.
   */
  via?: 'middleware' | 'proxy';
  /** The app's own middleware: it runs first and sees fal's original URLs. */
  requestMiddleware?: FalRequestMiddleware;
  /** The app's own fetch, if it gave fal one; by default the global fetch at the time of each call. */
  fetch?: FalFetch;
  /** Install the global WebSocket that redirects `fal.realtime` (default true). */
  installRealtime?: boolean;
}

export interface FalSelfHost {
  config: FalSelfHostConfig;
  /** Undoes this call's WebSocket install (idempotent); the global is restored after the last one. */
  uninstall(): void;
}

/** The server's route that follows `x-fal-target-url`. */
export const FAL_PROXY_PATH = '/api/fal/proxy';

/** fal's HTTP hosts and where each lives under the server's base URL. */
const HTTP_HOSTS: ReadonlyArray<readonly [origin: string, prefix: string]> = [
  ['https://fal.run', ''],
  ['https://queue.fal.run', '/queue'],
  ['https://rest.fal.ai', ''],
];
const REALTIME_ORIGIN = 'wss://fal.run';

/**
 * Returns the config that sends the official fal client's requests to the server at `serverUrl`
 * (absolute, http(s), optionally with a path prefix), and by default installs the realtime
 * WebSocket redirect. Call it again to retarget; `uninstall()` removes what this call installed.
 */
export function falSelfHost(serverUrl: string, options: FalSelfHostOptions = {}): FalSelfHost {
  const base = normalizeServerUrl(serverUrl);
  const via = options.via ?? 'middleware';
  const own = options.fetch;
  const fetchVia: FalFetch = (input, init) => {
    const target = typeof input === 'string' || input instanceof URL ? rewriteFalUrl(String(input), base) : input;
    return own ? own(target, init) : globalThis.fetch(target, init);
  };
  const config: FalSelfHostConfig = { credentials: options.credentials, fetch: fetchVia };
  if (via === 'proxy') {
    // fal itself composes this after the app's middleware, which therefore still sees fal's URLs.
    config.proxyUrl = { url: base + FAL_PROXY_PATH, when: 'always' };
    if (options.requestMiddleware) config.requestMiddleware = options.requestMiddleware;
  } else if (via === 'middleware') {
    const appMiddleware = options.requestMiddleware;
    const rewrite = (request: FalRequestConfig): FalRequestConfig => ({ ...request, url: rewriteFalUrl(request.url, base) });
    config.requestMiddleware = appMiddleware ? async (request) => rewrite(await appMiddleware(request)) : async (request) => rewrite(request);
  } else {
    throw new Error(`falSelfHost: via must be 'middleware' or 'proxy', not ${String(via)}`);
  }
  const uninstall = options.installRealtime === false ? () => {} : installRealtimeRedirect(toWebSocketBase(base));
  return { config, uninstall };
}

/**
 * The server's URL for a fal URL: `https://fal.run/x` and `https://rest.fal.ai/x` become
 * `<server>/x`, `https://queue.fal.run/x` becomes `<server>/queue/x`, `wss://fal.run/x` becomes
 * `ws(s)://<server>/x`. Anything else comes back unchanged. Useful for a custom `fetch`.
 */
export function rewriteFalUrl(url: string, serverUrl: string): string {
  const base = normalizeServerUrl(serverUrl);
  for (const [origin, prefix] of HTTP_HOSTS) {
    const rest = afterOrigin(url, origin);
    if (rest !== undefined) return base + prefix + rest;
  }
  const rest = afterOrigin(url, REALTIME_ORIGIN);
  return rest === undefined ? url : toWebSocketBase(base) + rest;
}

/** The path and query after `origin`, or undefined when `url` is on another host (fal.run.evil). */
function afterOrigin(url: string, origin: string): string | undefined {
  if (!url.startsWith(origin)) return undefined;
  const rest = url.slice(origin.length);
  return rest === '' || /^[/?#]/.test(rest) ? rest : undefined;
}

/** `scheme://host[:port][/prefix]` with no trailing slash, so paths append with their own `/`. */
function normalizeServerUrl(serverUrl: string): string {
  let parsed: URL;
  try {
    parsed = new URL(serverUrl);
  } catch {
    throw new Error(`falSelfHost: the server URL must be absolute (e.g. location.origin in a browser): ${serverUrl}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`falSelfHost: the server URL must be http(s): ${serverUrl}`);
  }
  if (parsed.search || parsed.hash) {
    throw new Error(`falSelfHost: the server URL cannot carry a query or fragment: ${serverUrl}`);
  }
  return parsed.origin + parsed.pathname.replace(/\/+$/, '');
}

function toWebSocketBase(httpBase: string): string {
  return httpBase.replace(/^http/, 'ws');
}

// --- The realtime redirect -----------------------------------------------------------------------

type WebSocketLike = new (url: string | URL, ...rest: unknown[]) => object;

/**
 * One installed subclass over the WebSocket that was global before it. Each active install adds
 * its target; the newest one wins (as the newest `fal.config()` does), and removing it falls back to
 * the previous one, so repeated calls never stack subclasses on subclasses.
 */
interface Layer {
  original: WebSocketLike;
  installed: WebSocketLike;
  targets: { wsBase: string }[];
}

let layer: Layer | undefined;

function installRealtimeRedirect(wsBase: string): () => void {
  const scope = globalThis as { WebSocket?: unknown };
  const current = scope.WebSocket;
  if (typeof current !== 'function') {
    throw new Error(
      "falSelfHost: fal's realtime client needs a global WebSocket and there is none. Node 20 has no " +
        "built-in one: set it first, e.g. globalThis.WebSocket = (await import('ws')).WebSocket, or pass " +
        '{ installRealtime: false } if the app does not use fal.realtime.',
    );
  }
  // A different global means someone replaced ours since: wrap theirs rather than undo their work.
  if (!layer || current !== layer.installed) layer = createLayer(current as WebSocketLike);
  const own = layer;
  const entry = { wsBase };
  own.targets.push(entry);
  scope.WebSocket = own.installed;
  let done = false;
  return () => {
    if (done) return;
    done = true;
    own.targets.splice(own.targets.indexOf(entry), 1);
    if (own.targets.length > 0) return;
    // With no targets left the subclass passes everything through, so leaving it in place is
    // harmless when something else has wrapped it meanwhile; restoring would drop their wrapper.
    if (scope.WebSocket === own.installed) scope.WebSocket = own.original;
    if (layer === own) layer = undefined;
  };
}

function createLayer(original: WebSocketLike): Layer {
  const targets: Layer['targets'] = [];
  // A subclass rather than a wrapper function: fal reads `WebSocket.OPEN` from the global, and apps
  // may test `instanceof WebSocket`; statics and the prototype chain both carry over this way.
  const redirect = (url: string | URL): string | URL => {
    const target = targets.at(-1);
    const path = target && afterOrigin(String(url), REALTIME_ORIGIN);
    return target && path !== undefined ? target.wsBase + path : url;
  };
  class FalSelfHostWebSocket extends original {
    constructor(url: string | URL, ...rest: unknown[]) {
      super(redirect(url), ...rest);
    }
  }
  return { original, installed: FalSelfHostWebSocket, targets };
}
