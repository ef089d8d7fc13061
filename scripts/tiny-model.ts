/**
 * Generator of small, untrained diffusion models in the exact diffusers/optimum ONNX folder layout
 * (SD-Turbo class). Used by tests that need signature variants (fp16 I/O, int64 input_ids, scalar
 * float timestep, latent_parameters, ...), by the zero-cost benchmark instrument and by
 * `npm run make-models`. The embedded default model is trained instead (training/).
 *
 * Every model is tiny (well under 1 MB) and is written in a few tens of milliseconds. Weights are
 * deterministic functions of `seed`. The UNet is hand-designed rather than trained: it predicts
 * epsilon so that the implied x0 = (x_t - sqrt(1-abar) * eps) / sqrt(abar) is a noise-level aware
 * blend of (a) a multi-scale denoised copy of x_t and (b) a small conditioned conv "generator" that
 * turns noise into smooth colourful blobs. Hence 1..4 Euler-ancestral / LCM steps give a coherent
 * image, and img2img keeps the layout of its input.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { GraphBuilder, type ElemType } from './onnx/graph-builder.js';
import { Mulberry32 } from './mulberry32.js';

export interface TinyModelOptions {
  /** PRNG seed for all weights (default 1). */
  seed?: number;
  /** Dtype of every float input/output of every model (default 'float32'). */
  dtype?: 'float32' | 'float16';
  /** Text encoder `input_ids` dtype (default 'int32'). */
  inputIdsType?: 'int32' | 'int64';
  /** 'int64': `timestep` int64 [batch]; 'float-scalar': rank-0 tensor of the float dtype (default 'int64'). */
  timestep?: 'int64' | 'float-scalar';
  /** VAE encoder output: 4-channel `latent_sample` or 8-channel `latent_parameters` (mean|logvar). */
  vaeEncoderOutput?: 'latent_sample' | 'latent_parameters';
  /** Write vae_encoder/ (default true). */
  vaeEncoder?: boolean;
  /** Write the TAESD-style preview_decoder/ (default true). */
  previewDecoder?: boolean;
  /** Scheduler config to write (default 'euler_ancestral'). */
  scheduler?: 'euler_ancestral' | 'lcm';
  /** UNet also takes `timestep_cond` float [batch, 256] (default false). */
  timestepCond?: boolean;
  /** Latent sample size in unet/config.json (default 32 => 256x256 images). */
  sampleSize?: number;
  /** Text embedding width (default 64). */
  hiddenSize?: number;
  /** Export the UNet with fixed shapes, [1, 4, sampleSize, sampleSize], as static-shape exports do (default false). */
  fixedUnetShape?: boolean;
  /** Pad token written to tokenizer_config.json (default '!', as SD 2.x / SD-Turbo). */
  padToken?: '!' | '<|endoftext|>';
}

export const SEQ_LEN = 77;
export const LATENT_CHANNELS = 4;
export const VAE_SCALE_FACTOR = 8;
export const VAE_SCALING = 0.18215;
export const TIMESTEP_COND_DIM = 256;
export const NUM_TRAIN_TIMESTEPS = 1000;

// ---------------------------------------------------------------------------------------------
// Deterministic PRNG (mulberry32 + Box-Muller)

