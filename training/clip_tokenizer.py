"""CLIP byte-level BPE tokenizer files and encoding, a port of the vocabulary builder in
scripts/tiny-model.ts (buildTokenizer): every word of WORDS becomes one "word</w>" token, merges
are added word by word. Written files are the same as the TypeScript generator's (vocab.json,
merges.txt, tokenizer_config.json, special_tokens_map.json), so the server's ClipTokenizer reads
them, and encode() gives the ids the server gives for plain ASCII prompts.
"""
from __future__ import annotations

import json
import os
import re

SEQ_LEN = 77

# The word list of scripts/tiny-model.ts (TINY_MODEL_WORDS), in order.
WORDS = [
    "red", "green", "blue", "yellow", "orange", "purple", "pink", "white", "black", "gray", "grey", "brown",
    "cyan", "magenta", "violet", "gold", "golden", "silver", "turquoise", "beige", "circle", "circles",
    "square", "squares", "triangle", "star", "stars", "heart", "ring", "cross", "rectangle", "ellipse",
    "diamond", "hexagon", "line", "lines", "dot", "dots", "oval", "spiral", "stripes", "shape", "shapes",
    "grid", "wave", "left", "right", "top", "bottom", "center", "middle", "corner", "upper", "lower",
    "above", "below", "behind", "near", "next", "side", "front", "inside", "around", "big", "small",
    "large", "tiny", "huge", "one", "two", "three", "many", "some", "a", "an", "the", "on", "of", "in",
    "and", "with", "at", "to", "by", "over", "under", "is", "it", "for", "from", "background", "sky",
    "sun", "moon", "cloud", "clouds", "tree", "trees", "house", "mountain", "mountains", "water", "sea",
    "ocean", "river", "lake", "grass", "field", "flower", "flowers", "forest", "city", "road", "beach",
    "snow", "rain", "sunset", "night", "day", "fire", "stone", "rock", "desert", "space", "garden", "cat",
    "dog", "bird", "fish", "horse", "car", "boat", "apple", "face", "portrait", "person", "man", "woman",
    "girl", "boy", "eyes", "robot", "photo", "drawing", "painting", "sketch", "art", "style", "picture",
    "image", "illustration", "cartoon", "pixel", "watercolor", "oil", "digital", "render", "realistic",
    "abstract", "simple", "detailed", "colorful", "pattern", "texture", "minimal", "logo", "icon", "light",
    "dark", "bright", "soft", "glowing", "shadow", "shiny", "smooth", "beautiful", "high", "quality",
    "sharp", "blurry", "vivid", "pastel", "neon",
]


def bytes_to_unicode() -> list[tuple[int, str]]:
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


BYTE_ENCODER = dict(bytes_to_unicode())


def clip_bpe(parts: list[str], ranks: dict[str, int]) -> list[str]:
    while len(parts) > 1:
        best, best_rank = -1, None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + " " + parts[i + 1])
            if r is not None and (best_rank is None or r < best_rank):
                best, best_rank = i, r
        if best < 0:
            break
        a, b = parts[best], parts[best + 1]
        nxt, i = [], 0
        while i < len(parts):
            if i < len(parts) - 1 and parts[i] == a and parts[i + 1] == b:
                nxt.append(a + b)
                i += 2
            else:
                nxt.append(parts[i])
                i += 1
        parts = nxt
    return parts


def _word_parts(word: str) -> list[str]:
    chars = [BYTE_ENCODER[b] for b in word.encode("utf-8")]
    return chars[:-1] + [chars[-1] + "</w>"]


class Tokenizer:
    def __init__(self) -> None:
        base = [c for _, c in bytes_to_unicode()]
        vocab_list = base + [c + "</w>" for c in base]
        ranks: dict[str, int] = {}
        merges: list[str] = []
        known = set(vocab_list)
        for word in WORDS:
            parts = clip_bpe(_word_parts(word), ranks)
            while len(parts) > 1:
                merged = parts[0] + parts[1]
                assert merged not in known, merged
                ranks[parts[0] + " " + parts[1]] = len(merges)
                merges.append(parts[0] + " " + parts[1])
                vocab_list.append(merged)
                known.add(merged)
                parts = [merged] + parts[2:]
        vocab_list += ["<|startoftext|>", "<|endoftext|>"]
        self.vocab = {t: i for i, t in enumerate(vocab_list)}
        self.merges = merges
        self.ranks = ranks
        self.bos = len(vocab_list) - 2
        self.eos = len(vocab_list) - 1
        self.pad = 0  # "!" (SD 2.x / SD-Turbo)
        for w in WORDS:
            assert w + "</w>" in self.vocab, w

    PATTERN = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")

    def encode(self, text: str) -> list[int]:
        """BOS + tokens + EOS + pad to 77, as server/pipeline/tokenizer.ts for ASCII text."""
        clean = " ".join(text.split()).strip().lower()
        ids: list[int] = []
        for m in self.PATTERN.finditer(clean):
            piece = m.group(0)
            if piece in ("<|startoftext|>", "<|endoftext|>"):
                ids.append(self.vocab[piece])
                continue
            for sym in clip_bpe(_word_parts(piece), self.ranks):
                ids.append(self.vocab.get(sym, self.eos))
        ids = ids[: SEQ_LEN - 2]
        out = [self.bos] + ids + [self.eos]
        return out + [self.pad] * (SEQ_LEN - len(out))

    def write(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(self.vocab, f, ensure_ascii=False, separators=(",", ":"))
        with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(["#version: 0.2"] + self.merges) + "\n")
        special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "!"}
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            f.write(json.dumps({"model_max_length": SEQ_LEN, **special, "do_lower_case": True}, indent=2) + "\n")
        with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
            f.write(json.dumps(special, indent=2) + "\n")
