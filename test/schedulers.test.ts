import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createSampler,
  guidanceScaleEmbedding,
  img2imgStepCount,
  schedulerConfigFromDiffusers,
  type SchedulerConfig,
} from '../server/pipeline/schedulers.js';

/*
 * Reference values, none computed by the code under test:
 *  - "diffusers facts": documented SD-Turbo / LCM behaviour (trailing timesteps [999], [999,499],
 *    [999,749,499,249]; init sigma 14.6146; LCM 4 steps [999,759,499,259] and 8 steps
 *    [999,879,759,639,499,379,259,139], as printed by LCMScheduler and quoted in many public ports).
 *  - "numpy ref": a Python/numpy transcription of diffusers' set_timesteps code (float32 betas and cumprod
 *    as diffusers' torch.float32 tensors; np.arange/np.round/np.interp/np.linspace exactly as diffusers
 *    calls them), run once on numpy 2.4; the printed numbers are pasted below.
 *  - "independent formula": written out separately in this file (plainSigma / plainAlphaCumprod).
 */

const SD_TURBO_SCHEDULER_JSON = {
  _class_name: 'EulerDiscreteScheduler',
  _diffusers_version: '0.24.0.dev0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  interpolation_type: 'linear',
  num_train_timesteps: 1000,
  prediction_type: 'epsilon',
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: 'trailing',
  trained_betas: null,
  use_karras_sigmas: false,
};

const LCM_SCHEDULER_JSON = {
  _class_name: 'LCMScheduler',
  _diffusers_version: '0.22.0.dev0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  clip_sample: false,
  clip_sample_range: 1.0,
  num_train_timesteps: 1000,
  original_inference_steps: 50,
  prediction_type: 'epsilon',
  rescale_betas_zero_snr: false,
  set_alpha_to_one: true,
  steps_offset: 1,
  timestep_scaling: 10.0,
  timestep_spacing: 'leading',
  trained_betas: null,
};

const turbo = (): SchedulerConfig => schedulerConfigFromDiffusers(SD_TURBO_SCHEDULER_JSON);
const lcm = (): SchedulerConfig => schedulerConfigFromDiffusers(LCM_SCHEDULER_JSON);

/** Independent formula: alphas_cumprod[t] for scaled_linear 0.00085..0.012 over 1000 steps, by a plain product. */
function plainAlphaCumprod(t: number): number {
  let p = 1;
  for (let i = 0; i <= t; i++) {
    const b = Math.pow(Math.sqrt(0.00085) + (i / 999) * (Math.sqrt(0.012) - Math.sqrt(0.00085)), 2);
    p = p * (1 - b);
  }
  return p;
}
function plainSigma(t: number): number {
  const a = plainAlphaCumprod(t);
  return Math.sqrt((1 - a) / a);
}

function close(actual: number, expected: number, rel: number, msg?: string): void {
  const tol = rel * Math.max(1, Math.abs(expected));
  assert.ok(Math.abs(actual - expected) <= tol, `${msg ?? ''} expected ${expected}, got ${actual} (tol ${tol})`);
}
function closeArr(actual: readonly number[], expected: readonly number[], rel: number, msg?: string): void {
  assert.equal(actual.length, expected.length, `${msg ?? ''} length`);
  for (let i = 0; i < expected.length; i++) close(actual[i], expected[i], rel, `${msg ?? ''}[${i}]`);
}
function noNoise(): Float32Array {
  throw new Error('noise() must not be called here');
}
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
}
function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const r = lcg(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() * 2 * scale;
  return a;
}

// ------------------------------------------------------------------------------------------------
// Config parsing

test('schedulerConfigFromDiffusers: SD-Turbo (EulerDiscreteScheduler) -> euler_ancestral, trailing', () => {
  const c = turbo();
  assert.equal(c.kind, 'euler_ancestral');
  assert.equal(c.numTrainTimesteps, 1000);
  assert.equal(c.betaStart, 0.00085);
  assert.equal(c.betaEnd, 0.012);
  assert.equal(c.betaSchedule, 'scaled_linear');
  assert.equal(c.predictionType, 'epsilon');
  assert.equal(c.timestepSpacing, 'trailing');
  assert.equal(c.stepsOffset, 1);
  assert.equal(schedulerConfigFromDiffusers({ _class_name: 'EulerAncestralDiscreteScheduler' }).kind, 'euler_ancestral');
  assert.equal(schedulerConfigFromDiffusers({ _class_name: 'DDIMScheduler' }).kind, 'euler_ancestral');
});

