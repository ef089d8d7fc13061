// Which browser pages may open a realtime socket or ask for a token. Non-browser clients send no
// Origin header and are judged by their credentials alone. Without an explicit allow-list only
// same-origin pages are allowed: the browser client this server serves itself.

export class OriginPolicy {
  private readonly allowed: ReadonlySet<string> | '*' | undefined;

  constructor(allowed: readonly string[] | '*' | undefined) {
    this.allowed = allowed === '*' ? '*' : allowed ? new Set(allowed.map((o) => o.replace(/\/+$/, '').toLowerCase())) : undefined;
  }

  /** `origin` as sent ('' when absent); `host` from the Host header. */
  allows(origin: string, host: string): boolean {
    if (!origin) return true;
    const normalized = origin.toLowerCase();
    if (this.allowed === '*') return true;
    if (this.allowed) return this.allowed.has(normalized);
    try {
      return new URL(normalized).host === host.toLowerCase();
    } catch {
      return false;
    }
  }
}
