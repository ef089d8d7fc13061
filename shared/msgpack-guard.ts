// A structural check of untrusted msgpack bytes, run before msgpackr sees them. msgpackr trusts
// declared lengths: an array32 header claiming 33 million elements in a 21-byte message costs it
// ~100-200 ms of allocating and looping before it notices the truncation, on the thread that serves
// every socket. This walk reads only headers, skips payloads, and refuses any container or string
// that claims more than the bytes left, so rejecting a message costs O(its size), and anything it
// accepts is bounded in depth and element count before msgpackr allocates a single object.

export type MsgpackRejection =
  | 'empty'
  /** A header or a fixed-size value runs past the end of the input. */
  | 'truncated'
  /** A str, bin or ext length, or an array or map count, needs more bytes than remain. */
  | 'length_exceeds_input'
  | 'too_deep'
  | 'too_many_elements'
  /** Bytes after the one top-level value. */
  | 'trailing_bytes'
  /** 0xc1, which msgpack reserves and never uses. */
  | 'invalid_byte'
  | 'unsupported_extension';

export interface MsgpackScanLimits {
  /** Containers nested inside one another at most. */
  maxDepth: number;
  /** Values in all, map keys included. */
  maxElements: number;
}

/** Room for every protocol message many times over (the largest, `hello` or a `frame` with 100
 * steps, has about 250 elements and 3 levels), small enough that an accepted message never makes
 * msgpackr build more than a few thousand objects. */
export const DEFAULT_SCAN_LIMITS: Readonly<MsgpackScanLimits> = { maxDepth: 32, maxElements: 4096 };

export type MsgpackScan =
  | { ok: true; elements: number }
  | { ok: false; reason: MsgpackRejection; offset: number; message: string };

export class MsgpackRejectedError extends Error {
  override readonly name = 'MsgpackRejectedError';

  constructor(
    readonly reason: MsgpackRejection,
    readonly offset: number,
    message: string,
  ) {
    super(message);
  }
}

/** Width in bytes of the length field that follows each type byte with one (str/bin/ext/array/map). */
const LENGTH_WIDTH: Record<number, 1 | 2 | 4> = {
  0xc4: 1, 0xc5: 2, 0xc6: 4, // bin 8/16/32
  0xc7: 1, 0xc8: 2, 0xc9: 4, // ext 8/16/32
  0xd9: 1, 0xda: 2, 0xdb: 4, // str 8/16/32
  0xdc: 2, 0xdd: 4, // array 16/32
  0xde: 2, 0xdf: 4, // map 16/32
};

/** Payload size of the fixed-width types: float, (u)int, fixext (type byte included). */
const FIXED_SIZE: Record<number, number> = {
  0xca: 4, 0xcb: 8,
  0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8,
  0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8,
  0xd4: 2, 0xd5: 3, 0xd6: 5, 0xd7: 9, 0xd8: 17,
};

/**
 * Extensions that stand alone: msgpackr gives most other type numbers meanings that read values
 * beyond the extension's own bytes or change decoder state (records, sets, errors, regular
 * expressions, bundled strings, BigInts), which a structural walk cannot vouch for. The protocol
 * uses none; these two are what common encoders emit for `undefined` and dates.
 */
function isPlainExtension(type: number, length: number): boolean {
  if (type === 0x00) return length === 1; // undefined, as msgpackr and others write it
  if (type === 0xff) return length === 4 || length === 8 || length === 12; // timestamp
  return false;
}

function describeType(byte: number): string {
  if (byte <= 0x8f && byte >= 0x80) return 'map';
  if (byte <= 0x9f && byte >= 0x90) return 'array';
  if (byte <= 0xbf && byte >= 0xa0) return 'str';
  if (byte >= 0xc4 && byte <= 0xc6) return 'bin';
  if (byte >= 0xc7 && byte <= 0xc9) return 'ext';
  if (byte >= 0xd9 && byte <= 0xdb) return 'str';
  if (byte === 0xdc || byte === 0xdd) return 'array';
  return 'map';
}

