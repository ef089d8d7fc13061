// Decides whether a WebSocket upgrade may proceed: origin first (a page that is not allowed gets
// 403 whatever it holds), then credentials: `Authorization: Key <key>` or `Bearer <key>` for
// server-side clients, `?token=` for browsers (which cannot set headers on a WebSocket). With no
// API keys configured the server runs open (and only on loopback, see config.ts).
import type { ApiKeys } from './api-keys.js';
import type { OriginPolicy } from './origin-policy.js';
import type { TokenIssuer } from './tokens.js';

export interface UpgradeCredentials {
  authorization: string;
  /** The `token` query parameter, '' when absent. */
  token: string;
  origin: string;
  host: string;
}

/** Who a connection acts for, and until when (tokens expire; keys do not). */
export interface Principal {
  keyId: string;
  /** Unix ms; undefined for API-key and open connections. */
  expiresAt?: number;
}

export type AuthResult =
  | { ok: true; principal: Principal }
  | { ok: false; status: '401 Unauthorized' | '403 Forbidden'; reason: string };

const ANONYMOUS: Principal = { keyId: 'anonymous' };

export class Authenticator {
  constructor(
    readonly keys: ApiKeys,
    readonly tokens: TokenIssuer,
    private readonly origins: OriginPolicy,
  ) {}

  get required(): boolean {
    return this.keys.enabled;
  }

  originAllowed(origin: string, host: string): boolean {
    return this.origins.allows(origin, host);
  }

  /** The key id for an `Authorization` header value, when it holds a valid API key. */
  keyFromHeader(authorization: string): string | undefined {
    const match = /^(?:Key|Bearer)\s+(\S+)\s*$/i.exec(authorization);
    return match ? this.keys.verify(match[1]) : undefined;
  }

  async authenticate(credentials: UpgradeCredentials): Promise<AuthResult> {
    if (!this.originAllowed(credentials.origin, credentials.host)) {
      return { ok: false, status: '403 Forbidden', reason: 'origin not allowed' };
    }
    if (!this.required) return { ok: true, principal: ANONYMOUS };
    if (credentials.authorization) {
      const keyId = this.keyFromHeader(credentials.authorization);
      return keyId ? { ok: true, principal: { keyId } } : { ok: false, status: '401 Unauthorized', reason: 'invalid API key' };
    }
    if (credentials.token) {
      const check = await this.tokens.verify(credentials.token);
      if (check.ok) return { ok: true, principal: { keyId: check.keyId, expiresAt: check.expiresAt } };
      return { ok: false, status: '401 Unauthorized', reason: check.reason === 'expired' ? 'token expired' : 'invalid token' };
    }
    return { ok: false, status: '401 Unauthorized', reason: 'credentials required: Authorization: Key <key>, or ?token=' };
  }
}
