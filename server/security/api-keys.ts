// API keys: loaded from a file (one per line) or a comma-separated environment variable, kept
// only as SHA-256 digests, compared in constant time, and never logged. A key is known elsewhere
// by its id: the first 12 hex digits of its digest.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

const MIN_KEY_LENGTH = 16;

const digest = (key: string) => createHash('sha256').update(key, 'utf8').digest();

export class ApiKeyError extends Error {}

export class ApiKeys {
  private readonly digests: Buffer[];

  constructor(keys: readonly string[]) {
    for (const key of keys) {
      if (key.length < MIN_KEY_LENGTH) throw new ApiKeyError(`API keys must be at least ${MIN_KEY_LENGTH} characters`);
    }
    this.digests = [...new Set(keys)].map(digest);
  }

  /** From --api-keys-file (one key per line; blank lines and # comments ignored) and/or API_KEYS. */
  static load(file: string | undefined, envList: string | undefined): ApiKeys {
    const keys: string[] = [];
    if (file) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new ApiKeyError(`cannot read --api-keys-file ${file}: ${(err as Error).message}`);
      }
      for (const line of text.split(/\r?\n/)) {
        const key = line.trim();
        if (key && !key.startsWith('#')) keys.push(key);
      }
      if (keys.length === 0) throw new ApiKeyError(`--api-keys-file ${file} holds no keys`);
    }
    for (const key of (envList ?? '').split(',')) if (key.trim()) keys.push(key.trim());
    return new ApiKeys(keys);
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  /** The key's id when it is one of ours. Every stored key is compared, so timing tells nothing. */
  verify(candidate: string): string | undefined {
    const d = digest(candidate);
    let match: Buffer | undefined;
    for (const known of this.digests) if (timingSafeEqual(d, known)) match = known;
    return match ? match.toString('hex').slice(0, 12) : undefined;
  }
}
