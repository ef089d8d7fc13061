// The /v1/realtime WebSocket route: wires uWebSockets.js callbacks to one RealtimeSession per
// socket. Every uWS limit is set explicitly here (socketLimits, shared with fal's realtime route).
import uWS, { type TemplatedApp, type WebSocket } from '../transport/uws.js';
import { encodeMessage } from '../../shared/codec.js';
import { CloseCode, REALTIME_PATH } from '../../shared/protocol.js';
import type { ServerConfig } from '../config.js';
import type { Logger } from '../logger.js';
import type { RealtimeHub } from './hub.js';
import type { ModelHost } from './model-host.js';
import { LivenessSweep, type WatchedSocket } from './liveness.js';
import { msgpackSink } from './reply-sink.js';
import type { RealtimeSession } from './session.js';
import { handleUpgrade } from './upgrade.js';
import type { Principal } from '../security/authenticator.js';

interface SocketData {
  session?: RealtimeSession;
  closed: boolean;
  remote: string;
  principal: Principal;
  host: ModelHost;
  watched?: WatchedSocket;
}

export interface RealtimeDeps {
  config: ServerConfig;
  hub: RealtimeHub;
  logger: Logger;
  liveness: LivenessSweep;
}

export interface RealtimeStats {
  connections: number;
}

/** The uWS limits every realtime socket route shares, each set explicitly. The two uWS has no
 * setting for (message deadline, session idle) are enforced by liveness.ts. */
export function socketLimits(config: ServerConfig) {
  return {
    compression: uWS.DISABLED, // images are already compressed
    // uWS drops a socket over maxPayloadLength without a close frame, so the documented limit is
    // enforced in the message handlers with a proper 1009 close, and uWS's own limit only stops
    // what is far over it.
    maxPayloadLength: 2 * config.limits.maxMessageBytes,
    maxBackpressure: config.maxBackpressureBytes,
    // Slow readers are handled by dropping previews, not by uWS closing the socket.
    closeOnBackpressureLimit: 0,
    // Transport-level: closes sockets that send nothing, not even a pong. The message deadline and
    // the session idle timeout (liveness.ts) catch what this cannot.
    idleTimeout: config.limits.idleTimeoutSeconds,
    sendPingsAutomatically: true,
    maxLifetime: 0,
  };
}

/** One liveness sweep for the sockets of every front door. */
export function createLiveness(config: ServerConfig, hub: RealtimeHub): LivenessSweep {
  const liveness = new LivenessSweep({
    messageDeadlineMs: config.limits.messageDeadlineSeconds * 1000,
    sessionIdleMs: config.limits.sessionIdleSeconds * 1000,
    closed: (reason) => hub.metrics.closes.inc({ reason }),
  });
  liveness.start();
  return liveness;
}

export function registerRealtime(app: TemplatedApp, deps: RealtimeDeps): RealtimeStats {
  const stats: RealtimeStats = { connections: 0 };
  const { config, hub, logger, liveness } = deps;
  app.ws<SocketData>(REALTIME_PATH, {
    ...socketLimits(config),

    upgrade: (res, req, context) => {
      // `?model=NAME` picks one of the served models (GET /v1/models); the default is --model's.
      const wanted = new URLSearchParams(req.getQuery() ?? '').get('model');
      const host = wanted ? hub.hostFor(wanted) : hub.hosts[0];
      if (!host) {
        const served = hub.models().map((m) => m.name).join(', ');
        res.writeStatus('404 Not Found').end(`no model ${JSON.stringify(wanted)} is served here; served: ${served}`);
        return;
      }
      handleUpgrade<SocketData>(hub, res, req, context, {
        tokenParam: 'token',
        data: (principal, request) => ({ closed: false, remote: request.remote, principal, host }),
      });
    },

    open: (ws) => {
      stats.connections++;
      const data = ws.getUserData();
      const transport = {
        send: (bytes: Uint8Array) => {
          if (data.closed) return false;
          // Sends from worker callbacks happen outside uWS handlers: cork to flush in one syscall.
          ws.cork(() => ws.send(bytes, true, false));
          return true;
        },
        bufferedAmount: () => (data.closed ? 0 : ws.getBufferedAmount()),
        close: (code: number, reason: string) => {
          // Not corked: end() inside cork() sends the close frame but leaves the TCP connection
          // open until the peer answers, and a peer stuck mid-message never does (measured).
          if (!data.closed) ws.end(code, reason);
        },
      };
      const { session, hello } = hub.openSession(msgpackSink(transport), data.principal, { host: data.host });
      data.session = session;
      data.watched = {
        // The sweep runs outside uWS handlers, where only a corked send is flushed right away.
        ping: (payload) => {
          if (!data.closed) ws.cork(() => ws.ping(payload));
        },
        close: transport.close,
        lastActivityAt: () => session.lastActivityAt,
        openRequests: () => session.openRequests,
      };
      liveness.add(data.watched);
      ws.send(encodeMessage(hello), true, false);
      logger.debug({ remote: data.remote }, 'session opened');
    },

    message: (ws: WebSocket<SocketData>, message, isBinary) => {
      const session = ws.getUserData().session;
      if (!session) return;
      if (message.byteLength > config.limits.maxMessageBytes) {
        ws.end(CloseCode.MessageTooBig, 'message too big');
        return;
      }
      // The ArrayBuffer is only valid during this callback; the codec copies binary fields out.
      session.handleBytes(new Uint8Array(message), isBinary);
    },

    pong: (ws, message) => {
      const { watched } = ws.getUserData();
      if (watched) liveness.pong(watched, message);
    },

    drain: (ws) => {
      ws.getUserData().session?.drained();
    },

    close: (ws, code) => {
      stats.connections--;
      const data = ws.getUserData();
      data.closed = true;
      if (data.watched) liveness.delete(data.watched);
      if (data.session) hub.closeSession(data.session);
      logger.debug({ remote: data.remote, code }, 'session closed');
    },
  });
  return stats;
}
