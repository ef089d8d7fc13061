import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClipTokenizer } from '../server/pipeline/tokenizer.js';

/*
 * Fixture in the layout of the real CLIP vocabulary: ids 0..255 are the bytes_to_unicode characters in
 * bytes_to_unicode order (so "!" is id 0, as in CLIP), 256..511 the same with "</w>", then one id per merge
 * (in merge order), then <|startoftext|>, <|endoftext|>. Expected ids below are written out by hand from
 * the BPE rules (lowest-rank pair first, all its occurrences left to right).
 */

// bytes_to_unicode, written out from the published table: printable bytes keep their code point, the other
// 68 bytes (0x00-0x20, 0x7F-0xA0, 0xAD) map to U+0100.. in byte order.
const PRINTABLE: number[] = [];
for (let b = 0x21; b <= 0x7e; b++) PRINTABLE.push(b);
for (let b = 0xa1; b <= 0xac; b++) PRINTABLE.push(b);
for (let b = 0xae; b <= 0xff; b++) PRINTABLE.push(b);
const OTHER: number[] = [];
for (let b = 0; b < 256; b++) if (!PRINTABLE.includes(b)) OTHER.push(b);
const BYTE_CHAR = new Map<number, string>();
PRINTABLE.forEach((b) => BYTE_CHAR.set(b, String.fromCharCode(b)));
OTHER.forEach((b, n) => BYTE_CHAR.set(b, String.fromCharCode(256 + n)));
const BASE = [...PRINTABLE, ...OTHER].map((b) => BYTE_CHAR.get(b) as string);

const MERGES: [string, string][] = [
  ['h', 'e'], // 512 he
  ['l', 'l'], // 513 ll
  ['ll', 'o</w>'], // 514 llo</w>
  ['he', 'llo</w>'], // 515 hello</w>
  ['c', 'a'], // 516 ca
  ['ca', 't</w>'], // 517 cat</w>
  ["'", 's</w>'], // 518 's</w>
  ['!', '!</w>'], // 519 !!</w>
  ['a', 'a'], // 520 aa
  ['x', 'y</w>'], // 521 xy</w>  (deliberately left OUT of the vocab: maps to unk)
  ['d', 'o'], // 522 do
  ['do', 'g</w>'], // 523 dog</w>
];

const vocab: Record<string, number> = {};
BASE.forEach((ch, i) => (vocab[ch] = i));
BASE.forEach((ch, i) => (vocab[ch + '</w>'] = 256 + i));
MERGES.forEach(([a, b], i) => {
  if (a + b !== 'xy</w>') vocab[a + b] = 512 + i;
});
const BOS = 512 + MERGES.length; // 524
const EOS = BOS + 1; // 525
vocab['<|startoftext|>'] = BOS;
vocab['<|endoftext|>'] = EOS;
const mergesTxt = '#version: 0.2\n' + MERGES.map(([a, b]) => `${a} ${b}`).join('\n') + '\n';

/** id of a single fixture symbol */
const v = (sym: string): number => {
  const id = vocab[sym];
  assert.notEqual(id, undefined, `fixture has no ${sym}`);
  return id;
};

let root = '';
let plainDir = ''; // no config: pad defaults to <|endoftext|>, max length 77
let sd2Dir = ''; // SD 2.x style config: pad "!" (id 0)
let smallDir = ''; // model_max_length 8, pad given as an AddedToken object in special_tokens_map.json