/** Checks that `bytes` hold exactly one msgpack value within `limits`, in O(bytes.length) time and O(maxDepth) memory. */
export function scanMsgpack(bytes: Uint8Array, limits: Readonly<MsgpackScanLimits> = DEFAULT_SCAN_LIMITS): MsgpackScan {
  const end = bytes.length;
  const fail = (reason: MsgpackRejection, offset: number, message: string): MsgpackScan => ({ ok: false, reason, offset, message });
  if (end === 0) return fail('empty', 0, 'empty message');

  // remaining[d]: values still to read in the container open at depth d (0 = the top level).
  const remaining = new Float64Array(limits.maxDepth + 1);
  remaining[0] = 1;
  let depth = 0;
  let elements = 1;
  let pos = 0;
  for (;;) {
    while (depth > 0 && remaining[depth] === 0) depth--;
    if (remaining[depth] === 0) break;
    remaining[depth]--;
    if (pos >= end) return fail('truncated', pos, `message ends at byte ${pos} where a value should start`);
    const start = pos;
    const byte = bytes[pos++];

    let children = 0;
    let skip = 0;
    if (byte <= 0x7f || byte >= 0xe0 || byte === 0xc0 || byte === 0xc2 || byte === 0xc3) {
      continue; // fixint, nil, booleans: the type byte is the value
    } else if (byte <= 0x8f) {
      children = 2 * (byte & 0x0f);
    } else if (byte <= 0x9f) {
      children = byte & 0x0f;
    } else if (byte <= 0xbf) {
      skip = byte & 0x1f;
      if (skip > end - pos) return fail('length_exceeds_input', start, `str of ${skip} bytes at byte ${start}, but only ${end - pos} bytes follow`);
    } else if (byte === 0xc1) {
      return fail('invalid_byte', start, `reserved byte 0xc1 at byte ${start}`);
    } else if (FIXED_SIZE[byte] !== undefined) {
      skip = FIXED_SIZE[byte];
      if (byte >= 0xd4 && end - pos >= 1 && !isPlainExtension(bytes[pos], skip - 1)) {
        return fail('unsupported_extension', start, `extension type ${bytes[pos]} at byte ${start} is not part of the protocol`);
      }
    } else {
      const width = LENGTH_WIDTH[byte];
      if (end - pos < width) return fail('truncated', start, `${describeType(byte)} header at byte ${start} is cut off`);
      let length = 0;
      for (let i = 0; i < width; i++) length = length * 256 + bytes[pos++];
      const kind = describeType(byte);
      if (kind === 'array' || kind === 'map') {
        // Every element takes at least one byte, so a count above the bytes left cannot be honest.
        children = kind === 'map' ? 2 * length : length;
        if (children > end - pos) {
          return fail('length_exceeds_input', start, `${kind} of ${length} entries at byte ${start}, but only ${end - pos} bytes follow`);
        }
      } else {
        skip = kind === 'ext' ? length + 1 : length;
        if (skip > end - pos) {
          return fail('length_exceeds_input', start, `${kind} of ${length} bytes at byte ${start}, but only ${end - pos} bytes follow`);
        }
        if (kind === 'ext' && !isPlainExtension(bytes[pos], length)) {
          return fail('unsupported_extension', start, `extension type ${bytes[pos]} at byte ${start} is not part of the protocol`);
        }
      }
    }

    if (skip > 0) {
      if (skip > end - pos) return fail('truncated', start, `value at byte ${start} runs past the end of the message`);
      pos += skip;
      continue;
    }
    // A container (even an empty one) nests one level deeper.
    if (depth + 1 > limits.maxDepth) return fail('too_deep', start, `more than ${limits.maxDepth} nested arrays or maps at byte ${start}`);
    elements += children;
    if (elements > limits.maxElements) return fail('too_many_elements', start, `more than ${limits.maxElements} values in one message`);
    if (children > end - pos) {
      return fail('length_exceeds_input', start, `${describeType(byte)} at byte ${start} has ${children} values, but only ${end - pos} bytes follow`);
    }
    if (children > 0) remaining[++depth] = children;
  }
  if (pos !== end) return fail('trailing_bytes', pos, `${end - pos} bytes after the end of the message`);
  return { ok: true, elements };
}
