// One ONNX model of a pipeline (text encoder, UNet, VAE halves, preview decoder) with its
// signature read from the session, so exports that differ in dtypes and shapes load through the
// same code. Callers hand over float32 / integer data; dtype conversion happens here.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Device } from '../config.js';
import { float16ToFloat32, float32ToFloat16 } from './fp16.js';

export interface TensorSignature {
  name: string;
  type: ort.Tensor.Type;
  shape: ReadonlyArray<number | string>;
}

export interface SessionSettings {
  executionProviders: ort.InferenceSession.ExecutionProviderConfig[];
  threads: number;
  /** Let onnxruntime's intra-op threads busy-wait between parallel sections. */
  spinning?: boolean;
  /** The device the providers stand for: checked before loading and named in load errors. */
  device?: Device;
}

export class ModelLoadError extends Error {}

/**
 * onnxruntime-node's provider list for a device. The Node binding reads only `deviceId` for CUDA
 * and TensorRT; TensorRT lists CUDA after it so nodes TensorRT cannot take still run on the GPU.
 * WebGPU takes no device id (Dawn picks the default adapter).
 */
export function executionProvidersFor(device: Device, deviceId = 0): ort.InferenceSession.ExecutionProviderConfig[] {
  switch (device) {
    case 'cpu':
      return ['cpu'];
    case 'cuda':
      return [{ name: 'cuda', deviceId }];
    case 'tensorrt':
      return [{ name: 'tensorrt', deviceId }, { name: 'cuda', deviceId }];
    case 'webgpu':
      return ['webgpu'];
  }
}

export function sessionSettingsFor(device: Device, deviceId: number, threads: number, spinning = false): SessionSettings {
  return { executionProviders: executionProvidersFor(device, deviceId), threads, spinning, device };
}

const CUDA_FIX =
  'reinstall with ONNXRUNTIME_NODE_INSTALL=cuda12 npm install (it downloads the CUDA provider; needs CUDA 12 and cuDNN 9), see docs/gpu.md';
// Provider libraries the cuda12 install adds next to the binding (metadata of onnxruntime-node's install script).
const PROVIDER_LIBRARIES: Partial<Record<Device, string[]>> = {
  cuda: ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'],
  tensorrt: ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_tensorrt.so', 'libonnxruntime_providers_cuda.so'],
};

/**
 * Fails fast, before any session exists, when the device's provider is not in this onnxruntime-node
 * build or its libraries were never downloaded (the default install skips them: see .npmrc).
 */
export function checkDevice(device: Device): void {
  if (device === 'cpu') return;
  const backend = ort.listSupportedBackends().find((b) => b.name === device);
  if (!backend) throw new ModelLoadError(`the ${device} execution provider is not part of this onnxruntime-node build; see docs/gpu.md`);
  const libraries = PROVIDER_LIBRARIES[device];
  if (!libraries || backend.bundled || process.platform !== 'linux') return;
  const dir = bindingDir();
  const missing = libraries.filter((lib) => !existsSync(path.join(dir, lib)));
  if (missing.length > 0) {
    throw new ModelLoadError(`the ${device === 'tensorrt' ? 'TensorRT' : 'CUDA'} execution provider is not installed (${missing.join(', ')} missing in ${dir}): ${CUDA_FIX}`);
  }
}