async function writeDir(dir: string, extra: Record<string, unknown> = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'vocab.json'), JSON.stringify(vocab));
  await writeFile(join(dir, 'merges.txt'), mergesTxt);
  for (const [name, content] of Object.entries(extra)) await writeFile(join(dir, name), JSON.stringify(content));
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'cliptok-'));
  plainDir = join(root, 'plain');
  sd2Dir = join(root, 'sd2');
  smallDir = join(root, 'small');
  await writeDir(plainDir);
  await writeDir(sd2Dir, {
    'tokenizer_config.json': {
      add_prefix_space: false,
      bos_token: { __type: 'AddedToken', content: '<|startoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
      do_lower_case: true,
      eos_token: { __type: 'AddedToken', content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
      errors: 'replace',
      model_max_length: 77,
      pad_token: '!',
      tokenizer_class: 'CLIPTokenizer',
      unk_token: { __type: 'AddedToken', content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
    },
    'special_tokens_map.json': {
      bos_token: { content: '<|startoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
      eos_token: { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
      pad_token: '!',
      unk_token: { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false },
    },
  });
  await writeDir(smallDir, {
    'tokenizer_config.json': { model_max_length: 8, pad_token: '<|endoftext|>' },
    'special_tokens_map.json': { pad_token: { content: '!', lstrip: false, normalized: false, rstrip: false, single_word: false } },
  });
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

function padded(body: number[], pad: number, len = 77): number[] {
  const out = [BOS, ...body, EOS];
  while (out.length < len) out.push(pad);
  return out;
}

test('loads ids and defaults: pad = <|endoftext|> without config, max length 77', async () => {
  const t = await ClipTokenizer.fromDirectory(plainDir);
  assert.equal(t.maxLength, 77);
  assert.equal(t.bosId, BOS);
  assert.equal(t.eosId, EOS);
  assert.equal(t.padId, EOS);
  assert.equal(t.vocabSize, 512 + MERGES.length - 1 + 2);
});

test('SD 2.x config: pad "!" is id 0', async () => {
  const t = await ClipTokenizer.fromDirectory(sd2Dir);
  assert.equal(t.padId, 0);
  assert.equal(t.maxLength, 77);
  const r = t.encode('a cat');
  assert.deepEqual(Array.from(r.ids), padded([v('a</w>'), v('cat</w>')], 0));
  assert.equal(r.tokenCount, 4);
  assert.equal(r.truncated, false);
});

test('words, punctuation, contractions and merges', async () => {
  const t = await ClipTokenizer.fromDirectory(plainDir);
  // "hello, cat's!!" -> hello | , | cat | 's | !!
  const r = t.encode("Hello, cat's!!");
  assert.deepEqual(Array.from(r.ids), padded([515, v(',</w>'), 517, 518, 519], EOS));
  assert.equal(r.tokenCount, 7);
  // a lone "!" is "!</w>" = 256 (as in CLIP), not the pad token
  assert.deepEqual(Array.from(t.encode('!').ids.slice(0, 3)), [BOS, 256, EOS]);
  // unmerged word: one id per byte, "</w>" on the last
  assert.deepEqual(Array.from(t.encode('fish').ids.slice(0, 6)), [BOS, v('f'), v('i'), v('s'), v('h</w>'), EOS]);
  // merges apply to every occurrence left to right: a a a a a</w> -> aa aa a</w>
  assert.deepEqual(Array.from(t.encode('aaaaa').ids.slice(0, 5)), [BOS, 520, 520, v('a</w>'), EOS]);
  // rank order: "do" (522) must merge before "dog</w>" (523) can
  assert.deepEqual(Array.from(t.encode('dog').ids.slice(0, 3)), [BOS, 523, EOS]);
  // "hellos": he l l o s</w> -> he ll o s</w> (no "llo" without </w>)
  assert.deepEqual(Array.from(t.encode('hellos').ids.slice(0, 6)), [BOS, 512, 513, v('o'), v('s</w>'), EOS]);
});

test('uppercase and whitespace are normalised', async () => {
  const t = await ClipTokenizer.fromDirectory(plainDir);
  const ref = Array.from(t.encode('hello cat').ids);
  assert.deepEqual(ref, padded([515, 517], EOS));
  assert.deepEqual(Array.from(t.encode('  HELLO \n\t Cat  ').ids), ref);
  assert.deepEqual(Array.from(t.encode('HeLLo\u00a0CAT').ids), ref); // no-break space is whitespace too
});

test('numbers are split into single digits', async () => {
  const t = await ClipTokenizer.fromDirectory(plainDir);
  assert.deepEqual(
    Array.from(t.encode('a 123 cat').ids.slice(0, 7)),
    [BOS, v('a</w>'), v('1</w>'), v('2</w>'), v('3</w>'), 517, EOS],
  );
  // digits glued to letters are still separate tokens; "4k" -> 4 | k
  assert.deepEqual(Array.from(t.encode('4k').ids.slice(0, 4)), [BOS, v('4</w>'), v('k</w>'), EOS]);
});

test('unicode: UTF-8 bytes through bytes_to_unicode', async () => {
  const t = await ClipTokenizer.fromDirectory(plainDir);
  // "café": c a f 0xC3 0xA9 ; "ca" merges; 0xC3 -> "Ã" (printable), 0xA9 -> "©"
  assert.deepEqual(
    Array.from(t.encode('Café').ids.slice(0, 6)),
    [BOS, 516, v('f'), v('\u00c3'), v('\u00a9</w>'), EOS],
  );
  // NFC: "cafe" + combining acute == "café"
  assert.deepEqual(Array.from(t.encode('cafe\u0301').ids), Array.from(t.encode('café').ids));
  // emoji U+1F642 = F0 9F 99 82: 0xF0 -> "ð"; 0x9F, 0x99, 0x82 are remapped to U+0141, U+013B, U+0124
  assert.deepEqual(
    Array.from(t.encode('🙂').ids.slice(0, 6)),
    [BOS, v('\u00f0'), v('\u0141'), v('\u013b'), v('\u0124</w>'), EOS],
  );
  // a space byte never reaches BPE (it is a separator), but U+0120 "Ġ" is its stand-in
  assert.equal(BYTE_CHAR.get(0x20), '\u0120');
});

test('unknown BPE symbols map to the unk (= <|endoftext|>) id; literal special tokens map to their ids', async () => {
  const t = await ClipTokenizer.fromDirectory(plainDir);
  // "xy" merges to "xy</w>", which the fixture vocab lacks
  assert.deepEqual(Array.from(t.encode('xy').ids.slice(0, 3)), [BOS, EOS, EOS]);
  assert.equal(t.encode('xy').tokenCount, 3);
  assert.deepEqual(Array.from(t.encode('cat<|endoftext|>dog').ids.slice(0, 5)), [BOS, 517, EOS, 523, EOS]);
  assert.deepEqual(Array.from(t.encode('<|startoftext|>').ids.slice(0, 3)), [BOS, BOS, EOS]);
});

test('empty and whitespace-only prompts give BOS EOS + padding', async () => {
  const t = await ClipTokenizer.fromDirectory(plainDir);
  for (const p of ['', '   ', '\n\t']) {
    const r = t.encode(p);
    assert.deepEqual(Array.from(r.ids), padded([], EOS));
    assert.equal(r.tokenCount, 2);
    assert.equal(r.truncated, false);
  }
  const sd2 = await ClipTokenizer.fromDirectory(sd2Dir);
  assert.deepEqual(Array.from(sd2.encode('').ids), padded([], 0));
});

test('long prompts are truncated to maxLength with EOS kept last', async () => {
  const t = await ClipTokenizer.fromDirectory(sd2Dir);
  const exact = t.encode(new Array(75).fill('cat').join(' '));
  assert.equal(exact.truncated, false);
  assert.equal(exact.tokenCount, 77);
  assert.equal(exact.ids[76], EOS);

  const long = t.encode(new Array(100).fill('cat').join(' ') + ' dog');
  assert.equal(long.truncated, true);
  assert.equal(long.tokenCount, 77);
  assert.equal(long.ids.length, 77);
  assert.equal(long.ids[0], BOS);
  for (let i = 1; i <= 75; i++) assert.equal(long.ids[i], 517);
  assert.equal(long.ids[76], EOS);
});

test('model_max_length from config; special_tokens_map.json overrides the pad token', async () => {
  const t = await ClipTokenizer.fromDirectory(smallDir);
  assert.equal(t.maxLength, 8);
  assert.equal(t.padId, 0);
  assert.deepEqual(Array.from(t.encode('cat').ids), [BOS, 517, EOS, 0, 0, 0, 0, 0]);
  const r = t.encode('cat cat cat cat cat cat cat');
  assert.deepEqual(Array.from(r.ids), [BOS, 517, 517, 517, 517, 517, 517, EOS]);
  assert.equal(r.truncated, true);
  assert.equal(r.tokenCount, 8);
});

test('cache stays correct past its bound', async () => {
  const t = await ClipTokenizer.fromDirectory(plainDir);
  const first = Array.from(t.encode('hello cat dog').ids);
  for (let i = 0; i < 12_000; i++) t.encode(`w${i.toString(36)}q`);
  assert.deepEqual(Array.from(t.encode('hello cat dog').ids), first);
  assert.deepEqual(first.slice(0, 5), [BOS, 515, 517, 523, EOS]);
});

test('missing files and bad special tokens fail clearly', async () => {
  await assert.rejects(() => ClipTokenizer.fromDirectory(join(root, 'nope')), /ENOENT/);
  const bad = join(root, 'bad');
  await writeDir(bad, { 'tokenizer_config.json': { pad_token: '<pad>' } });
  await assert.rejects(() => ClipTokenizer.fromDirectory(bad), /pad token "<pad>" is not in vocab\.json/);
});
