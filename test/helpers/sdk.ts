// Helpers for testing the client SDK: a `ws` WebSocket that records what the client puts on the
// wire (what the server sees), and a promise for the next matching connection event.
import WebSocket from 'ws';
import { decodeMessage } from '../../shared/codec.js';
import type { ClientMessage } from '../../shared/protocol.js';
import type { ConnectionEvents, RealtimeConnection, WebSocketConstructor } from '../../client/index.js';

export interface WireLog {
  /** Every message the client sent, decoded, with the time it left. */
  sent: { at: number; message: ClientMessage }[];
  /** Upgrade URLs, one per connection attempt. */
  urls: string[];
}

/** A `ws` subclass recording outgoing messages into `log`; pass it as the SDK's WebSocket option. */
export function spyWebSocket(): { WebSocket: WebSocketConstructor; log: WireLog } {
  const log: WireLog = { sent: [], urls: [] };
  class SpyWebSocket extends WebSocket {
    constructor(url: string, options?: WebSocket.ClientOptions) {
      super(url, options);
      log.urls.push(url);
    }

    override send(data: any, ...rest: any[]): void {
      log.sent.push({ at: performance.now(), message: decodeMessage(data) as ClientMessage });
      (super.send as (...args: unknown[]) => void)(data, ...rest);
    }
  }
  return { WebSocket: SpyWebSocket as unknown as WebSocketConstructor, log };
}

/** The next `event` whose value passes `match`. */
export function nextEvent<K extends keyof ConnectionEvents>(
  connection: RealtimeConnection,
  event: K,
  match: (value: ConnectionEvents[K]) => boolean = () => true,
  timeoutMs = 20_000,
): Promise<ConnectionEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching '${String(event)}' event in ${timeoutMs} ms (state ${connection.state})`));
    }, timeoutMs);
    const off = connection.on(event, (value) => {
      if (!match(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

export type FinalEvent = { event: 'frame' | 'superseded' | 'skipped' | 'cancelled' | 'error'; value: any };

/** The event that ends request `id`: frame, superseded, skipped, cancelled or error. */
export function finalEvent(connection: RealtimeConnection, id: string | number, timeoutMs = 20_000): Promise<FinalEvent> {
  const names = ['frame', 'superseded', 'skipped', 'cancelled', 'error'] as const;
  return new Promise((resolve, reject) => {
    const offs: (() => void)[] = [];
    const done = () => {
      clearTimeout(timer);
      for (const off of offs) off();
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`request ${id} did not end in ${timeoutMs} ms`));
    }, timeoutMs);
    for (const event of names) {
      offs.push(
        connection.on(event, (value: any) => {
          if ((event === 'error' ? value.requestId : value.id) !== id) return;
          done();
          resolve({ event, value });
        }),
      );
    }
  });
}

/** Records every event of a connection, in order, as [name, value] pairs. */
export function recordEvents(connection: RealtimeConnection): [keyof ConnectionEvents, any][] {
  const events: [keyof ConnectionEvents, any][] = [];
  const names: (keyof ConnectionEvents)[] = [
    'state', 'hello', 'sent', 'preview', 'frame', 'superseded', 'skipped', 'cancelled', 'retrying', 'going_away', 'error',
  ];
  for (const name of names) connection.on(name, (value) => events.push([name, value]));
  return events;
}
