// fal request input -> native generate fields. This renames and converts only: ranges and types of
// native fields (prompt, steps, strength, seed, size, format, finalDecoder, image) stay with
// validateMessage, the one validation of generate requests, and falErrorFromNative turns its
// errors back into fal field terms. Checked here are the fields native generate has no counterpart
// for (image_url, sync_mode, request_id, ...), so that every fal field is checked exactly once.
import { ErrorCode, type Limits, type ModelInfo, type RequestId } from '../../shared/protocol.js';
import type { FalApp } from './apps.js';

/** One error in fal's (pydantic-like) terms: 422 bodies list these as `{loc, msg, type}`. */
export interface FalFieldError {
  /** Stable: the native ErrorCode where one fits, else `invalid_field`. */
  code: string;
  message: string;
  /** `['body', field, ...]`, as fal's validation errors name a field. */
  loc: (string | number)[];
  /** `type_error`, `value_error` or `missing`. */
  type: string;
}

export interface FalPlan {
  /** Native generate fields without `type`/`id`. */
  generate: Record<string, unknown>;
  /** fal's `request_id`, echoed in results. */
  requestId?: RequestId;
  /** `image_url` (data: URI or http(s)) still to be resolved into `generate.image`. */
  imageUrl?: string;
  /** Which fal field carried the image, to name it in errors. */
  imageField?: 'image_bytes' | 'image_url';
  /** Which fal field carried the format (`output_format` is the newer apps' name). */
  formatField?: 'format' | 'output_format';
  syncMode: boolean;
  /** Opt-in: each step's preview as an intermediate result (an extension; fal has none). */
  streamPreviews: boolean;
  /** fal's `num_images`: images made for this request, one after another. */
  numImages: number;
}

export type FalMapResult = { ok: true; plan: FalPlan } | { ok: false; error: FalFieldError };

/** fal's image_size presets, in pixels for a 512-px model (SD 1.5): width x height. */
export const FAL_SIZE_PRESETS: Readonly<Record<string, readonly [number, number]>> = {
  square: [512, 512],
  square_hd: [1024, 1024],
  portrait_4_3: [768, 1024],
  portrait_16_9: [576, 1024],
  landscape_4_3: [1024, 768],
  landscape_16_9: [1024, 576],
};

const MAX_REQUEST_ID_CHARS = 128;

/** fal's image apps take num_images up to 8. */
export const MAX_NUM_IMAGES = 8;

