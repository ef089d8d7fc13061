// fal's realtime WebSocket route, `/{owner}/{alias}[/{sub}...]/realtime`, for every served app id:
// the same upgrade (credentials, origin, admission) and socket limits as /v1/realtime, with fal's
// conventions: `?fal_jwt_token=` or `Authorization: Key`, `?max_buffering=1..60`, and a refused
// credential answered on the socket as fal's client expects (`{"status":"error","error":"Unauthorized"}`,
// then a close), since a browser cannot read why an upgrade failed.
import type { TemplatedApp, WebSocket } from '../transport/uws.js';
import { CloseCode } from '../../shared/protocol.js';
import type { ServerConfig } from '../config.js';
import type { Logger } from '../logger.js';
import type { RealtimeHub } from '../realtime/hub.js';
import type { LivenessSweep, WatchedSocket } from '../realtime/liveness.js';
import type { ModelHost } from '../realtime/model-host.js';
import { socketLimits } from '../realtime/socket.js';
import { handleUpgrade } from '../realtime/upgrade.js';
import type { Principal } from '../security/authenticator.js';
import type { AppTable, FalApp } from './apps.js';
import type { ImageFetchPolicy } from './image-source.js';
import { FalRealtimeConnection } from './realtime-connection.js';

interface FalSocketData {
  closed: boolean;
  app: FalApp;
  host: ModelHost;
  principal?: Principal;
  unauthorized?: string;
  maxBuffering?: number;
  connection?: FalRealtimeConnection;
  watched?: WatchedSocket;
}

export interface FalRealtimeDeps {
  config: ServerConfig;
  hub: RealtimeHub;
  logger: Logger;
  liveness: LivenessSweep;
  apps: AppTable;
  imageFetch: ImageFetchPolicy;
}

/** App ids have two segments and up to two sub-path segments before `/realtime`. */
const PATTERNS = ['/:owner/:alias/realtime', '/:owner/:alias/:sub/realtime', '/:owner/:alias/:sub/:sub2/realtime'];

const MAX_BUFFERING = { min: 1, max: 60 };

export function registerFalRealtime(app: TemplatedApp, deps: FalRealtimeDeps): void {
  const { config, hub, logger, liveness, apps, imageFetch } = deps;
  for (const pattern of PATTERNS) {
    app.ws<FalSocketData>(pattern, {
      ...socketLimits(config),

      upgrade: (res, req, context) => {
        const url = req.getUrl();
        const match = apps.match(url);
        const host = match && hub.hostFor(match.app.modelDir);
        if (!match || !host) {
          res.writeStatus('404 Not Found').end(apps.unknownAppMessage(url));
          return;
        }
        const raw = new URLSearchParams(req.getQuery() ?? '').get('max_buffering');
        const maxBuffering = raw === null ? undefined : Number(raw);
        if (maxBuffering !== undefined && (!Number.isInteger(maxBuffering) || maxBuffering < MAX_BUFFERING.min || maxBuffering > MAX_BUFFERING.max)) {
          res.writeStatus('400 Bad Request').end(`max_buffering must be an integer from ${MAX_BUFFERING.min} to ${MAX_BUFFERING.max}`);
          return;
        }
        handleUpgrade<FalSocketData>(hub, res, req, context, {
          tokenParam: 'fal_jwt_token',
          // The token admits the connection, which then lives on as it does on fal: fal's client
          // has no in-band renewal (it fetches a fresh token for its next connection).
          data: (principal) => ({ closed: false, app: match.app, host, principal: { keyId: principal.keyId }, maxBuffering }),
          unauthorizedData: (reason) => ({ closed: false, app: match.app, host, unauthorized: reason }),
        });
      },

      open: (ws) => {
        const data = ws.getUserData();
        if (data.unauthorized !== undefined || !data.principal) {
          ws.send(JSON.stringify({ status: 'error', error: 'Unauthorized', reason: data.unauthorized }), false);
          ws.end(CloseCode.PolicyViolation, 'Unauthorized');
          return;
        }
        const socket = {
          // Sends from inference callbacks happen outside uWS handlers: cork to flush in one syscall.
          sendBinary: (bytes: Uint8Array) => !data.closed && (ws.cork(() => ws.send(bytes, true, false)), true),
          sendText: (text: string) => !data.closed && (ws.cork(() => ws.send(text, false, false)), true),
          bufferedAmount: () => (data.closed ? 0 : ws.getBufferedAmount()),
          // Not corked: see socket.ts.
          close: (code: number, reason: string) => {
            if (!data.closed) ws.end(code, reason);
          },
        };
        const connection = new FalRealtimeConnection(socket, hub, data.host, data.app, data.principal, data.maxBuffering, imageFetch, logger, config.limits.sessionIdleSeconds);
        data.connection = connection;
        const session = connection.realtimeSession;
        data.watched = {
          ping: (payload) => {
            if (!data.closed) ws.cork(() => ws.ping(payload));
          },
          close: (code, reason) => connection.closeFromServer(code, reason),
          lastActivityAt: () => session.lastActivityAt,
          openRequests: () => session.openRequests,
        };
        liveness.add(data.watched);
        logger.debug({ app: data.app.id }, 'fal realtime session opened');
      },

      message: (ws: WebSocket<FalSocketData>, message, isBinary) => {
        const { connection } = ws.getUserData();
        if (!connection) return;
        if (message.byteLength > config.limits.maxMessageBytes) {
          ws.end(CloseCode.MessageTooBig, 'message too big');
          return;
        }
        connection.handleBytes(new Uint8Array(message), isBinary);
      },

      pong: (ws, message) => {
        const { watched } = ws.getUserData();
        if (watched) liveness.pong(watched, message);
      },

      drain: (ws) => ws.getUserData().connection?.drained(),

      close: (ws) => {
        const data = ws.getUserData();
        data.closed = true;
        if (data.watched) liveness.delete(data.watched);
        data.connection?.close();
      },
    });
  }
}