test('schedulerConfigFromDiffusers: LCMScheduler -> lcm with its fields', () => {
  const c = lcm();
  assert.equal(c.kind, 'lcm');
  assert.equal(c.originalInferenceSteps, 50);
  assert.equal(c.timestepScaling, 10);
});

test('schedulerConfigFromDiffusers: defaults for missing fields', () => {
  const c = schedulerConfigFromDiffusers({});
  assert.deepEqual(
    { ...c },
    {
      kind: 'euler_ancestral',
      numTrainTimesteps: 1000,
      betaStart: 0.00085,
      betaEnd: 0.012,
      betaSchedule: 'scaled_linear',
      predictionType: 'epsilon',
      timestepSpacing: 'trailing',
      originalInferenceSteps: 50,
      timestepScaling: 10,
      stepsOffset: 0,
    },
  );
  assert.equal(schedulerConfigFromDiffusers({ prediction_type: 'v_prediction' }).predictionType, 'v_prediction');
  assert.equal(schedulerConfigFromDiffusers({ beta_schedule: 'linear' }).betaSchedule, 'linear');
});

test('schedulerConfigFromDiffusers: clear errors for unsupported settings', () => {
  assert.throws(() => schedulerConfigFromDiffusers({ beta_schedule: 'squaredcos_cap_v2' }), /beta_schedule.*squaredcos_cap_v2/);
  assert.throws(() => schedulerConfigFromDiffusers({ prediction_type: 'sample' }), /prediction_type.*sample/);
  assert.throws(() => schedulerConfigFromDiffusers({ timestep_spacing: 'karras' }), /timestep_spacing/);
  assert.throws(() => schedulerConfigFromDiffusers({ trained_betas: [0.1, 0.2] }), /trained_betas/);
  assert.throws(() => schedulerConfigFromDiffusers({ rescale_betas_zero_snr: true }), /rescale_betas_zero_snr/);
  assert.throws(() => schedulerConfigFromDiffusers({ num_train_timesteps: 'x' }), /num_train_timesteps/);
});

// ------------------------------------------------------------------------------------------------
// Euler ancestral schedule

test('Euler trailing timesteps (diffusers facts for 1, 2, 4; numpy ref for 3, 8, 16)', () => {
  const c = turbo();
  assert.deepEqual(createSampler(c, 1).timesteps, [999]);
  assert.deepEqual(createSampler(c, 2).timesteps, [999, 499]);
  assert.deepEqual(createSampler(c, 4).timesteps, [999, 749, 499, 249]);
  assert.deepEqual(createSampler(c, 3).timesteps, [999, 666, 332]);
  assert.deepEqual(createSampler(c, 8).timesteps, [999, 874, 749, 624, 499, 374, 249, 124]);
  // 16 steps: ratio 62.5, numpy rounds half to even (937.5 -> 938, 812.5 -> 812)
  assert.deepEqual(
    createSampler(c, 16).timesteps,
    [999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61],
  );
});

test('Euler sigmas: 14.6146 at t=999 (diffusers fact), independent formula and numpy ref elsewhere', () => {
  const c = turbo();
  const s1 = createSampler(c, 1);
  assert.equal(s1.sigmas.length, 2);
  close(s1.sigmas[0], 14.6146, 1e-5);
  assert.equal(s1.sigmas[1], 0);
  close(s1.initNoiseSigma, 14.6146, 1e-5, 'SD-Turbo init noise sigma');

  const s4 = createSampler(c, 4);
  // numpy ref (float32 diffusers): [14.614655, 4.0817323, 1.6128867, 0.69320506, 0]
  closeArr(s4.sigmas, [14.614655494689941, 4.081732273101807, 1.612886667251587, 0.6932050585746765, 0], 2e-5);
  // independent float64 formula
  for (let i = 0; i < 4; i++) close(s4.sigmas[i], plainSigma(s4.timesteps[i]), 1e-9, `sigma(${s4.timesteps[i]})`);
  close(plainSigma(499), 1.6128867, 1e-5, 'independent sigma(499) vs numpy');

  const s8 = createSampler(c, 8);
  closeArr(
    s8.sigmas,
    [14.614655494689941, 7.297357559204102, 4.081732273101807, 2.4925317764282227, 1.612886667251587, 1.068951964378357,
      0.6932050585746765, 0.3977460265159607, 0],
    2e-5,
  );
});

