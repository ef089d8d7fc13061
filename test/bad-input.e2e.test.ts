// Every class of bad input gets an `error` with its stable code, and the same connection then
// completes a valid request: nothing bad input does can break a session or the server.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { ErrorCode, type ErrorMessage, type Limits } from '../shared/protocol.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { TestClient } from './helpers/ws-client.js';

let server: ServerProcess;
let client: TestClient;
let limits: Limits;
before(async () => {
  server = await startServerProcess();
  const connected = await TestClient.connect(server.wsUrl);
  client = connected.client;
  limits = connected.hello.limits;
});
after(async () => {
  await client?.close();
  await server?.stop();
});

const valid = { type: 'generate', prompt: 'a red circle', steps: 1, width: 64, height: 64 };
let counter = 0;

/** Sends `bad`, expects an error with `code`, then checks a valid request still completes. */
async function expectError(bad: Record<string, unknown> | Uint8Array | string, code: string) {
  if (bad instanceof Uint8Array || typeof bad === 'string') client.sendRaw(bad);
  else client.send(bad);
  const error = (await client.next((m) => m.type === 'error')) as ErrorMessage;
  assert.equal(error.code, code, `${error.code}: ${error.message}`);
  assert.ok(error.message.length > 0);
  const id = `ok-${++counter}`;
  client.send({ ...valid, id });
  const replies = await client.untilSettled(id);
  assert.equal(replies.at(-1)?.type, 'frame', `valid request after ${code}: ${client.summary()}`);
  return error;
}

test('malformed msgpack', async () => {
  await expectError(new Uint8Array([0x85, 0xa4, 0x74]), ErrorCode.BadMessage);
});

test('msgpack that is not a map, and text frames', async () => {
  await expectError(new Uint8Array([0x93, 1, 2, 3]), ErrorCode.BadMessage);
  await expectError('{"type":"generate"}', ErrorCode.BadMessage);
});

test('unknown message type', async () => {
  await expectError({ type: 'teleport', id: 'x' }, ErrorCode.UnknownType);
  await expectError({ id: 'x' }, ErrorCode.UnknownType);
});

test('wrong field types carry the request id', async () => {
  const e = await expectError({ ...valid, id: 'typed', prompt: 42 }, ErrorCode.InvalidField);
  assert.equal(e.id, 'typed');
  await expectError({ ...valid, id: 'img', image: 'not bytes' }, ErrorCode.InvalidField);
  await expectError({ ...valid, id: 'prev', previews: 'yes' }, ErrorCode.InvalidField);
  await expectError({ ...valid, id: { nested: true } }, ErrorCode.InvalidField);
  await expectError({ ...valid, id: '' }, ErrorCode.InvalidField);
});

test('out-of-range steps, strength, size, seed and format', async () => {
  await expectError({ ...valid, id: 's0', steps: 0 }, ErrorCode.InvalidSteps);
  await expectError({ ...valid, id: 's99', steps: 99 }, ErrorCode.InvalidSteps);
  await expectError({ ...valid, id: 'sf', steps: 1.5 }, ErrorCode.InvalidSteps);
  await expectError({ ...valid, id: 'st', strength: 1.5 }, ErrorCode.InvalidStrength);
  await expectError({ ...valid, id: 'sn', strength: Number.NaN }, ErrorCode.InvalidStrength);
  await expectError({ ...valid, id: 'w', width: 100 }, ErrorCode.InvalidSize);
  await expectError({ ...valid, id: 'h', height: 65536 }, ErrorCode.InvalidSize);
  await expectError({ ...valid, id: 'seed', seed: -1 }, ErrorCode.InvalidSeed);
  await expectError({ ...valid, id: 'fmt', format: 'gif' }, ErrorCode.InvalidFormat);
});

test('image-to-image needs steps x strength >= 1', async () => {
  const image = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } }).png().toBuffer();
  await expectError({ ...valid, id: 'weak', image, steps: 1, strength: 0.5 }, ErrorCode.InvalidStrength);
});

test('too-long prompt', async () => {
  await expectError({ ...valid, id: 'long', prompt: 'x'.repeat(5000) }, ErrorCode.PromptTooLong);
});

