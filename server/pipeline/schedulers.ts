/**
 * Few-step samplers for SD-Turbo (Euler ancestral) and LCM models, written to match the math of
 * diffusers' EulerAncestralDiscreteScheduler / LCMScheduler and the image-to-image timestep handling
 * of StableDiffusionImg2ImgPipeline.get_timesteps and LatentConsistencyModelImg2ImgPipeline.
 *
 * Schedule math (betas, alphas_cumprod, sigmas, timesteps) is done in float64; tensors are Float32Array.
 * diffusers computes the betas/alphas_cumprod in float32 torch tensors, so values differ from it in
 * roughly the 6th significant digit; that is well below what the UNet can tell apart.
 */

export type SchedulerKind = 'euler_ancestral' | 'lcm';

export interface SchedulerConfig {
  kind: SchedulerKind;
  numTrainTimesteps: number; // 1000
  betaStart: number; // 0.00085
  betaEnd: number; // 0.012
  betaSchedule: 'scaled_linear' | 'linear';
  predictionType: 'epsilon' | 'v_prediction';
  timestepSpacing: 'trailing' | 'leading' | 'linspace'; // Euler ancestral honours it (SD-Turbo: trailing)
  originalInferenceSteps: number; // LCM, 50
  timestepScaling: number; // LCM, 10
  /** diffusers `steps_offset`, added to the timesteps by the 'leading' spacing only (SD 1.x/2.x configs: 1). Default 0. */
  stepsOffset?: number;
}

const DEFAULTS = {
  numTrainTimesteps: 1000,
  betaStart: 0.00085,
  betaEnd: 0.012,
  betaSchedule: 'scaled_linear',
  predictionType: 'epsilon',
  timestepSpacing: 'trailing',
  originalInferenceSteps: 50,
  timestepScaling: 10,
  stepsOffset: 0,
} as const;