test('Euler linspace and leading spacing match diffusers (numpy ref), incl. init noise sigma rule', () => {
  const lin = { ...turbo(), timestepSpacing: 'linspace' as const };
  const s5 = createSampler(lin, 5);
  // diffusers timesteps [999, 749.25, 499.5, 249.75, 0]; exposed rounded, sigmas interpolated at the exact values
  assert.deepEqual(s5.timesteps, [999, 749, 500, 250, 0]);
  closeArr(s5.sigmas, [14.614655494689941, 4.086091041564941, 1.6155829429626465, 0.6951505541801453, 0.029167532920837402, 0], 2e-5);
  close(s5.initNoiseSigma, 14.614655494689941, 2e-5, 'linspace: max sigma');
  const s1 = createSampler(lin, 1);
  assert.deepEqual(s1.timesteps, [0]); // np.linspace(0, 999, 1) == [0]
  close(s1.sigmas[0], 0.029167532920837402, 2e-5);

  const lead = { ...turbo(), timestepSpacing: 'leading' as const };
  const l4 = createSampler(lead, 4);
  assert.deepEqual(l4.timesteps, [751, 501, 251, 1]); // steps_offset 1
  closeArr(l4.sigmas, [4.116699695587158, 1.6236926317214966, 0.698398232460022, 0.04131447896361351, 0], 2e-5);
  close(l4.initNoiseSigma, 4.236415386199951, 2e-5, 'leading: sqrt(max^2+1)');
  assert.deepEqual(createSampler({ ...lead, stepsOffset: 0 }, 4).timesteps, [750, 500, 250, 0]);
});

test('img2imgStepCount follows get_timesteps: min(int(steps*strength), steps)', () => {
  assert.equal(img2imgStepCount(2, 0.5), 1);
  assert.equal(img2imgStepCount(4, 0.5), 2);
  assert.equal(img2imgStepCount(1, 0.5), 0);
  assert.equal(img2imgStepCount(4, 1), 4);
  assert.equal(img2imgStepCount(4, 0.75), 3);
  assert.equal(img2imgStepCount(4, 0.74), 2);
  assert.equal(img2imgStepCount(10, 0.3), 3); // 10*0.3 = 3.0000000000000004
  assert.equal(img2imgStepCount(2, 0.49), 0);
  assert.equal(img2imgStepCount(3, 1), 3);
});

test('Euler image-to-image truncation: start index t_start = steps - img2imgStepCount', () => {
  const c = turbo();
  const a = createSampler(c, 2, 0.5);
  assert.deepEqual(a.timesteps, [499]);
  assert.equal(a.sigmas.length, 2);
  close(a.sigmas[0], 1.612886667251587, 2e-5);
  assert.equal(a.sigmas[1], 0);

  const b = createSampler(c, 4, 0.5);
  assert.deepEqual(b.timesteps, [499, 249]);
  closeArr(b.sigmas, [1.612886667251587, 0.6932050585746765, 0], 2e-5);

  assert.deepEqual(createSampler(c, 4, 0.75).timesteps, [749, 499, 249]);
  assert.deepEqual(createSampler(c, 4, 1).timesteps, [999, 749, 499, 249]);
  assert.throws(() => createSampler(c, 1, 0.5), RangeError);
  assert.throws(() => createSampler(c, 2, 0.4), RangeError);
});

test('createSampler validates its arguments', () => {
  const c = turbo();
  assert.throws(() => createSampler(c, 0), RangeError);
  assert.throws(() => createSampler(c, 1.5), RangeError);
  assert.throws(() => createSampler(c, 2, 0), RangeError);
  assert.throws(() => createSampler(c, 2, 1.1), RangeError);
  assert.throws(() => createSampler(c, 2, Number.NaN), RangeError);
  assert.throws(() => createSampler(c, 1001), RangeError);
});

