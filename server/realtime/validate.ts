// First stage of every message: untrusted msgpack value -> a typed, defaulted request, or an error
// with a stable code. Pure and synchronous; nothing here touches a session or the model.
import {
  ErrorCode,
  FINAL_DECODERS,
  IMAGE_FORMATS,
  type FinalDecoder,
  type ImageFormat,
  type Limits,
  type ModelInfo,
  type RequestId,
} from '../../shared/protocol.js';

/** A generate request with every default filled in. */
export interface ValidGenerate {
  type: 'generate';
  id: RequestId;
  prompt: string;
  image?: Uint8Array;
  strength: number;
  steps: number;
  seed: number;
  /** The client chose the seed (otherwise the server drew one). */
  explicitSeed: boolean;
  width: number;
  height: number;
  format: ImageFormat;
  previews: boolean;
  finalDecoder: FinalDecoder;
}

export interface ValidCancel {
  type: 'cancel';
  id: RequestId;
}

export interface ValidAuth {
  type: 'auth';
  token: string;
}

export type Validated =
  | { ok: true; message: ValidGenerate | ValidCancel | ValidAuth }
  | { ok: false; code: ErrorCode; message: string; id?: RequestId };

/** Image-to-image strength when the client sends an image without one. */
export const DEFAULT_STRENGTH = 0.5;
const MAX_ID_CHARS = 128;
const MAX_TOKEN_CHARS = 4096;

