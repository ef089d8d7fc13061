// Redis URLs in logs and errors, without their password. Apart from the Redis store so that a
// server on SQLite loads no Redis client to log its configuration.

/** The URL as logs may show it: without its password. */
export function redactRedisUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`not a Redis URL: ${url.replace(/:[^:@/]*@/, ':***@')}`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new TypeError(`not a Redis URL (redis:// or rediss://): ${parsed.protocol}`);
  parsed.password = '';
  return parsed.toString();
}
