// The ZERO-COST MODEL: a benchmark instrument, never a server default. It has the exact folder
// layout and ONNX signatures of the tiny default model, but every network does next to no
// arithmetic (the UNet returns `sample * 0`, the decoders are a channel slice and a nearest-neighbour
// upscale), so a run against it measures what the server costs around the model: transport,
// validation, queueing, worker hand-off and image encoding.
//
// It is generated at bench time into a temporary folder (a few kB, a few ms) and deleted after.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GraphBuilder } from '../scripts/onnx/graph-builder.js';
import { LATENT_CHANNELS, SEQ_LEN, VAE_SCALE_FACTOR, writeTinyModel } from '../scripts/tiny-model.js';

export const ZERO_COST_MODEL_NAME = 'zero-cost-benchmark-instrument';
const HIDDEN = 64;

function textEncoder(): Uint8Array {
  const g = new GraphBuilder('zero_cost_text_encoder');
  g.input('input_ids', 'int32', ['batch', SEQ_LEN]);
  const ids = g.node('Unsqueeze', [g.node('Cast', ['input_ids'], { to: 1 }), g.i64('axis_2', [2], [1])]);
  g.node('Mul', [ids, g.f32('zeros', new Float32Array(HIDDEN), [1, 1, HIDDEN])], {}, ['last_hidden_state']);
  g.output('last_hidden_state', 'float32', ['batch', SEQ_LEN, HIDDEN]);
  return g.toBytes('zero-cost-bench');
}

function unet(): Uint8Array {
  const g = new GraphBuilder('zero_cost_unet');
  g.input('sample', 'float32', ['batch', LATENT_CHANNELS, 'height', 'width']);
  g.input('timestep', 'int64', ['batch']);
  g.input('encoder_hidden_states', 'float32', ['batch', SEQ_LEN, HIDDEN]);
  g.node('Mul', ['sample', g.f32('zero', [0], [])], {}, ['out_sample']);
  g.output('out_sample', 'float32', ['batch', LATENT_CHANNELS, 'height', 'width']);
  return g.toBytes('zero-cost-bench');
}

/** latent [B,4,h,w] -> RGB [B,3,8h,8w]: first three channels, nearest-neighbour upscale. */
function decoder(name: string): Uint8Array {
  const g = new GraphBuilder(name);
  g.input('latent_sample', 'float32', ['batch', LATENT_CHANNELS, 'height', 'width']);
  const rgb = g.node('Slice', ['latent_sample', g.i64('starts', [0], [1]), g.i64('ends', [3], [1]), g.i64('axes', [1], [1])]);
  const scales = g.f32('scales', [1, 1, VAE_SCALE_FACTOR, VAE_SCALE_FACTOR], [4]);
  g.node('Resize', [rgb, '', scales], { mode: 'nearest' }, ['sample']);
  g.output('sample', 'float32', ['batch', 3, 'image_height', 'image_width']);
  return g.toBytes('zero-cost-bench');
}

/** RGB [B,3,H,W] -> latent [B,4,H/8,W/8]: nearest-neighbour downscale, first channel repeated. */
function vaeEncoder(): Uint8Array {
  const g = new GraphBuilder('zero_cost_vae_encoder');
  g.input('sample', 'float32', ['batch', 3, 'image_height', 'image_width']);
  const small = g.node('Resize', ['sample', '', g.f32('scales', [1, 1, 1 / VAE_SCALE_FACTOR, 1 / VAE_SCALE_FACTOR], [4])], { mode: 'nearest' });
  const first = g.node('Slice', [small, g.i64('starts', [0], [1]), g.i64('ends', [1], [1]), g.i64('axes', [1], [1])]);
  g.node('Concat', [small, first], { axis: 1 }, ['latent_sample']);
  g.output('latent_sample', 'float32', ['batch', LATENT_CHANNELS, 'height', 'width']);
  return g.toBytes('zero-cost-bench');
}

/**
 * Writes the instrument into `dir`: the tiny model's tokenizer, scheduler and configs (64x64
 * default size), with every network replaced by its zero-cost counterpart.
 */
export async function writeZeroCostModel(dir: string): Promise<void> {
  await writeTinyModel(dir, { sampleSize: 8, hiddenSize: HIDDEN });
  const index = {
    _class_name: 'StableDiffusionPipeline',
    _name_or_path: ZERO_COST_MODEL_NAME,
    _comment: 'benchmark instrument: networks do no real work; never serve this to users',
    scheduler: ['diffusers', 'EulerAncestralDiscreteScheduler'],
    text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'UNet2DConditionModel'],
    vae: ['diffusers', 'AutoencoderKL'],
  };
  await Promise.all([
    writeFile(path.join(dir, 'model_index.json'), JSON.stringify(index, null, 2) + '\n'),
    writeFile(path.join(dir, 'text_encoder', 'model.onnx'), textEncoder()),
    writeFile(path.join(dir, 'unet', 'model.onnx'), unet()),
    writeFile(path.join(dir, 'vae_decoder', 'model.onnx'), decoder('zero_cost_vae_decoder')),
    writeFile(path.join(dir, 'preview_decoder', 'model.onnx'), decoder('zero_cost_preview_decoder')),
    writeFile(path.join(dir, 'vae_encoder', 'model.onnx'), vaeEncoder()),
  ]);
}

/** A fresh instrument in a temporary folder, and the function that deletes it. */
export async function temporaryZeroCostModel(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), `${ZERO_COST_MODEL_NAME}-`));
  await writeZeroCostModel(dir);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
