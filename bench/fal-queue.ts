// fal's queue API as a client uses it: submit, watch the status (polled, or as the server-sent
// event stream), then fetch the result and its image. Plain fetch, no fal client: fal's client
// polls on its own timer, and what this measures is the server.
import { performance } from 'node:perf_hooks';

export interface QueueBase {
  httpUrl: string;
  app: string;
}

interface Submitted {
  request_id: string;
  status_url: string;
  response_url: string;
}

interface Status {
  status: string;
  error?: string;
  error_type?: string;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function json<T>(res: Response, what: string): Promise<T> {
  const text = await res.text();
  if (!res.ok) throw new Error(`${what}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

export async function submit(base: QueueBase, input: Record<string, unknown>): Promise<Submitted> {
  const res = await fetch(`${base.httpUrl}/queue/${base.app}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input) });
  return json<Submitted>(res, 'submit');
}

const status = async (job: Submitted): Promise<Status> => json<Status>(await fetch(job.status_url), 'status');

async function pollUntilCompleted(job: Submitted, pollMs: number, deadline: number): Promise<Status> {
  for (;;) {
    const s = await status(job);
    if (s.status === 'COMPLETED') return s;
    if (performance.now() > deadline) throw new Error(`job ${job.request_id} still ${s.status} at the deadline`);
    await sleep(pollMs);
  }
}

/** Reads `.../status/stream` until an event says COMPLETED (the server ends the stream after it). */
async function streamUntilCompleted(job: Submitted, deadline: number): Promise<Status> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), Math.max(0, deadline - performance.now()));
  try {
    const res = await fetch(`${job.status_url}/stream`, { signal: controller.signal });
    if (!res.ok || !res.body) throw new Error(`status stream: ${res.status}`);
    const decoder = new TextDecoder();
    let buffered = '';
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffered.indexOf('\n\n')) >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const data = event.split('\n').find((line) => line.startsWith('data: '));
        const s = data ? (JSON.parse(data.slice(6)) as Status) : undefined;
        if (s?.status === 'COMPLETED') {
          controller.abort();
          return s;
        }
      }
    }
    throw new Error(`status stream of ${job.request_id} ended before COMPLETED`);
  } finally {
    clearTimeout(timer);
  }
}

/** The result, then its image (a stored file's URL): what an app needs before it can show it. */
async function fetchResult(job: Submitted): Promise<void> {
  const result = await json<{ images?: { url?: string }[] }>(await fetch(job.response_url), 'result');
  const url = result.images?.[0]?.url;
  if (!url) throw new Error(`result of ${job.request_id} has no image url`);
  if (url.startsWith('data:')) return;
  const image = await fetch(url);
  if (!image.ok) throw new Error(`image of ${job.request_id}: ${image.status}`);
  await image.arrayBuffer();
}

export type Watch = 'poll' | 'stream';

/** One job alone: ms from submit until COMPLETED was seen, and until its image was in hand. */
export async function queuedOnce(base: QueueBase, input: Record<string, unknown>, watch: Watch, pollMs: number): Promise<{ completedMs: number; imageMs: number }> {
  const t0 = performance.now();
  const deadline = t0 + 60_000;
  const job = await submit(base, input);
  const s = watch === 'poll' ? await pollUntilCompleted(job, pollMs, deadline) : await streamUntilCompleted(job, deadline);
  const completedMs = performance.now() - t0;
  if (s.error !== undefined) throw new Error(`job ${job.request_id} failed: ${s.error_type} ${s.error}`);
  await fetchResult(job);
  return { completedMs, imageMs: performance.now() - t0 };
}

/**
 * Saturation: every input submitted at once, then the oldest unfinished job polled every
 * `pollMs` (one request at a time, so the watching adds little load; jobs finish roughly in
 * order). ms from the first submit until the last job was seen COMPLETED.
 */
export async function queueBurst(base: QueueBase, inputs: Record<string, unknown>[], pollMs: number): Promise<{ ms: number; submitMs: number; errors: number }> {
  const t0 = performance.now();
  const jobs = await Promise.all(inputs.map((input) => submit(base, input)));
  const submitMs = performance.now() - t0;
  const deadline = t0 + 120_000;
  let errors = 0;
  for (const job of jobs) {
    const s = await pollUntilCompleted(job, pollMs, deadline);
    if (s.error !== undefined) errors++;
  }
  return { ms: performance.now() - t0, submitMs, errors };
}