test('Euler initLatents: text-to-image noise*initNoiseSigma; image-to-image x0 + noise*sigma(t_start)', () => {
  const c = turbo();
  const noise = randomArray(64, 1);
  const x0 = randomArray(64, 2);
  const t2i = createSampler(c, 1).initLatents(noise);
  assert.notEqual(t2i, noise);
  for (let i = 0; i < 64; i++) close(t2i[i], noise[i] * 14.614655, 2e-5);

  const i2i = createSampler(c, 2, 0.5).initLatents(noise, x0);
  const s499 = plainSigma(499);
  for (let i = 0; i < 64; i++) close(i2i[i], x0[i] + noise[i] * s499, 1e-6);
  assert.throws(() => createSampler(c, 2, 0.5).initLatents(noise, new Float32Array(3)), RangeError);
});

test('Euler scaleModelInput divides by sqrt(sigma^2+1)', () => {
  const s = createSampler(turbo(), 4);
  const x = randomArray(32, 3, 10);
  for (let k = 0; k < 4; k++) {
    const sig = plainSigma(s.timesteps[k]);
    const y = s.scaleModelInput(x, k);
    for (let i = 0; i < x.length; i++) close(y[i], x[i] / Math.sqrt(sig * sig + 1), 1e-6);
  }
  assert.throws(() => s.scaleModelInput(x, 4), RangeError);
});

test('Euler ancestral step with sigma_to = 0 and a perfect epsilon returns x0 exactly (no noise drawn)', () => {
  const s = createSampler(turbo(), 1);
  const n = 4 * 8 * 8;
  const clean = randomArray(n, 4);
  const eps = randomArray(n, 5, 1.5);
  const sigma = plainSigma(999);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = clean[i] + sigma * eps[i];
  const { prevSample, predOriginal } = s.step(x, eps, 0, noNoise);
  assert.deepEqual(prevSample, predOriginal, 'last step lands exactly on pred_x0');
  for (let i = 0; i < n; i++) {
    // pred_x0 = x - sigma*eps undoes the noising up to float32 rounding of x (|x| <= ~15)
    assert.ok(Math.abs(predOriginal[i] - clean[i]) <= 4e-6 * Math.abs(x[i]) + 1e-7, `element ${i}`);
  }
});

test('Euler ancestral mid-step: pred_x0 recovers the clean latent; update matches the k-diffusion formula', () => {
  const s = createSampler(turbo(), 4);
  const n = 256;
  const clean = randomArray(n, 6);
  const eps = randomArray(n, 7, 1.7);
  const z = randomArray(n, 8, 1.7);
  const k = 1; // t = 749 -> 499
  const sigma = plainSigma(749);
  const sigmaTo = plainSigma(499);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = clean[i] + sigma * eps[i];
  let calls = 0;
  const { prevSample, predOriginal } = s.step(x, eps, k, () => {
    calls++;
    return z;
  });
  assert.equal(calls, 1, 'noise drawn once');
  const up = Math.sqrt((sigmaTo ** 2 * (sigma ** 2 - sigmaTo ** 2)) / sigma ** 2);
  const down = Math.sqrt(sigmaTo ** 2 - up ** 2);
  for (let i = 0; i < n; i++) {
    assert.ok(Math.abs(predOriginal[i] - clean[i]) <= 1e-6 * Math.abs(x[i]) + 1e-6, `x0 ${i}`);
    const d = (x[i] - (x[i] - sigma * eps[i])) / sigma;
    const expected = x[i] + d * (down - sigma) + z[i] * up;
    close(prevSample[i], expected, 1e-5, `prev ${i}`);
  }
  // the result has the right noise level: prev ~= x0 + sigma_down*eps + sigma_up*z
  for (let i = 0; i < n; i++) close(prevSample[i], clean[i] + down * eps[i] + up * z[i], 1e-5, `level ${i}`);
  assert.throws(() => s.step(x, new Float32Array(3), 0, noNoise), RangeError);
});

test('Euler ancestral v-prediction recovers x0 from the true velocity', () => {
  const c: SchedulerConfig = { ...turbo(), predictionType: 'v_prediction' };
  const s = createSampler(c, 2);
  const n = 128;
  const clean = randomArray(n, 9);
  const eps = randomArray(n, 10, 1.7);
  for (let k = 0; k < 2; k++) {
    const sigma = plainSigma(s.timesteps[k]);
    // VP form: alpha = 1/sqrt(1+sigma^2), sigma_vp = sigma/sqrt(1+sigma^2); v = alpha*eps - sigma_vp*x0
    const alpha = 1 / Math.sqrt(1 + sigma * sigma);
    const svp = sigma * alpha;
    const x = new Float32Array(n);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      x[i] = clean[i] + sigma * eps[i];
      v[i] = alpha * eps[i] - svp * clean[i];
    }
    const { predOriginal } = s.step(x, v, k, () => new Float32Array(n));
    for (let i = 0; i < n; i++) close(predOriginal[i], clean[i], 2e-5, `v-pred x0 step ${k} [${i}]`);
  }
});

