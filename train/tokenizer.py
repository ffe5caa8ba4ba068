"""A CLIP-format byte-level BPE tokenizer learned from the caption vocabulary.

`learn(word_counts)` learns merges the usual way (most frequent adjacent pair, ties broken by
the pair's text), until every caption word is one token. The files follow CLIP's layout as
tests/data/GOLDEN.md describes the tiny vocabulary: vocab.json in id order (256 byte symbols,
the same with </w>, one entry per merge, <|startoftext|>, <|endoftext|>), merges.txt starting
with "#version: 0.2". `Tokenizer` encodes like transformers' CLIPTokenizer for ASCII text (it
has no ftfy, and its regex approximates \\p{L}/\\p{N} with Python's classes): enough for
training captions; the C engine's tokenizer is the reference at inference.
"""
import json
import os
import re

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_PAT = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|"
                  r"[^\s\w]+|_+", re.IGNORECASE)


def bytes_to_unicode():
    """GPT-2/CLIP's reversible byte -> printable character table, in CLIP's vocab order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


_B2U = bytes_to_unicode()


def _symbols(word):
    s = [_B2U[b] for b in word.encode("utf-8")]
    s[-1] += "</w>"
    return tuple(s)


def learn(word_counts):
    """word -> count (pre-tokenized pieces) -> list of merges (a, b) in order."""
    words = {_symbols(w): c for w, c in word_counts.items()}
    merges = []
    while True:
        pairs = {}
        for sym, c in words.items():
            for p in zip(sym[:-1], sym[1:]):
                pairs[p] = pairs.get(p, 0) + c
        if not pairs:
            return merges
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        new = {}
        for sym, c in words.items():
            out, i = [], 0
            while i < len(sym):
                if i + 1 < len(sym) and (sym[i], sym[i + 1]) == best:
                    out.append(sym[i] + sym[i + 1])
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        words = new


class Tokenizer:
    def __init__(self, merges):
        base = list(_B2U.values())
        vocab = base + [v + "</w>" for v in base] + ["".join(m) for m in merges] + [BOS, EOS]
        self.vocab = {v: i for i, v in enumerate(vocab)}
        assert len(self.vocab) == len(vocab), "duplicate vocabulary entry"
        self.merges = list(merges)
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.bos, self.eos = self.vocab[BOS], self.vocab[EOS]

    @classmethod
    def from_dir(cls, d):
        with open(os.path.join(d, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().split("\n")[1:]
        return cls([tuple(l.split()) for l in lines if l.strip()])

    def _bpe(self, piece):
        sym = list(_symbols(piece))
        while len(sym) > 1:
            pairs = [(self.ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(sym[:-1], sym[1:]))]
            r, i = min(pairs)
            if r == 1 << 30:
                break
            a, b = sym[i], sym[i + 1]
            out, j = [], 0
            while j < len(sym):  # merge every occurrence of the pair, left to right
                if j + 1 < len(sym) and sym[j] == a and sym[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(sym[j])
                    j += 1
            sym = out
        return sym

    def encode(self, text):
        """text -> BPE ids without BOS/EOS."""
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for piece in _PAT.findall(text):
            if piece in (BOS, EOS):
                ids.append(self.vocab[piece])
            else:
                ids += [self.vocab[s] for s in self._bpe(piece)]
        return ids

    def sd_ids(self, text, n=77):
        """The ids SD feeds the text encoder: [BOS] + ids[:n-2] + [EOS], padded with EOS."""
        ids = [self.bos] + self.encode(text)[:n - 2] + [self.eos]
        return ids + [self.eos] * (n - len(ids))

    def save(self, d):
        """Write vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json."""
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(self.vocab, f, ensure_ascii=False)
        with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in self.merges))
        tok = lambda s: {"content": s, "lstrip": False, "normalized": True, "rstrip": False,
                         "single_word": False}
        special = {"bos_token": tok(BOS), "eos_token": tok(EOS), "pad_token": EOS,
                   "unk_token": tok(EOS)}
        with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
            json.dump(special, f, indent=2)
        cfg = {k: (dict(v, __type="AddedToken") if isinstance(v, dict) else v)
               for k, v in special.items()}
        cfg.update({"add_prefix_space": False, "do_lower_case": True, "errors": "replace",
                    "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"})
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(cfg, f, indent=2)


def build(captions):
    """Learn a tokenizer from caption strings."""
    counts = {}
    for c in captions:
        for piece in _PAT.findall(re.sub(r"\s+", " ", c).strip().lower()):
            counts[piece] = counts.get(piece, 0) + 1
    return Tokenizer(learn(counts))
