// Turns fal's `image_url` input into bytes without letting a request make the server fetch
// whatever it names. fal accepts both data: URIs and public URLs; a self-hosted server that fetched
// any URL would be an SSRF hole (cloud metadata endpoints, internal admin ports), so URLs are
// fetched only from hosts the operator listed with --image-hosts, and by default not at all.
// Memory is bounded by maxBytes before any allocation of that order: data: URIs are measured
// before they are decoded, and fetched bodies are refused by Content-Length, then counted as they
// stream (which also bounds a compressed body that fetch decompresses on the way).

export interface ImageUrlPolicy {
  /** Hosts URLs may be fetched from: `host`, `host:port`, or `*.example.com`. Empty: data: URIs only. */
  allowedHosts: string[];
  maxBytes: number;
  /** For the whole fetch, redirects and body included. */
  timeoutMs: number;
  /** A file this server keeps (an upload, a result) that the URL names: read, not fetched, whatever its host. */
  ownFile?: (url: URL) => Promise<{ bytes: Uint8Array; contentType: string } | undefined>;
}

/** The policy without the size limit, which each model's limits set. */
export type ImageFetchPolicy = Omit<ImageUrlPolicy, 'maxBytes'>;

export type ImageUrlErrorCode = 'image_url_invalid' | 'image_url_forbidden' | 'image_too_large' | 'image_fetch_failed';

export type ResolvedImage =
  | { ok: true; bytes: Uint8Array; contentType?: string }
  | { ok: false; code: ImageUrlErrorCode; message: string };

const MAX_REDIRECTS = 3;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const IMAGE_MEDIA_TYPE = /^image\/[a-z0-9][a-z0-9!#$&^_.+-]*$/;

const fail = (code: ImageUrlErrorCode, message: string): ResolvedImage => ({ ok: false, code, message });

export async function resolveImageUrl(value: string, policy: ImageUrlPolicy): Promise<ResolvedImage> {
  // Leading whitespace is what a URL parser would drop too; without this it would reach the scheme
  // check and be refused as a data: URL, which is the one scheme that is always allowed.
  const start = value.length - value.trimStart().length;
  if (value.slice(start, start + 5).toLowerCase() === 'data:') return decodeDataUri(value.slice(start), policy.maxBytes);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail('image_url_invalid', 'image_url is neither a data: URI nor a valid URL');
  }
  const own = await policy.ownFile?.(url);
  if (own) {
    if (own.bytes.byteLength > policy.maxBytes) return fail('image_too_large', `image_url names a file of ${own.bytes.byteLength} bytes, over the limit of ${policy.maxBytes}`);
    return { ok: true, bytes: own.bytes, contentType: own.contentType };
  }
  const refusal = checkUrl(url, policy.allowedHosts, 'image_url');
  if (refusal) return refusal;
  return fetchImage(url, policy);
}

// ---- data: URIs ------------------------------------------------------------------------------

const HEX = /^[0-9a-fA-F]{2}$/;

function isBase64Char(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 47; // A-Z a-z 0-9 + /
}

function isAsciiWhitespace(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 12 || c === 13;
}

/**
 * Walks the payload as the fetch standard's data: URL processor reads it: percent-escapes first,
 * then, for base64, forgiving-base64 (whitespace ignored, at most two `=` at the end). Calls `emit`
 * with each resulting character code until it returns false; returns an error message, or undefined.
 */
function walkPayload(payload: string, emit: (code: number) => boolean | void): string | undefined {
  for (let i = 0; i < payload.length; i++) {
    let c = payload.charCodeAt(i);
    if (c === 37 /* % */) {
      const hex = payload.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return `bad percent-escape at offset ${i}`;
      c = parseInt(hex, 16);
      i += 2;
    } else if (c > 0x7e) {
      return `non-ASCII character at offset ${i}`;
    }
    if (emit(c) === false) return undefined;
  }
  return undefined;
}

