// A token-based connection's lease: it closes when its browser token expires, unless an in-band
// `auth` message with a fresh token of the same key extends it. Connections opened with an API key
// have no lease (never expire).
import { CloseCode, ErrorCode, type ServerMessage } from '../../shared/protocol.js';
import type { TokenCheck } from '../security/tokens.js';

export interface LeaseHooks {
  verifyToken(token: string): Promise<TokenCheck>;
  reply(message: ServerMessage): void;
  close(code: number, reason: string): void;
  isClosed(): boolean;
}

export class TokenLease {
  private timer: NodeJS.Timeout | undefined;
  private expiresAt: number | undefined;

  constructor(
    private readonly keyId: string,
    expiresAt: number | undefined,
    private readonly hooks: LeaseHooks,
  ) {
    this.schedule(expiresAt);
  }

  /** Answers an `auth` message: `authenticated` with the (possibly extended) expiry, or `invalid_token`. */
  async renew(token: string): Promise<void> {
    const check = await this.hooks.verifyToken(token);
    if (this.hooks.isClosed()) return;
    if (!check.ok || check.keyId !== this.keyId) {
      const why = !check.ok ? (check.reason === 'expired' ? 'the token has expired' : 'the token is not valid here') : 'the token belongs to another key';
      this.hooks.reply({ type: 'error', code: ErrorCode.InvalidToken, message: why });
      return;
    }
    // A token only ever extends a lease, and never gives one to a connection opened with a key.
    if (this.expiresAt !== undefined && check.expiresAt > this.expiresAt) this.schedule(check.expiresAt);
    this.hooks.reply({ type: 'authenticated', expiresAt: this.expiresAt ?? check.expiresAt });
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(expiresAt: number | undefined): void {
    if (expiresAt === undefined) return;
    this.expiresAt = expiresAt;
    this.stop();
    // setTimeout holds at most ~24.8 days; re-check on wake for anything longer.
    const delay = Math.min(expiresAt - Date.now(), 0x7fffffff);
    this.timer = setTimeout(() => {
      if (this.hooks.isClosed()) return;
      if (Date.now() < (this.expiresAt ?? 0)) this.schedule(this.expiresAt);
      else this.hooks.close(CloseCode.TokenExpired, 'token expired');
    }, Math.max(0, delay));
    this.timer.unref();
  }
}
