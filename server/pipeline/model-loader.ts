// Loads a model folder in the diffusers/optimum ONNX layout:
//   model_index.json, scheduler/scheduler_config.json, tokenizer/{vocab.json,merges.txt},
//   text_encoder/model.onnx, unet/model.onnx, vae_decoder/model.onnx,
//   vae_encoder/model.onnx (optional: image-to-image), preview_decoder/model.onnx (optional, TAESD-style).
// Everything the sampler needs to know (dtypes, timestep form, latent channels, VAE scale) is read
// from the files and the sessions, never assumed from one exporter.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ClipTokenizer } from './tokenizer.js';
import { schedulerConfigFromDiffusers, type SchedulerConfig } from './schedulers.js';
import { ModelLoadError, OnnxComponent, type SessionSettings } from './onnx-component.js';

export type TimestepForm = { kind: 'per-sample' | 'scalar'; integer: boolean };

export interface LoadedModel {
  name: string;
  dir: string;
  tokenizer: ClipTokenizer;
  scheduler: SchedulerConfig;
  textEncoder: OnnxComponent;
  unet: OnnxComponent;
  vaeDecoder: OnnxComponent;
  vaeEncoder?: OnnxComponent;
  previewDecoder?: OnnxComponent;
  /** Name of the text encoder output holding per-token states. */
  hiddenStateOutput: string;
  vaeEncoderOutput: string;
  /** Diffusion latents = VAE latents x this (SD 0.18215, SDXL 0.13025). */
  vaeScale: number;
  /** Image pixels per latent pixel (8 for every SD VAE). */
  vaeFactor: number;
  latentChannels: number;
  /** Default latent size (the UNet's training resolution). */
  sampleSize: number;
  /** Requested pixel sizes must be multiples of this, so every UNet downsampling divides evenly. */
  sizeMultiple: number;
  timestep: TimestepForm;
  /** Width of the UNet's `timestep_cond` input (LCM), or 0 when absent. */
  timestepCondDim: number;
  dtype: 'float32' | 'float16';
}

async function readJson(file: string): Promise<Record<string, unknown> | undefined> {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ModelLoadError(`${file}: invalid JSON: ${(err as Error).message}`);
  }
}

function numberField(json: Record<string, unknown> | undefined, key: string): number | undefined {
  const value = json?.[key];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function staticDim(dim: number | string | undefined): number | undefined {
  return typeof dim === 'number' && dim > 0 ? dim : undefined;
}

export async function loadModel(dir: string, settings: SessionSettings): Promise<LoadedModel> {
  if (!existsSync(path.join(dir, 'unet', 'model.onnx'))) {
    throw new ModelLoadError(
      `${dir} is not a diffusers/optimum ONNX model folder (no unet/model.onnx); see docs/models.md`,
    );
  }
  const index = await readJson(path.join(dir, 'model_index.json'));
  const schedulerJson = (await readJson(path.join(dir, 'scheduler', 'scheduler_config.json'))) ?? {};
  const unetConfig = await readJson(path.join(dir, 'unet', 'config.json'));
  const vaeConfig =
    (await readJson(path.join(dir, 'vae_decoder', 'config.json'))) ?? (await readJson(path.join(dir, 'vae', 'config.json')));

  let scheduler: SchedulerConfig;
  try {
    scheduler = schedulerConfigFromDiffusers(schedulerJson);
  } catch (err) {
    throw new ModelLoadError(`scheduler_config.json: ${(err as Error).message}`);
  }
  const tokenizer = await ClipTokenizer.fromDirectory(path.join(dir, 'tokenizer'));

  const component = (sub: string) => path.join(dir, sub, 'model.onnx');
  const optional = (sub: string) => existsSync(component(sub));
  const [textEncoder, unet, vaeDecoder, vaeEncoder, previewDecoder] = await Promise.all([
    OnnxComponent.load('text_encoder', component('text_encoder'), settings),
    OnnxComponent.load('unet', component('unet'), settings),
    OnnxComponent.load('vae_decoder', component('vae_decoder'), settings),
    optional('vae_encoder') ? OnnxComponent.load('vae_encoder', component('vae_encoder'), settings) : undefined,
    optional('preview_decoder') ? OnnxComponent.load('preview_decoder', component('preview_decoder'), settings) : undefined,
  ]);

  textEncoder.input('input_ids');
  const sample = unet.input('sample');
  unet.input('encoder_hidden_states');
  const timestepSig = unet.input('timestep');
  vaeDecoder.input('latent_sample');
  vaeEncoder?.input('sample');
  previewDecoder?.input('latent_sample');

  const dtype = sample.type === 'float16' ? 'float16' : 'float32';
  if (sample.type !== 'float16' && sample.type !== 'float32') {
    throw new ModelLoadError(`unet: sample has type ${sample.type}; float32 or float16 expected`);
  }
  const timestep: TimestepForm = {
    kind: timestepSig.shape.length === 0 ? 'scalar' : 'per-sample',
    integer: timestepSig.type === 'int64' || timestepSig.type === 'int32',
  };
  const timestepCondDim = unet.has('timestep_cond') ? (staticDim(unet.input('timestep_cond').shape[1]) ?? 256) : 0;

  const blockCount = Array.isArray(vaeConfig?.block_out_channels) ? vaeConfig.block_out_channels.length : 4;
  const vaeFactor = 2 ** Math.max(0, blockCount - 1);
  const unetBlocks = Array.isArray(unetConfig?.block_out_channels) ? unetConfig.block_out_channels.length : 4;
  const sizeMultiple = vaeFactor * 2 ** Math.max(0, unetBlocks - 1);
  const latentChannels = staticDim(sample.shape[1]) ?? numberField(unetConfig, 'in_channels') ?? 4;
  const sampleSize = numberField(unetConfig, 'sample_size') ?? (staticDim(sample.shape[2]) ?? 64);

  const nameOrPath = typeof index?._name_or_path === 'string' ? index._name_or_path : '';
  return {
    name: path.basename(nameOrPath) || path.basename(dir),
    dir,
    tokenizer,
    scheduler,
    textEncoder,
    unet,
    vaeDecoder,
    vaeEncoder,
    previewDecoder,
    hiddenStateOutput: textEncoder.outputName('last_hidden_state'),
    vaeEncoderOutput: vaeEncoder ? vaeEncoder.outputName('latent_sample', 'latent_parameters', 'latent_dist') : '',
    vaeScale: numberField(vaeConfig, 'scaling_factor') ?? 0.18215,
    vaeFactor,
    latentChannels,
    sampleSize,
    sizeMultiple,
    timestep,
    timestepCondDim,
    dtype,
  };
}
