// The structural pre-scan in front of msgpackr: every length bomb, deep nesting and oversized
// structure is refused cheaply with a typed reason, and every protocol message still decodes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { decodeMessage, encodeMessage } from '../shared/codec.js';
import { DEFAULT_SCAN_LIMITS, MsgpackRejectedError, scanMsgpack, type MsgpackRejection } from '../shared/msgpack-guard.js';
import type { ClientMessage, ServerMessage } from '../shared/protocol.js';

const PAD = new Uint8Array(16);
const bytes = (...parts: (number[] | Uint8Array)[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

/** A header claiming far more than follows, for every type and length width. */
const BOMBS: Record<string, Uint8Array> = {
  fixstr: bytes([0xbf], PAD.subarray(0, 8)),
  str8: bytes([0xd9, 0xff], PAD),
  str16: bytes([0xda, 0xff, 0xff], PAD),
  str32: bytes([0xdb, 0x02, 0, 0, 0], PAD),
  bin8: bytes([0xc4, 0xff], PAD),
  bin16: bytes([0xc5, 0xff, 0xff], PAD),
  bin32: bytes([0xc6, 0x02, 0, 0, 0], PAD),
  ext8: bytes([0xc7, 0xff, 0x00], PAD),
  ext16: bytes([0xc8, 0xff, 0xff, 0x00], PAD),
  ext32: bytes([0xc9, 0x02, 0, 0, 0, 0x00], PAD),
  fixarray: bytes([0x9f], PAD.subarray(0, 8)),
  array16: bytes([0xdc, 0xff, 0xff], PAD),
  array32: bytes([0xdd, 0x02, 0, 0, 0], PAD), // the 21-byte message that froze the server
  fixmap: bytes([0x8f], PAD.subarray(0, 20)),
  map16: bytes([0xde, 0xff, 0xff], PAD),
  map32: bytes([0xdf, 0x02, 0, 0, 0], PAD),
};

function rejection(input: Uint8Array): MsgpackRejection | undefined {
  const scan = scanMsgpack(input);
  return scan.ok ? undefined : scan.reason;
}

function decodeError(input: Uint8Array): MsgpackRejectedError {
  try {
    decodeMessage(input);
  } catch (err) {
    assert.ok(err instanceof MsgpackRejectedError, `expected a MsgpackRejectedError, got ${String(err)}`);
    return err;
  }
  assert.fail('decoded without an error');
}

test('length bombs of every type and width are refused before msgpackr runs', () => {
  for (const [name, bomb] of Object.entries(BOMBS)) {
    assert.equal(rejection(bomb), 'length_exceeds_input', name);
    const error = decodeError(bomb);
    assert.equal(error.reason, 'length_exceeds_input', name);
    assert.equal(error.offset, 0, name);
    assert.match(error.message, /only \d+ bytes follow/, name);
  }
});

test('a bomb inside an otherwise valid message is found where it is', () => {
  const head = encodeMessage({ type: 'generate', id: 'x', prompt: 'p' } as ClientMessage);
  // msgpackr writes the map with a map16 header: make it 4 entries, the last one's value the bomb.
  assert.deepEqual([...head.subarray(0, 3)], [0xde, 0, 3]);
  const message = bytes([0xde, 0, 4], head.subarray(3), [0xa4, ...Buffer.from('seed')], BOMBS.array32);
  const scan = scanMsgpack(message);
  assert.equal(scan.ok, false);
  assert.ok(!scan.ok && scan.reason === 'length_exceeds_input' && scan.offset === head.length + 5, JSON.stringify(scan));
});

test('a declared length exactly matching the bytes left is fine; one more is not', () => {
  const str = bytes([0xd9, 4], Buffer.from('abcd'));
  assert.deepEqual(decodeMessage(str), 'abcd');
  assert.equal(rejection(bytes([0xd9, 5], Buffer.from('abcd'))), 'length_exceeds_input');
  const array = bytes([0xdc, 0, 3], [1, 2, 3]);
  assert.deepEqual(decodeMessage(array), [1, 2, 3]);
  assert.equal(rejection(bytes([0xdc, 0, 4], [1, 2, 3])), 'length_exceeds_input');
  // A map of N entries needs 2N values.
  assert.equal(rejection(bytes([0xde, 0, 2], [1, 2, 3])), 'length_exceeds_input');
});

test('nesting deeper than the limit is refused, at any depth, without recursion', () => {
  const nested = (depth: number, open: number) => bytes(new Array(depth - 1).fill(open), [open === 0x91 ? 0x90 : 0x80]);
  const { maxDepth } = DEFAULT_SCAN_LIMITS;
  assert.equal(scanMsgpack(nested(maxDepth, 0x91)).ok, true);
  assert.equal(rejection(nested(maxDepth + 1, 0x91)), 'too_deep');
  // A map nests through its values: { "": { "": ... } }.
  const maps = (depth: number) => bytes(...Array.from({ length: depth - 1 }, () => [0x81, 0xa0]), [0x80]);
  assert.equal(scanMsgpack(maps(maxDepth)).ok, true);
  assert.equal(rejection(maps(maxDepth + 1)), 'too_deep');
  // A megabyte of nested arrays: refused without blowing the stack, and quickly.
  const megabyte = nested(1 << 20, 0x91);
  const t0 = performance.now();
  assert.equal(decodeError(megabyte).reason, 'too_deep');
  assert.ok(performance.now() - t0 < 50);
});

test('more values than the element limit are refused from the header', () => {
  const { maxElements } = DEFAULT_SCAN_LIMITS;
  const array = (n: number) => bytes([0xdc, n >> 8, n & 0xff], new Array(n).fill(0));
  assert.equal(scanMsgpack(array(maxElements - 1)).ok, true);
  assert.equal(rejection(array(maxElements)), 'too_many_elements');
  // Many small containers add up too.
  const manyMaps = bytes([0xdc, 0x08, 0x00], new Array(0x800).fill(0x81).flatMap((m) => [m, 0xa0, 0xc0]));
  assert.equal(rejection(manyMaps), 'too_many_elements');
});

test('truncation, trailing bytes, the reserved byte and foreign extensions', () => {
  const message = encodeMessage({ type: 'generate', id: 7, prompt: 'a red circle', steps: 2, seed: 99, strength: 0.5, image: new Uint8Array(300) });
  for (let n = 0; n < message.length; n++) {
    const reason = rejection(message.subarray(0, n));
    assert.ok(reason === 'empty' || reason === 'truncated' || reason === 'length_exceeds_input', `prefix of ${n} bytes: ${reason}`);
  }
  assert.equal(rejection(bytes(message, [0xc0])), 'trailing_bytes');
  assert.equal(rejection(bytes([0x91, 0xc1])), 'invalid_byte');
  assert.equal(rejection(bytes([0xcb, 1, 2, 3])), 'truncated');
  // msgpackr reads these as records, sets and bundled strings, reaching past the extension's bytes.
  assert.equal(rejection(bytes([0xd4, 0x72, 0x00])), 'unsupported_extension');
  assert.equal(rejection(bytes([0x92, 0xd4, 0x73, 0x00, 0x90])), 'unsupported_extension');
  assert.equal(rejection(bytes([0xc7, 0x04, 0x62, 0xff, 0xff, 0xff, 0xff])), 'unsupported_extension');
  // What common encoders emit for undefined and dates still decodes.
  assert.deepEqual(decodeMessage(encodeMessage({ type: 'cancel', id: 1, extra: undefined } as never)), { type: 'cancel', id: 1, extra: undefined });
  const when = new Date(1_700_000_000_123);
  assert.equal((decodeMessage(new Packr({ useRecords: false }).pack({ when })) as { when: Date }).when.getTime(), when.getTime());
});

const image = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff);
const timings = { queue: 0.1, imageDecode: 0, textEncoder: 1.5, vaeEncoder: 0, steps: new Array(100).fill(6.25), batchSizes: new Array(100).fill(4), previews: 2, decode: 9, encode: 1, total: 30 };
const EVERY_MESSAGE: (ClientMessage | ServerMessage)[] = [
  { type: 'generate', id: 'frame-17', prompt: 'a red circle', image, strength: 0.5, steps: 2, seed: 4294967295, width: 256, height: 256, format: 'png', previews: false },
  { type: 'generate', id: 12, prompt: '' },
  { type: 'cancel', id: 'frame-17' },
  { type: 'auth', token: 'eyJhbGciOiJIUzI1NiJ9.' + 'x'.repeat(4000) },
  {
    type: 'hello', protocol: 1,
    model: { name: 'default', width: 256, height: 256, sizeMultiple: 64, minSteps: 1, maxSteps: 100, defaultSteps: 2, scheduler: 'euler_ancestral', img2img: true, previews: 'decoder', dtype: 'float32', device: 'cpu' },
    limits: {
      maxMessageBytes: 8454144, maxPromptChars: 1000, maxImageBytes: 8388608, maxImagePixels: 16777216, minSize: 64, maxSize: 1024, sizeMultiple: 64,
      minSteps: 1, maxSteps: 100, maxPendingPerSession: 1, idleTimeoutSeconds: 120, minStrength: 0, maxStrength: 1, maxSessionsPerKey: 32,
      sessionIdleSeconds: 600, messageDeadlineSeconds: 20, maxBadMessagesPerMinute: 20, maxRequestsPerSecond: 60, requestBurst: 60, similarFrameThreshold: 1.5,
    },
  },
  { type: 'preview', id: 'frame-17', step: 1, steps: 2, image, width: 256, height: 256 },
  { type: 'frame', id: 'frame-17', image, format: 'jpeg', width: 256, height: 256, seed: 1234, timings },
  { type: 'superseded', id: 3 },
  { type: 'skipped', id: 'b', reason: 'similar_frame', sameAs: 'a' },
  { type: 'authenticated', expiresAt: 1795283465000 },
  { type: 'cancelled', id: 'frame-17' },
  { type: 'error', id: 'frame-18', code: 'invalid_steps', message: 'steps must be an integer from 1 to 8' },
  { type: 'error', code: 'duplicate_id', message: 'a request with this id is already running or pending', refusedId: 'dup' },
  { type: 'error', id: 'x', code: 'overloaded', message: 'busy', retryAfterMs: 250 },
  { type: 'going_away', reason: 'shutdown', reconnectAfterMs: 1000 },
];

test('every protocol message still decodes to what was encoded', () => {
  // Decoded bin fields come back as Buffers (a Uint8Array subclass): compare bytes, not prototypes.
  const plain = (value: unknown): unknown =>
    value instanceof Uint8Array ? [...value]
    : Array.isArray(value) ? value.map(plain)
    : typeof value === 'object' && value !== null ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]))
    : value;
  for (const message of EVERY_MESSAGE) {
    const encoded = encodeMessage(message);
    assert.equal(scanMsgpack(encoded).ok, true, message.type);
    assert.deepEqual(plain(decodeMessage(encoded)), plain(message), message.type);
  }
});