test('undecodable and truncated images', async () => {
  const img2img = { ...valid, strength: 1 };
  await expectError({ ...img2img, id: 'junk', image: new Uint8Array(1000).fill(7) }, ErrorCode.ImageUndecodable);
  const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#ff0000' } }).png().toBuffer();
  await expectError({ ...valid, strength: 1, id: 'trunc', image: png.subarray(0, png.length / 2) }, ErrorCode.ImageUndecodable);
  await expectError({ ...valid, strength: 1, id: 'empty', image: new Uint8Array(0) }, ErrorCode.ImageUndecodable);
  const gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#ff0000' } }).gif().toBuffer();
  await expectError({ ...valid, strength: 1, id: 'gif', image: gif }, ErrorCode.ImageUndecodable);
});

test('oversized images: too many bytes, and a decompression bomb refused from its header', async () => {
  const bytes = new Uint8Array(limits.maxImageBytes + 1);
  await expectError({ ...valid, strength: 1, id: 'big', image: bytes }, ErrorCode.ImageTooLarge);
  // 5000 x 5000 of one colour compresses to a few kB but would decode to 75 MB.
  const bomb = await sharp({ create: { width: 5000, height: 5000, channels: 3, background: '#000000' } }).png().toBuffer();
  assert.ok(bomb.length < 200_000);
  await expectError({ ...valid, strength: 1, id: 'bomb', image: bomb }, ErrorCode.ImageTooLarge);
});

test('a reused id is refused without ending the request that holds it: one final reply per id', async () => {
  client.send({ ...valid, id: 'dup', steps: 8, width: 512, height: 512 });
  client.send({ ...valid, id: 'dup' });
  // Invalid as well as reused: the reuse is what it is refused for, or the error would carry the id.
  client.send({ ...valid, id: 'dup', steps: 0 });
  await client.next((m) => m.type === 'frame' && m.id === 'dup');
  // Anything else about 'dup' was sent before this marker's reply.
  client.send({ type: 'cancel', id: 'dup-marker' });
  await client.next((m) => m.type === 'error' && m.id === 'dup-marker');

  const finals = client.messages.filter((m) => 'id' in m && m.id === 'dup' && m.type !== 'preview');
  assert.deepEqual(finals.map((m) => m.type), ['frame'], client.summary());
  const refusals = client.messages.filter((m): m is ErrorMessage => m.type === 'error' && m.refusedId === 'dup');
  assert.equal(refusals.length, 2, client.summary());
  for (const refusal of refusals) {
    assert.equal(refusal.code, ErrorCode.DuplicateId);
    assert.ok(!('id' in refusal), 'a refusal names the id only as refusedId');
  }
});

test('malformed messages past the per-minute limit close with 4002; out-of-range values never do', { timeout: 20_000 }, async () => {
  const { client: other } = await TestClient.connect(server.wsUrl);
  // Out of range is a client bug or a UI slider, not malice: answered, never counted.
  for (let i = 0; i < limits.maxBadMessagesPerMinute * 2; i++) other.send({ ...valid, id: `range-${i}`, steps: 0 });
  await other.untilSettled(`range-${limits.maxBadMessagesPerMinute * 2 - 1}`);
  const closed = new Promise((resolve) => other.ws.once('close', (code, reason) => resolve([code, reason.toString()])));
  const malformed = [{ type: 'teleport' }, { ...valid, prompt: 7, id: 'm' }, new Uint8Array([0xc1])];
  for (let i = 0; i <= limits.maxBadMessagesPerMinute; i++) {
    const bad = malformed[i % malformed.length];
    if (bad instanceof Uint8Array) other.sendRaw(bad);
    else other.send(bad);
  }
  assert.deepEqual(await closed, [4002, 'too many bad messages']);
  const errors = other.messages.filter((m): m is ErrorMessage => m.type === 'error');
  const counted = errors.filter((e) => ['unknown_type', 'invalid_field', 'bad_message'].includes(e.code));
  assert.ok(counted.length >= limits.maxBadMessagesPerMinute, `answered ${counted.length} before the close`);
  const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
  assert.match(metrics, /realtime_closes_total\{reason="bad_messages"\} 1\b/);
});

test('a message over the size limit closes only that connection', async () => {
  const { client: other } = await TestClient.connect(server.wsUrl);
  other.sendRaw(new Uint8Array(limits.maxMessageBytes + 1024));
  await new Promise((resolve) => other.ws.once('close', resolve));
  assert.equal(other.closeCode, 1009);
  const id = 'after-close';
  client.send({ ...valid, id });
  assert.equal((await client.untilSettled(id)).at(-1)?.type, 'frame');
});
