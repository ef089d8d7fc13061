// Graceful shutdown of the realtime sessions (SIGTERM/SIGINT, see main.ts):
//  1. the hub refuses new sessions (503 + Retry-After) and new requests (`shutting_down`);
//  2. every request already accepted (running, pending, or its image still decoding) finishes and
//     its reply is written to the socket;
//  3. then that session gets `going_away` and is closed with 1001, so clients reconnect through
//     the balancer to another node at once instead of after a timeout;
//  4. sessions still busy when the timeout runs out get `shutting_down` for what is left, then the
//     same `going_away` and 1001.
import type { Logger } from '../logger.js';

/** What a session must offer the drain. */
export interface DrainableSession {
  /** Accepted requests not yet answered, or replies not yet written. */
  readonly busy: boolean;
  /** Sends `going_away` after everything queued for the socket, then closes it with 1001. */
  goAway(): void;
  /** Answers every open request with `shutting_down` (the drain ran out of time). */
  abandonRequests(): void;
}

export interface DrainReport {
  sessions: number;
  /** Sessions closed only after the timeout, with requests answered `shutting_down`. */
  timedOut: number;
  ms: number;
}

const POLL_MS = 20;
/** After going_away, how long a client may take to answer the close frame before we stop waiting. */
const CLOSE_GRACE_MS = 2000;

export async function drainSessions(sessions: ReadonlySet<DrainableSession>, timeoutMs: number, logger: Logger): Promise<DrainReport> {
  const started = performance.now();
  const total = sessions.size;
  logger.info({ sessions: total, timeoutMs }, 'draining: finishing accepted requests');
  const told = new Set<DrainableSession>();
  const deadline = started + timeoutMs;
  let timedOut = 0;
  // Polling keeps this independent of the many paths by which a request can end (frame, cancel,
  // supersede, error, a decode failing); at 20 ms it costs nothing and adds at most 20 ms.
  while (sessions.size > 0) {
    const now = performance.now();
    for (const session of sessions) {
      if (told.has(session)) continue;
      if (session.busy && now < deadline) continue;
      if (session.busy) {
        session.abandonRequests();
        timedOut++;
      }
      told.add(session);
      session.goAway();
    }
    if (now > deadline + CLOSE_GRACE_MS) break;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  const report = { sessions: total, timedOut, ms: Math.round(performance.now() - started) };
  logger.info({ ...report, unclosed: sessions.size }, 'drained');
  return report;
}
