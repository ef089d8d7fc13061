/**
 * CLIP byte-level BPE tokenizer (the tokenizer of openai/CLIP simple_tokenizer.py and transformers'
 * CLIPTokenizer), loaded from a diffusers `tokenizer/` folder (vocab.json + merges.txt, optional
 * tokenizer_config.json / special_tokens_map.json).
 *
 * Text cleanup follows the original CLIP path (ftfy's NFC normalisation, whitespace collapse, trim,
 * lowercase). Two transformers quirks are deliberately NOT reproduced, to stay with the tokenization the
 * text encoders were trained with:
 *  - transformers splits the configured pad token out of the text as a special token, so with SD 2.x's
 *    pad token "!" every "!" in a prompt becomes id 0 (diffusers issue #4153); here "!" is ordinary text.
 *  - transformers' fallback BasicTokenizer (used when ftfy is not installed) puts spaces around CJK
 *    ideographs; openai/open_clip and the fast tokenizer do not, and neither does this.
 */

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface TokenizedPrompt {
  /** length maxLength: BOS + tokens + EOS + padding */
  ids: Int32Array;
  /** ids before padding, incl. BOS/EOS (after truncation, so at most maxLength) */
  tokenCount: number;
  /** true when the prompt had more than maxLength-2 tokens and was cut */
  truncated: boolean;
}

const DEFAULT_MAX_LENGTH = 77;
const BOS_TOKEN = '<|startoftext|>';
const EOS_TOKEN = '<|endoftext|>';
/** transformers/openai read at most 49152-256-2 merges after the header line. */
const MAX_MERGES = 49152 - 256 - 2;
const CACHE_LIMIT = 10_000;

const CLIP_PATTERN =
  /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

/** GPT-2/CLIP bytes_to_unicode(): printable stand-in character for each byte value. */
function bytesToUnicode(): string[] {
  const table = new Array<string>(256);
  const direct = new Set<number>();
  for (let b = 0x21; b <= 0x7e; b++) direct.add(b);
  for (let b = 0xa1; b <= 0xac; b++) direct.add(b);
  for (let b = 0xae; b <= 0xff; b++) direct.add(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (direct.has(b)) table[b] = String.fromCharCode(b);
    else table[b] = String.fromCharCode(256 + n++);
  }
  return table;
}

const BYTE_ENCODER = bytesToUnicode();

interface SpecialTokens {
  bos: string;
  eos: string;
  unk: string;
  pad: string;
  maxLength: number;
}

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return undefined;
}

