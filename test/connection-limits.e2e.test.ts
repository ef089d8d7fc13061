// Connections that hold server memory or a session slot without doing their part: a message stalled
// halfway (closed with 4004 at the message deadline) and a client that answers pings but never sends
// (closed with 4008 at the session idle timeout). Real server, real sockets.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import WebSocket from 'ws';
import { CloseCode } from '../shared/protocol.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';

const DEADLINE_S = 4;
const IDLE_S = 3;

let deadlineServer: ServerProcess;
let idleServer: ServerProcess;
before(async () => {
  [deadlineServer, idleServer] = await Promise.all([
    startServerProcess(['--message-deadline', String(DEADLINE_S)]),
    startServerProcess(['--session-idle-timeout', String(IDLE_S)]),
  ]);
});
after(async () => {
  await Promise.all([deadlineServer?.stop(), idleServer?.stop()]);
});

/** Server-to-client frames as they arrive on a raw socket (unmasked, RFC 6455). */
function readFrames(socket: Socket, first: Buffer, onFrame: (opcode: number, payload: Buffer) => void): void {
  let buffered = Buffer.alloc(0);
  const take = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      if (buffered.length < 2) return;
      let length = buffered[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffered.length < 4) return;
        length = buffered.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffered.length < 10) return;
        length = Number(buffered.readBigUInt64BE(2));
        offset = 10;
      }
      if (buffered.length < offset + length) return;
      onFrame(buffered[0] & 0x0f, buffered.subarray(offset, offset + length));
      buffered = buffered.subarray(offset + length);
    }
  };
  take(first);
  socket.on('data', take);
}

/** A hand-made WebSocket client: upgrade, then whatever bytes the test writes itself. */
async function rawUpgrade(port: number): Promise<{ socket: Socket; frames: { opcode: number; payload: Buffer; at: number }[]; closeFrame: Promise<void> }> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(
    'GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  );
  const head = await new Promise<Buffer>((resolve) => {
    let received = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (!received.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      resolve(received);
    };
    socket.on('data', onData);
  });
  const end = head.indexOf('\r\n\r\n') + 4;
  assert.match(head.subarray(0, end).toString(), /^HTTP\/1\.1 101/);
  const frames: { opcode: number; payload: Buffer; at: number }[] = [];
  let closeFrame!: () => void;
  const closed = new Promise<void>((resolve) => (closeFrame = resolve));
  socket.once('close', () => closeFrame());
  // The server's hello may have come in the same packet as the 101 response.
  readFrames(socket, head.subarray(end), (opcode, payload) => {
    frames.push({ opcode, payload, at: performance.now() });
    if (opcode === 0x8) closeFrame();
  });
  return { socket, frames, closeFrame: closed };
}

describe('limits on what a connection may hold', { concurrency: true }, () => {
  test(`a message stalled halfway is dropped with 4004 within 1.5 x --message-deadline ${DEADLINE_S} s`, { timeout: 30_000 }, async (t) => {
    const { socket, frames, closeFrame } = await rawUpgrade(deadlineServer.port);
    // A client that behaves (and so answers pings) shares the server all along and is left alone.
    const { client: good } = await TestClient.connect(deadlineServer.wsUrl);

    // Separate writes: the frame header announces 4 MB, then one byte a second follows, which
    // resets uWS's own idle timer every time.
    const header = Buffer.alloc(14);
    header[0] = 0x82; // FIN, binary
    header[1] = 0x80 | 127; // masked, 64-bit length
    header.writeBigUInt64BE(BigInt(4 * 1024 * 1024), 2);
    header.writeUInt32BE(0x12345678, 10);
    const started = performance.now();
    socket.write(header);
    const trickle = setInterval(() => socket.write(Buffer.from([0x42])), 1000);
    socket.on('error', () => {});
    const timeout = setTimeout(() => socket.destroy(), 15_000);
    // The server must let go of the connection itself (and so of the 4 MB it was buffering): a
    // client stuck mid-message cannot answer the close frame.
    const tcpClosed = new Promise<number>((resolve) => socket.once('end', () => resolve(performance.now())));
    await closeFrame;
    const endedAt = await Promise.race([tcpClosed, new Promise<number>((resolve) => setTimeout(() => resolve(Infinity), 3000))]);
    clearTimeout(timeout);
    clearInterval(trickle);
    socket.destroy();
    assert.ok(Number.isFinite(endedAt), 'the server closed the TCP connection after its close frame');
    const elapsed = (performance.now() - started) / 1000;

    const close = frames.find((f) => f.opcode === 0x8);
    assert.ok(close, `no close frame in ${elapsed.toFixed(1)} s (frames: ${frames.map((f) => f.opcode).join(',')})`);
    assert.equal(close.payload.readUInt16BE(0), CloseCode.MessageDeadline, close.payload.subarray(2).toString());
    assert.ok(frames.some((f) => f.opcode === 0x9), 'the server pinged the stalled client');
    const closedAfter = (close.at - started) / 1000;
    t.diagnostic(`stalled message closed after ${closedAfter.toFixed(1)} s`);
    assert.ok(closedAfter >= DEADLINE_S - 0.5 && closedAfter <= 1.5 * DEADLINE_S + 2, `closed after ${closedAfter.toFixed(1)} s`);

    assert.equal(good.closeCode, undefined, 'the well-behaved client is still connected');
    good.send({ type: 'generate', id: 'after', prompt: 'a red circle', steps: 1, width: 64, height: 64 });
    assert.equal((await good.untilSettled('after')).at(-1)?.type, 'frame');
    await good.close();
    const metrics = await (await fetch(`${deadlineServer.httpUrl}/metrics`)).text();
    assert.match(metrics, /realtime_closes_total\{reason="message_deadline"\} 1\b/);
  });

  test(`a client that only answers pings is closed with 4008 after --session-idle-timeout ${IDLE_S} s; one that sends keeps its connection`, { timeout: 30_000 }, async (t) => {
    const idle = new WebSocket(idleServer.wsUrl);
    await once(idle, 'open');
    const openedAt = performance.now();
    const idleClosed = once(idle, 'close');
    const { client: active } = await TestClient.connect(idleServer.wsUrl);

    let n = 0;
    const sending = setInterval(() => active.send({ type: 'generate', id: `g${n++}`, prompt: 'a blue square', steps: 1, width: 64, height: 64 }), 1000);
    const [code, reason] = (await idleClosed) as [number, Buffer];
    const idleFor = (performance.now() - openedAt) / 1000;
    t.diagnostic(`idle client closed after ${idleFor.toFixed(1)} s`);
    assert.equal(code, CloseCode.Idle);
    assert.match(reason.toString(), /idle/);
    assert.ok(idleFor >= IDLE_S - 0.5 && idleFor <= IDLE_S + 2.5, `closed after ${idleFor.toFixed(1)} s`);

    // Twice the idle timeout in all: the sending client is still there and served.
    await new Promise((resolve) => setTimeout(resolve, IDLE_S * 1000));
    clearInterval(sending);
    assert.equal(active.closeCode, undefined, `the active client was closed (${active.closeCode})`);
    const last = `g${n - 1}`;
    assert.equal((await active.untilSettled(last)).at(-1)?.type, 'frame');
    await active.close();
    const metrics = await (await fetch(`${idleServer.httpUrl}/metrics`)).text();
    assert.match(metrics, /realtime_closes_total\{reason="idle"\} 1\b/);
  });
});