test('full Euler chain with a perfect denoiser ends on the clean latent', () => {
  const s = createSampler(turbo(), 4);
  const n = 64;
  const clean = randomArray(n, 11);
  const noise = randomArray(n, 12, 1.7);
  let x = s.initLatents(noise);
  let seed = 100;
  for (let k = 0; k < s.timesteps.length; k++) {
    const sigma = s.sigmas[k];
    const eps = new Float32Array(n);
    for (let i = 0; i < n; i++) eps[i] = (x[i] - clean[i]) / sigma; // oracle epsilon
    x = s.step(x, eps, k, () => randomArray(n, seed++, 1.7)).prevSample;
  }
  for (let i = 0; i < n; i++) close(x[i], clean[i], 1e-5);
});

// ------------------------------------------------------------------------------------------------
// LCM

test('LCM timesteps (diffusers facts for 1, 2, 4, 8; numpy ref for 3, 6)', () => {
  const c = lcm();
  assert.deepEqual(createSampler(c, 1).timesteps, [999]);
  assert.deepEqual(createSampler(c, 2).timesteps, [999, 499]);
  assert.deepEqual(createSampler(c, 4).timesteps, [999, 759, 499, 259]);
  assert.deepEqual(createSampler(c, 8).timesteps, [999, 879, 759, 639, 499, 379, 259, 139]);
  assert.deepEqual(createSampler(c, 3).timesteps, [999, 679, 339]);
  assert.deepEqual(createSampler(c, 6).timesteps, [999, 839, 679, 499, 339, 179]);
  const s = createSampler(c, 4);
  assert.deepEqual(s.sigmas, []);
  assert.equal(s.initNoiseSigma, 1);
});

test('LCM image-to-image follows LCMScheduler.set_timesteps(strength) (numpy ref)', () => {
  const c = lcm();
  assert.deepEqual(createSampler(c, 4, 0.5).timesteps, [499, 379, 259, 139]);
  assert.deepEqual(createSampler(c, 2, 0.5).timesteps, [499, 259]);
  assert.deepEqual(createSampler(c, 1, 0.5).timesteps, [499]);
  assert.deepEqual(createSampler(c, 4, 0.3).timesteps, [299, 239, 159, 79]);
  assert.deepEqual(createSampler(c, 8, 0.2).timesteps, [199, 179, 159, 139, 99, 79, 59, 39]);
  // int(50*0.1) = 5 origin steps < 8 requested: diffusers raises
  assert.throws(() => createSampler(c, 8, 0.1), RangeError);
  assert.throws(() => createSampler(c, 51), RangeError);
});

test('LCM initLatents: identity for text-to-image, add_noise at the first timestep for image-to-image', () => {
  const c = lcm();
  const n = 64;
  const noise = randomArray(n, 13);
  const x0 = randomArray(n, 14);
  const t2i = createSampler(c, 4).initLatents(noise);
  assert.notEqual(t2i, noise);
  assert.deepEqual(t2i, noise);
  const i2i = createSampler(c, 2, 0.5).initLatents(noise, x0);
  const a = plainAlphaCumprod(499);
  close(a, 0.2776695191860199, 2e-5, 'alphas_cumprod[499] vs numpy ref');
  for (let i = 0; i < n; i++) close(i2i[i], Math.sqrt(a) * x0[i] + Math.sqrt(1 - a) * noise[i], 1e-6);
  const s = createSampler(c, 4);
  const x = randomArray(n, 15);
  assert.equal(s.scaleModelInput(x, 0), x, 'identity');
});