async function readOptionalJson(path: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const parsed: unknown = JSON.parse(text);
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error(`${path}: expected a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

export class ClipTokenizer {
  readonly maxLength: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly vocabSize: number;
  private readonly unkId: number;
  private readonly vocab: Map<string, number>;
  private readonly ranks: Map<string, number>;
  private readonly cache = new Map<string, number[]>();
  private readonly encoder = new TextEncoder();

  /** vocab: token -> id (vocab.json); merges: merge pairs in rank order ("a b"). */
  constructor(vocab: Record<string, number>, merges: readonly string[], special?: Partial<SpecialTokens>) {
    this.vocab = new Map();
    for (const [tok, id] of Object.entries(vocab)) {
      if (!Number.isInteger(id)) throw new Error(`vocab.json: id of ${JSON.stringify(tok)} is not an integer`);
      this.vocab.set(tok, id);
    }
    this.vocabSize = this.vocab.size;
    this.ranks = new Map();
    const count = Math.min(merges.length, MAX_MERGES);
    for (let i = 0; i < count; i++) {
      const parts = merges[i].trim().split(/\s+/);
      if (parts.length !== 2) continue;
      const key = `${parts[0]} ${parts[1]}`;
      if (!this.ranks.has(key)) this.ranks.set(key, i);
    }
    const bos = special?.bos ?? BOS_TOKEN;
    const eos = special?.eos ?? EOS_TOKEN;
    const unk = special?.unk ?? EOS_TOKEN;
    const pad = special?.pad ?? EOS_TOKEN;
    const id = (tok: string, what: string): number => {
      const v = this.vocab.get(tok);
      if (v === undefined) throw new Error(`tokenizer: ${what} token ${JSON.stringify(tok)} is not in vocab.json`);
      return v;
    };
    this.bosId = id(bos, 'bos');
    this.eosId = id(eos, 'eos');
    this.padId = id(pad, 'pad');
    this.unkId = this.vocab.get(unk) ?? this.eosId;
    const maxLength = special?.maxLength ?? DEFAULT_MAX_LENGTH;
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new Error(`tokenizer: model_max_length ${maxLength} must be an integer >= 2`);
    this.maxLength = maxLength;
  }

  /** Loads vocab.json + merges.txt (+ optional tokenizer_config.json / special_tokens_map.json) from `dir`. */
  static async fromDirectory(dir: string): Promise<ClipTokenizer> {
    const [vocabText, mergesText, config, specialMap] = await Promise.all([
      readFile(join(dir, 'vocab.json'), 'utf8'),
      readFile(join(dir, 'merges.txt'), 'utf8'),
      readOptionalJson(join(dir, 'tokenizer_config.json')),
      readOptionalJson(join(dir, 'special_tokens_map.json')),
    ]);
    const vocab: unknown = JSON.parse(vocabText);
    if (vocab === null || typeof vocab !== 'object' || Array.isArray(vocab)) throw new Error(`${dir}/vocab.json: expected a JSON object`);
    let lines = mergesText.split(/\r?\n/);
    if (lines.length > 0 && lines[0].startsWith('#version')) lines = lines.slice(1);
    lines = lines.filter((l) => l.trim().length > 0);

    const special: Partial<SpecialTokens> = {};
    // tokenizer_config.json first, special_tokens_map.json overrides (as transformers' from_pretrained).
    for (const src of [config, specialMap]) {
      if (!src) continue;
      const bos = tokenContent(src['bos_token']);
      const eos = tokenContent(src['eos_token']);
      const unk = tokenContent(src['unk_token']);
      const pad = tokenContent(src['pad_token']);
      if (bos !== undefined) special.bos = bos;
      if (eos !== undefined) special.eos = eos;
      if (unk !== undefined) special.unk = unk;
      if (pad !== undefined) special.pad = pad;
    }
    const mml = config?.['model_max_length'];
    // Some configs carry transformers' "unset" sentinel (~1e30): the CLIP text encoder takes 77 positions.
    if (typeof mml === 'number' && Number.isInteger(mml) && mml >= 2 && mml <= 1_000_000) special.maxLength = mml;
    return new ClipTokenizer(vocab as Record<string, number>, lines, special);
  }

  /** Token ids of `text` without BOS/EOS/padding and without truncation. */
  tokenize(text: string): number[] {
    const clean = text.normalize('NFC').replace(/\s+/gu, ' ').trim().toLowerCase();
    const out: number[] = [];
    if (clean.length === 0) return out;
    for (const m of clean.matchAll(CLIP_PATTERN)) {
      const piece = m[0];
      if (piece === BOS_TOKEN || piece === EOS_TOKEN) {
        out.push(this.vocab.get(piece) ?? this.unkId);
        continue;
      }
      const ids = this.bpeIds(piece);
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
    return out;
  }

  encode(text: string): TokenizedPrompt {
    const body = this.tokenize(text);
    const room = this.maxLength - 2;
    const truncated = body.length > room;
    const n = truncated ? room : body.length;
    const ids = new Int32Array(this.maxLength).fill(this.padId);
    ids[0] = this.bosId;
    for (let i = 0; i < n; i++) ids[i + 1] = body[i];
    ids[n + 1] = this.eosId;
    return { ids, tokenCount: n + 2, truncated };
  }

  private bpeIds(piece: string): number[] {
    const cached = this.cache.get(piece);
    if (cached !== undefined) return cached;
    const bytes = this.encoder.encode(piece);
    const word: string[] = new Array<string>(bytes.length);
    for (let i = 0; i < bytes.length; i++) word[i] = BYTE_ENCODER[bytes[i]];
    word[word.length - 1] += '</w>';
    const symbols = this.bpe(word);
    const ids = new Array<number>(symbols.length);
    for (let i = 0; i < symbols.length; i++) ids[i] = this.vocab.get(symbols[i]) ?? this.unkId;
    if (this.cache.size >= CACHE_LIMIT) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    this.cache.set(piece, ids);
    return ids;
  }

  /** Repeatedly merges the lowest-ranked adjacent pair (all its occurrences, left to right). */
  private bpe(word: string[]): string[] {
    let w = word;
    while (w.length > 1) {
      let best = Infinity;
      let first = '';
      let second = '';
      for (let i = 0; i < w.length - 1; i++) {
        const r = this.ranks.get(`${w[i]} ${w[i + 1]}`);
        if (r !== undefined && r < best) {
          best = r;
          first = w[i];
          second = w[i + 1];
        }
      }
      if (best === Infinity) break;
      const next: string[] = [];
      let i = 0;
      while (i < w.length) {
        if (i < w.length - 1 && w[i] === first && w[i + 1] === second) {
          next.push(first + second);
          i += 2;
        } else {
          next.push(w[i]);
          i += 1;
        }
      }
      w = next;
    }
    return w;
  }
}