function decodeDataUri(value: string, maxBytes: number): ResolvedImage {
  const comma = value.indexOf(',');
  if (comma < 0) return fail('image_url_invalid', 'data: URI has no comma before its data');
  const params = value.slice(5, comma).split(';').map((p) => p.trim().toLowerCase());
  const base64 = params.length > 1 && params[params.length - 1] === 'base64';
  const mediaType = params[0];
  if (mediaType && !IMAGE_MEDIA_TYPE.test(mediaType)) {
    return fail('image_url_invalid', `data: URI media type ${mediaType.slice(0, 64)} is not image/*`);
  }
  const contentType = mediaType || undefined;
  const payload = value.slice(comma + 1);

  // A first pass only counts, so an oversized or malformed payload is refused before anything of
  // its size is allocated; it stops as soon as the count passes maxBytes, so a 100 MB payload
  // against a 10 MB limit costs reading 10 MB of it, and nothing more.
  let over = false;
  let digits = 0;
  let padding = 0;
  let bytes = 0;
  let badChar: number | undefined;
  let dataAfterPadding = false;
  const error = walkPayload(payload, base64
    ? (c) => {
      if (isBase64Char(c)) {
        if (padding > 0) dataAfterPadding = true;
        digits++;
        over = Math.floor((digits * 3) / 4) > maxBytes;
      } else if (c === 61 /* = */) padding++;
      else if (!isAsciiWhitespace(c)) badChar ??= c;
      return !over;
    }
    : () => {
      over = ++bytes > maxBytes;
      return !over;
    });
  if (error) return fail('image_url_invalid', `data: URI ${error}`);
  if (over) return fail('image_too_large', `data: URI decodes to more than ${maxBytes} bytes, the limit`);
  if (base64) {
    if (badChar !== undefined) return fail('image_url_invalid', `data: URI base64 has an invalid character ${JSON.stringify(String.fromCharCode(badChar))}`);
    if (dataAfterPadding || padding > 2 || digits % 4 === 1 || (padding > 0 && (digits + padding) % 4 !== 0)) {
      return fail('image_url_invalid', 'data: URI base64 has the wrong length or padding');
    }
    bytes = Math.floor((digits * 3) / 4);
  }
  if (bytes === 0) return fail('image_url_invalid', 'data: URI is empty');

  const out = new Uint8Array(bytes);
  if (base64) {
    let acc = 0;
    let bits = 0;
    let n = 0;
    walkPayload(payload, (c) => {
      const v = c >= 65 && c <= 90 ? c - 65 : c >= 97 && c <= 122 ? c - 71 : c >= 48 && c <= 57 ? c + 4 : c === 43 ? 62 : c === 47 ? 63 : -1;
      if (v < 0) return; // whitespace and padding, already validated
      acc = ((acc << 6) | v) & 0xffffff;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        if (n < bytes) out[n++] = (acc >> bits) & 0xff;
      }
    });
  } else {
    let n = 0;
    walkPayload(payload, (c) => { out[n++] = c; });
  }
  return { ok: true, bytes: out, contentType };
}

// ---- URLs ------------------------------------------------------------------------------------

interface HostRule {
  hostname: string;
  /** Matches subdomains of `hostname`, not `hostname` itself. */
  wildcard: boolean;
  /** Absent: the scheme's default port only. */
  port?: string;
}

function parseHostRule(entry: string): HostRule | undefined {
  let text = entry.trim().toLowerCase();
  const wildcard = text.startsWith('*.');
  if (wildcard) text = text.slice(2);
  // Let the URL parser normalize the host (IDN to punycode, IPv4 shorthands, IPv6 compression)
  // so the rule compares equal to what a request's URL parses to.
  let parsed: URL;
  try {
    parsed = new URL(`http://${text}`);
  } catch {
    return undefined;
  }
  if (parsed.host === '' || `${parsed.pathname}${parsed.search}${parsed.hash}` !== '/' || parsed.username || parsed.password) return undefined;
  // new URL drops an explicit :80 for http, but the entry's port must survive that.
  const port = /:(\d+)$/.exec(text)?.[1];
  return { hostname: parsed.hostname, wildcard, port: port === undefined ? undefined : String(Number(port)) };
}

/**
 * Whether `url`'s host is covered by `allowedHosts`. A rule without a port allows only the
 * scheme's default port, so a listed CDN does not open every other service on the same machine;
 * `host:port` allows that port. `*.example.com` allows any subdomain, not example.com itself.
 */