class Rng extends Mulberry32 {
  private spare: number | null = null;
  constructor(seed: number) {
    super(Math.floor(seed) ^ 0x9e3779b9);
  }
  uniform(): number {
    return this.random();
  }
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    const u = Math.max(this.uniform(), 1e-12);
    const r = Math.sqrt(-2 * Math.log(u));
    const a = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(a);
    return r * Math.cos(a);
  }
  /** n values ~ N(0, std^2). */
  normals(n: number, std: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal() * std;
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Tokenizer: CLIP byte-level BPE files whose merges make every word of a fixed list one token.

/** Words that each tokenize to a single "word</w>" token. Optional RGB in [-1,1] = colour meaning. */
type Rgb = readonly [number, number, number];
const WORDS: ReadonlyArray<readonly [string, Rgb?]> = [
  // colours
  ['red', [1, -0.8, -0.8]], ['green', [-0.8, 0.9, -0.8]], ['blue', [-0.8, -0.6, 1]],
  ['yellow', [1, 0.9, -0.9]], ['orange', [1, 0.1, -0.9]], ['purple', [0.3, -0.8, 0.8]],
  ['pink', [1, -0.2, 0.4]], ['white', [1, 1, 1]], ['black', [-1, -1, -1]], ['gray', [0, 0, 0]],
  ['grey', [0, 0, 0]], ['brown', [0.1, -0.4, -0.8]], ['cyan', [-0.8, 1, 1]], ['magenta', [1, -0.8, 1]],
  ['violet', [0.4, -0.6, 1]], ['gold', [1, 0.6, -0.8]], ['golden', [1, 0.6, -0.8]], ['silver', [0.5, 0.5, 0.6]],
  ['turquoise', [-0.6, 0.8, 0.6]], ['beige', [0.7, 0.5, 0.2]],
  // shapes
  ['circle'], ['circles'], ['square'], ['squares'], ['triangle'], ['star'], ['stars'], ['heart'],
  ['ring'], ['cross'], ['rectangle'], ['ellipse'], ['diamond'], ['hexagon'], ['line'], ['lines'],
  ['dot'], ['dots'], ['oval'], ['spiral'], ['stripes'], ['shape'], ['shapes'], ['grid'], ['wave'],
  // positions
  ['left'], ['right'], ['top'], ['bottom'], ['center'], ['middle'], ['corner'], ['upper'], ['lower'],
  ['above'], ['below'], ['behind'], ['near'], ['next'], ['side'], ['front'], ['inside'], ['around'],
  // sizes and counts
  ['big'], ['small'], ['large'], ['tiny'], ['huge'], ['one'], ['two'], ['three'], ['many'], ['some'],
  // function words
  ['a'], ['an'], ['the'], ['on'], ['of'], ['in'], ['and'], ['with'], ['at'], ['to'], ['by'], ['over'],
  ['under'], ['is'], ['it'], ['for'], ['from'],
  // scene
  ['background'], ['sky', [-0.5, 0, 0.9]], ['sun', [1, 0.8, -0.6]], ['moon', [0.6, 0.6, 0.5]],
  ['cloud', [0.7, 0.7, 0.8]], ['clouds', [0.7, 0.7, 0.8]], ['tree', [-0.4, 0.6, -0.6]],
  ['trees', [-0.4, 0.6, -0.6]], ['house'], ['mountain', [-0.2, -0.2, 0]], ['mountains', [-0.2, -0.2, 0]],
  ['water', [-0.6, 0, 0.8]], ['sea', [-0.7, 0, 0.8]], ['ocean', [-0.8, -0.1, 0.8]], ['river', [-0.6, 0.1, 0.7]],
  ['lake', [-0.6, 0.1, 0.7]], ['grass', [-0.5, 0.8, -0.7]], ['field', [-0.2, 0.6, -0.6]],
  ['flower', [0.9, -0.2, 0.3]], ['flowers', [0.9, -0.2, 0.3]], ['forest', [-0.6, 0.4, -0.6]], ['city'],
  ['road'], ['beach', [0.8, 0.6, 0.1]], ['snow', [0.9, 0.9, 1]], ['rain', [-0.3, -0.2, 0.2]],
  ['sunset', [1, 0.2, -0.3]], ['night', [-0.9, -0.9, -0.5]], ['day'], ['fire', [1, 0.2, -0.9]],
  ['stone'], ['rock'], ['desert', [0.8, 0.5, -0.3]], ['space', [-0.9, -0.9, -0.7]], ['garden', [-0.3, 0.7, -0.5]],
  // things
  ['cat'], ['dog'], ['bird'], ['fish'], ['horse'], ['car'], ['boat'], ['apple', [0.9, -0.6, -0.7]],
  ['face'], ['portrait'], ['person'], ['man'], ['woman'], ['girl'], ['boy'], ['eyes'], ['robot'],
  // styles
  ['photo'], ['drawing'], ['painting'], ['sketch'], ['art'], ['style'], ['picture'], ['image'],
  ['illustration'], ['cartoon'], ['pixel'], ['watercolor'], ['oil'], ['digital'], ['render'],
  ['realistic'], ['abstract'], ['simple'], ['detailed'], ['colorful'], ['pattern'], ['texture'],
  ['minimal'], ['logo'], ['icon'],
  // light and quality
  ['light', [0.5, 0.5, 0.5]], ['dark', [-0.7, -0.7, -0.7]], ['bright', [0.5, 0.5, 0.4]], ['soft'],
  ['glowing', [0.6, 0.5, 0.2]], ['shadow', [-0.5, -0.5, -0.4]], ['shiny'], ['smooth'], ['beautiful'],
  ['high'], ['quality'], ['sharp'], ['blurry'], ['vivid'], ['pastel', [0.5, 0.3, 0.5]], ['neon', [0.6, -0.6, 1]],
];

/** The words of the tiny vocabulary, each one BPE token "word</w>". */
export const TINY_MODEL_WORDS: readonly string[] = WORDS.map(([w]) => w);

/** GPT-2 / CLIP bytes_to_unicode(): byte -> printable character, in CLIP's vocabulary order. */
export function bytesToUnicode(): Array<[number, string]> {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  return bs.map((b, i) => [b, String.fromCharCode(cs[i])]);
}

/** CLIP BPE of one pre-tokenized word given merge ranks (lowest rank merged first). */
export function clipBpe(word: string, ranks: ReadonlyMap<string, number>): string[] {
  const chars = [...word];
  if (chars.length === 0) return [];
  let parts = [...chars.slice(0, -1), chars[chars.length - 1] + '</w>'];
  for (;;) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i < parts.length - 1; i++) {
      const r = ranks.get(`${parts[i]} ${parts[i + 1]}`);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        best = i;
      }
    }
    if (best < 0) return parts;
    const a = parts[best];
    const b = parts[best + 1];
    const next: string[] = [];
    for (let i = 0; i < parts.length; i++) {
      if (i < parts.length - 1 && parts[i] === a && parts[i + 1] === b) {
        next.push(a + b);
        i++;
      } else next.push(parts[i]);
    }
    parts = next;
  }
}