test('whatever the scan accepts, msgpackr reads to the end: same structure (seeded random mutations)', () => {
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const unpackr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
  let accepted = 0;
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    const source = encodeMessage(EVERY_MESSAGE[i % EVERY_MESSAGE.length]);
    const mutated = Uint8Array.from(source);
    for (let m = 1 + Math.floor(rand() * 3); m > 0; m--) mutated[Math.floor(rand() * mutated.length)] = Math.floor(rand() * 256);
    if (!scanMsgpack(mutated).ok) continue;
    accepted++;
    try {
      unpackr.unpack(mutated);
      decoded++;
    } catch (err) {
      // What msgpackr may still refuse is meaning, not structure (a map key that is itself a map):
      // never a length or an end it disagrees with the scan about.
      assert.doesNotMatch((err as Error).message, /end of|buffer|length/i, Buffer.from(mutated).toString('hex').slice(0, 200));
    }
  }
  assert.ok(accepted > 1000 && decoded > 0.9 * accepted, `${accepted} mutations accepted, ${decoded} decoded`);
});

test('rejecting 1000 bombs costs well under 200 ms in all (msgpackr alone took ~100-200 ms for one)', (t) => {
  const bombs = Object.values(BOMBS);
  const t0 = performance.now();
  for (let i = 0; i < 1000; i++) {
    assert.throws(() => decodeMessage(bombs[i % bombs.length]), MsgpackRejectedError);
  }
  const guarded = performance.now() - t0;
  const t1 = performance.now();
  for (let i = 0; i < 1000; i++) assert.throws(() => decodeMessage(BOMBS.array32), MsgpackRejectedError);
  const array32 = performance.now() - t1;
  t.diagnostic(`1000 mixed bombs: ${guarded.toFixed(2)} ms; 1000 array32 bombs: ${array32.toFixed(2)} ms`);
  assert.ok(guarded < 200, `${guarded} ms`);
  assert.ok(array32 < 200, `${array32} ms`);
});
