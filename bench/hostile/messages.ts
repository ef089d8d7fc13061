// What the main thread hands the well-behaved sessions' worker, and what comes back, per phase.
// Times are epoch milliseconds (see load/messages.ts), comparable across threads.

export interface Phase {
  name: string;
  /** 'baseline', 'attack' or 'recovery'. */
  kind: 'baseline' | 'attack' | 'recovery';
  from: number;
  to: number;
}

export interface GoodJob {
  url: string;
  httpUrl: string;
  headers: Record<string, string>;
  sessions: number;
  size: number;
  steps: number;
  strength: number;
  prompt: string;
  /** Camera frames, sent in order, cycling. */
  images: Uint8Array[];
  healthzIntervalMs: number;
  healthzTimeoutMs: number;
  /** After the last phase, outstanding requests get this long before sockets close. */
  drainMs: number;
}

/** Worker to main thread: the sessions are connected (the clock may start), then the report. */
export type GoodWorkerMessage = { kind: 'connected'; connected: number } | { kind: 'report'; report: GoodReport };

export interface GoodPhaseReport {
  /** Final frames received in the phase. */
  frames: number;
  framesPerSession: number[];
  requests: number;
  /** HdrHistograms (microseconds, compressed base64) of requests sent in the phase. */
  frameHistogram: string;
  healthzHistogram: string;
  /** Error replies and transport failures (`closed_1006`, `connect_failed` ...), by code. */
  errors: Record<string, number>;
  /** Other final replies (`superseded`, `skipped`). */
  otherReplies: Record<string, number>;
  /** The longest any session went without a final reply inside the phase (ms), stalls included. */
  longestWaitMs: number;
  healthz: { ok: number; failed: number; timedOut: number; skipped: number };
}

export interface GoodReport {
  phases: GoodPhaseReport[];
  /** Sessions that got `hello` at least once. */
  connected: number;
  reconnects: number;
  eventLoopUtilization: number;
}

/** What an attack did and how the server treated it. */
export interface AttackReport {
  /** What the attacker did: connections, messages, bytes ... */
  counts: Record<string, number>;
  /** Replies from the server, by message type or error code. */
  replies: Record<string, number>;
  /** How attacker connections ended: `closed_<code>`, `reset`, `refused_<status>`, `open_at_end` ... */
  ends: Record<string, number>;
  /** How long attacker connections lived (ms), those still open at the end counted until then. */
  lifetimeMs?: { count: number; p50: number; max: number };
}

export const bump = (record: Record<string, number>, key: string, n = 1): void => {
  record[key] = (record[key] ?? 0) + n;
};

export function lifetimeSummary(ms: readonly number[]): AttackReport['lifetimeMs'] {
  if (ms.length === 0) return { count: 0, p50: 0, max: 0 };
  const sorted = [...ms].sort((a, b) => a - b);
  return { count: sorted.length, p50: Math.round(sorted[sorted.length >> 1]), max: Math.round(sorted[sorted.length - 1]) };
}