interface TokenizerData {
  vocab: Map<string, number>;
  merges: string[];
  bos: number;
  eos: number;
  /** RGB meaning per token id (colour words only). */
  colours: Map<number, Rgb>;
}

let tokenizerCache: TokenizerData | undefined;

/**
 * Builds merges so that each word becomes a single token: words are processed in order; each is
 * first reduced with the merges so far, then its remaining pieces are joined left to right with new
 * (higher-ranked) merges. Earlier words are unaffected because their merges all rank lower.
 */
function buildTokenizer(): TokenizerData {
  if (tokenizerCache) return tokenizerCache;
  const base = bytesToUnicode().map(([, c]) => c);
  const vocabList = [...base, ...base.map((c) => c + '</w>')];
  const ranks = new Map<string, number>();
  const merges: string[] = [];
  const known = new Set(vocabList);
  for (const [word] of WORDS) {
    let parts = clipBpe(word, ranks);
    while (parts.length > 1) {
      const merged = parts[0] + parts[1];
      if (known.has(merged)) throw new Error(`tiny tokenizer: merge result ${merged} already in vocab`);
      ranks.set(`${parts[0]} ${parts[1]}`, merges.length);
      merges.push(`${parts[0]} ${parts[1]}`);
      vocabList.push(merged);
      known.add(merged);
      parts = [merged, ...parts.slice(2)];
    }
  }
  vocabList.push('<|startoftext|>', '<|endoftext|>');
  const vocab = new Map(vocabList.map((t, i) => [t, i] as [string, number]));
  const colours = new Map<number, Rgb>();
  for (const [word, rgb] of WORDS) {
    const id = vocab.get(word + '</w>');
    if (id === undefined) throw new Error(`tiny tokenizer: ${word} is not one token`);
    if (rgb) colours.set(id, rgb);
  }
  tokenizerCache = { vocab, merges, bos: vocabList.length - 2, eos: vocabList.length - 1, colours };
  return tokenizerCache;
}

// ---------------------------------------------------------------------------------------------
// Shared model pieces

/** sqrt(alphas_cumprod) and sqrt(1 - alphas_cumprod) for scaled_linear 0.00085..0.012, 1000 steps. */
function noiseTables(): { sa: Float64Array; sb: Float64Array } {
  const sa = new Float64Array(NUM_TRAIN_TIMESTEPS);
  const sb = new Float64Array(NUM_TRAIN_TIMESTEPS);
  const b0 = Math.sqrt(0.00085);
  const b1 = Math.sqrt(0.012);
  let abar = 1;
  for (let i = 0; i < NUM_TRAIN_TIMESTEPS; i++) {
    const beta = (b0 + ((b1 - b0) * i) / (NUM_TRAIN_TIMESTEPS - 1)) ** 2;
    abar *= 1 - beta;
    sa[i] = Math.sqrt(abar);
    sb[i] = Math.sqrt(1 - abar);
  }
  return { sa, sb };
}

/** Latent (channels 0..3) -> RGB pre-activation: rgb = tanh(M z + b). Channels 0..2 ~ R,G,B. */
const DECODER_M = [
  [0.95, -0.08, -0.05, 0.12],
  [-0.06, 0.95, -0.07, 0.12],
  [-0.05, -0.09, 0.95, 0.12],
];
const DECODER_B = [0.02, 0.0, -0.02];

/** Least-squares inverse of DECODER_M (4x3, minimum-norm solution): z = P (atanh(rgb) - b). */
function decoderPseudoInverse(): number[][] {
  const M = DECODER_M;
  // P = M^T (M M^T)^-1
  const mmt = [0, 1, 2].map((i) => [0, 1, 2].map((j) => M[i].reduce((s, v, k) => s + v * M[j][k], 0)));
  const inv = invert3(mmt);
  return [0, 1, 2, 3].map((k) => [0, 1, 2].map((j) => M[0][k] * inv[0][j] + M[1][k] * inv[1][j] + M[2][k] * inv[2][j]));
}

function invert3(a: number[][]): number[][] {
  const [[a0, a1, a2], [b0, b1, b2], [c0, c1, c2]] = a;
  const det = a0 * (b1 * c2 - b2 * c1) - a1 * (b0 * c2 - b2 * c0) + a2 * (b0 * c1 - b1 * c0);
  return [
    [(b1 * c2 - b2 * c1) / det, (a2 * c1 - a1 * c2) / det, (a1 * b2 - a2 * b1) / det],
    [(b2 * c0 - b0 * c2) / det, (a0 * c2 - a2 * c0) / det, (a2 * b0 - a0 * b2) / det],
    [(b0 * c1 - b1 * c0) / det, (a1 * c0 - a0 * c1) / det, (a0 * b1 - a1 * b0) / det],
  ];
}