test('LCM step: boundary conditions, noise only before the last step', () => {
  const c = lcm();
  const s = createSampler(c, 4); // [999, 759, 499, 259]
  const n = 128;
  const clean = randomArray(n, 16);
  const eps = randomArray(n, 17, 1.7);
  const z = randomArray(n, 18, 1.7);
  const cond = (t: number): { skip: number; out: number } => {
    const st = 10 * t;
    return { skip: 0.25 / (st * st + 0.25), out: st / Math.sqrt(st * st + 0.25) };
  };
  for (let k = 0; k < 4; k++) {
    const t = s.timesteps[k];
    const a = plainAlphaCumprod(t);
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = Math.sqrt(a) * clean[i] + Math.sqrt(1 - a) * eps[i];
    let calls = 0;
    const res = s.step(x, eps, k, () => {
      calls++;
      return z;
    });
    const { skip, out } = cond(t);
    for (let i = 0; i < n; i++) {
      const predX0 = (x[i] - Math.sqrt(1 - a) * eps[i]) / Math.sqrt(a);
      const denoised = out * predX0 + skip * x[i];
      close(res.predOriginal[i], denoised, 3e-5, `denoised t=${t} [${i}]`);
      close(res.predOriginal[i], clean[i], 1e-4, `denoised ~ clean t=${t} [${i}]`);
    }
    if (k < 3) {
      assert.equal(calls, 1);
      const ap = plainAlphaCumprod(s.timesteps[k + 1]);
      for (let i = 0; i < n; i++) {
        close(res.prevSample[i], Math.sqrt(ap) * res.predOriginal[i] + Math.sqrt(1 - ap) * z[i], 1e-5, `prev [${i}]`);
      }
    } else {
      assert.equal(calls, 0);
      assert.deepEqual(res.prevSample, res.predOriginal);
    }
  }
  // numpy ref alphas_cumprod at the LCM timesteps
  close(plainAlphaCumprod(999), 0.004660089500248432, 1e-4);
  close(plainAlphaCumprod(759), 0.05221285670995712, 1e-4);
  close(plainAlphaCumprod(259), 0.6589754819869995, 1e-4);
});

test('LCM v-prediction recovers x0 from the true velocity (c_skip ~ 0 at t=999)', () => {
  const c: SchedulerConfig = { ...lcm(), predictionType: 'v_prediction' };
  const s = createSampler(c, 1);
  const n = 64;
  const clean = randomArray(n, 19);
  const eps = randomArray(n, 20, 1.7);
  const a = plainAlphaCumprod(999);
  const x = new Float32Array(n);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = Math.sqrt(a) * clean[i] + Math.sqrt(1 - a) * eps[i];
    v[i] = Math.sqrt(a) * eps[i] - Math.sqrt(1 - a) * clean[i];
  }
  const r = s.step(x, v, 0, noNoise);
  for (let i = 0; i < n; i++) close(r.predOriginal[i], clean[i], 1e-4);
});

test('guidanceScaleEmbedding matches diffusers get_guidance_scale_embedding (numpy ref)', () => {
  const e = guidanceScaleEmbedding(7.5, 256);
  assert.equal(e.length, 256);
  const idx = [0, 1, 2, 127, 128, 129, 255];
  const ref = [-0.8512359261512756, 0.8421311974525452, 0.01138801034539938, 0.6816387176513672, -0.5247832536697388,
    0.5392727255821228, 0.731688916683197];
  // arguments up to 7500 rad: float32 vs float64 argument rounding moves sin/cos by up to ~1e-3
  for (let j = 0; j < idx.length; j++) close(e[idx[j]], ref[j], 2e-3, `emb[${idx[j]}]`);
  const e8 = guidanceScaleEmbedding(0.5, 8);
  const ref8 = [-0.4677717983722687, -0.937993586063385, 0.8806428909301758, 0.049979161471128464, -0.8838492631912231,
    -0.3466525673866272, 0.47378063201904297, 0.9987502694129944];
  closeArr(Array.from(e8), ref8, 2e-4);
  // w = 0 (guidance 1): sin half 0, cos half 1
  const z = guidanceScaleEmbedding(0, 16);
  assert.deepEqual(Array.from(z), [...new Array(8).fill(0), ...new Array(8).fill(1)]);
  // odd width: zero padded
  const odd = guidanceScaleEmbedding(1, 9);
  assert.equal(odd.length, 9);
  assert.equal(odd[8], 0);
  assert.throws(() => guidanceScaleEmbedding(1, 2), RangeError);
});
