// Webhook delivery against a real HTTP receiver on loopback: signatures a receiver can verify,
// retries with backoff, giving up, timeouts, the concurrency bound and a stop() that waits.
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import {
  WebhookDispatcher,
  webhookRetryDelay,
  type WebhookDelivery,
  type WebhookDispatcherOptions,
  type WebhookOutbox,
  type WebhookOutcome,
} from '../server/fal/webhooks.js';
import { verifyWebhookSignature } from '../shared/webhook-signature.js';
import { webhookSignatureHeaders, webhookSigner } from '../server/fal/webhook-signer.js';
import { falReceiverVerifies } from './helpers/fal-server.js';

const SIGNER = webhookSigner('webhook secret for tests');
const KEYS = { keys: [SIGNER.jwk] };

/** The store, in memory: rows become due at nextAttemptAt and leave once delivered or given up. */
class FakeOutbox implements WebhookOutbox {
  readonly rows = new Map<number, WebhookDelivery>();
  readonly outcomes: { id: number; outcome: WebhookOutcome }[] = [];
  private nextId = 1;

  add(requestId: string, url: string, body: string): number {
    const id = this.nextId++;
    this.rows.set(id, { id, requestId, keyId: 'key-1', url, body, attempts: 0, nextAttemptAt: 0 });
    return id;
  }

  async dueWebhooks(now: number, limit: number): Promise<WebhookDelivery[]> {
    return [...this.rows.values()]
      .filter((row) => row.nextAttemptAt <= now)
      .sort((a, b) => a.nextAttemptAt - b.nextAttemptAt || a.id - b.id)
      .slice(0, limit)
      .map((row) => ({ ...row }));
  }

  async webhookAttempted(id: number, outcome: WebhookOutcome): Promise<void> {
    this.outcomes.push({ id, outcome });
    const row = this.rows.get(id);
    assert.ok(row, `attempt recorded for unknown or finished delivery ${id}`);
    if (outcome.delivered || 'gaveUp' in outcome) {
      this.rows.delete(id);
    } else {
      row.attempts++;
      row.nextAttemptAt = outcome.nextAttemptAt;
    }
  }

  finished(): number {
    return this.outcomes.filter(({ outcome }) => outcome.delivered || 'gaveUp' in outcome).length;
  }
}

interface Received { headers: IncomingHttpHeaders; body: string; url: string }

/** A loopback receiver; `respond` decides each answer (and may hold it). */
async function startReceiver(respond: (req: IncomingMessage, res: ServerResponse, n: number) => void) {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), url: req.url ?? '' });
      respond(req, res, received.length);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function counters() {
  const counts = { delivered: 0, retried: 0, gaveUp: 0 };
  return {
    counts,
    events: { delivered: () => { counts.delivered++; }, retried: () => { counts.retried++; }, gaveUp: () => { counts.gaveUp++; } },
  };
}