/** Model-building context: dtype handling of I/O and of weights. */
class Ctx {
  readonly g: GraphBuilder;
  constructor(name: string, readonly fp16: boolean, readonly rng: Rng) {
    this.g = new GraphBuilder(name);
  }
  get io(): ElemType {
    return this.fp16 ? 'float16' : 'float32';
  }
  /** Float graph input, returned as a float32 value. */
  floatInput(name: string, dims: (number | string)[]): string {
    this.g.input(name, this.io, dims);
    return this.fp16 ? this.g.node('Cast', [name], { to: 1 }) : name;
  }
  /** Declares a float graph output from a float32 value. */
  floatOutput(name: string, value: string, dims: (number | string)[]): void {
    if (this.fp16) this.g.node('Cast', [value], { to: 10 }, [name]);
    else this.g.node('Identity', [value], {}, [name]);
    this.g.output(name, this.io, dims);
  }
  /** Weight initializer (fp16 storage + Cast in fp16 models), returned as a float32 value. */
  w(name: string, data: ArrayLike<number>, dims: number[]): string {
    if (!this.fp16) return this.g.f32(name, data, dims);
    this.g.f16(name + '_fp16', data, dims);
    return this.g.node('Cast', [name + '_fp16'], { to: 1 }, [name]);
  }
  /** Small float32 constant (always fp32: shapes, scales, tables). */
  c(name: string, data: ArrayLike<number>, dims: number[]): string {
    return this.g.f32(name, data, dims);
  }
  /** Random conv, 'same' output size; `edgePad` replicates borders instead of zero padding. */
  conv(x: string, name: string, cin: number, cout: number, k: number, gain = 1, edgePad = false): string {
    const W = this.w(name + '_w', this.rng.normals(cout * cin * k * k, gain / Math.sqrt(cin * k * k)), [cout, cin, k, k]);
    const B = this.w(name + '_b', new Float32Array(cout), [cout]);
    const p = (k - 1) >> 1;
    if (!edgePad || p === 0) return this.g.node('Conv', [x, W, B], { kernel_shape: [k, k], pads: [p, p, p, p] });
    const padded = this.g.node('Pad', [x, this.g.i64(name + '_pads', [0, 0, p, p, 0, 0, p, p], [8])], { mode: 'edge' });
    return this.g.node('Conv', [padded, W, B], { kernel_shape: [k, k] });
  }
  silu(x: string): string {
    return this.g.node('Mul', [x, this.g.node('Sigmoid', [x])]);
  }
  scalar(x: string, v: number, op: 'Mul' | 'Add' = 'Mul'): string {
    return this.g.node(op, [x, this.c(this.g.fresh('k'), [v], [])]);
  }
}

// ---------------------------------------------------------------------------------------------
// Text encoder: input_ids [B,77] -> last_hidden_state [B,77,H], pooler_output [B,H]

const COLOUR_DIMS = 3;
const COLOUR_MAG = 4;

function textEncoder(o: Required<TinyModelOptions>, tok: TokenizerData, rng: Rng): Uint8Array {
  const H = o.hiddenSize;
  const V = tok.vocab.size;
  const cd = Math.min(COLOUR_DIMS, H);
  const ctx = new Ctx('text_encoder', o.dtype === 'float16', rng);
  const g = ctx.g;
  g.input('input_ids', o.inputIdsType, ['batch', SEQ_LEN]);

  // Token embeddings: random in the "semantic" dims, colour words carry RGB in dims 0..2;
  // '!' (pad), BOS and EOS are small so padding barely moves the pooled text features.
  const emb = rng.normals(V * H, 1);
  for (let v = 0; v < V; v++) {
    const rgb = tok.colours.get(v);
    for (let d = 0; d < cd; d++) emb[v * H + d] = rgb ? rgb[d] * COLOUR_MAG : 0;
    if (v === 0 || v === tok.bos || v === tok.eos) for (let d = 0; d < H; d++) emb[v * H + d] *= 0.1;
  }
  const pos = rng.normals(SEQ_LEN * H, 0.1);
  for (let p = 0; p < SEQ_LEN; p++) for (let d = 0; d < cd; d++) pos[p * H + d] = 0;

  // Ids outside the vocabulary (e.g. a hard-coded 49407) wrap around instead of failing Gather.
  const ids64 = g.node('Cast', ['input_ids'], { to: 7 });
  const ids = g.node('Mod', [ids64, g.i64('vocab_size', [V], [])]);
  let h = g.node('Gather', [ctx.w('token_embedding', emb, [V, H]), ids], { axis: 0 });
  h = g.node('Add', [h, ctx.w('position_embedding', pos, [SEQ_LEN, H])]);
  // Causal context (like CLIP's causal attention): position i also sees the mean of positions <= i.
  const cum = g.node('CumSum', [h, g.i64('seq_axis', [1], [])]);
  const counts = Float32Array.from({ length: SEQ_LEN }, (_, i) => 1 / (i + 1));
  h = g.node('Add', [h, g.node('Mul', [cum, ctx.c('inv_counts', counts, [SEQ_LEN, 1])])]);
  // Residual MLP that leaves the colour dims alone.
  const w1 = ctx.w('mlp_w1', rng.normals(H * H, 1 / Math.sqrt(H)), [H, H]);
  const w2data = rng.normals(H * H, 0.5 / Math.sqrt(H));
  for (let i = 0; i < H; i++) for (let d = 0; d < cd; d++) w2data[i * H + d] = 0;
  const w2 = ctx.w('mlp_w2', w2data, [H, H]);
  const m = g.node('MatMul', [ctx.silu(g.node('MatMul', [h, w1])), w2]);
  h = g.node('Add', [h, m]);
  ctx.floatOutput('last_hidden_state', h, ['batch', SEQ_LEN, H]);

  // pooler_output: hidden state at the first EOS (= first maximal id, as CLIP's argmax).
  const eosPos = g.node('ArgMax', [ids], { axis: 1, keepdims: 0 });
  const onehot = g.node('OneHot', [eosPos, g.i64('seq_len', [SEQ_LEN], []), ctx.c('onehot_values', [0, 1], [2])], { axis: -1 });
  const sel = g.node('MatMul', [g.node('Unsqueeze', [onehot, g.i64('axis1', [1], [1])]), h]);
  ctx.floatOutput('pooler_output', g.node('Squeeze', [sel, 'axis1']), ['batch', H]);
  return g.toBytes();
}

