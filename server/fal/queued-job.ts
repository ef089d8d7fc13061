// What the store keeps of a queued fal request: the input as sent (images still as data URIs or
// URLs, resolved when it runs), the app's sub-path, and the base URL its result links point to.
export interface QueuedJobInput {
  input: unknown;
  subpath: string;
  publicBase: string;
}

export function queuedJobInput(input: unknown, subpath: string, publicBase: string): QueuedJobInput {
  return { input, subpath, publicBase };
}

export function readQueuedJobInput(stored: unknown): QueuedJobInput {
  const value = (stored ?? {}) as Partial<QueuedJobInput>;
  return { input: value.input ?? {}, subpath: value.subpath ?? '', publicBase: value.publicBase ?? '' };
}