function bindingDir(): string {
  const entry = createRequire(import.meta.url).resolve('onnxruntime-node'); // .../onnxruntime-node/dist/index.js
  return path.join(path.dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
}

/** What to do about a session that failed to start on a GPU provider: the raw message rarely says. */
function providerHint(device: Device | undefined, message: string): string {
  switch (device) {
    case 'cuda':
    case 'tensorrt':
      if (/shared library|cannot open shared object|libcu|cudnn|CUDA/i.test(message)) {
        return ` (the ${device} provider could not start: CUDA 12 and cuDNN 9 libraries must be on the library path${device === 'tensorrt' ? ', and TensorRT 10 for tensorrt' : ''}; ${CUDA_FIX})`;
      }
      return '';
    case 'webgpu':
      if (!/adapter|vulkan|webgpu|dawn/i.test(message)) return '';
      return ' (the webgpu provider needs a GPU with a Vulkan driver and the Vulkan loader libvulkan.so.1; see docs/gpu.md)';
    default:
      return '';
  }
}

/** A float output converted to float32, with its dims. */
export interface FloatOutput {
  data: Float32Array;
  dims: readonly number[];
}

export class OnnxComponent {
  readonly inputs: ReadonlyMap<string, TensorSignature>;
  readonly outputs: ReadonlyMap<string, TensorSignature>;

  private constructor(
    readonly label: string,
    private readonly session: ort.InferenceSession,
  ) {
    this.inputs = signatures(session.inputMetadata);
    this.outputs = signatures(session.outputMetadata);
  }

  static async load(label: string, file: string, settings: SessionSettings): Promise<OnnxComponent> {
    if (!existsSync(file)) throw new ModelLoadError(`${label}: ${file} not found`);
    if (settings.device) checkDevice(settings.device);
    try {
      const session = await ort.InferenceSession.create(file, {
        executionProviders: settings.executionProviders,
        intraOpNumThreads: settings.threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        // Spinning pool threads win benchmarks on idle machines but steal the cores the uWS thread and
        // libvips need between runs: off by default (measured: 2.2x more frames/s on 2 cores).
        extra: { session: { intra_op: { allow_spinning: settings.spinning ? '1' : '0' } } },
      });
      return new OnnxComponent(label, session);
    } catch (err) {
      const message = (err as Error).message.trim();
      throw new ModelLoadError(`${label}: cannot load ${file}${settings.device ? ` on ${settings.device}` : ''}: ${message}${providerHint(settings.device, message)}`);
    }
  }

  has(input: string): boolean {
    return this.inputs.has(input);
  }

  input(name: string): TensorSignature {
    const sig = this.inputs.get(name);
    if (!sig) throw new ModelLoadError(`${this.label}: expected an input named "${name}", found ${[...this.inputs.keys()].join(', ')}`);
    return sig;
  }

  /** The first output of `names` that exists (exporters disagree on names), else the first output. */
  outputName(...names: string[]): string {
    for (const name of names) if (this.outputs.has(name)) return name;
    const first = this.outputs.keys().next();
    if (first.done) throw new ModelLoadError(`${this.label}: the model has no outputs`);
    return first.value;
  }

  /** Float data for a float input, in that input's dtype (float32 or float16). */
  floatTensor(name: string, data: Float32Array, dims: readonly number[]): ort.Tensor {
    const type = this.input(name).type;
    if (type === 'float16') return new ort.Tensor('float16', float32ToFloat16(data), dims);
    if (type === 'float32') return new ort.Tensor('float32', data, dims);
    throw new ModelLoadError(`${this.label}: input "${name}" has type ${type}; a float type was expected`);
  }

  /** Integer data for an int32 or int64 input (token ids, timesteps). */
  intTensor(name: string, values: ArrayLike<number>, dims: readonly number[]): ort.Tensor {
    const type = this.input(name).type;
    if (type === 'int64') return new ort.Tensor('int64', BigInt64Array.from(Array.from(values), BigInt), dims);
    if (type === 'int32') return new ort.Tensor('int32', Int32Array.from(values), dims);
    if (type === 'float32' || type === 'float16') return this.floatTensor(name, Float32Array.from(values), dims);
    throw new ModelLoadError(`${this.label}: input "${name}" has type ${type}; an integer type was expected`);
  }

  async run(feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
    return this.session.run(feeds);
  }

  /** A float output's data as onnxruntime returned it: float32, or float16 bits left unconverted. */
  static rawFloat(tensor: ort.Tensor): { data: Float32Array | Uint16Array; dims: readonly number[] } {
    if (tensor.type === 'float32' || tensor.type === 'float16') return { data: tensor.data as Float32Array | Uint16Array, dims: tensor.dims };
    throw new ModelLoadError(`output of type ${tensor.type}; a float type was expected`);
  }

  static toFloat32(tensor: ort.Tensor): FloatOutput {
    if (tensor.type === 'float32') return { data: tensor.data as Float32Array, dims: tensor.dims };
    if (tensor.type === 'float16') return { data: float16ToFloat32(tensor.data as Uint16Array), dims: tensor.dims };
    throw new ModelLoadError(`output of type ${tensor.type}; a float type was expected`);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function signatures(metadata: readonly ort.InferenceSession.ValueMetadata[]): Map<string, TensorSignature> {
  const out = new Map<string, TensorSignature>();
  for (const meta of metadata) {
    if (!meta.isTensor) continue;
    out.set(meta.name, { name: meta.name, type: meta.type, shape: meta.shape });
  }
  return out;
}