// ---------------------------------------------------------------------------------------------
// UNet: sample [B,4,h,w], timestep, encoder_hidden_states [B,77,H] (, timestep_cond [B,256])
//        -> out_sample [B,4,h,w] (epsilon)

const UNET_CH = 32;
const N_FREQ = 8;
const GEN_GAIN = 1.2;
const GEN_SKIP = 1.0;
const GEN_HUE = 0.6;
const GEN_LUMA = 0.9;
const COLOUR_GAIN = 0.7;
const COLOUR_MAX = 0.9;

/** Per-timestep coefficients: eps = cx*x - c0*E0 - c1*E1 - c2*E2 - cg*gen (E0 = x). */
function unetTables(): Float32Array[] {
  const { sa, sb } = noiseTables();
  const tau = 0.25;
  const sigma = [1, 1 / 3, 1 / 4]; // noise std left in E0 (x), E1 (3x3 blur), E2 (4x pool + upsample)
  const out = [0, 1, 2, 3, 4].map(() => new Float32Array(NUM_TRAIN_TIMESTEPS));
  for (let t = 0; t < NUM_TRAIN_TIMESTEPS; t++) {
    const r = sb[t] / sa[t]; // noise-to-signal ratio of x_t
    const n = sigma.map((s) => r * s);
    const w0 = Math.exp(-((n[0] / tau) ** 2));
    const w1 = (1 - w0) * Math.exp(-((n[1] / tau) ** 2));
    const w = [w0, w1, 1 - w0 - w1];
    const nEff2 = w.reduce((s, wk, k) => s + wk * wk * n[k] * n[k], 0);
    const shrink = 1 / (1 + nEff2); // Wiener factor for unit signal power
    // x0 = sum_k (shrink * w_k / sa) E_k + (1 - shrink) gen;  eps = (x - sa * x0) / sb
    const isb = 1 / Math.max(sb[t], 0.01);
    out[0][t] = isb;
    for (let k = 0; k < 3; k++) out[k + 1][t] = shrink * w[k] * isb;
    out[4][t] = sa[t] * (1 - shrink) * isb;
  }
  return out;
}