export function isAllowedHost(url: URL, allowedHosts: readonly string[]): boolean {
  const hostname = url.hostname;
  const defaultPort = url.protocol === 'https:' ? '443' : '80';
  const port = url.port || defaultPort;
  for (const entry of allowedHosts) {
    const rule = parseHostRule(entry);
    if (!rule) continue;
    if ((rule.port ?? defaultPort) !== port) continue;
    if (rule.wildcard ? hostname.endsWith(`.${rule.hostname}`) : hostname === rule.hostname) return true;
  }
  return false;
}

function checkUrl(url: URL, allowedHosts: readonly string[], what: string): ResolvedImage | undefined {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return fail('image_url_forbidden', `${what} scheme ${url.protocol} is not allowed: send a data: URI, or an http(s) URL on a host listed in --image-hosts`);
  }
  if (url.username || url.password) return fail('image_url_invalid', `${what} must not contain credentials`);
  const host = url.port ? `${url.hostname}:${url.port}` : url.hostname;
  if (allowedHosts.length === 0) {
    return fail('image_url_forbidden', `${what} must be a data: URI: this server fetches no URLs (none listed in --image-hosts)`);
  }
  if (!isAllowedHost(url, allowedHosts)) return fail('image_url_forbidden', `${what} host ${host} is not listed in --image-hosts`);
  return undefined;
}

function describeFetchError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  const code = cause instanceof Error ? (cause as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? `${err.message}: ${code}` : cause instanceof Error ? `${err.message}: ${cause.message}` : err.message;
}

async function fetchImage(first: URL, policy: ImageUrlPolicy): Promise<ResolvedImage> {
  // One controller for the whole exchange: its timer covers redirects and the body, and aborting
  // it also closes a connection whose body went over the limit.
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, policy.timeoutMs);
  try {
    let url = first;
    for (let redirects = 0; ; redirects++) {
      const response = await fetch(url, { redirect: 'manual', signal: controller.signal, headers: { accept: 'image/*' } });
      if (REDIRECT_STATUSES.has(response.status)) {
        await response.body?.cancel().catch(() => {});
        const location = response.headers.get('location');
        if (!location) return fail('image_fetch_failed', `image_url answered HTTP ${response.status} without a Location`);
        if (redirects === MAX_REDIRECTS) return fail('image_fetch_failed', `image_url redirected more than ${MAX_REDIRECTS} times`);
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          return fail('image_fetch_failed', 'image_url redirected to an invalid URL');
        }
        // Each hop is held to the same rule, or one allowed open redirect would reach anything.
        const refusal = checkUrl(next, policy.allowedHosts, 'image_url redirect');
        if (refusal) return refusal;
        url = next;
        continue;
      }
      if (response.status < 200 || response.status > 299) {
        await response.body?.cancel().catch(() => {});
        return fail('image_fetch_failed', `image_url fetch answered HTTP ${response.status}`);
      }
      const declared = response.headers.get('content-length');
      if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared) > policy.maxBytes) {
        controller.abort();
        return fail('image_too_large', `image is ${declared.trim()} bytes, over the limit of ${policy.maxBytes}`);
      }
      const contentType = response.headers.get('content-type')?.split(';')[0]?.trim().toLowerCase() || undefined;
      const bytes = await readLimited(response, policy.maxBytes, controller);
      if (bytes === 'too_large') return fail('image_too_large', `image is over the limit of ${policy.maxBytes} bytes`);
      if (bytes.length === 0) return fail('image_fetch_failed', 'image_url answered with an empty body');
      return { ok: true, bytes, contentType };
    }
  } catch (err) {
    if (timedOut) return fail('image_fetch_failed', `image_url fetch timed out after ${policy.timeoutMs} ms`);
    return fail('image_fetch_failed', `image_url fetch failed: ${describeFetchError(err)}`);
  } finally {
    clearTimeout(timer);
  }
}

async function readLimited(response: Response, maxBytes: number, controller: AbortController): Promise<Uint8Array | 'too_large'> {
  if (!response.body) return new Uint8Array(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      controller.abort();
      return 'too_large';
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
