/**
 * Minimal helper to build ONNX models with onnx-proto (IR 8, opset 17).
 *
 * Generic: initializers (fp32, fp16, int64 as rawData), nodes with typed attributes, graph
 * inputs/outputs with symbolic dims. `toBytes()` returns the serialized ModelProto.
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** ONNX TensorProto.DataType values used here. */
export const DataType = {
  FLOAT: 1,
  INT32: 6,
  INT64: 7,
  FLOAT16: 10,
} as const;
export type ElemType = 'float32' | 'float16' | 'int32' | 'int64';

const ELEM: Record<ElemType, number> = {
  float32: DataType.FLOAT,
  float16: DataType.FLOAT16,
  int32: DataType.INT32,
  int64: DataType.INT64,
};

/** A symbolic dimension (string) or a fixed size (number). */
export type Dim = number | string;

/** Attribute value: integer(s), string, or an explicit float / float list. */
export type Attr = number | number[] | string | { f: number } | { floats: number[] };

const AT = onnx.AttributeProto.AttributeType;

// ---------------------------------------------------------------------------------------------
// float16 helpers

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary32 -> binary16 bits, round to nearest even. */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> Inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow -> signed zero
    mant |= 0x800000; // subnormal: add the implicit bit, shift into place
    const shift = 14 - e;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rest > mid || (rest === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half++; // may carry into exponent: fine
  return sign | half;
}

/** IEEE 754 binary16 bits -> number. */
export function float16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function toFloat16Array(data: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = float32ToFloat16Bits(data[i]);
  return out;
}

export function fromFloat16Array(data: ArrayLike<number>): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = float16BitsToFloat32(data[i]);
  return out;
}

// ---------------------------------------------------------------------------------------------

function bytesOf(view: ArrayBufferView): Uint8Array {
  // Copy so the stored bytes are aligned and independent of the caller's buffer (little-endian host).
  return new Uint8Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

function attribute(name: string, value: Attr): onnxProto.onnx.IAttributeProto {
  if (typeof value === 'number') return { name, type: AT.INT, i: value };
  if (typeof value === 'string') return { name, type: AT.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: AT.INTS, ints: value };
  if ('f' in value) return { name, type: AT.FLOAT, f: value.f };
  return { name, type: AT.FLOATS, floats: value.floats };
}

function valueInfo(name: string, elem: ElemType, dims: readonly Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM[elem],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly inits: onnxProto.onnx.ITensorProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly used = new Set<string>();
  private counter = 0;

  constructor(readonly name: string) {}

  /** An unused value name with the given prefix (not reserved until used). */
  fresh(prefix: string): string {
    let n = `${prefix}_${this.counter++}`;
    while (this.used.has(n)) n = `${prefix}_${this.counter++}`;
    return n;
  }

  private claim(name: string): string {
    if (this.used.has(name)) throw new Error(`duplicate value name ${name}`);
    this.used.add(name);
    return name;
  }

  input(name: string, elem: ElemType, dims: readonly Dim[]): string {
    this.inputs.push(valueInfo(this.claim(name), elem, dims));
    return name;
  }

  /** Declares a graph output; `name` must be produced by a node. */
  output(name: string, elem: ElemType, dims: readonly Dim[]): string {
    this.outputs.push(valueInfo(name, elem, dims));
    return name;
  }

  /** float32 initializer stored as rawData. */
  f32(name: string, data: ArrayLike<number>, dims: readonly number[]): string {
    const arr = data instanceof Float32Array ? data : Float32Array.from(data);
    return this.raw(name, DataType.FLOAT, bytesOf(arr), dims, arr.length);
  }

  /** float16 initializer (values given as float32, converted to fp16 bits) stored as rawData. */
  f16(name: string, data: ArrayLike<number>, dims: readonly number[]): string {
    const arr = toFloat16Array(data);
    return this.raw(name, DataType.FLOAT16, bytesOf(arr), dims, arr.length);
  }

  i64(name: string, data: readonly number[], dims: readonly number[]): string {
    const arr = BigInt64Array.from(data.map((v) => BigInt(v)));
    return this.raw(name, DataType.INT64, bytesOf(arr), dims, arr.length);
  }

  private raw(name: string, dataType: number, rawData: Uint8Array, dims: readonly number[], n: number): string {
    const expected = dims.reduce((a, b) => a * b, 1);
    if (expected !== n) throw new Error(`initializer ${name}: ${n} values for dims [${dims.join(',')}]`);
    this.inits.push({ name: this.claim(name), dataType, dims: [...dims], rawData });
    return name;
  }

  /** Adds a node; returns its (first) output name. Output names are generated unless given. */
  node(op: string, inputs: readonly string[], attrs: Record<string, Attr> = {}, outputs?: readonly string[]): string {
    return this.nodeN(op, inputs, 1, attrs, outputs)[0];
  }

  /** Adds a node with `nOut` outputs; returns their names. */
  nodeN(
    op: string,
    inputs: readonly string[],
    nOut: number,
    attrs: Record<string, Attr> = {},
    outputs?: readonly string[],
  ): string[] {
    const outs = (outputs ?? Array.from({ length: nOut }, () => this.fresh(op.toLowerCase()))).map((o) => this.claim(o));
    this.nodes.push({
      opType: op,
      name: `${op}_${this.nodes.length}`,
      input: [...inputs],
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs;
  }

  /** Serialized ModelProto (IR 8, opset 17). */
  toBytes(producer = 'tiny-model'): Uint8Array {
    const model: onnxProto.onnx.IModelProto = {
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      producerName: producer,
      producerVersion: '1',
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.inits,
        input: this.inputs,
        output: this.outputs,
      },
    };
    return onnx.ModelProto.encode(model).finish();
  }
}