function unet(o: Required<TinyModelOptions>, rng: Rng): Uint8Array {
  const H = o.hiddenSize;
  const cd = Math.min(COLOUR_DIMS, H);
  const ctx = new Ctx('unet', o.dtype === 'float16', rng);
  const g = ctx.g;
  const sampleDims = o.fixedUnetShape ? [1, LATENT_CHANNELS, o.sampleSize, o.sampleSize] : ['batch', LATENT_CHANNELS, 'height', 'width'];
  const x = ctx.floatInput('sample', sampleDims);
  let tf: string;
  if (o.timestep === 'int64') {
    g.input('timestep', 'int64', ['batch']);
    tf = g.node('Cast', ['timestep'], { to: 1 });
  } else {
    tf = g.node('Reshape', [ctx.floatInput('timestep', []), g.i64('shape_1', [1], [1])]); // [1], broadcasts
  }
  const ehs = ctx.floatInput('encoder_hidden_states', ['batch', SEQ_LEN, H]);
  const tcond = o.timestepCond ? ctx.floatInput('timestep_cond', ['batch', TIMESTEP_COND_DIM]) : undefined;

  // Per-timestep coefficient lookup.
  const clipped = g.node('Clip', [tf, ctx.c('t_min', [0], []), ctx.c('t_max', [NUM_TRAIN_TIMESTEPS - 1], [])]);
  const tIdx = g.node('Cast', [g.node('Round', [clipped])], { to: 7 });
  const shape4 = g.i64('shape_b111', [-1, 1, 1, 1], [4]);
  const coef = unetTables().map((tab, i) =>
    g.node('Reshape', [g.node('Gather', [ctx.c(`coef_table_${i}`, tab, [NUM_TRAIN_TIMESTEPS]), tIdx], { axis: 0 }), shape4]),
  );

  // Conditioning vector [B, UNET_CH]: sinusoidal timestep features + pooled text (+ timestep_cond).
  const freqs = Float32Array.from({ length: N_FREQ }, (_, k) => Math.exp((-Math.log(10000) * k) / N_FREQ));
  const targ = g.node('Mul', [g.node('Unsqueeze', [tf, g.i64('axis_1', [1], [1])]), ctx.c('freqs', freqs, [1, N_FREQ])]);
  const tfeat = g.node('Concat', [g.node('Sin', [targ]), g.node('Cos', [targ])], { axis: 1 });
  let cond = g.node('MatMul', [tfeat, ctx.w('time_proj', rng.normals(2 * N_FREQ * UNET_CH, 0.5 / Math.sqrt(N_FREQ)), [2 * N_FREQ, UNET_CH])]);
  const pooled = g.node('ReduceMean', [ehs], { axes: [1], keepdims: 0 });
  const ms = g.node('ReduceMean', [g.node('Mul', [pooled, pooled])], { axes: [1], keepdims: 1 });
  const pn = g.node('Div', [pooled, g.node('Sqrt', [ctx.scalar(ms, 1e-6, 'Add')])]);
  cond = g.node('Add', [cond, g.node('MatMul', [pn, ctx.w('text_proj', rng.normals(H * UNET_CH, 2 / Math.sqrt(H)), [H, UNET_CH])])]);
  if (tcond) {
    const wtc = ctx.w('time_cond_proj', rng.normals(TIMESTEP_COND_DIM * UNET_CH, 0.5 / Math.sqrt(TIMESTEP_COND_DIM)), [TIMESTEP_COND_DIM, UNET_CH]);
    cond = g.node('Add', [cond, g.node('MatMul', [tcond, wtc])]);
  }
  cond = g.node('Reshape', [cond, g.i64('shape_cond', [-1, UNET_CH, 1, 1], [4])]);
  // Colour bias [B,4,1,1]: colour dims of the text map onto latent channels 0..2 (~RGB).
  const colour = rng.normals(H * LATENT_CHANNELS, 0.15 / Math.sqrt(H));
  for (let d = 0; d < cd; d++) for (let c = 0; c < LATENT_CHANNELS; c++) colour[d * LATENT_CHANNELS + c] = d === c ? COLOUR_GAIN : 0;
  const colourBias = g.node('Reshape', [
    ctx.scalar(g.node('Tanh', [g.node('MatMul', [pn, ctx.w('colour_proj', colour, [H, LATENT_CHANNELS])])]), COLOUR_MAX),
    g.i64('shape_colour', [-1, LATENT_CHANNELS, 1, 1], [4]),
  ]);

  // Multi-scale estimates of the clean latent.
  const e1 = g.node('AveragePool', [x], { kernel_shape: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], count_include_pad: 0 });
  const lo = g.node('AveragePool', [x], { kernel_shape: [4, 4], strides: [4, 4] });
  const up4 = ctx.c('scales_x4', [1, 1, 4, 4], [4]);
  const e2 = g.node('Resize', [lo, '', up4], { mode: 'linear' });

  // Generator: RMS-normalised low-res input -> conv/SiLU stack with conditioning -> smooth blobs.
  const loMs = g.node('ReduceMean', [g.node('Mul', [lo, lo])], { axes: [1, 2, 3], keepdims: 1 });
  const loN = g.node('Div', [lo, g.node('Sqrt', [ctx.scalar(loMs, 1e-6, 'Add')])]);
  const loS = g.node('AveragePool', [loN], { kernel_shape: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1], count_include_pad: 0 });
  let f = g.node('Add', [ctx.conv(ctx.scalar(loS, 2), 'gen_conv1', LATENT_CHANNELS, UNET_CH, 3, 1.5, true), cond]);
  f = ctx.silu(f);
  f = ctx.silu(ctx.conv(f, 'gen_conv2', UNET_CH, UNET_CH, 3, 1.5, true));
  f = ctx.conv(f, 'gen_conv3', UNET_CH, LATENT_CHANNELS, 3, 2.0, true);
  // Zero spatial mean per channel: the overall tint comes from the text.
  f = g.node('Sub', [f, g.node('ReduceMean', [f], { axes: [2, 3], keepdims: 1 })]);
  // Palette: share a luminance component between the RGB-like channels 0..2 (fewer pure hues).
  const mix = new Float32Array(LATENT_CHANNELS * LATENT_CHANNELS);
  for (let a = 0; a < LATENT_CHANNELS; a++) {
    for (let b = 0; b < LATENT_CHANNELS; b++) mix[a * LATENT_CHANNELS + b] = (a === b ? GEN_HUE : 0) + (a < 3 && b < 3 ? GEN_LUMA / 3 : 0);
  }
  f = g.node('Conv', [f, ctx.w('gen_palette', mix, [LATENT_CHANNELS, LATENT_CHANNELS, 1, 1])], { kernel_shape: [1, 1] });
  // Skip of the smoothed input: successive steps refine rather than replace the layout.
  f = g.node('Add', [f, ctx.scalar(loS, GEN_SKIP)]);
  f = g.node('Resize', [f, '', up4], { mode: 'linear' });
  // Full-resolution texture branch (small).
  const d = ctx.conv(ctx.silu(ctx.conv(x, 'detail_conv1', LATENT_CHANNELS, 16, 3)), 'detail_conv2', 16, LATENT_CHANNELS, 3, 0.1);
  f = g.node('Add', [g.node('Add', [f, d]), colourBias]);
  const gen = ctx.scalar(g.node('Tanh', [f]), GEN_GAIN);

  // eps = (cx - c0) * x - c1 * E1 - c2 * E2 - cg * gen
  let eps = g.node('Mul', [x, g.node('Sub', [coef[0], coef[1]])]);
  eps = g.node('Sub', [eps, g.node('Mul', [e1, coef[2]])]);
  eps = g.node('Sub', [eps, g.node('Mul', [e2, coef[3]])]);
  eps = g.node('Sub', [eps, g.node('Mul', [gen, coef[4]])]);
  ctx.floatOutput('out_sample', eps, sampleDims);
  return g.toBytes();
}

