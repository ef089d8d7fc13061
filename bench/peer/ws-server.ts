// PEER FOR COMPARISON ONLY: the same realtime hub served over the `ws` package (the usual Node
// choice) instead of uWebSockets.js, wrapped the way server/realtime/socket.ts wraps it: same
// flags and limits, same authentication and admission, `hello` on open, handleBytes on message,
// closeSession on close. Prints the same `listening` / `model ready` log lines as the real server,
// so the bench starts either one the same way.
//
//   node dist/bench/peer/ws-server.js [the server's flags]
import http from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { CloseCode, PROTOCOL_VERSION, REALTIME_PATH } from '../../shared/protocol.js';
import { configOrExit, exitIfModelFails } from '../../server/bootstrap.js';
import type { ServerConfig } from '../../server/config.js';
import { createLogger, type Logger } from '../../server/logger.js';
import { createRealtimeHub, type RealtimeHub } from '../../server/realtime/hub.js';
import { msgpackSink, type ByteSink } from '../../server/realtime/reply-sink.js';
import { encodeMessage } from '../../shared/codec.js';

type Principal = Parameters<RealtimeHub['admit']>[0];
type Session = ReturnType<RealtimeHub['openSession']>['session'];

interface SocketState {
  session?: Session;
  closed: boolean;
  /** Last time anything (a message or a pong) arrived: the idle timeout counts from here. */
  lastSeen: number;
}

function refuse(socket: import('node:stream').Duplex, status: string, body: string, retryAfter?: string): void {
  const headers = [`HTTP/1.1 ${status}`, 'connection: close', 'content-type: text/plain', `content-length: ${Buffer.byteLength(body)}`];
  if (retryAfter) headers.push(`retry-after: ${retryAfter}`);
  socket.end(`${headers.join('\r\n')}\r\n\r\n${body}`);
}

function serveRealtime(config: ServerConfig, hub: RealtimeHub, logger: Logger): http.Server {
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false, // images are already compressed (uWS: compression DISABLED)
    // As in socket.ts: the documented limit is enforced below with a 1009 close; this only stops
    // what is far over it.
    maxPayload: 2 * config.limits.maxMessageBytes,
  });
  const states = new Map<WebSocket, SocketState>();

  const server = http.createServer((req, res) => {
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/healthz') json(200, { status: 'ok' });
    else if (req.url === '/readyz') json(hub.state() === 'ready' ? 200 : 503, { status: hub.state() });
    else if (req.url === '/v1/models' && hub.model()) {
      json(200, { protocol: PROTOCOL_VERSION, endpoint: REALTIME_PATH, models: [hub.model()], limits: hub.limits() });
    }
    else json(404, { error: 'not found' });
  });

  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== REALTIME_PATH) {
      refuse(socket, '404 Not Found', 'not found');
      return;
    }
    const credentials = {
      authorization: req.headers.authorization ?? '',
      token: url.searchParams.get('token') ?? '',
      origin: req.headers.origin ?? '',
      host: req.headers.host ?? '',
    };
    void hub.authenticator.authenticate(credentials).then((auth) => {
      if (socket.destroyed) return;
      if (!auth.ok) {
        refuse(socket, auth.status, auth.reason);
        return;
      }
      const admission = hub.admit(auth.principal);
      if (!admission.ok) {
        if (admission.reason === 'loading') refuse(socket, '503 Service Unavailable', 'model loading', '1');
        else if (admission.reason === 'full') refuse(socket, '503 Service Unavailable', 'server full', '5');
        else refuse(socket, '429 Too Many Requests', 'too many sessions for this key', '5');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => open(ws, auth.principal));
    });
  });

  function open(ws: WebSocket, principal: Principal): void {
    const state: SocketState = { closed: false, lastSeen: Date.now() };
    states.set(ws, state);
    const transport: ByteSink = {
      send: (bytes: Uint8Array) => {
        if (state.closed) return false;
        // uWS drops a send past maxBackpressure; do the same.
        if (ws.bufferedAmount > config.maxBackpressureBytes) return true;
        const backedUp = ws.bufferedAmount > 0;
        // The write callback is this transport's `drain`: held frames may go once data is flushed.
        ws.send(bytes, { binary: true }, () => {
          if (backedUp && !state.closed) state.session?.drained();
        });
        return true;
      },
      bufferedAmount: () => (state.closed ? 0 : ws.bufferedAmount),
      close: (code: number, reason: string) => {
        if (!state.closed) ws.close(code, reason);
      },
    };
    const { session, hello } = hub.openSession(msgpackSink(transport), principal);
    state.session = session;
    ws.send(encodeMessage(hello), { binary: true });

    ws.on('message', (data: Buffer, isBinary: boolean) => {
      state.lastSeen = Date.now();
      if (data.byteLength > config.limits.maxMessageBytes) {
        ws.close(CloseCode.MessageTooBig, 'message too big');
        return;
      }
      session.handleBytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), isBinary);
    });
    ws.on('pong', () => (state.lastSeen = Date.now()));
    ws.on('error', (err) => logger.debug({ err: err.message }, 'socket error'));
    ws.on('close', (code) => {
      state.closed = true;
      states.delete(ws);
      hub.closeSession(session);
      logger.debug({ code }, 'session closed');
    });
  }

  // uWS's idleTimeout with sendPingsAutomatically: ping sockets silent for half the timeout, close
  // those silent for all of it. One sweep for all sockets, at uWS's 4 s granularity.
  const idleMs = config.limits.idleTimeoutSeconds * 1000;
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [ws, state] of states) {
      if (now - state.lastSeen > idleMs) ws.terminate();
      else if (now - state.lastSeen > idleMs / 2) ws.ping();
    }
  }, 4000);
  sweep.unref();
  server.on('close', () => clearInterval(sweep));
  return server;
}

async function main(): Promise<void> {
  const config = configOrExit(process.argv.slice(2), process.env);
  const logger = createLogger(config.logLevel, config.logPretty);
  const hub = createRealtimeHub(config, logger);
  exitIfModelFails(hub.ready, logger, config);
  const server = serveRealtime(config, hub, logger);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  logger.info({ host: config.host, port, url: `ws://${config.host}:${port}${REALTIME_PATH}`, transport: 'ws (peer for comparison)' }, 'listening');

  const shutdown = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    server.close();
    server.closeAllConnections();
    void hub.close().finally(() => process.exit(0));
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
