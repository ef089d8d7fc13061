// Short-lived browser tokens: HS256 JWTs (jose) minted by POST /v1/tokens for a holder of an API
// key, scoped to the realtime endpoint, carrying the key's id so per-key limits still apply.
// Servers that share TOKEN_SECRET accept each other's tokens (a load-balanced pool); without it
// each process draws a random secret, and tokens die with the process. The same secret signs
// capabilities for other audiences (an upload URL, for one), which a realtime check never accepts.
import { randomBytes } from 'node:crypto';
import { errors, jwtVerify, SignJWT } from 'jose';
import { REALTIME_PATH } from '../../shared/protocol.js';

const ISSUER = 'realtime-diffusion-server';
const AUDIENCE = `realtime:${REALTIME_PATH}`;

export type TokenCheck = { ok: true; keyId: string; expiresAt: number } | { ok: false; reason: 'expired' | 'invalid' };

export class TokenIssuer {
  private readonly secret: Uint8Array;

  constructor(
    secret: string | undefined,
    /** Lifetime of a minted token, in seconds. */
    readonly ttlSeconds: number,
  ) {
    this.secret = secret ? new TextEncoder().encode(secret) : randomBytes(32);
  }

  /** A token for `keyId`; `expiresAt` in Unix seconds (as the JWT `exp`). */
  async issue(keyId: string): Promise<{ token: string; expiresAt: number }> {
    const now = Math.floor(Date.now() / 1000);
    const expiresAt = now + this.ttlSeconds;
    const token = await new SignJWT({ scope: 'realtime' })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(keyId)
      .setIssuedAt(now)
      .setExpirationTime(expiresAt)
      .sign(this.secret);
    return { token, expiresAt };
  }

  /** A token for another audience than the realtime endpoint, carrying `claims`. */
  async issueFor(audience: string, subject: string, claims: Record<string, string>, ttlSeconds: number): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ ...claims, scope: audience })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(ISSUER)
      .setAudience(audience)
      .setSubject(subject)
      .setIssuedAt(now)
      .setExpirationTime(now + ttlSeconds)
      .sign(this.secret);
  }

  /** The subject and claims of a token from `issueFor(audience, ...)`, or why it is refused. */
  async verifyFor(audience: string, token: string): Promise<{ ok: true; subject: string; claims: Record<string, unknown> } | { ok: false; reason: 'expired' | 'invalid' }> {
    try {
      const { payload } = await jwtVerify(token, this.secret, { issuer: ISSUER, audience, algorithms: ['HS256'] });
      if (payload.scope !== audience || typeof payload.sub !== 'string') return { ok: false, reason: 'invalid' };
      return { ok: true, subject: payload.sub, claims: payload };
    } catch (err) {
      return { ok: false, reason: err instanceof errors.JWTExpired ? 'expired' : 'invalid' };
    }
  }

  /** `expiresAt` in Unix milliseconds. */
  async verify(token: string): Promise<TokenCheck> {
    try {
      const { payload } = await jwtVerify(token, this.secret, { issuer: ISSUER, audience: AUDIENCE, algorithms: ['HS256'] });
      if (payload.scope !== 'realtime' || typeof payload.sub !== 'string' || typeof payload.exp !== 'number') {
        return { ok: false, reason: 'invalid' };
      }
      return { ok: true, keyId: payload.sub, expiresAt: payload.exp * 1000 };
    } catch (err) {
      return { ok: false, reason: err instanceof errors.JWTExpired ? 'expired' : 'invalid' };
    }
  }
}