// ---------------------------------------------------------------------------------------------
// VAE decoder / encoder / preview decoder

function decoderColour(ctx: Ctx, z: string, prefix: string): string {
  const W = DECODER_M.flatMap((row) => row);
  return ctx.g.node('Conv', [z, ctx.w(`${prefix}_rgb_w`, W, [3, LATENT_CHANNELS, 1, 1]), ctx.w(`${prefix}_rgb_b`, DECODER_B, [3])], {
    kernel_shape: [1, 1],
  });
}

function vaeDecoder(o: Required<TinyModelOptions>, rng: Rng): Uint8Array {
  const ctx = new Ctx('vae_decoder', o.dtype === 'float16', rng);
  const g = ctx.g;
  const z = ctx.scalar(ctx.floatInput('latent_sample', ['batch', LATENT_CHANNELS, 'height', 'width']), VAE_SCALING);
  // Linear colour mapping plus a small nonlinear texture branch, at latent resolution.
  const rgb = decoderColour(ctx, z, 'dec');
  const tex = ctx.conv(ctx.silu(ctx.conv(z, 'dec_conv1', LATENT_CHANNELS, 16, 3)), 'dec_conv2', 16, 3, 3, 0.05);
  const up = g.node('Resize', [g.node('Add', [rgb, tex]), '', ctx.c('scales_x8', [1, 1, VAE_SCALE_FACTOR, VAE_SCALE_FACTOR], [4])], {
    mode: 'linear',
  });
  // A light full-resolution 3x3 refinement (near identity) before the final Tanh.
  const k = new Float32Array(3 * 3 * 9);
  for (let c = 0; c < 3; c++) for (let i = 0; i < 9; i++) k[c * 27 + c * 9 + i] = i === 4 ? 1.6 : -0.075;
  const W = ctx.w('dec_sharpen_w', k, [3, 3, 3, 3]);
  const sharp = g.node('Conv', [up, W, ctx.w('dec_sharpen_b', [0, 0, 0], [3])], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
  ctx.floatOutput('sample', g.node('Tanh', [sharp]), ['batch', 3, 'image_height', 'image_width']);
  return g.toBytes();
}

function vaeEncoder(o: Required<TinyModelOptions>, rng: Rng): Uint8Array {
  const ctx = new Ctx('vae_encoder', o.dtype === 'float16', rng);
  const g = ctx.g;
  const img = ctx.floatInput('sample', ['batch', 3, 'image_height', 'image_width']);
  const f = VAE_SCALE_FACTOR;
  const pooled = g.node('AveragePool', [img], { kernel_shape: [f, f], strides: [f, f] });
  const pre = g.node('Atanh', [g.node('Clip', [pooled, ctx.c('clip_lo', [-0.96], []), ctx.c('clip_hi', [0.96], [])])]);
  // z = P (atanh(rgb) - b) / scaling_factor. The decoder's texture branch is small and its sharpen
  // conv has DC gain 1.6 - 8 * 0.075 = 1, so both are ignored by this inverse.
  const P = decoderPseudoInverse();
  const params = o.vaeEncoderOutput === 'latent_parameters';
  const cout = params ? 2 * LATENT_CHANNELS : LATENT_CHANNELS;
  const W = new Float32Array(cout * 3);
  const B = new Float32Array(cout);
  for (let c = 0; c < LATENT_CHANNELS; c++) {
    for (let j = 0; j < 3; j++) W[c * 3 + j] = P[c][j] / VAE_SCALING;
    B[c] = -P[c].reduce((s, v, j) => s + v * DECODER_B[j], 0) / VAE_SCALING;
  }
  for (let c = LATENT_CHANNELS; c < cout; c++) B[c] = -10; // logvar: almost deterministic
  const out = g.node('Conv', [pre, ctx.w('enc_w', W, [cout, 3, 1, 1]), ctx.w('enc_b', B, [cout])], { kernel_shape: [1, 1] });
  const name = params ? 'latent_parameters' : 'latent_sample';
  ctx.floatOutput(name, out, ['batch', cout, 'height', 'width']);
  return g.toBytes();
}

function previewDecoder(o: Required<TinyModelOptions>, rng: Rng): Uint8Array {
  const ctx = new Ctx('preview_decoder', o.dtype === 'float16', rng);
  const g = ctx.g;
  const z = ctx.floatInput('latent_sample', ['batch', LATENT_CHANNELS, 'height', 'width']); // unscaled latents
  const rgb = ctx.scalar(ctx.scalar(g.node('Tanh', [decoderColour(ctx, z, 'preview')]), 0.5), 0.5, 'Add');
  const up = g.node('Resize', [rgb, '', ctx.c('scales_x8', [1, 1, VAE_SCALE_FACTOR, VAE_SCALE_FACTOR], [4])], { mode: 'linear' });
  ctx.floatOutput('sample', up, ['batch', 3, 'image_height', 'image_width']);
  return g.toBytes();
}

// ---------------------------------------------------------------------------------------------
// Folder writer

const json = (v: unknown): string => JSON.stringify(v, null, 2) + '\n';

export async function writeTinyModel(dir: string, options: TinyModelOptions = {}): Promise<void> {
  const o: Required<TinyModelOptions> = {
    seed: options.seed ?? 1,
    dtype: options.dtype ?? 'float32',
    inputIdsType: options.inputIdsType ?? 'int32',
    timestep: options.timestep ?? 'int64',
    vaeEncoderOutput: options.vaeEncoderOutput ?? 'latent_sample',
    vaeEncoder: options.vaeEncoder ?? true,
    previewDecoder: options.previewDecoder ?? true,
    scheduler: options.scheduler ?? 'euler_ancestral',
    timestepCond: options.timestepCond ?? false,
    sampleSize: options.sampleSize ?? 32,
    hiddenSize: options.hiddenSize ?? 64,
    fixedUnetShape: options.fixedUnetShape ?? false,
    padToken: options.padToken ?? '!',
  };
  if (!Number.isInteger(o.hiddenSize) || o.hiddenSize < 1) throw new Error('hiddenSize must be a positive integer');
  if (!Number.isInteger(o.sampleSize) || o.sampleSize < 8 || o.sampleSize % 8) throw new Error('sampleSize must be a multiple of 8');
  const tok = buildTokenizer();
  // Independent streams per model so options of one model do not change another's weights.
  const rng = (k: number) => new Rng(o.seed * 7919 + k);

  const files = new Map<string, string | Uint8Array>();
  const lcm = o.scheduler === 'lcm';
  const schedulerClass = lcm ? 'LCMScheduler' : 'EulerAncestralDiscreteScheduler';
  files.set('model_index.json', json({
    _class_name: 'StableDiffusionPipeline',
    _diffusers_version: '0.30.0',
    _name_or_path: 'tiny-sd',
    scheduler: ['diffusers', schedulerClass],
    text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'UNet2DConditionModel'],
    vae: ['diffusers', 'AutoencoderKL'],
    requires_safety_checker: false,
  }));
  const betas = { num_train_timesteps: NUM_TRAIN_TIMESTEPS, beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear' };
  files.set('scheduler/scheduler_config.json', json(lcm
    ? { _class_name: 'LCMScheduler', ...betas, prediction_type: 'epsilon', original_inference_steps: 50, timestep_scaling: 10.0, timestep_spacing: 'leading', steps_offset: 1 }
    : { _class_name: 'EulerAncestralDiscreteScheduler', ...betas, prediction_type: 'epsilon', timestep_spacing: 'trailing', steps_offset: 1 }));

  files.set('tokenizer/vocab.json', JSON.stringify(Object.fromEntries(tok.vocab)));
  files.set('tokenizer/merges.txt', ['#version: 0.2', ...tok.merges].join('\n') + '\n');
  const special = { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: o.padToken };
  files.set('tokenizer/tokenizer_config.json', json({ model_max_length: SEQ_LEN, ...special, do_lower_case: true }));
  files.set('tokenizer/special_tokens_map.json', json(special));

  files.set('text_encoder/model.onnx', textEncoder(o, tok, rng(1)));
  files.set('text_encoder/config.json', json({
    architectures: ['CLIPTextModel'], model_type: 'clip_text_model', hidden_size: o.hiddenSize,
    max_position_embeddings: SEQ_LEN, vocab_size: tok.vocab.size, bos_token_id: tok.bos, eos_token_id: tok.eos,
    pad_token_id: o.padToken === '!' ? 0 : tok.eos,
  }));
  files.set('unet/model.onnx', unet(o, rng(2)));
  files.set('unet/config.json', json({
    _class_name: 'UNet2DConditionModel', sample_size: o.sampleSize, in_channels: LATENT_CHANNELS,
    out_channels: LATENT_CHANNELS, cross_attention_dim: o.hiddenSize, time_cond_proj_dim: o.timestepCond ? TIMESTEP_COND_DIM : null,
  }));
  const vaeConfig = json({ _class_name: 'AutoencoderKL', latent_channels: LATENT_CHANNELS, scaling_factor: VAE_SCALING, sample_size: VAE_SCALE_FACTOR * o.sampleSize });
  files.set('vae_decoder/model.onnx', vaeDecoder(o, rng(3)));
  files.set('vae_decoder/config.json', vaeConfig);
  if (o.vaeEncoder) {
    files.set('vae_encoder/model.onnx', vaeEncoder(o, rng(4)));
    files.set('vae_encoder/config.json', vaeConfig);
  }
  if (o.previewDecoder) {
    files.set('preview_decoder/model.onnx', previewDecoder(o, rng(5)));
    files.set('preview_decoder/config.json', json({ _class_name: 'AutoencoderTiny', latent_channels: LATENT_CHANNELS, scaling_factor: 1.0 }));
  }

  const dirs = new Set([...files.keys()].map((f) => path.dirname(path.join(dir, f))));
  await Promise.all([...dirs].map((d) => mkdir(d, { recursive: true })));
  await Promise.all([...files].map(([f, data]) => writeFile(path.join(dir, f), data)));
}
