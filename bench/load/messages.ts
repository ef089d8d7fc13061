// What the main thread hands a load worker, and what the worker reports back. Times are epoch
// milliseconds (performance.timeOrigin + performance.now()), comparable across threads.
import type { InputSet } from '../inputs.js';
import type { LoadScenario } from '../scenarios.js';

export interface LoadJob {
  workerIndex: number;
  url: string;
  /** Upgrade request headers (e.g. Authorization for a server with API keys). */
  headers: Record<string, string>;
  scenario: LoadScenario;
  inputs: InputSet;
  /** Global indices of the sessions this worker runs (spreads ramp offsets and send phases). */
  sessionIndices: number[];
  totalSessions: number;
  /** Sessions start connecting here (plus their ramp offset). */
  startAt: number;
  /** Frames/s and messages/s are counted from here (after the ramp) ... */
  measureFrom: number;
  /** ... to here, when sessions stop sending. */
  endAt: number;
  /** After endAt, outstanding requests get this long to settle before sockets close. */
  drainMs: number;
  /** Width of a timeline bucket. */
  bucketMs: number;
  connectTimeoutMs: number;
}

export interface LoadCounts {
  sent: number;
  frames: number;
  framesInWindow: number;
  previews: number;
  superseded: number;
  skipped: number;
  cancelled: number;
  /** Requests that ended in an `error` reply. */
  failed: number;
  /** Previews a finished request should have had but did not get (the server drops them for slow readers). */
  droppedPreviews: number;
  /** Requests still unanswered when the drain time ran out. */
  unanswered: number;
  /** Sends the generator skipped because its own socket buffer was full: the generator is behind. */
  clientSkippedSends: number;
  /** Clock ticks of open-loop senders that fired over one interval late: the generator is behind. */
  lateTicks: number;
  messagesReceived: number;
  messagesReceivedInWindow: number;
  messagesSentInWindow: number;
  bytesReceived: number;
  bytesSent: number;
}

export interface LoadReport {
  workerIndex: number;
  sessions: number;
  connected: number;
  /** HdrHistograms (microseconds), compressed base64. */
  histograms: { frame: string; firstPreview: string; connect: string };
  counts: LoadCounts;
  /** Count per error code, plus transport failures (`connect_failed`, `http_503`, `closed_1006` ...). */
  errors: Record<string, number>;
  /** Frames received inside the measurement window, per session. */
  framesPerSession: number[];
  /** Per bucket from startAt: frames and server messages received. */
  timeline: { frames: number[]; messages: number[] };
  /** Epoch ms of the last frame received (0 if none). */
  lastFrameAt: number;
  /** Every session had done its `requestsPerSession` before endAt. */
  finishedEarly: boolean;
  /** Share of the worker's wall time its event loop was busy, over the whole run (0..1). */
  eventLoopUtilization: number;
}

export function emptyCounts(): LoadCounts {
  return {
    sent: 0, frames: 0, framesInWindow: 0, previews: 0, superseded: 0, skipped: 0, cancelled: 0, failed: 0,
    droppedPreviews: 0, unanswered: 0, clientSkippedSends: 0, lateTicks: 0, messagesReceived: 0,
    messagesReceivedInWindow: 0, messagesSentInWindow: 0, bytesReceived: 0, bytesSent: 0,
  };
}

export const epochNow = (): number => performance.timeOrigin + performance.now();
