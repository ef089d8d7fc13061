// A minimal protocol client for tests: records every server message and lets a test wait for the
// next one matching a predicate.
import WebSocket from 'ws';
import { decodeMessage, encodeMessage } from '../../shared/codec.js';
import type { ClientMessage, HelloMessage, ServerMessage } from '../../shared/protocol.js';

export class TestClient {
  readonly messages: ServerMessage[] = [];
  private waiters: { match: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }[] = [];
  private cursor = 0;
  closeCode: number | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const message = decodeMessage(data) as ServerMessage;
      this.messages.push(message);
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(message)) return true;
        w.resolve(message);
        return false;
      });
    });
    ws.on('close', (code) => (this.closeCode = code));
  }

  static async connect(url: string, headers: Record<string, string> = {}): Promise<{ client: TestClient; hello: HelloMessage }> {
    const ws = new WebSocket(url, { headers });
    ws.binaryType = 'nodebuffer';
    const client = new TestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const hello = (await client.next((m) => m.type === 'hello')) as HelloMessage;
    return { client, hello };
  }

  send(message: ClientMessage | Record<string, unknown>): void {
    this.ws.send(encodeMessage(message as ClientMessage));
  }

  sendRaw(bytes: Uint8Array | string): void {
    this.ws.send(bytes);
  }

  /** The first message at or after the cursor that matches; the cursor moves past it. */
  next(match: (m: ServerMessage) => boolean, timeoutMs = 30_000): Promise<ServerMessage> {
    for (let i = this.cursor; i < this.messages.length; i++) {
      if (match(this.messages[i])) {
        this.cursor = i + 1;
        return Promise.resolve(this.messages[i]);
      }
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching message in ${timeoutMs} ms; got ${this.summary()}`)), timeoutMs);
      this.waiters.push({
        match,
        resolve: (m) => {
          clearTimeout(timer);
          this.cursor = this.messages.length;
          resolve(m);
        },
      });
    });
  }

  /** All messages about request `id`, waiting until its final reply (frame, superseded, skipped, cancelled, error). */
  async untilSettled(id: string | number, timeoutMs = 30_000): Promise<ServerMessage[]> {
    const final = (m: ServerMessage) =>
      'id' in m && m.id === id && ['frame', 'superseded', 'skipped', 'cancelled', 'error'].includes(m.type);
    if (!this.messages.some(final)) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`request ${id} did not settle; got ${this.summary()}`)), timeoutMs);
        this.waiters.push({ match: final, resolve: () => (clearTimeout(timer), resolve()) });
      });
    }
    return this.messages.filter((m) => 'id' in m && m.id === id);
  }

  summary(): string {
    return this.messages.map((m) => `${m.type}${'id' in m ? `(${String(m.id)})` : ''}${m.type === 'error' ? `:${m.code}` : ''}`).join(' ');
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    const closed = new Promise((resolve) => this.ws.once('close', resolve));
    this.ws.close();
    await closed;
  }
}