function fail(code: ErrorCode, message: string, id?: RequestId): Validated {
  return { ok: false, code, message, ...(id !== undefined ? { id } : {}) };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function readId(value: unknown): RequestId | undefined {
  if (typeof value === 'string' && value.length > 0 && value.length <= MAX_ID_CHARS) return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  return undefined;
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

export function validateMessage(value: unknown, limits: Limits, model: ModelInfo): Validated {
  if (!isRecord(value)) return fail(ErrorCode.BadMessage, 'a message must be a msgpack map');
  const { type } = value;
  if (type === 'auth') {
    const { token } = value;
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_CHARS) {
      return fail(ErrorCode.InvalidField, `token must be a non-empty string of at most ${MAX_TOKEN_CHARS} characters`);
    }
    return { ok: true, message: { type, token } };
  }
  if (type !== 'generate' && type !== 'cancel') {
    return fail(ErrorCode.UnknownType, `unknown message type ${JSON.stringify(String(type)).slice(0, 80)}`);
  }
  const id = readId(value.id);
  if (id === undefined) {
    return fail(ErrorCode.InvalidField, `id must be a non-empty string of at most ${MAX_ID_CHARS} characters or an integer`);
  }
  if (type === 'cancel') return { ok: true, message: { type, id } };
  return validateGenerate(value, id, limits, model);
}

function validateGenerate(value: Record<string, unknown>, id: RequestId, limits: Limits, model: ModelInfo): Validated {
  const { prompt, image, strength, steps, seed, width, height, format, previews, finalDecoder } = value;
  if (typeof prompt !== 'string') return fail(ErrorCode.InvalidField, 'prompt must be a string', id);
  if (prompt.length > limits.maxPromptChars) {
    return fail(ErrorCode.PromptTooLong, `prompt has ${prompt.length} characters; the limit is ${limits.maxPromptChars}`, id);
  }

  if (image !== undefined && image !== null && !(image instanceof Uint8Array)) {
    return fail(ErrorCode.InvalidField, 'image must be binary (msgpack bin) holding JPEG, PNG or WebP bytes', id);
  }
  const hasImage = image instanceof Uint8Array;
  if (hasImage && image.byteLength > limits.maxImageBytes) {
    return fail(ErrorCode.ImageTooLarge, `image has ${image.byteLength} bytes; the limit is ${limits.maxImageBytes}`, id);
  }
  if (hasImage && image.byteLength === 0) return fail(ErrorCode.ImageUndecodable, 'image is empty', id);
  if (hasImage && !model.img2img) {
    return fail(ErrorCode.Img2ImgUnsupported, `model ${model.name} has no VAE encoder, so it cannot take an image`, id);
  }

  const stepCount = steps ?? model.defaultSteps;
  if (!isInt(stepCount) || stepCount < limits.minSteps || stepCount > limits.maxSteps) {
    return fail(ErrorCode.InvalidSteps, `steps must be an integer from ${limits.minSteps} to ${limits.maxSteps}`, id);
  }

  const str = strength ?? (hasImage ? DEFAULT_STRENGTH : 1);
  if (typeof str !== 'number' || !Number.isFinite(str) || str <= 0 || str > 1) {
    return fail(ErrorCode.InvalidStrength, 'strength must be a number in (0, 1]', id);
  }
  // SD-Turbo's Euler sampler runs floor(steps x strength) steps; LCM samplers check their own rule.
  if (hasImage && model.scheduler === 'euler_ancestral' && Math.floor(stepCount * str) < 1) {
    return fail(ErrorCode.InvalidStrength, `steps x strength must be at least 1 (got ${stepCount} x ${str})`, id);
  }

  if (seed !== undefined && (!isInt(seed) || seed < 0 || seed > 0xffffffff)) {
    return fail(ErrorCode.InvalidSeed, 'seed must be an integer from 0 to 4294967295', id);
  }

  const w = width ?? model.width;
  const h = height ?? model.height;
  // A fixed-shape model is checked below against the one size it serves.
  if (!model.fixedSize) for (const [name, v] of [['width', w], ['height', h]] as const) {
    if (!isInt(v) || v < limits.minSize || v > limits.maxSize || v % limits.sizeMultiple !== 0) {
      return fail(
        ErrorCode.InvalidSize,
        `${name} must be a multiple of ${limits.sizeMultiple} from ${limits.minSize} to ${limits.maxSize}`,
        id,
      );
    }
  }

  if (model.fixedSize && (w !== model.fixedSize.width || h !== model.fixedSize.height)) {
    const { width: fw, height: fh } = model.fixedSize;
    return fail(ErrorCode.InvalidSize, `model ${model.name} was exported with fixed shapes and serves ${fw}x${fh} only`, id);
  }

  const fmt = format ?? 'jpeg';
  if (typeof fmt !== 'string' || !(IMAGE_FORMATS as readonly string[]).includes(fmt)) {
    return fail(ErrorCode.InvalidFormat, `format must be one of ${IMAGE_FORMATS.join(', ')}`, id);
  }
  if (previews !== undefined && typeof previews !== 'boolean') {
    return fail(ErrorCode.InvalidField, 'previews must be a boolean', id);
  }
  const offered = model.finalDecoders ?? ['vae'];
  const decoder = finalDecoder ?? model.finalDecoder ?? 'vae';
  if (typeof decoder !== 'string' || !(FINAL_DECODERS as readonly string[]).includes(decoder)) {
    return fail(ErrorCode.InvalidFinalDecoder, `finalDecoder must be one of ${FINAL_DECODERS.join(', ')}`, id);
  }
  // Refused rather than quietly served by the VAE: the client asked for speed it would not get.
  if (!(offered as readonly string[]).includes(decoder)) {
    return fail(ErrorCode.FinalDecoderUnavailable, `model ${model.name} has no ${decoder} decoder; it offers ${offered.join(', ')}`, id);
  }

  return {
    ok: true,
    message: {
      type: 'generate',
      id,
      prompt,
      ...(hasImage ? { image } : {}),
      strength: str,
      steps: stepCount,
      seed: (seed as number | undefined) ?? ((Math.random() * 0x100000000) >>> 0),
      explicitSeed: seed !== undefined,
      width: w as number,
      height: h as number,
      format: fmt as ImageFormat,
      previews: previews ?? true,
      finalDecoder: decoder as FinalDecoder,
    },
  };
}
