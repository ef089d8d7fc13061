// What the SDK does about the server saying "not now": which `error` replies leave the input worth
// sending again (the SDK resends it instead of reporting a failure), how long to wait first, and
// what each close code of an open connection asks of the reconnect logic.
import { CloseCode, ErrorCode, type ErrorMessage, type Limits } from '../shared/protocol.js';
import { spread } from './backoff.js';

/** The server could not take the request now, through no fault of the input. */
const RETRYABLE: ReadonlySet<string> = new Set<ErrorCode>([
  ErrorCode.NotReady,
  ErrorCode.ShuttingDown,
  ErrorCode.EngineRestarted,
  ErrorCode.Overloaded,
  ErrorCode.RateLimited,
]);

export const DEFAULT_REQUEST_RETRIES = 10;

/**
 * For a server too old to send `retryAfterMs`: about one model reload or image backlog. Ten
 * retries at this pace cover an inference restart of several seconds.
 */
const DEFAULT_RETRY_AFTER_MS = 1000;

/**
 * A crowd told to reconnect at the same moment (a draining node's whole audience) is spread over
 * at least this long; a balancer in front sends them to the other nodes.
 */
const GOING_AWAY_SPREAD_MS = 250;

export function isRetryable(error: ErrorMessage): boolean {
  return RETRYABLE.has(error.code);
}

/** The wait before resending after `error`: the server's `retryAfterMs` or a default, spread a little. */
export function requestRetryDelay(error: ErrorMessage, limits: Partial<Limits> | undefined, random: () => number = Math.random): number {
  let ms = error.retryAfterMs;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    // One token of the server's per-connection bucket comes back after 1/rate seconds.
    const rate = limits?.maxRequestsPerSecond;
    ms = error.code === ErrorCode.RateLimited && rate && rate > 0 ? Math.ceil(1000 / rate) : DEFAULT_RETRY_AFTER_MS;
  }
  return spread(ms, random);
}

/** The wait before reconnecting to a server that is going away: its suggestion plus jitter. */
export function goingAwayDelay(reconnectAfterMs: unknown, random: () => number = Math.random): number {
  const ms = typeof reconnectAfterMs === 'number' && Number.isFinite(reconnectAfterMs) ? reconnectAfterMs : 0;
  return spread(ms, random, GOING_AWAY_SPREAD_MS);
}

export type AfterClose =
  /** Planned: reconnect at once (jittered), through the same URL, backoff reset. */
  | { kind: 'going_away' }
  /** The server found the connection unused: stay disconnected until there is something to send. */
  | { kind: 'idle' }
  /** Closed for the client's own conduct: reconnect, but the backoff keeps growing across such closes. */
  | { kind: 'misbehaved'; why: string }
  | { kind: 'dropped' };

/** What an open connection's close code asks for. */
export function afterClose(code: number): AfterClose {
  switch (code) {
    case CloseCode.GoingAway:
      return { kind: 'going_away' };
    case CloseCode.Idle:
      return { kind: 'idle' };
    case CloseCode.TooManyBadMessages:
      return { kind: 'misbehaved', why: 'too many bad messages, a bug in this client or the inputs it was given' };
    case CloseCode.MessageDeadline:
      return { kind: 'misbehaved', why: 'a message did not arrive whole in time (a stalled upload)' };
    default:
      return { kind: 'dropped' };
  }
}
