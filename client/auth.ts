// Credentials for the WebSocket upgrade. Server-side code sends a long-lived API key in the
// `Authorization: Key <key>` header (only non-browser WebSocket implementations such as `ws` can
// set headers). Browsers must never hold that key: they get short-lived tokens from their own
// backend (which mints them with POST /v1/tokens) through `tokenProvider`. A token is passed as the
// `token` query parameter on the upgrade and refreshed before it expires: the fresh one goes to the
// open connection in an `auth` message (the server closes connections whose token ran out) and is
// the one a reconnect presents.

export interface AuthToken {
  token: string;
  /** When the token stops being valid: epoch milliseconds (epoch seconds, as in a JWT `exp`, are accepted too). */
  expiresAt: number;
}

export type TokenProvider = () => Promise<AuthToken>;

export const TOKEN_QUERY_PARAM = 'token';

export function apiKeyHeaders(apiKey: string): Record<string, string> {
  return { Authorization: `Key ${apiKey}` };
}

export function withToken(url: string, token: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set(TOKEN_QUERY_PARAM, token);
  return parsed.toString();
}

/** Values below this are seconds: 1e11 ms is 1973, 1e11 s is the year 5138. */
const SECONDS_THRESHOLD = 1e11;
/** A failed background refresh is tried again after this long (if the token is still valid). */
const REFRESH_RETRY_MS = 5_000;

interface CachedToken {
  token: string;
  expiresAt: number;
  /** Past this point the token counts as stale: a reconnect fetches a new one. */
  refreshAt: number;
}

/**
 * Holds the current token, fetches a fresh one when it nears expiry, and refreshes it in the
 * background ahead of time. Refreshing at `expiresAt - min(marginMs, lifetime / 2)` keeps short
 * test tokens (seconds) and long production tokens (minutes) both refreshed well before expiry.
 */
export class TokenCache {
  private current: CachedToken | undefined;
  private fetching: Promise<string> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  /** No connection to hand refreshed tokens to (idle): the next `get()` fetches if needed. */
  private paused = false;

  constructor(
    private readonly provider: TokenProvider,
    private readonly marginMs: number,
    private readonly events: {
      /** A background refresh got a new token (not called for fetches made by `get`). */
      refreshed(token: string): void;
      refreshFailed(err: unknown): void;
    },
  ) {}

  /**
   * Forgets the current token: the server refused a connection made with it (in browsers the
   * reason is invisible; a restarted server with a new signing secret is the common case).
   */
  invalidate(): void {
    this.current = undefined;
  }

  /** A token that is not near expiry, fetching one if needed (concurrent callers share one fetch). */
  get(): Promise<string> {
    const current = this.current;
    const wasPaused = this.paused;
    this.paused = false;
    if (current && Date.now() < current.refreshAt) {
      if (wasPaused) this.schedule(current.refreshAt - Date.now());
      return Promise.resolve(current.token);
    }
    return this.fetch();
  }

  /**
   * Stops background refreshes while there is no connection (idle): an idle browser tab must not
   * keep calling the app's token endpoint. `get()` resumes them.
   */
  pause(): void {
    this.paused = true;
    clearTimeout(this.timer);
  }

  private fetch(): Promise<string> {
    this.fetching ??= this.provider()
      .then((result) => this.store(result))
      .finally(() => (this.fetching = undefined));
    return this.fetching;
  }

  private store(result: AuthToken): string {
    if (!result || typeof result.token !== 'string' || result.token === '' || !Number.isFinite(result.expiresAt)) {
      throw new Error('tokenProvider must resolve to { token: non-empty string, expiresAt: number }');
    }
    const now = Date.now();
    const expiresAt = result.expiresAt < SECONDS_THRESHOLD ? result.expiresAt * 1000 : result.expiresAt;
    if (expiresAt <= now) throw new Error('tokenProvider returned an expired token');
    const refreshAt = expiresAt - Math.min(this.marginMs, (expiresAt - now) / 2);
    this.current = { token: result.token, expiresAt, refreshAt };
    this.schedule(refreshAt - now);
    return result.token;
  }

  private schedule(delayMs: number): void {
    if (this.stopped || this.paused) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.fetch().then((token) => this.events.refreshed(token), (err) => {
        this.events.refreshFailed(err);
        if (this.current && Date.now() + REFRESH_RETRY_MS < this.current.expiresAt) this.schedule(REFRESH_RETRY_MS);
      });
    }, Math.max(0, delayMs));
    // A pending refresh alone must not keep a Node process alive.
    (this.timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