function capturingLogger() {
  const lines: { level: number; msg: string; [key: string]: unknown }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

async function waitFor(what: string, condition: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const FAST: Partial<WebhookDispatcherOptions> = { baseDelayMs: 20, maxDelayMs: 50, pollMs: 10, timeoutMs: 2_000 };

describe('WebhookDispatcher', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function setup(respond: Parameters<typeof startReceiver>[0], options: Partial<WebhookDispatcherOptions> = {}) {
    const receiver = await startReceiver(respond);
    const outbox = new FakeOutbox();
    const { counts, events } = counters();
    const { logger, lines } = capturingLogger();
    const dispatcher = new WebhookDispatcher(outbox, { signer: SIGNER, ...FAST, ...options }, events, logger);
    cleanups.push(() => receiver.close(), () => dispatcher.stop());
    return { receiver, outbox, counts, lines, dispatcher };
  }

  test('delivers on the first try with a signature the receiver can verify', async () => {
    const { receiver, outbox, counts, dispatcher } = await setup((_req, res) => res.writeHead(200).end('ok'));
    dispatcher.start();
    const body = JSON.stringify({ request_id: 'req-1', status: 'OK', payload: { images: [{ url: 'x' }], note: 'ünïcödé' } });
    outbox.add('req-1', `${receiver.url}/hook?token=abc`, body);
    dispatcher.kick();
    await waitFor('delivery', () => counts.delivered === 1);

    assert.equal(receiver.received.length, 1);
    const [got] = receiver.received;
    assert.equal(got!.url, '/hook?token=abc');
    assert.equal(got!.body, body, 'body posted exactly as stored');
    assert.equal(got!.headers['content-type'], 'application/json');
    assert.equal(got!.headers['x-fal-webhook-request-id'], 'req-1');
    assert.equal(got!.headers['x-fal-webhook-user-id'], 'key-1');
    const timestamp = Number(got!.headers['x-fal-webhook-timestamp']);
    assert.ok(Math.abs(timestamp - Date.now() / 1000) < 5);
    assert.match(String(got!.headers['x-fal-webhook-signature']), /^[0-9a-f]{128}$/);

    assert.equal(falReceiverVerifies(KEYS, got!.headers, got!.body), true, "verified as fal's documentation says");
    assert.equal(await verifyWebhookSignature(KEYS, got!.headers, got!.body), true);
    assert.equal(await verifyWebhookSignature(KEYS, got!.headers, got!.body.replace('OK', 'ERROR')), false, 'tampered body');
    assert.equal(await verifyWebhookSignature([webhookSigner('another secret').jwk], got!.headers, got!.body), false, 'another key');
    assert.equal(await verifyWebhookSignature(KEYS, { ...got!.headers, 'x-fal-webhook-request-id': 'req-2' }, got!.body), false, 'other request id');
    assert.equal(await verifyWebhookSignature(KEYS, { ...got!.headers, 'x-fal-webhook-user-id': 'key-2' }, got!.body), false, 'other user id');
    assert.equal(await verifyWebhookSignature(KEYS, got!.headers, got!.body, { now: Date.now() + 301_000 }), false, 'stale');
    assert.equal(await verifyWebhookSignature(KEYS, got!.headers, got!.body, { now: Date.now() + 200_000 }), true, 'within tolerance');
    assert.deepEqual(outbox.outcomes, [{ id: 1, outcome: { delivered: true } }]);
    assert.deepEqual(counts, { delivered: 1, retried: 0, gaveUp: 0 });
  });

  test('retries after a 500 and then delivers', async () => {
    const { receiver, outbox, counts, dispatcher } = await setup((_req, res, n) => res.writeHead(n === 1 ? 500 : 200).end());
    dispatcher.start();
    outbox.add('req-retry', receiver.url, '{"n":1}');
    dispatcher.kick();
    await waitFor('delivery', () => counts.delivered === 1);
    assert.deepEqual(counts, { delivered: 1, retried: 1, gaveUp: 0 });
    assert.equal(receiver.received.length, 2);
    const first = outbox.outcomes[0]!.outcome;
    assert.ok(!first.delivered && 'nextAttemptAt' in first);
    // Each attempt is signed afresh, and both verify.
    for (const got of receiver.received) assert.ok(await verifyWebhookSignature(KEYS, got.headers, got.body));
  });

  test('gives up after maxAttempts, counting 4xx and redirects as failures, and warns', async () => {
    const statuses = [404, 302, 500];
    const { receiver, outbox, counts, lines, dispatcher } = await setup((_req, res, n) => {
      res.writeHead(statuses[n - 1] ?? 200, { location: 'http://127.0.0.1:1/elsewhere' }).end();
    }, { maxAttempts: 3 });
    dispatcher.start();
    outbox.add('req-doomed', `${receiver.url}/hook?token=secret-token`, '{}');
    dispatcher.kick();
    await waitFor('giving up', () => counts.gaveUp === 1);
    assert.deepEqual(counts, { delivered: 0, retried: 2, gaveUp: 1 });
    assert.equal(receiver.received.length, 3, 'the redirect was not followed');
    assert.deepEqual(outbox.outcomes.at(-1)!.outcome, { delivered: false, gaveUp: true, error: 'HTTP 500' });
    assert.equal(outbox.rows.size, 0);
    const warning = lines.find((line) => line.level === 40);
    assert.ok(warning, 'gave up at warn');
    assert.equal(warning.requestId, 'req-doomed');
    assert.ok(!JSON.stringify(lines).includes('secret-token'), 'the webhook URL\'s query stays out of the logs');
  });

  test('a receiver that does not answer in timeoutMs is a failed attempt', async () => {
    const held: ServerResponse[] = [];
    const { receiver, outbox, counts, dispatcher } = await setup((_req, res) => { held.push(res); }, { timeoutMs: 150, maxAttempts: 2 });
    dispatcher.start();
    outbox.add('req-slow', receiver.url, '{}');
    dispatcher.kick();
    const started = Date.now();
    await waitFor('giving up', () => counts.gaveUp === 1);
    assert.ok(Date.now() - started >= 300, 'two attempts of 150 ms each');
    assert.deepEqual(counts, { delivered: 0, retried: 1, gaveUp: 1 });
    const last = outbox.outcomes.at(-1)!.outcome;
    assert.ok(!last.delivered && 'gaveUp' in last);
    assert.match(last.error, /timed out after 150 ms/);
  });

  test('a refused connection is a failed attempt', async () => {
    const { receiver, outbox, counts, dispatcher } = await setup((_req, res) => res.end(), { maxAttempts: 1 });
    const url = receiver.url;
    await receiver.close();
    dispatcher.start();
    outbox.add('req-refused', url, '{}');
    dispatcher.kick();
    await waitFor('giving up', () => counts.gaveUp === 1);
    const last = outbox.outcomes.at(-1)!.outcome;
    assert.ok(!last.delivered && 'gaveUp' in last);
    assert.match(last.error, /ECONNREFUSED/);
  });

  test('never has more than `concurrency` posts in flight', async () => {
    let open = 0;
    let peak = 0;
    const { receiver, outbox, counts, dispatcher } = await setup((_req, res) => {
      open++;
      peak = Math.max(peak, open);
      setTimeout(() => {
        open--;
        res.writeHead(204).end();
      }, 60);
    }, { concurrency: 3 });
    for (let i = 0; i < 10; i++) outbox.add(`req-${i}`, receiver.url, `{"i":${i}}`);
    dispatcher.start();
    await waitFor('all deliveries', () => counts.delivered === 10);
    assert.equal(peak, 3);
    assert.equal(receiver.received.length, 10, 'each delivered exactly once');
    assert.deepEqual(new Set(receiver.received.map((r) => r.body)).size, 10);
  });

  test('polls the store without a kick', async () => {
    const { receiver, outbox, counts, dispatcher } = await setup((_req, res) => res.writeHead(200).end(), { pollMs: 30 });
    dispatcher.start();
    await new Promise((resolve) => setTimeout(resolve, 50));
    outbox.add('req-polled', receiver.url, '{}');
    await waitFor('delivery', () => counts.delivered === 1);
  });

  test('a store that fails to record an outcome is not hammered, and the delivery is posted again', async () => {
    const { receiver, outbox, counts, lines, dispatcher } = await setup((_req, res) => res.writeHead(200).end(), { pollMs: 600 });
    const record = outbox.webhookAttempted.bind(outbox);
    let failures = 1;
    outbox.webhookAttempted = async (id, outcome) => {
      if (failures-- > 0) throw new Error('disk full');
      return record(id, outcome);
    };
    dispatcher.start();
    outbox.add('req-store', receiver.url, '{}');
    dispatcher.kick();
    await waitFor('the first post', () => receiver.received.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(receiver.received.length, 1, 'no repeat before the next poll');
    assert.ok(lines.some((line) => line.level === 50 && /recording an attempt failed/.test(line.msg)));
    await waitFor('delivery', () => counts.delivered === 1);
    assert.equal(receiver.received.length, 2, 'at least once: posted again after the lost outcome');
  });

  test('stop() waits for the posts in flight and posts nothing after', async () => {
    const { receiver, outbox, counts, dispatcher } = await setup((_req, res) => {
      setTimeout(() => res.writeHead(200).end(), 200);
    });
    dispatcher.start();
    outbox.add('req-inflight', receiver.url, '{}');
    dispatcher.kick();
    await waitFor('the post to arrive', () => receiver.received.length === 1);
    await dispatcher.stop();
    assert.equal(counts.delivered, 1, 'stop() resolved only after the outcome was recorded');
    assert.equal(outbox.finished(), 1);

    outbox.add('req-after-stop', receiver.url, '{}');
    dispatcher.kick();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(receiver.received.length, 1);
    assert.equal(outbox.rows.size, 1, 'left in the store for the next start');
  });

  test('refuses nonsensical options', () => {
    const { events } = counters();
    const { logger } = capturingLogger();
    assert.throws(() => webhookSigner(''), RangeError);
    assert.throws(() => new WebhookDispatcher(new FakeOutbox(), { signer: SIGNER, concurrency: 0 }, events, logger), RangeError);
  });
});

describe('webhookRetryDelay', () => {
  const options = { baseDelayMs: 1_000, maxDelayMs: 300_000 };
  test('doubles per attempt from baseDelayMs, capped at maxDelayMs, jittered within the upper half', () => {
    assert.equal(webhookRetryDelay(1, options, () => 1), 1_000);
    assert.equal(webhookRetryDelay(1, options, () => 0), 500);
    assert.equal(webhookRetryDelay(2, options, () => 1), 2_000);
    assert.equal(webhookRetryDelay(4, options, () => 1), 8_000);
    assert.equal(webhookRetryDelay(9, options, () => 1), 256_000);
    assert.equal(webhookRetryDelay(10, options, () => 1), 300_000);
    assert.equal(webhookRetryDelay(1_000, options, () => 0), 150_000);
  });
});

describe('webhook signatures: the signer here, the WebCrypto verifier receivers use (shared/, the SDK)', () => {
  const now = 1_700_000_000_000;
  const body = '{"a":1}';
  const good = webhookSignatureHeaders(SIGNER, 'r1', 'key-1', body, now);

  test('one secret, one key: every node given the secret signs alike; another secret, another key', () => {
    assert.deepEqual(webhookSigner('webhook secret for tests').jwk, SIGNER.jwk);
    assert.deepEqual(Object.keys(SIGNER.jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
    assert.equal(Buffer.from(SIGNER.jwk.x, 'base64url').length, 32, 'a raw Ed25519 public key');
    assert.notEqual(webhookSigner('another').jwk.x, SIGNER.jwk.x);
    // Ed25519 is deterministic: the same delivery signed twice gives the same signature.
    assert.deepEqual(webhookSignatureHeaders(SIGNER, 'r1', 'key-1', body, now), good);
  });

  test('accepts a good signature, in any header case or a fetch Headers, from any key of the set, given as a JWKS or a list, the body as text or bytes', async () => {
    assert.equal(await verifyWebhookSignature(KEYS, good, body, { now }), true);
    assert.equal(await verifyWebhookSignature([SIGNER.jwk], good, body, { now }), true);
    const upper = Object.fromEntries(Object.entries(good).map(([k, v]) => [k.toUpperCase(), v]));
    assert.equal(await verifyWebhookSignature(KEYS, upper, body, { now }), true);
    const rotating = { keys: [webhookSigner('next').jwk, { kty: 'RSA', n: 'x', e: 'AQAB' }, { x: 'not a key' }, SIGNER.jwk] };
    assert.equal(await verifyWebhookSignature(rotating, good, body, { now }), true);
    assert.equal(await verifyWebhookSignature(KEYS, new Headers(good), new TextEncoder().encode(body), { now }), true);
  });

  test('refuses missing, malformed or mismatched parts', async () => {
    const signature = good['x-fal-webhook-signature']!;
    const variants: Record<string, string | undefined>[] = [
      { ...good, 'x-fal-webhook-signature': undefined },
      { ...good, 'x-fal-webhook-timestamp': undefined },
      { ...good, 'x-fal-webhook-request-id': undefined },
      { ...good, 'x-fal-webhook-user-id': undefined },
      { ...good, 'x-fal-webhook-timestamp': `${now / 1000}.5` },
      { ...good, 'x-fal-webhook-timestamp': String(now / 1000 + 1) },
      { ...good, 'x-fal-webhook-signature': signature.slice(0, -2) },
      { ...good, 'x-fal-webhook-signature': `${signature.slice(0, -2)}${signature.endsWith('00') ? '01' : '00'}` },
      { ...good, 'x-fal-webhook-signature': `v1=${signature}` },
    ];
    for (const headers of variants) assert.equal(await verifyWebhookSignature(KEYS, headers, body, { now }), false, JSON.stringify(headers));
    assert.equal(await verifyWebhookSignature({ keys: [] }, good, body, { now }), false, 'no keys');
    assert.equal(await verifyWebhookSignature(KEYS, good, body, { now: now - 301_000 }), false, 'from the future past tolerance');
    assert.equal(await verifyWebhookSignature(KEYS, good, body, { now: now + 10_000, toleranceSeconds: 5 }), false);
  });
});