export interface FalMapOptions {
  /** The most images one request may ask for here: MAX_NUM_IMAGES over HTTP, 1 on a realtime
   * socket (one result per input). */
  maxImages: number;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function fieldError(field: string, type: string, message: string, code: string = ErrorCode.InvalidField): FalMapResult {
  return { ok: false, error: { code, message, loc: ['body', field], type } };
}

/**
 * A preset scaled to the model: fal's sizes are for 512-px models, so a 256-px model gets half of
 * each, on the size grid and within the server's limits. A fixed-shape model serves one size, so
 * every preset is that size.
 */
export function presetSize(name: string, model: ModelInfo, limits: Limits): { width: number; height: number } | undefined {
  const preset = Object.hasOwn(FAL_SIZE_PRESETS, name) ? FAL_SIZE_PRESETS[name] : undefined;
  if (!preset) return undefined;
  if (model.fixedSize) return { ...model.fixedSize };
  const multiple = Math.max(limits.sizeMultiple, model.sizeMultiple);
  const lo = Math.ceil(limits.minSize / multiple) * multiple;
  const hi = Math.floor(limits.maxSize / multiple) * multiple;
  const fit = (px: number) => {
    const v = Math.round((px * model.width) / 512 / multiple) * multiple;
    // lo > hi only with limits no size can meet; validateMessage reports that.
    return lo <= hi ? Math.min(hi, Math.max(lo, v)) : v;
  };
  return { width: fit(preset[0]), height: fit(preset[1]) };
}

/** Fields fal's apps accept that change nothing here; a wrong type is still an error, as in fal. */
const IGNORED_FIELDS: Readonly<Record<string, { ok: (v: unknown) => boolean; expected: string }>> = {
  // Distilled few-step models run without classifier-free guidance.
  guidance_scale: { ok: (v) => typeof v === 'number' && Number.isFinite(v), expected: 'a number' },
  negative_prompt: { ok: (v) => typeof v === 'string', expected: 'a string' },
  // No safety checker runs here; results say so with has_nsfw_concepts: [false].
  enable_safety_checker: { ok: (v) => typeof v === 'boolean', expected: 'a boolean' },
  model_name: { ok: (v) => typeof v === 'string', expected: 'a string' },
  expand_prompt: { ok: (v) => typeof v === 'boolean', expected: 'a boolean' },
};

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** fal request input -> a plan: native generate fields plus what the fal side needs to answer. */
export function mapFalInput(input: unknown, app: FalApp, model: ModelInfo, limits: Limits, options: FalMapOptions = { maxImages: MAX_NUM_IMAGES }): FalMapResult {
  if (!isPlainObject(input)) {
    return { ok: false, error: { code: ErrorCode.InvalidField, message: 'the input must be a JSON object (a msgpack map)', loc: ['body'], type: 'type_error' } };
  }
  // fal's inputs are pydantic models with optional fields: null means "not given".
  const get = (name: string): unknown => (input[name] === null ? undefined : input[name]);

  for (const [name, rule] of Object.entries(IGNORED_FIELDS)) {
    const v = get(name);
    if (v !== undefined && !rule.ok(v)) return fieldError(name, 'type_error', `${name} must be ${rule.expected}`);
  }
  const guidance = get('guidance_scale');
  if (typeof guidance === 'number' && guidance < 0) return fieldError('guidance_scale', 'value_error', 'guidance_scale must be >= 0');
  const numImages = get('num_images') ?? 1;
  if (!isInt(numImages)) return fieldError('num_images', 'type_error', 'num_images must be an integer');
  if (numImages < 1 || numImages > options.maxImages) {
    const why = options.maxImages === 1 ? ': a realtime connection answers each input with one image' : '';
    return fieldError('num_images', 'value_error', `num_images must be from 1 to ${options.maxImages}${why}`);
  }

  const syncMode = get('sync_mode');
  if (syncMode !== undefined && typeof syncMode !== 'boolean') return fieldError('sync_mode', 'type_error', 'sync_mode must be a boolean');
  const streamPreviews = get('stream_previews');
  if (streamPreviews !== undefined && typeof streamPreviews !== 'boolean') {
    return fieldError('stream_previews', 'type_error', 'stream_previews must be a boolean');
  }
  const requestId = get('request_id');
  if (requestId !== undefined && typeof requestId !== 'string' && !(typeof requestId === 'number' && Number.isFinite(requestId))) {
    return fieldError('request_id', 'type_error', 'request_id must be a string or a number');
  }
  if (typeof requestId === 'string' && requestId.length > MAX_REQUEST_ID_CHARS) {
    return fieldError('request_id', 'value_error', `request_id has ${requestId.length} characters; the limit is ${MAX_REQUEST_ID_CHARS}`);
  }

  const prompt = get('prompt');
  if (prompt === undefined) return { ok: false, error: { code: ErrorCode.InvalidField, message: 'prompt is required', loc: ['body', 'prompt'], type: 'missing' } };
  const generate: Record<string, unknown> = { prompt };

  // Two image conventions: bytes in (realtime, msgpack bin), or a URL (usually a data: URI).
  const imageBytes = get('image_bytes');
  const imageUrl = get('image_url');
  if (imageBytes !== undefined && imageUrl !== undefined) {
    return fieldError('image_url', 'value_error', 'give either image_bytes or image_url, not both');
  }
  let imageField: FalPlan['imageField'];
  if (imageBytes !== undefined) {
    generate.image = imageBytes; // validateMessage checks that it is binary
    imageField = 'image_bytes';
  } else if (imageUrl !== undefined) {
    if (typeof imageUrl !== 'string') return fieldError('image_url', 'type_error', 'image_url must be a string');
    if (!/^(data:|https?:\/\/)/i.test(imageUrl)) {
      return fieldError('image_url', 'value_error', 'image_url must be a data: URI or an http(s) URL');
    }
    imageField = 'image_url';
  }

  const size = get('image_size');
  if (typeof size === 'string') {
    const wh = presetSize(size, model, limits);
    if (!wh) {
      return fieldError('image_size', 'value_error', `image_size must be one of ${Object.keys(FAL_SIZE_PRESETS).join(', ')} or {width, height}`, ErrorCode.InvalidSize);
    }
    Object.assign(generate, wh);
  } else if (isPlainObject(size)) {
    // As given: validateMessage checks the numbers against the grid and the limits.
    if (size.width !== undefined && size.width !== null) generate.width = size.width;
    if (size.height !== undefined && size.height !== null) generate.height = size.height;
  } else if (size !== undefined) {
    return fieldError('image_size', 'type_error', 'image_size must be a preset name or {width, height}');
  }

  const format = get('format');
  const outputFormat = get('output_format');
  if (format !== undefined && outputFormat !== undefined && format !== outputFormat) {
    return fieldError('output_format', 'value_error', 'format and output_format disagree; give one', ErrorCode.InvalidFormat);
  }
  let formatField: FalPlan['formatField'];
  if (format !== undefined) [generate.format, formatField] = [format, 'format'];
  else if (outputFormat !== undefined) [generate.format, formatField] = [outputFormat, 'output_format'];

  const seed = get('seed');
  if (seed !== undefined) generate.seed = seed;
  const finalDecoder = get('final_decoder');
  if (finalDecoder !== undefined) generate.finalDecoder = finalDecoder;
  // fal clients never asked for previews: they get them only by opting in.
  generate.previews = streamPreviews === true;

  fillStepsAndStrength(generate, get('num_inference_steps'), get('strength'), imageField !== undefined, app, model, limits);

  return {
    ok: true,
    plan: {
      generate,
      ...(requestId !== undefined ? { requestId: requestId as RequestId } : {}),
      ...(imageField === 'image_url' ? { imageUrl: imageUrl as string } : {}),
      ...(imageField ? { imageField } : {}),
      ...(formatField ? { formatField } : {}),
      syncMode: syncMode === true,
      streamPreviews: streamPreviews === true,
      numImages,
    },
  };
}

/**
 * Steps and strength as given, or the app's defaults where absent. A default must never be what
 * makes a request fail, so it is clamped into the served range and, on SD-Turbo's Euler sampler
 * (which runs floor(steps x strength) steps), raised until at least one step runs with the other
 * value. Given values go through untouched: an out-of-range one is the client's to hear about.
 */
function fillStepsAndStrength(
  generate: Record<string, unknown>,
  steps: unknown,
  strength: unknown,
  hasImage: boolean,
  app: FalApp,
  model: ModelInfo,
  limits: Limits,
): void {
  const minSteps = Math.max(limits.minSteps, model.minSteps);
  const maxSteps = Math.min(limits.maxSteps, model.maxSteps);
  const euler = hasImage && model.scheduler === 'euler_ancestral';

  if (steps !== undefined) generate.steps = steps;
  else if (app.defaults.steps !== undefined && minSteps <= maxSteps) {
    let n = Math.min(maxSteps, Math.max(minSteps, Math.round(app.defaults.steps)));
    const s = strength;
    if (euler && typeof s === 'number' && s > 0 && s <= 1) {
      while (Math.floor(n * s) < 1 && n < maxSteps) n++;
    }
    generate.steps = n;
  }

  // Strength means nothing without an image; a default there would only be noise in the request.
  if (strength !== undefined) generate.strength = strength;
  else if (hasImage && app.defaults.strength !== undefined) {
    // Strength is accepted in (minStrength, maxStrength]; a default at or below the floor is lifted to the ceiling.
    let s = app.defaults.strength;
    if (s > limits.maxStrength) s = limits.maxStrength;
    if (s <= limits.minStrength) s = limits.maxStrength;
    const n = generate.steps ?? model.defaultSteps;
    if (euler && isInt(n) && n > 0 && Math.floor(n * s) < 1) {
      s = Math.min(limits.maxStrength, 1 / n);
      if (Math.floor(n * s) < 1) s = limits.maxStrength;
    }
    generate.strength = s;
  }
}

/** fal field named by each native error code (the image ones depend on the request). */
const LOC_BY_CODE: Readonly<Record<string, string>> = {
  [ErrorCode.InvalidSteps]: 'num_inference_steps',
  [ErrorCode.InvalidStrength]: 'strength',
  [ErrorCode.InvalidSize]: 'image_size',
  [ErrorCode.InvalidSeed]: 'seed',
  [ErrorCode.InvalidFormat]: 'format',
  [ErrorCode.PromptTooLong]: 'prompt',
  [ErrorCode.InvalidFinalDecoder]: 'final_decoder',
  [ErrorCode.FinalDecoderUnavailable]: 'final_decoder',
};
const IMAGE_CODES = new Set<string>([ErrorCode.ImageTooLarge, ErrorCode.ImageUndecodable, ErrorCode.Img2ImgUnsupported]);

/** Native field name -> fal's, for the subject of a native message. */
function falName(native: string, plan: FalPlan | undefined): string | undefined {
  switch (native) {
    case 'prompt': case 'strength': case 'seed':
      return native;
    case 'steps': return 'num_inference_steps';
    case 'width': return 'image_size.width';
    case 'height': return 'image_size.height';
    case 'image': return plan?.imageField ?? 'image_url';
    case 'format': return plan?.formatField ?? 'format';
    case 'finalDecoder': return 'final_decoder';
    case 'previews': return 'stream_previews';
    default: return undefined;
  }
}

/**
 * A native validation error ({code, message} from validateMessage or the image decoder) in fal's
 * terms. Native messages name their field as the first word ("steps must be ...", "image has ...");
 * only that word is rewritten, since the rest may quote a decoder error or a model name.
 */
export function falErrorFromNative(code: string, message: string, plan?: FalPlan): FalFieldError {
  const first = /^[A-Za-z]+/.exec(message)?.[0] ?? '';
  const subject = falName(first, plan);
  const text = subject ? subject + message.slice(first.length) : message;

  let field: string | undefined;
  if (IMAGE_CODES.has(code)) field = plan?.imageField ?? 'image_url';
  else if (code === ErrorCode.InvalidFormat) field = plan?.formatField ?? 'format';
  else field = LOC_BY_CODE[code] ?? subject;

  const loc: (string | number)[] = ['body'];
  if (field) loc.push(...field.split('.'));
  // A width/height complaint names the member of image_size, as pydantic locates nested fields.
  if (code === ErrorCode.InvalidSize && (first === 'width' || first === 'height')) loc.push(first);

  return { code, message: text, loc, type: code === ErrorCode.InvalidField ? 'type_error' : 'value_error' };
}
