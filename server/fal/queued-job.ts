// What the store keeps of a queued fal request: the input as sent (images still as data URIs or
// URLs, resolved when it runs), the app's sub-path, the base URL its result links point to, and
// the time by which it must have started (fal's x-fal-request-timeout), if the client set one.
export interface QueuedJobInput {
  input: unknown;
  subpath: string;
  publicBase: string;
  /** Unix ms: a job not started by then fails instead of running. */
  startBy?: number;
}

export function queuedJobInput(input: unknown, subpath: string, publicBase: string, startBy?: number): QueuedJobInput {
  return { input, subpath, publicBase, ...(startBy !== undefined ? { startBy } : {}) };
}

export function readQueuedJobInput(stored: unknown): QueuedJobInput {
  const value = (stored ?? {}) as Partial<QueuedJobInput>;
  const startBy = typeof value.startBy === 'number' ? { startBy: value.startBy } : {};
  return { input: value.input ?? {}, subpath: value.subpath ?? '', publicBase: value.publicBase ?? '', ...startBy };
}