function readNumber(json: Record<string, unknown>, key: string, fallback: number, integer: boolean, min: number): number {
  const v = json[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min) {
    throw new Error(`scheduler_config.json: "${key}" must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function readEnum<T extends string>(json: Record<string, unknown>, key: string, fallback: T, allowed: readonly T[]): T {
  const v = json[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new Error(`scheduler_config.json: unsupported ${key} ${JSON.stringify(v)} (supported: ${allowed.join(', ')})`);
  }
  return v as T;
}

/**
 * Reads diffusers' scheduler/scheduler_config.json (already parsed). `_class_name` LCMScheduler => 'lcm';
 * Euler(Ancestral)DiscreteScheduler and anything else => 'euler_ancestral'. Missing fields take the defaults
 * (timestep_spacing default 'trailing'). Throws a clear Error on an unsupported beta_schedule/prediction_type
 * (and on trained_betas / rescale_betas_zero_snr, which this implementation does not support).
 */
export function schedulerConfigFromDiffusers(json: Record<string, unknown>): SchedulerConfig {
  if (json === null || typeof json !== 'object') throw new Error('scheduler_config.json: expected a JSON object');
  const kind: SchedulerKind = json['_class_name'] === 'LCMScheduler' ? 'lcm' : 'euler_ancestral';
  const betaSchedule = readEnum(json, 'beta_schedule', DEFAULTS.betaSchedule, ['scaled_linear', 'linear'] as const);
  const predictionType = readEnum(json, 'prediction_type', DEFAULTS.predictionType, ['epsilon', 'v_prediction'] as const);
  const timestepSpacing = readEnum(json, 'timestep_spacing', DEFAULTS.timestepSpacing, ['trailing', 'leading', 'linspace'] as const);
  const trained = json['trained_betas'];
  if (trained !== undefined && trained !== null) {
    throw new Error('scheduler_config.json: "trained_betas" is not supported (use beta_start/beta_end/beta_schedule)');
  }
  if (json['rescale_betas_zero_snr'] === true) {
    throw new Error('scheduler_config.json: "rescale_betas_zero_snr": true is not supported');
  }
  const numTrainTimesteps = readNumber(json, 'num_train_timesteps', DEFAULTS.numTrainTimesteps, true, 2);
  const betaStart = readNumber(json, 'beta_start', DEFAULTS.betaStart, false, 0);
  const betaEnd = readNumber(json, 'beta_end', DEFAULTS.betaEnd, false, 0);
  if (!(betaStart < 1) || !(betaEnd < 1)) throw new Error('scheduler_config.json: beta_start and beta_end must be < 1');
  const originalInferenceSteps = readNumber(json, 'original_inference_steps', DEFAULTS.originalInferenceSteps, true, 1);
  const timestepScaling = readNumber(json, 'timestep_scaling', DEFAULTS.timestepScaling, false, 0);
  const stepsOffset = readNumber(json, 'steps_offset', DEFAULTS.stepsOffset, true, 0);
  return {
    kind,
    numTrainTimesteps,
    betaStart,
    betaEnd,
    betaSchedule,
    predictionType,
    timestepSpacing,
    originalInferenceSteps,
    timestepScaling,
    stepsOffset,
  };
}

/**
 * How many steps image-to-image actually runs: min(floor(steps*strength), steps), as diffusers'
 * StableDiffusionImg2ImgPipeline.get_timesteps (0 means invalid: the caller rejects). This is the Euler
 * (SD-Turbo) rule; LCM follows LCMScheduler.set_timesteps(strength=...) instead, see createSampler.
 */
export function img2imgStepCount(steps: number, strength: number): number {
  const n = Math.trunc(steps * strength); // Python int() of a float
  if (!Number.isFinite(n) || n <= 0) return 0;
  return Math.min(n, steps);
}

export interface Sampler {
  /** Timesteps actually run, in order (after image-to-image truncation). Integers. */
  readonly timesteps: readonly number[];
  /** For Euler: sigmas aligned with timesteps plus the trailing 0 (length timesteps.length+1). For LCM: empty. */
  readonly sigmas: readonly number[];
  /**
   * Multiplier for pure noise at the start of text-to-image. Euler, as diffusers' init_noise_sigma: max_sigma
   * for 'trailing'/'linspace' spacing (SD-Turbo: 14.6146), sqrt(max_sigma^2+1) for 'leading'. LCM: 1.
   */
  readonly initNoiseSigma: number;
  /** Text-to-image: noise * initNoiseSigma. Image-to-image (imageLatents given, already multiplied by the VAE scaling factor): diffusers' add_noise at the first timestep run (Euler: x0 + noise*sigma; LCM: sqrt(a)x0 + sqrt(1-a) noise). Returns a new array. */
  initLatents(noise: Float32Array, imageLatents?: Float32Array): Float32Array;
  /** Euler: latents / sqrt(sigma^2+1); LCM: identity (may return the input). */
  scaleModelInput(latents: Float32Array, stepIndex: number): Float32Array;
  /** One sampler update given the UNet output for step `stepIndex`. `noise` is called at most once, only when fresh Gaussian noise is needed (Euler ancestral when sigma_up > 0; LCM when not the last step); it must return an array of latents.length. Returns the next latents and the predicted clean latent (x0; for LCM the boundary-condition "denoised"). */
  step(
    latents: Float32Array,
    modelOutput: Float32Array,
    stepIndex: number,
    noise: () => Float32Array,
  ): { prevSample: Float32Array; predOriginal: Float32Array };
}

// ---------------------------------------------------------------------------------------------
// Schedule math (float64)

/** alphas_cumprod = cumprod(1 - betas) for the configured beta schedule. */
function alphasCumprod(config: SchedulerConfig): Float64Array {
  const n = config.numTrainTimesteps;
  const out = new Float64Array(n);
  let a0: number;
  let a1: number;
  if (config.betaSchedule === 'scaled_linear') {
    a0 = Math.sqrt(config.betaStart);
    a1 = Math.sqrt(config.betaEnd);
  } else if (config.betaSchedule === 'linear') {
    a0 = config.betaStart;
    a1 = config.betaEnd;
  } else {
    throw new Error(`unsupported beta schedule ${String(config.betaSchedule)}`);
  }
  const delta = (a1 - a0) / (n - 1);
  let prod = 1;
  for (let i = 0; i < n; i++) {
    const lin = i === n - 1 ? a1 : a0 + i * delta;
    const beta = config.betaSchedule === 'scaled_linear' ? lin * lin : lin;
    prod *= 1 - beta;
    out[i] = prod;
  }
  return out;
}

/** numpy's round(): half to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x); // half up
  if (r - x === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/**
 * Euler timesteps for the full `steps` schedule, as EulerAncestralDiscreteScheduler.set_timesteps
 * (values may be fractional for 'linspace'). One deliberate difference: numpy's arange for 'trailing' can
 * yield steps+1 entries for a few step counts (61, 103, ...) because of float rounding of its length; this
 * always yields exactly `steps` entries.
 */
function eulerTimesteps(config: SchedulerConfig, steps: number): Float64Array {
  const n = config.numTrainTimesteps;
  const out = new Float64Array(steps);
  switch (config.timestepSpacing) {
    case 'linspace': {
      // np.linspace(0, N-1, steps, dtype=float32)[::-1]
      if (steps === 1) {
        out[0] = 0;
      } else {
        const step = (n - 1) / (steps - 1);
        for (let i = 0; i < steps; i++) {
          const v = i === steps - 1 ? n - 1 : i * step;
          out[steps - 1 - i] = Math.fround(v);
        }
      }
      break;
    }
    case 'leading': {
      // (arange(0, steps) * (N // steps)).round()[::-1] + steps_offset
      const ratio = Math.floor(n / steps);
      const offset = config.stepsOffset ?? 0;
      for (let i = 0; i < steps; i++) out[steps - 1 - i] = i * ratio + offset;
      break;
    }
    case 'trailing': {
      // round(arange(N, 0, -N/steps)) - 1
      const ratio = n / steps;
      for (let i = 0; i < steps; i++) out[i] = roundHalfEven(n - i * ratio) - 1;
      break;
    }
    default:
      throw new Error(`unsupported timestep spacing ${String(config.timestepSpacing)}`);
  }
  return out;
}

/** np.interp(t, arange(len), table) */
function interp(table: Float64Array, t: number): number {
  const last = table.length - 1;
  if (t <= 0) return table[0];
  if (t >= last) return table[last];
  const i = Math.floor(t);
  const f = t - i;
  return f === 0 ? table[i] : table[i] + (table[i + 1] - table[i]) * f;
}

/**
 * LCM timesteps as LCMScheduler.set_timesteps(num_inference_steps, original_inference_steps, strength):
 * origin schedule k*c-1 for k = 1..int(orig*strength) (c = N // orig), reversed, then the entries at
 * floor(linspace(0, len, steps, endpoint=False)).
 */
function lcmTimesteps(config: SchedulerConfig, steps: number, strength: number): number[] {
  const n = config.numTrainTimesteps;
  const orig = config.originalInferenceSteps;
  if (orig > n) throw new RangeError(`original_inference_steps ${orig} cannot exceed num_train_timesteps ${n}`);
  if (steps > n) throw new RangeError(`steps ${steps} cannot exceed num_train_timesteps ${n}`);
  const c = Math.floor(n / orig);
  const originCount = Math.trunc(orig * strength);
  if (Math.floor(originCount / steps) < 1) {
    throw new RangeError(
      `LCM: int(original_inference_steps x strength) = int(${orig} x ${strength}) = ${originCount} is smaller than steps ${steps}`,
    );
  }
  if (steps > orig) throw new RangeError(`LCM: steps ${steps} cannot exceed original_inference_steps ${orig}`);
  const spacing = originCount / steps;
  const out: number[] = new Array<number>(steps);
  for (let i = 0; i < steps; i++) {
    const idx = Math.floor(i * spacing); // index into the reversed origin schedule
    out[i] = (originCount - idx) * c - 1;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Samplers

function checkLength(a: Float32Array, b: Float32Array, what: string): void {
  if (a.length !== b.length) throw new RangeError(`${what}: length ${b.length} does not match latents length ${a.length}`);
}

class EulerAncestralSampler implements Sampler {
  readonly timesteps: readonly number[];
  readonly sigmas: readonly number[];
  readonly initNoiseSigma: number;
  private readonly sig: Float64Array;
  private readonly vPred: boolean;

  constructor(config: SchedulerConfig, steps: number, strength: number) {
    const run = img2imgStepCount(steps, strength);
    if (run < 1) {
      throw new RangeError(`image-to-image runs floor(steps x strength) = floor(${steps} x ${strength}) = 0 steps; need >= 1`);
    }
    const tStart = steps - run;
    const ac = alphasCumprod(config);
    const allSigmas = new Float64Array(ac.length);
    for (let i = 0; i < ac.length; i++) allSigmas[i] = Math.sqrt((1 - ac[i]) / ac[i]);
    const ts = eulerTimesteps(config, steps);
    const full = new Float64Array(steps + 1); // trailing 0
    let max = 0;
    for (let i = 0; i < steps; i++) {
      full[i] = interp(allSigmas, ts[i]);
      if (full[i] > max) max = full[i];
    }
    // diffusers: sigmas.max() for 'linspace'/'trailing', sqrt(max^2 + 1) otherwise (i.e. 'leading').
    this.initNoiseSigma =
      config.timestepSpacing === 'linspace' || config.timestepSpacing === 'trailing' ? max : Math.sqrt(max * max + 1);
    this.sig = full.slice(tStart);
    this.sigmas = Object.freeze(Array.from(this.sig));
    // Fractional 'linspace' timesteps are rounded for integer-timestep UNets; sigmas use the exact value.
    this.timesteps = Object.freeze(Array.from(ts.subarray(tStart), (t) => Math.round(t)));
    this.vPred = config.predictionType === 'v_prediction';
  }

  initLatents(noise: Float32Array, imageLatents?: Float32Array): Float32Array {
    const out = new Float32Array(noise.length);
    if (imageLatents === undefined) {
      const s = this.initNoiseSigma;
      for (let i = 0; i < noise.length; i++) out[i] = noise[i] * s;
    } else {
      checkLength(noise, imageLatents, 'imageLatents');
      const s = this.sig[0];
      for (let i = 0; i < noise.length; i++) out[i] = imageLatents[i] + noise[i] * s;
    }
    return out;
  }

  scaleModelInput(latents: Float32Array, stepIndex: number): Float32Array {
    const sigma = this.sigmaAt(stepIndex);
    const k = 1 / Math.sqrt(sigma * sigma + 1);
    const out = new Float32Array(latents.length);
    for (let i = 0; i < latents.length; i++) out[i] = latents[i] * k;
    return out;
  }

  step(
    latents: Float32Array,
    modelOutput: Float32Array,
    stepIndex: number,
    noise: () => Float32Array,
  ): { prevSample: Float32Array; predOriginal: Float32Array } {
    checkLength(latents, modelOutput, 'modelOutput');
    const sigma = this.sigmaAt(stepIndex);
    const sigmaTo = this.sig[stepIndex + 1];
    const sigmaUp = Math.sqrt((sigmaTo * sigmaTo * (sigma * sigma - sigmaTo * sigmaTo)) / (sigma * sigma));
    const sigmaDown = Math.sqrt(Math.max(0, sigmaTo * sigmaTo - sigmaUp * sigmaUp));
    const dt = sigmaDown - sigma;
    const len = latents.length;
    const prev = new Float32Array(len);
    const x0 = new Float32Array(len);
    let z: Float32Array | null = null;
    if (sigmaUp > 0) {
      z = noise();
      checkLength(latents, z, 'noise()');
    }
    if (!this.vPred) {
      // pred_x0 = x - sigma*eps; derivative (x - x0)/sigma == eps.
      if (sigmaTo === 0) {
        // x + eps*(0 - sigma) == x0: write it exactly.
        for (let i = 0; i < len; i++) {
          const p = latents[i] - sigma * modelOutput[i];
          x0[i] = p;
          prev[i] = p;
        }
      } else if (z === null) {
        for (let i = 0; i < len; i++) {
          const x = latents[i];
          const e = modelOutput[i];
          x0[i] = x - sigma * e;
          prev[i] = x + e * dt;
        }
      } else {
        for (let i = 0; i < len; i++) {
          const x = latents[i];
          const e = modelOutput[i];
          x0[i] = x - sigma * e;
          prev[i] = x + e * dt + z[i] * sigmaUp;
        }
      }
    } else {
      // pred_x0 = v * (-sigma / sqrt(sigma^2+1)) + x / (sigma^2+1)
      const cOut = -sigma / Math.sqrt(sigma * sigma + 1);
      const cSkip = 1 / (sigma * sigma + 1);
      const invSigma = 1 / sigma;
      if (sigmaTo === 0) {
        for (let i = 0; i < len; i++) {
          const p = modelOutput[i] * cOut + latents[i] * cSkip;
          x0[i] = p;
          prev[i] = p;
        }
      } else {
        for (let i = 0; i < len; i++) {
          const x = latents[i];
          const p = modelOutput[i] * cOut + x * cSkip;
          x0[i] = p;
          let v = x + (x - p) * invSigma * dt;
          if (z !== null) v += z[i] * sigmaUp;
          prev[i] = v;
        }
      }
    }
    return { prevSample: prev, predOriginal: x0 };
  }

  private sigmaAt(stepIndex: number): number {
    if (!Number.isInteger(stepIndex) || stepIndex < 0 || stepIndex >= this.timesteps.length) {
      throw new RangeError(`stepIndex ${stepIndex} out of range [0, ${this.timesteps.length})`);
    }
    return this.sig[stepIndex];
  }
}

class LcmSampler implements Sampler {
  readonly timesteps: readonly number[];
  readonly sigmas: readonly number[] = Object.freeze([]);
  readonly initNoiseSigma = 1;
  private readonly ac: Float64Array;
  private readonly vPred: boolean;
  private readonly scaling: number;

  constructor(config: SchedulerConfig, steps: number, strength: number) {
    this.timesteps = Object.freeze(lcmTimesteps(config, steps, strength));
    this.ac = alphasCumprod(config);
    this.vPred = config.predictionType === 'v_prediction';
    this.scaling = config.timestepScaling;
  }

  initLatents(noise: Float32Array, imageLatents?: Float32Array): Float32Array {
    const out = new Float32Array(noise.length);
    if (imageLatents === undefined) {
      out.set(noise);
    } else {
      checkLength(noise, imageLatents, 'imageLatents');
      const a = this.ac[this.timesteps[0]];
      const sa = Math.sqrt(a);
      const sb = Math.sqrt(1 - a);
      for (let i = 0; i < noise.length; i++) out[i] = sa * imageLatents[i] + sb * noise[i];
    }
    return out;
  }

  scaleModelInput(latents: Float32Array, _stepIndex: number): Float32Array {
    return latents;
  }

  step(
    latents: Float32Array,
    modelOutput: Float32Array,
    stepIndex: number,
    noise: () => Float32Array,
  ): { prevSample: Float32Array; predOriginal: Float32Array } {
    checkLength(latents, modelOutput, 'modelOutput');
    const n = this.timesteps.length;
    if (!Number.isInteger(stepIndex) || stepIndex < 0 || stepIndex >= n) {
      throw new RangeError(`stepIndex ${stepIndex} out of range [0, ${n})`);
    }
    const t = this.timesteps[stepIndex];
    const last = stepIndex === n - 1;
    const a = this.ac[t];
    const sa = Math.sqrt(a);
    const sb = Math.sqrt(1 - a);
    // Consistency-model boundary conditions (sigma_data = 0.5).
    const st = t * this.scaling;
    const sd2 = 0.25;
    const cSkip = sd2 / (st * st + sd2);
    const cOut = st / Math.sqrt(st * st + sd2);
    const len = latents.length;
    const denoised = new Float32Array(len);
    if (!this.vPred) {
      // pred_x0 = (x - sqrt(1-a) eps) / sqrt(a)
      const inv = 1 / sa;
      for (let i = 0; i < len; i++) {
        const x = latents[i];
        const p = (x - sb * modelOutput[i]) * inv;
        denoised[i] = cOut * p + cSkip * x;
      }
    } else {
      // pred_x0 = sqrt(a) x - sqrt(1-a) v
      for (let i = 0; i < len; i++) {
        const x = latents[i];
        const p = sa * x - sb * modelOutput[i];
        denoised[i] = cOut * p + cSkip * x;
      }
    }
    if (last) return { prevSample: denoised.slice(), predOriginal: denoised };
    const z = noise();
    checkLength(latents, z, 'noise()');
    const aPrev = this.ac[this.timesteps[stepIndex + 1]];
    const pa = Math.sqrt(aPrev);
    const pb = Math.sqrt(1 - aPrev);
    const prev = new Float32Array(len);
    for (let i = 0; i < len; i++) prev[i] = pa * denoised[i] + pb * z[i];
    return { prevSample: prev, predOriginal: denoised };
  }
}

/**
 * steps >= 1; strength in (0,1], default 1 (text-to-image).
 *
 * Euler ancestral: the full schedule for `steps` is set, then image-to-image starts at
 * t_start = steps - img2imgStepCount(steps, strength) (diffusers get_timesteps). Throws RangeError if
 * img2imgStepCount(steps, strength) < 1.
 *
 * LCM: follows LCMScheduler.set_timesteps(steps, strength=strength) as LatentConsistencyModelImg2ImgPipeline
 * uses it: strength shortens the origin schedule to int(originalInferenceSteps*strength) entries and `steps`
 * timesteps are taken from it, so `steps` steps always run. Throws RangeError when
 * int(originalInferenceSteps*strength) < steps or steps > originalInferenceSteps (diffusers' ValueErrors).
 */
export function createSampler(config: SchedulerConfig, steps: number, strength = 1): Sampler {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be an integer >= 1, got ${steps}`);
  if (!(strength > 0 && strength <= 1)) throw new RangeError(`strength must be in (0, 1], got ${strength}`);
  if (steps > config.numTrainTimesteps) {
    throw new RangeError(`steps ${steps} cannot exceed num_train_timesteps ${config.numTrainTimesteps}`);
  }
  if (config.kind === 'lcm') return new LcmSampler(config, steps, strength);
  if (config.kind === 'euler_ancestral') return new EulerAncestralSampler(config, steps, strength);
  throw new Error(`unsupported scheduler kind ${String((config as { kind: unknown }).kind)}`);
}

/**
 * LCM's guidance-scale embedding (diffusers get_guidance_scale_embedding) for a UNet input `timestep_cond`
 * of width `dim`: w is the guidance scale minus 1, multiplied by 1000 inside; sin half then cos half
 * (zero-padded when dim is odd).
 */
export function guidanceScaleEmbedding(w: number, dim: number): Float32Array {
  if (!Number.isInteger(dim) || dim < 4) throw new RangeError(`embedding dim must be an integer >= 4, got ${dim}`);
  const half = Math.floor(dim / 2);
  const out = new Float32Array(dim);
  const ww = w * 1000;
  const k = Math.log(10000) / (half - 1);
  for (let i = 0; i < half; i++) {
    const arg = ww * Math.exp(-i * k);
    out[i] = Math.sin(arg);
    out[half + i] = Math.cos(arg);
  }
  return out;
}
